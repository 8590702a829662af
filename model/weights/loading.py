"""Weights into the network by file type: an official .caffemodel, a project .pth checkpoint or an
exported .onnx graph (model.deploy.onnx_runtime) for inference, and the ImageNet VGG16 .caffemodel
that initialises training (official train_net's --weights)."""
from pathlib import Path

from lib.utils.integrity import check_record

from ..ssh import SSH

BACKENDS = ("pytorch", "onnxruntime")


def load_network(model_path, backend=None, device="cpu"):
    """The network for `model_path`: `SSH` with the weights of an official .caffemodel (strict) or a
    project .pth checkpoint, or, with backend "onnxruntime", an ONNX file written by
    model.deploy.onnx_export or model.deploy.quantize run by ONNX Runtime (an optional dependency)
    for `device`. backend None picks onnxruntime for .onnx files and pytorch for the others.
    A file with an integrity record (lib/utils/integrity.py) must match it: IntegrityError otherwise."""
    path = Path(model_path)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    check_record(path)
    if backend is None:
        backend = "onnxruntime" if path.suffix == ".onnx" else "pytorch"
    if backend == "onnxruntime":
        if path.suffix != ".onnx":
            raise ValueError(f"{path}: the onnxruntime backend runs .onnx files (write one with "
                             f"`python3 test.py --export-onnx ssh.onnx --model {path}`)")
        from ..deploy.onnx_runtime import OnnxSSH

        return OnnxSSH.from_file(path, device)
    if backend != "pytorch":
        raise ValueError(f"unknown backend '{backend}' (expected one of {', '.join(BACKENDS)})")
    net = SSH()
    if path.suffix == ".caffemodel":
        net.load_caffemodel(path, strict=True)
    elif path.suffix in (".pth", ".pt"):
        net.load_checkpoint(path)
    else:
        raise ValueError(f"{path}: unknown model file type '{path.suffix}' (expected .caffemodel or .pth; "
                         "ONNX files run with the onnxruntime backend)")
    return net


def load_imagenet_init(net, path):
    """Copy the VGG16 trunk of the ImageNet .caffemodel at `path` into `net` (strict=False: the fc
    layers are skipped, the SSH layers keep their init); returns the caffemodel.LoadReport. A file with
    an integrity record must match it."""
    if not Path(path).is_file():
        raise FileNotFoundError(
            f"ImageNet model {path} not found. Fetch it with `make fetch-imagenet` "
            f"(python3 -m model.weights imagenet), or pass --init none to train from a Kaiming-initialised "
            f"trunk (experiments only: far from the official results)")
    check_record(path)
    return net.load_caffemodel(path, strict=False)
