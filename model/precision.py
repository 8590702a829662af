"""The number formats detection runs in (docs/inference.md §5.5).

fp32: the network in float32. bf16 / fp16: the PyTorch network under autocast in that format
(bf16 is the fast one on AVX-512 CPUs, fp16 on CUDA). int8: a network quantized to int8 by
model.deploy.quantize (an ONNX graph run by ONNX Runtime on the CPU). Decoding and NMS always
run in float32, whatever the network's format.

"auto" (PRECISION_CHOICES, not a format) picks the fastest format that runs natively here
(`auto_precision`, from lib.utils.cpu_capabilities); `resolve_precision` turns it into the format,
weights and device to run, with the line to print. A format that this CPU only emulates gets a
one-line warning with the measured slowdown (`emulation_warning`, `warn_if_emulated`).
"""
import warnings
from contextlib import nullcontext
from pathlib import Path
from typing import NamedTuple

PRECISIONS = ("fp32", "bf16", "fp16", "int8")
# What --precision / precision= accept: the formats, or "auto" (resolve_precision picks one).
PRECISION_CHOICES = PRECISIONS + ("auto",)
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

    if precision == "auto":
        raise ValueError("precision auto names no format: resolve it first (model.precision.resolve_precision)")
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision '{precision}' (expected one of {', '.join(PRECISIONS)})")
    graph = getattr(net, "precision", None)
    if graph is not None and graph != precision:
        raise ValueError(f"{net.source} is an {graph} graph: run it with --precision {graph}, not {precision}")
    if graph is None and precision == "int8":
        raise ValueError(f"int8 runs a quantized model: make one with `{QUANTIZE_COMMAND}` and pass it as --model")
    if precision == "int8" and torch.device(device).type != "cpu":
        raise ValueError(f"int8 runs on the CPU (ONNX Runtime); on {device} use --precision fp16")


# How much slower than fp32 an emulated format runs on a CPU, as measured (README "Precision and
# speed"): bf16 without bf16 instructions 5.1x (network, 480x640, 1 thread, oneDNN limited to AVX2 on
# the AVX-512 bf16 EPYC) to 9.3x / 11.5x (detection at 1200x1600 / 480x640 on the AVX2-only EPYC of
# issue 22); fp16, which no CPU convolution computes natively, 5.1x (the same emulation) to 8.9x
# (detection at 480x640 on the AVX-512 bf16 EPYC).
EMULATED_SLOWDOWN = {"bf16": "5-10x", "fp16": "5-10x"}


class PrecisionWarning(UserWarning):
    """A number format that this machine only emulates, much slower than fp32."""


def emulation_warning(precision, device_type, capabilities):
    """One line when `precision` runs emulated on `device_type` ("cpu", "cuda") of a CPU with
    `capabilities` (lib.utils.cpu_capabilities.CpuCapabilities), slower than fp32; None when it runs
    natively. bf16 is native on CPUs with AVX-512 bf16, AMX or ARM bf16; fp16 on CUDA only."""
    if device_type != "cpu" or precision not in EMULATED_SLOWDOWN or precision in capabilities.native("cpu"):
        return None
    if precision == "bf16":
        why = _no_bf16(capabilities)
    else:
        why = "no fp16 convolution kernels: fp16 is for CUDA"
    other = "bf16 (native here), fp32" if capabilities.bf16_native else "fp32"
    return (f"{precision} is emulated on this CPU ({why}): about {EMULATED_SLOWDOWN[precision]} slower than fp32; "
            f"use {other}, or auto (int8 when there is an int8 model)")


def _no_bf16(capabilities):
    """Why bf16 is not native on a CPU, in words."""
    build = f"torch {capabilities.torch_capability}"
    if not capabilities.onednn:
        return f"{build} without oneDNN"
    if capabilities.arm:
        return f"{build}, no ARM bf16"
    unused = [f for f in ("avx512_bf16", "amx_bf16") if f in capabilities.flags]
    if not unused:
        return f"{build}, no avx512_bf16 or amx_bf16"
    return f"{build}, oneDNN limited to {capabilities.onednn_limit}: {' '.join(unused)} unused"


def warn_if_emulated(precision, device, capabilities=None):
    """Issue `emulation_warning` as a PrecisionWarning when it applies (this machine's capabilities
    unless given); returns its text or None."""
    import torch

    from lib.utils.cpu_capabilities import read_capabilities

    text = emulation_warning(precision, torch.device(device).type, capabilities or read_capabilities())
    if text:
        warnings.warn(text, PrecisionWarning, stacklevel=2)
    return text


