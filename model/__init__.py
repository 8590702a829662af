"""The SSH network and its inference pipeline (detector.py); weights/ gets weight files in,
deploy/ exports to ONNX."""
from .ssh import SSH

__all__ = ["SSH"]
