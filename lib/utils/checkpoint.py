"""Complete training snapshots, written atomically (the role of Caffe's .caffemodel + .solverstate pair).

A snapshot is one torch.save'd dict:
    model      state_dict of the network
    optimizer  state_dict of the optimizer (momentum histories, group lr / decay)
    scaler     state_dict of the AMP GradScaler ({} when AMP is off)
    schedule   {"base_lr", "gamma", "stepsize"} of the step policy
    iteration  number of completed SGD steps
    rng        Python, numpy, torch CPU and CUDA generator states
    extra      caller's plain data (e.g. images consumed by the sampler, the config)
    checksum   CRC-32 of the bytes of the model and optimizer tensors (absent in older snapshots)
It contains only tensors and plain Python values, so it loads with torch.load(weights_only=True).
A missing, empty, damaged or foreign file raises ValueError with one sentence naming it.

A run folder holds the kept snapshots `<prefix>_iter_<N>.pth` and at most one `<prefix>_latest.pth`,
a snapshot overwritten at a finer cadence; `newest_snapshot` picks the newest one that loads
(--resume auto).
"""
import math
import os
import pickle
import random
import re
import zlib
from pathlib import Path

import numpy as np
import torch

from lib.utils.atomic import atomic_path


def snapshot_name(prefix, iteration):
    """Official naming `<prefix>_iter_<iteration>.pth` (Caffe: `<prefix>_iter_<N>.caffemodel`)."""
    return f"{prefix}_iter_{iteration}.pth"


def latest_name(prefix):
    """`<prefix>_latest.pth`: the one snapshot a run overwrites between its kept ones."""
    return f"{prefix}_latest.pth"


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
    state["checksum"] = tensor_checksum(state)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
        _flush_to_disk(tmp)
    return Path(path)


def tensor_checksum(state):
    """CRC-32 of the bytes of every tensor in the snapshot dict's "model" and "optimizer", in their order.

    torch.load checks no checksum, so bytes damaged on disk would load as other weights.
    """
    crc = 0
    for t in _tensors([state["model"], state["optimizer"]]):
        crc = zlib.crc32(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy(), crc)
    return crc


def _tensors(value):
    """The tensors in nested dicts, lists and tuples, in order."""
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors(item)


def _flush_to_disk(path):
    """fsync `path`, so that after a crash of the machine the renamed file holds all its bytes, not a hole."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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


def _read_checked(path):
    """The snapshot dict at `path` with all its tensors read and, where it records a checksum, checked."""
    state = _read(path, mmap=False)
    if "checksum" in state and tensor_checksum(state) != state["checksum"]:
        raise ValueError(f"{path}: its weights or momentum differ from the checksum written with them (damaged)")
    return state


def snapshot_config(path):
    """The config (plain nested dict) a snapshot was trained with, read without loading its tensors.

    ValueError when `path` is not a readable snapshot or records no config.
    """
    return _config_of(_read(path, mmap=True), path)


def _config_of(state, path):
    """The config recorded in the snapshot dict `state` read from `path`; ValueError when there is none."""
    config = state.get("extra", {}).get("config")
    if not isinstance(config, dict):
        raise ValueError(f"{path}: the snapshot records no training config, so its run cannot be resumed")
    return config


def load_snapshot(path, *, model, optimizer=None, scaler=None, restore_rng=True):
    """Load a snapshot into `model` (strict) and, when given, `optimizer` and `scaler`.

    Optimizer tensors follow the device of the model's parameters. Restores the generators when
    `restore_rng`. Returns the snapshot dict (iteration, schedule, extra, ...).
    """
    state = _read_checked(path)
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


def verify_snapshot(path, iteration=None):
    """The iteration of the complete, resumable snapshot at `path`: every tensor read and, where the
    snapshot records a checksum, its bytes checked, a config recorded.

    `iteration`: the one its name promises, when it has one. ValueError (one sentence) otherwise.
    """
    state = _read_checked(path)
    _config_of(state, path)
    if iteration is not None and state["iteration"] != iteration:
        raise ValueError(f"{path}: holds iteration {state['iteration']}, not the {iteration} of its name")
    return state["iteration"]


def _candidates(folder, prefix):
    """[(iteration, path)] of the snapshots in `folder`, newest first: the kept ones by their names, the
    latest one by its content (None, put first, when it cannot be read)."""
    kept = re.compile(rf"{re.escape(prefix)}_iter_(\d+)\.pth")
    found = [(int(match[1]), path) for path in folder.glob(f"{prefix}_iter_*.pth")
             if (match := kept.fullmatch(path.name))]
    latest = folder / latest_name(prefix)
    if latest.is_file():
        try:
            found.append((_read(latest, mmap=True)["iteration"], latest))
        except ValueError:
            found.append((None, latest))
    return sorted(found, key=lambda c: math.inf if c[0] is None else c[0], reverse=True)


def set_aside(path):
    """Rename `path` to `<name>.damaged` (`.damaged.2`, ... when taken) so it is neither tried again nor lost."""
    path = Path(path)
    target, n = path.with_name(path.name + ".damaged"), 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.damaged.{n}")
    os.replace(path, target)
    return target


def newest_snapshot(folder, prefix, move_damaged=False):
    """(the newest snapshot in `folder` that verifies, or None; [why each newer one was skipped]).

    Looks at `<prefix>_iter_<N>.pth` and `<prefix>_latest.pth`; a damaged one (cut short, empty,
    bytes that differ from its checksum, another kind of file) is skipped, so the run falls back to
    the previous snapshot. With `move_damaged` (one process of a run only) each skipped file is
    renamed by `set_aside`, so later resumes do not warn about it again.
    """
    skipped = []
    for iteration, path in _candidates(Path(folder), prefix):
        try:
            verify_snapshot(path, iteration)
            return path, skipped
        except ValueError as e:
            skipped.append(f"{e}; moved aside to {set_aside(path).name}" if move_damaged and path.exists() else str(e))
    return None, skipped
