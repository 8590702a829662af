"""The number formats detection runs in (docs/inference.md §5.5).

fp32: the network in float32. bf16 / fp16: the PyTorch network under autocast in that format
(bf16 is the fast one on AVX-512 CPUs, fp16 on CUDA). int8: a network quantized to int8 by
model.deploy.quantize (an ONNX graph run by ONNX Runtime on the CPU). Decoding and NMS always
run in float32, whatever the network's format.
"""
from contextlib import nullcontext

PRECISIONS = ("fp32", "bf16", "fp16", "int8")
# torch dtype names of the autocast formats (torch is imported on use: eval.py parses options without it).
AUTOCAST_DTYPES = {"bf16": "bfloat16", "fp16": "float16"}
QUANTIZE_COMMAND = "python3 -m model.deploy quantize --model <weights> --out <name>_int8.onnx"


def autocast(precision, device):
    """The autocast context of `precision` on `device` (none for fp32 and int8)."""
    import torch

    if precision not in AUTOCAST_DTYPES:
        return nullcontext()
    return torch.autocast(torch.device(device).type, dtype=getattr(torch, AUTOCAST_DTYPES[precision]))


def check_precision(precision, net, device):
    """Raise ValueError, in one sentence, unless `net` can run in `precision` on `device`.

    An ONNX graph (a net with a `precision` attribute, model.deploy.onnx_runtime.OnnxSSH) runs only
    in its own format; a PyTorch network in fp32, bf16 or fp16; int8 only on the CPU.
    """
    import torch

    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision '{precision}' (expected one of {', '.join(PRECISIONS)})")
    graph = getattr(net, "precision", None)
    if graph is not None and graph != precision:
        raise ValueError(f"{net.source} is an {graph} graph: run it with --precision {graph}, not {precision}")
    if graph is None and precision == "int8":
        raise ValueError(f"int8 runs a quantized model: make one with `{QUANTIZE_COMMAND}` and pass it as --model")
    if precision == "int8" and torch.device(device).type != "cpu":
        raise ValueError(f"int8 runs on the CPU (ONNX Runtime); on {device} use --precision fp16")
