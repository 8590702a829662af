"""Test helpers for weight files: an SSH.caffemodel (official layer names) of a seeded random SSH,
and in-memory .tar.gz archives like the official ones."""
import io
import tarfile

import torch

from model import SSH
from model.weights.caffemodel import write_caffemodel


def write_ssh_caffemodel(path, seed=0):
    """Write the weights of a seeded random SSH to the .caffemodel `path`; returns that SSH."""
    torch.manual_seed(seed)
    net = SSH()
    layers = [(spec.caffe_name, "Deconvolution" if spec.init == "bilinear" else "Convolution",
               [p.detach() for p in layer.parameters()]) for spec, layer in net.caffe_layers()]
    path.parent.mkdir(parents=True, exist_ok=True)
    write_caffemodel(path, layers)
    return net


def tar_gz(members):
    """Bytes of a .tar.gz holding {name: bytes}."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()
