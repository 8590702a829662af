"""Convert weights to a plain PyTorch state_dict .pth (`python3 -m model.weights convert`): the
official .caffemodel (or the weights of a training snapshot), re-loaded and compared bit for bit
before the file is kept, then given an integrity record (lib/utils/integrity.py)."""
from pathlib import Path

import torch

from lib.utils.atomic import atomic_path
from lib.utils.integrity import write_record

from ..ssh import SSH
from .loading import load_network


def same_bits(a, b):
    """True when the tensors `a` and `b` have the same dtype, shape and bytes (unlike torch.equal,
    which takes 0.0 for -0.0)."""
    return (a.dtype == b.dtype and a.shape == b.shape
            and torch.equal(a.reshape(-1).view(torch.uint8), b.reshape(-1).view(torch.uint8)))


def convert(model_path, out_path, remake):
    """Write the SSH weights of `model_path` (.caffemodel, strict; or .pth) as a plain state_dict to
    `out_path`, atomically, after checking that re-loading it gives every tensor bit-identical;
    then write its integrity record (`remake`: the command that makes it again). Returns out_path."""
    state = load_network(model_path, backend="pytorch").state_dict()
    out_path = Path(out_path)
    with atomic_path(out_path) as tmp:
        torch.save(state, tmp)
        back = SSH()
        back.load_checkpoint(tmp)
        differ = [k for k, v in back.state_dict().items() if not same_bits(v, state[k])]
        if differ:
            raise ValueError(f"{out_path}: re-loaded tensors differ from {model_path} ({', '.join(differ[:3])}); "
                             "nothing was written")
    write_record(out_path, verified_by=f"every tensor re-loaded bit-identical to {model_path}", remake=remake)
    return out_path
