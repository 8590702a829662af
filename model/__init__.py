"""The SSH network and its inference pipeline (detector.py); weights/ gets weight files in,
deploy/ exports to ONNX and quantizes to int8. `SSH` is imported on first use, so that light
modules (precision.py) load without torch, e.g. for eval.py's option parsing."""

__all__ = ["SSH"]


def __getattr__(name):
    if name == "SSH":
        from .ssh import SSH

        return SSH
    raise AttributeError(f"module 'model' has no attribute '{name}'")
