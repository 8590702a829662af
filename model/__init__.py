"""Things with learnable weights or weight files: the SSH network and Caffe model I/O."""
from .ssh import SSH

__all__ = ["SSH"]