def auto_precision(capabilities, device_type, int8_model=None, no_int8="no int8 model of these weights"):
    """(precision, reason in one line) of `--precision auto` on `device_type` ("cpu", "cuda").

    CUDA: fp16. CPU: int8 when `int8_model` (the int8 graph of these weights, or None; `no_int8`
    says why there is none) is given, else bf16 where the CPU computes it natively, else fp32.
    Measured on this project's CPUs, int8 is 4x fp32 with VNNI and 2.5x on AVX2, bf16 2x on an
    AVX-512 bf16 CPU (README "Precision and speed").
    """
    if device_type == "cuda":
        return "fp16", "CUDA computes fp16 natively (autocast)"
    if int8_model is not None and capabilities.onnxruntime:
        isa = capabilities.int8_isa
        return "int8", f"{int8_model} is the int8 model of these weights" + (f" ({isa} int8 here)" if isa else "")
    if int8_model is not None:
        no_int8 = f"{int8_model} needs onnxruntime, which is not installed"
    if capabilities.bf16_native:
        flag = next(f for f in ("amx_bf16", "avx512_bf16", "bf16") if f in capabilities.flags)
        return "bf16", f"this CPU computes bf16 natively ({flag}); {no_int8}"
    return "fp32", f"bf16 is not native on this CPU ({_no_bf16(capabilities)}); {no_int8}"


class PrecisionChoice(NamedTuple):
    """What to run: `precision` (one of PRECISIONS), `model` (weights or graph path, None for a
    random network), `device` (torch.device) and `message` (the line saying what auto chose and
    why, for the caller to print; None when the precision was given)."""

    precision: str
    model: object
    device: object
    message: object = None


def resolve_precision(precision, device=None, model=None, layout=None, backend=None, capabilities=None):
    """The PrecisionChoice of `precision` (PRECISION_CHOICES) for the weights `model` on `device`.

    device: "cpu", "cuda", "cuda:N", a torch.device or None (cuda when available; the CPU for int8).
    model: a .caffemodel, .pth or .onnx path, or None for the official weights of `layout`
    (lib.config.data_layout: SSH.caffemodel, SSH_int8.onnx for int8; no layout: a random network).
    backend: "pytorch" keeps auto off int8 graphs. A given precision is returned as it is, with its
    default model and device. "auto" (`auto_precision`): an .onnx model runs in its own format; on
    the CPU the int8 graph beside the weights (<stem>_int8.onnx) is chosen when its record names
    them (model.deploy.quantize.int8_model_of). ValueError for an unknown precision or device.
    """
    from lib.utils.cpu_capabilities import read_capabilities
    from lib.utils.device import parse_device

    if precision not in PRECISION_CHOICES:
        raise ValueError(f"unknown precision '{precision}' (expected one of {', '.join(PRECISION_CHOICES)})")
    if model is None and layout is not None:
        model = layout.ssh_int8_model if precision == "int8" else layout.ssh_model
    model = None if model is None else Path(model)
    if precision != "auto":
        return PrecisionChoice(precision, model, parse_device(device or ("cpu" if precision == "int8" else None)))
    if model is not None and model.suffix == ".onnx":
        from .deploy.quantize import graph_metadata
        from .deploy.onnx_runtime import PRECISION_KEY

        chosen = graph_metadata(model).get(PRECISION_KEY, "fp32") if model.is_file() else "fp32"
        reason = f"{model} is an {chosen} ONNX graph, which runs in its own format"
        return PrecisionChoice(chosen, model, parse_device(device or ("cpu" if chosen == "int8" else None)),
                               f"precision auto: {chosen} ({reason})")
    target = parse_device(device)
    int8, no_int8 = None, "no int8 model of a random network"
    if model is not None and backend == "pytorch":
        no_int8 = "the pytorch backend runs no int8 graph"
    elif model is not None and target.type == "cpu":
        from .deploy.quantize import int8_model_of

        int8, no_int8 = int8_model_of(model)
        if int8 is None and no_int8.startswith("no int8 model"):
            no_int8 += f" (`python3 -m model.deploy quantize --model {model}` makes one)"
    chosen, reason = auto_precision(capabilities or read_capabilities(), target.type, int8, no_int8)
    return PrecisionChoice(chosen, int8 if chosen == "int8" else model, target, f"precision auto: {chosen} ({reason})")
