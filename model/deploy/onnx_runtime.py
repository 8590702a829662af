"""The exported SSH network run by ONNX Runtime, with the forward contract of `SSH`.

`OnnxSSH(path)` is a parameter-free nn.Module, so `Detector` uses it unchanged: forward(images
N x 3 x H x W) -> {"m1": (cls_score, bbox_pred), "m2": ..., "m3": ...} as float32 tensors on the
device of `images`. ONNX Runtime computes on the CPU unless a CUDA-enabled onnxruntime build is
installed and the input lives on a CUDA device. `precision` is the graph's number format: "int8"
for a graph written by model.deploy.quantize (its metadata says so), else "fp32".
"""
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lib.anchors import MODULE_NAMES

from .onnx_export import INPUT_NAME, OUTPUT_NAMES

# Metadata key of the graph's number format (written by model.deploy.quantize).
PRECISION_KEY = "ssh.precision"


def providers_for(device):
    """ONNX Runtime execution providers for a torch device: CUDA first when asked for and available."""
    import onnxruntime as ort

    if torch.device(device).type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def load_session(path, device="cpu", threads=0):
    """onnxruntime.InferenceSession for an SSH graph written by model.deploy.onnx_export.

    threads: intra-op threads (0 = ONNX Runtime's default). Raises FileNotFoundError for a missing
    file and ValueError for a file that is not an ONNX model or does not have the SSH inputs/outputs.
    """
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    errors = ort.capi.onnxruntime_pybind11_state
    try:
        session = ort.InferenceSession(str(path), options, providers=providers_for(device))
    except (errors.InvalidProtobuf, errors.InvalidGraph, errors.Fail, errors.NotImplemented) as e:
        raise ValueError(f"{path}: not an ONNX model ONNX Runtime can load ({str(e).splitlines()[0]})") from None
    inputs = [i.name for i in session.get_inputs()]
    outputs = tuple(o.name for o in session.get_outputs())
    if inputs != [INPUT_NAME] or outputs != OUTPUT_NAMES:
        raise ValueError(f"{path}: not an SSH graph (inputs {inputs}, outputs {list(outputs)}; "
                         f"expected [{INPUT_NAME}] and {list(OUTPUT_NAMES)})")
    return session


class OnnxSSH(nn.Module):
    """SSH heads computed by an ONNX Runtime session (see `load_session`)."""

    def __init__(self, session, source="ONNX graph"):
        super().__init__()
        self.session = session
        self.source = source
        self.precision = session.get_modelmeta().custom_metadata_map.get(PRECISION_KEY, "fp32")

    @classmethod
    def from_file(cls, path, device="cpu", threads=0):
        return cls(load_session(path, device, threads), str(path))

    def forward(self, images):
        array = np.ascontiguousarray(images.detach().to("cpu", torch.float32).numpy())
        outputs = self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: array})
        tensors = [torch.from_numpy(o).to(images.device) for o in outputs]
        return {m: (tensors[2 * i], tensors[2 * i + 1]) for i, m in enumerate(MODULE_NAMES)}
