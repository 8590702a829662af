"""Complete training snapshots, written atomically (the role of Caffe's .caffemodel + .solverstate pair).

A snapshot is one torch.save'd dict:
    model      state_dict of the network
    optimizer  state_dict of the optimizer (momentum histories, group lr / decay)
    scaler     state_dict of the AMP GradScaler ({} when AMP is off)
    schedule   {"base_lr", "gamma", "stepsize"} of the step policy
    iteration  number of completed SGD steps
    rng        Python, numpy, torch CPU and CUDA generator states
    extra      caller's plain data (e.g. images consumed by the sampler, the config)
It contains only tensors and plain Python values, so it loads with torch.load(weights_only=True).
A missing, empty, damaged or foreign file raises ValueError with one sentence naming it.
"""
import pickle
import random
from pathlib import Path

import numpy as np
import torch

from lib.utils.atomic import atomic_path


def snapshot_name(prefix, iteration):
    """Official naming `<prefix>_iter_<iteration>.pth` (Caffe: `<prefix>_iter_<N>.caffemodel`)."""
    return f"{prefix}_iter_{iteration}.pth"


def get_rng_state():
    """States of the Python, numpy, torch CPU and (when initialised) CUDA generators."""
    np_state = np.random.get_state(legacy=False)
    return {
        "python": random.getstate(),
        "numpy": {"key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
                  "pos": np_state["state"]["pos"], "has_gauss": np_state["has_gauss"],
                  "gauss": np_state["gauss"]},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
    }


def set_rng_state(state):
    """Restore the generators saved by `get_rng_state` (CUDA ones only when CUDA is in use)."""
    random.setstate(state["python"])
    np_state = state["numpy"]
    np.random.set_state({"bit_generator": "MT19937",
                         "state": {"key": np_state["key"].numpy().astype(np.uint32), "pos": np_state["pos"]},
                         "has_gauss": np_state["has_gauss"], "gauss": np_state["gauss"]})
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_snapshot(path, *, model, optimizer, iteration, schedule, scaler=None, extra=None):
    """Write a complete snapshot to `path` atomically (temp file + rename); returns `path`."""
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else {},
        "schedule": dict(schedule),
        "iteration": int(iteration),
        "rng": get_rng_state(),
        "extra": extra or {},
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return Path(path)


SNAPSHOT_KEYS = frozenset({"model", "optimizer", "iteration", "schedule", "rng"})


def _read(path, mmap):
    """The snapshot dict at `path` (tensors memory-mapped when `mmap`); ValueError when it is not one."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"snapshot not found: {path}" if not path.exists() else f"{path}: not a file")
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: empty file, not a training snapshot")
    try:
        state = torch.load(path, map_location="cpu", mmap=mmap, weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, ValueError, OSError):
        raise ValueError(f"{path}: cannot be read as a training snapshot (damaged, truncated or another "
                         f"kind of file)") from None
    missing = SNAPSHOT_KEYS - state.keys() if isinstance(state, dict) else SNAPSHOT_KEYS
    if missing:
        raise ValueError(f"{path}: not a training snapshot (missing {', '.join(sorted(missing))})")
    return state


def snapshot_config(path):
    """The config (plain nested dict) a snapshot was trained with, read without loading its tensors.

    ValueError when `path` is not a readable snapshot or records no config.
    """
    config = _read(path, mmap=True).get("extra", {}).get("config")
    if not isinstance(config, dict):
        raise ValueError(f"{path}: the snapshot records no training config, so its run cannot be resumed")
    return config


def load_snapshot(path, *, model, optimizer=None, scaler=None, restore_rng=True):
    """Load a snapshot into `model` (strict) and, when given, `optimizer` and `scaler`.

    Optimizer tensors follow the device of the model's parameters. Restores the generators when
    `restore_rng`. Returns the snapshot dict (iteration, schedule, extra, ...).
    """
    state = _read(path, mmap=False)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError:
        raise ValueError(f"{path}: the snapshot's weights do not fit this network (missing, unexpected or "
                         f"differently shaped tensors)") from None
    if optimizer is not None:
        optimizer.load_state_dict(state["optimizer"])
    if scaler is not None and state["scaler"]:
        scaler.load_state_dict(state["scaler"])
    if restore_rng:
        set_rng_state(state["rng"])
    return state
