"""Device names given on the command line, checked before anything runs on them."""
import argparse

import torch


def default_device():
    """'cuda' when a GPU is available, else 'cpu'."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def parse_device(text):
    """torch.device for 'cpu', 'cuda' or 'cuda:N' that exists on this machine; ValueError (one sentence) else.

    None means `default_device()`. The checks run before a model is built, so a wrong --device
    ends with a message instead of a CUDA or parser traceback.
    """
    if text is None:
        return torch.device(default_device())
    try:
        device = torch.device(text)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device '{text}' (expected cpu, cuda or cuda:N)") from None
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device '{text}' (expected cpu, cuda or cuda:N)")
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"device '{text}': no CUDA GPU is available here (torch {torch.__version__}); "
                             "use --device cpu")
        if device.index is not None and device.index >= count:
            raise ValueError(f"device '{text}': this machine has {count} CUDA GPU(s), cuda:0 .. cuda:{count - 1}")
    return device


def device_arg(text):
    """argparse `type` for --device: a bad or absent device is a usage error (exit 2) naming it."""
    try:
        return parse_device(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
