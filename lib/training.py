"""SSH training step and loop (official SSH/train.py + Caffe's Solver::Step with iter_size).

One iteration = one SGD step over `iter_size` images, one image per forward/backward pass. Each
image's summed six losses are divided by iter_size before backward, so the accumulated gradient
is the mean over the images (Caffe's iter_size normalisation). `fit` runs a whole training: in
one process (train.py) or as one rank of a torch.distributed process group (train_dist.py), where
it adds data sharding (EpochSampler rank / world_size), an `average` function that all-reduces
losses and gradients, and an all-reduced `should_stop`. The process that writes the outputs holds
the output folder's lock (lib/utils/lock.py) for the whole run.
"""
import json
import math
import os
import random
import signal
import sys
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from lib.datasets import EpochSampler, TrainDataset, make_loader
from lib.datasets.loader import raise_item_errors
from lib.image_io import ImageError
from lib.losses import LossSettings, ssh_losses
from lib.solver import CaffeSGD, StepLR
from lib.train_log import TrainLog
from lib.utils.atomic import atomic_write_bytes, remove_stale_temps
from lib.utils.checkpoint import latest_name, load_snapshot, save_snapshot, set_rng_state, snapshot_name
from lib.utils.distributed import (PeerFailure, all_reduce_mean, broadcast_module, failure_message, lost_ranks,
                                   max_over_ranks, split_iter_size)
from lib.utils.lock import folder_lock


@dataclass(frozen=True)
class TrainSettings:
    """The training recipe `fit` follows (official SSH/train.py and solver_ssh.prototxt; lib/config.py).

    Data: the image's shorter side goes to scales[0], its longer side to at most max_size (the
    original size with orig_size), minus pixel_means (B, G, R); rng_seed shuffles the epochs.
    Solver: iter_size images per SGD step, Caffe SGD with base_lr, momentum, weight_decay, lr
    multiplied by gamma every stepsize steps. A snapshot every `snapshot` steps, named with
    snapshot_infix; a log line every `display` steps. losses: the anchor-target settings.
    """

    scales: tuple
    max_size: int
    orig_size: bool
    pixel_means: tuple
    rng_seed: int
    iter_size: int
    base_lr: float
    momentum: float
    weight_decay: float
    gamma: float
    stepsize: int
    snapshot: int
    snapshot_infix: str
    display: int
    losses: LossSettings

    @classmethod
    def from_config(cls, cfg):
        """The settings of `cfg.TRAIN`, PIXEL_MEANS and RNG_SEED (lib/config.py)."""
        train = cfg.TRAIN
        return cls(scales=tuple(train.SCALES), max_size=train.MAX_SIZE, orig_size=train.ORIG_SIZE,
                   pixel_means=tuple(float(v) for v in np.ravel(cfg.PIXEL_MEANS)), rng_seed=cfg.RNG_SEED,
                   iter_size=train.ITER_SIZE, base_lr=train.BASE_LR, momentum=train.MOMENTUM,
                   weight_decay=train.WEIGHT_DECAY, gamma=train.GAMMA, stepsize=train.STEPSIZE,
                   snapshot=train.SNAPSHOT, snapshot_infix=train.SNAPSHOT_INFIX, display=train.DISPLAY,
                   losses=LossSettings.from_config(cfg))


class NonFiniteLoss(RuntimeError):
    """A NaN or infinite loss; raised before the optimizer step, so the weights stay the last good ones."""


def seed_everything(seed):
    """Seed Python, numpy and torch (all devices) generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def amp_dtype(device):
    """Autocast dtype for --amp: bfloat16 where supported (CPU, recent GPUs), else float16."""
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def image_losses(net, item, settings, device, autocast_dtype=None):
    """The six named losses of one TrainDataset item (forward pass under autocast when a dtype is given).

    settings: the LossSettings of ssh_losses.
    """
    device = torch.device(device)
    data = item["data"].to(device, non_blocking=True)[None]
    gt_boxes = item["gt_boxes"].to(device, non_blocking=True)
    autocast = (torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype is not None
                else nullcontext())
    with autocast:
        heads = net(data)
    return ssh_losses(heads, gt_boxes, tuple(data.shape[-2:]), settings)


def train_step(optimizer, items, loss_fn, scaler=None, average=None):
    """One SGD iteration over the images in `items`; returns the mean losses {name: float}.

    loss_fn(item) -> {name: scalar loss}. Gradients are accumulated over len(items) backward passes
    of loss / len(items). `average(tensors)` (optional) averages a list of tensors in place across
    processes; it is applied to the losses and to every gradient before the step. A non-finite
    mean loss raises NonFiniteLoss before any parameter changes. `scaler` is a GradScaler (AMP).
    """
    optimizer.zero_grad(set_to_none=True)
    totals = {}
    for item in items:
        losses = loss_fn(item)
        loss = sum(losses.values()) / len(items)
        (scaler.scale(loss) if scaler is not None else loss).backward()
        for name, value in losses.items():
            totals[name] = totals.get(name, 0.0) + value.detach().float() / len(items)
    stacked = torch.stack(list(totals.values()))
    if average is not None:
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        average([stacked, *grads])
    means = dict(zip(totals, stacked.tolist()))
    if not all(math.isfinite(v) for v in means.values()):
        raise NonFiniteLoss(", ".join(f"{name} = {v:g}" for name, v in means.items()))
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    return means


# Why a run stops early, weakest first: when ranks differ, the strongest is everyone's.
STOP_REASONS = (None, "stopped", "preempted")
# Sent by torchrun to the survivors of a failed worker and by SLURM at a time limit or preemption
# (SIGUSR1 with `--signal USR1@SECONDS`, ahead of it).
PREEMPTION_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class StopOnSignals:
    """Context manager turning Ctrl-C (SIGINT) into a "stopped" request and SIGTERM / SIGUSR1 into a
    "preempted" one; calling it gives the strongest request so far (None: none).

    The loop then finishes the iteration in progress, snapshots and returns. A second Ctrl-C
    interrupts at once; a repeated SIGTERM (torchrun and SLURM may follow up) changes nothing.
    DataLoader workers forked inside the block inherit the handlers, which do nothing outside the
    owning process, so they keep serving the iteration in progress. Must be entered in the main thread.
    """

    def __enter__(self):
        self.reason = None
        self._seen = set()
        self._pid = os.getpid()
        self._previous = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGINT, *PREEMPTION_SIGNALS)}
        return self

    def _handle(self, signum, frame):
        if os.getpid() != self._pid:
            return
        if signum in self._seen:
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            return
        self._seen.add(signum)
        reason = "stopped" if signum == signal.SIGINT else "preempted"
        self.reason = max(self.reason, reason, key=STOP_REASONS.index)
        print("\nCtrl-C: stopping after this iteration and saving a snapshot (press again to abort)."
              if signum == signal.SIGINT else
              f"\n{signal.Signals(signum).name}: preempted, stopping after this iteration and saving a snapshot.",
              file=sys.stderr, flush=True)

    def __exit__(self, *exc):
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)

    def __call__(self):
        return self.reason


@dataclass(frozen=True)
class LatestCadence:
    """When to overwrite `<prefix>_latest.pth` between kept snapshots: every `every` steps, and once
    `minutes` have passed since the last snapshot of either kind (0: not on that count)."""

    every: int = 0
    minutes: float = 0.0

    def due(self, iteration, seconds):
        """True when step `iteration`, `seconds` after the last snapshot was written, should write one."""
        return (self.every > 0 and iteration % self.every == 0) or (self.minutes > 0 and seconds >= 60 * self.minutes)


def train_loop(optimizer, items, loss_fn, schedule, *, start_iter, max_iters, iter_size, snapshot_every,
               snapshot, log, checkpoint=lambda iteration: None, scaler=None, average=None, should_stop=lambda: None):
    """Run SGD steps start_iter .. max_iters - 1; returns (iterations completed, "done" or the stop reason).

    items: iterator of training items, consumed iter_size per step; schedule(it) -> base lr of the
    0-based step `it` (CaffeSGD.set_base_lr applies the per-group multipliers). After each step
    log(iteration, lr, {name: float}) is called with iteration = steps completed; snapshot(iteration)
    every `snapshot_every` steps, at the end, and when should_stop() returns a reason ("stopped",
    "preempted"; asked between steps); checkpoint(iteration) after each other step before the last.
    NonFiniteLoss propagates without a snapshot, so the last one written stays the last good one.
    """
    iteration = start_iter
    last_snapshot = start_iter
    reason = "done"
    while iteration < max_iters:
        stop = should_stop()
        if stop:
            reason = stop
            break
        lr = schedule(iteration)
        optimizer.set_base_lr(lr)
        batch = list(islice(items, iter_size))
        if len(batch) != iter_size:
            raise RuntimeError(f"the training items ran out at iteration {iteration + 1}")
        try:
            losses = train_step(optimizer, batch, loss_fn, scaler, average)
        except NonFiniteLoss as e:
            raise NonFiniteLoss(f"iteration {iteration + 1}: {e}") from None
        iteration += 1
        log(iteration, lr, losses)
        if iteration % snapshot_every == 0:
            snapshot(iteration)
            last_snapshot = iteration
        elif iteration < max_iters:
            checkpoint(iteration)
    if iteration != last_snapshot:
        snapshot(iteration)
    return iteration, reason


def snapshot_prefix(infix):
    """Official snapshot prefix: solver `snapshot_prefix` "SSH", then "_<TRAIN.SNAPSHOT_INFIX>" if set."""
    return "SSH" + (f"_{infix}" if infix else "")


def fit(net, settings, roidb, out_dir, *, config, device, max_iters, workers=2, amp=False, resume=None,
        store=None, timeout=30.0, latest=LatestCadence()):
    """Train `net` on `roidb` with the recipe `settings` (TrainSettings) up to `max_iters` SGD steps.

    net: an SSH (anything with param_groups(base_lr, weight_decay)), already initialised. Writes
    `<out_dir>/<prefix>_iter_<N>.pth` snapshots, metrics.jsonl and loss_curve.png, under the
    folder's lock (FolderLocked when another run holds it), after removing the temporary files of
    interrupted writes. Between those snapshots `<prefix>_latest.pth` is overwritten at the `latest`
    cadence (LatestCadence) and removed by the next kept snapshot, so a crash loses few steps.
    `config`: the run's whole config (lib/config.py), the one `settings` comes from
    (TrainSettings.from_config), stored as plain data in every snapshot for --resume. `resume`: a
    snapshot to continue from exactly; ValueError when this world size cannot (`resume_split_error`).
    Returns (steps completed, "done" | "stopped" (Ctrl-C) | "preempted" (SIGTERM, SIGUSR1)); a NaN
    or infinite loss raises NonFiniteLoss naming the iteration and the last good snapshot; an
    unreadable image raises ImageError naming it, after the last completed step is saved.

    In a torch.distributed process group this is one rank's part: rank 0's weights are broadcast,
    each rank takes its EpochSampler shard and accumulates split_iter_size(settings.iter_size, world
    size) images per step, losses and gradients are averaged over the ranks and a stop request on any
    rank stops all of them. Rank 0 alone logs and writes snapshots, whose "consumed" counts the
    images of all ranks. Ranks that start from different iterations raise ValueError. A failed
    collective raises PeerFailure naming the lost ranks (asked of the rendezvous `store` within
    `timeout`), after rank 0 has saved the last completed step.
    """
    out_dir = Path(out_dir)
    writer = not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0
    with hold_output(out_dir) if writer else nullcontext():
        return _fit(net, settings, roidb, out_dir, config, device, max_iters, workers, amp, resume, store, timeout,
                    latest)


@contextmanager
def hold_output(out_dir):
    """Lock `out_dir` for the block and remove the temporary files of interrupted writes in it (printed)."""
    with folder_lock(out_dir):
        removed = remove_stale_temps(out_dir)
        if removed:
            print(f"Removed {len(removed)} temporary file(s) of interrupted writes from {out_dir}: "
                  f"{', '.join(removed)}", flush=True)
        yield


def drop_torn_line(path):
    """Cut the text file at `path` (atomically) after its last newline; True when there was more.

    A process killed while appending to metrics.jsonl can leave half a record, which the next run
    could not read.
    """
    path = Path(path)
    if not path.is_file():
        return False
    data = path.read_bytes()
    whole = data[:data.rfind(b"\n") + 1]
    if whole == data:
        return False
    atomic_write_bytes(path, whole)
    return True


def _processes(counts):
    """'1 process', '3 processes', '1, 2 or 4 processes' of a list of process counts."""
    words = [str(n) for n in counts]
    listed = words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"
    return f"{listed} process" + ("" if counts == [1] else "es")


def resume_split_error(saved_world_size, iter_size, world_size, num_items):
    """Why a snapshot of `saved_world_size` processes cannot continue exactly on `world_size`, or None.

    Exact when every SGD step keeps its images (split_iter_size(iter_size, ...) x processes) and
    every epoch drops the same last num_items % processes items of its permutation (EpochSampler),
    so the steps see the same images in the same order of steps.
    """
    def images(w):
        return split_iter_size(iter_size, w) * w

    saved = images(saved_world_size)
    fits = [w for w in range(1, min(saved, num_items) + 1)
            if images(w) == saved and num_items % w == num_items % saved_world_size]
    if world_size in fits:
        return None
    remedy = f"; resume it on {_processes(fits)}" if fits else ""
    if images(world_size) != saved:
        return (f"it was trained with {saved} images per SGD step ({saved_world_size} x "
                f"{split_iter_size(iter_size, saved_world_size)}, TRAIN.ITER_SIZE {iter_size}) and "
                f"{_processes([world_size])} would take {images(world_size)}, so the run would not continue the same "
                f"training{remedy}")
    return (f"its run dropped the last {num_items % saved_world_size} of the {num_items} training items of each "
            f"epoch and {_processes([world_size])} would drop {num_items % world_size}, so the order of the images "
            f"would change{remedy}")


def _agree_on_start(start_iter, device):
    """ValueError unless every rank starts at `start_iter` (a machine that sees another --out would diverge)."""
    high, minus_low = max_over_ranks([start_iter, -start_iter], device, "agreeing on the iteration to start from")
    if high != -minus_low:
        raise ValueError(f"the processes would start from different iterations ({-minus_low} .. {high}): every "
                         "machine must see the same --out folder and snapshots")


def _fit(net, settings, roidb, out_dir, config, device, max_iters, workers, amp, resume, store, timeout, latest):
    """`fit` once the output folder is held (or, off rank 0, not written)."""
    device = torch.device(device)
    distributed = dist.is_available() and dist.is_initialized()
    rank, world_size = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    iter_size = split_iter_size(settings.iter_size, world_size)
    images_per_step = iter_size * world_size
    net.to(device).train()
    optimizer = CaffeSGD(net.param_groups(settings.base_lr, settings.weight_decay), lr=settings.base_lr,
                         momentum=settings.momentum)
    schedule = StepLR(settings.base_lr, settings.gamma, settings.stepsize)
    autocast_dtype = amp_dtype(device) if amp else None
    scaler = torch.amp.GradScaler(device.type, enabled=autocast_dtype == torch.float16)
    dataset = TrainDataset(roidb, settings.scales[0], settings.max_size, settings.pixel_means, settings.orig_size)
    start_iter, consumed, resumed = 0, 0, None
    if resume is not None:
        resumed = load_snapshot(resume, model=net, optimizer=optimizer, scaler=scaler, restore_rng=False)
        start_iter, consumed = resumed["iteration"], resumed["extra"]["consumed"]
        refused = resume_split_error(resumed["extra"].get("world_size", 1), settings.iter_size, world_size,
                                     len(dataset))
        if refused:
            raise ValueError(f"{resume}: {refused}")
    sampler = EpochSampler(len(dataset), settings.rng_seed, rank, world_size, start=consumed // world_size)
    loader = make_loader(dataset, sampler, workers, pin_memory=device.type == "cuda")
    if rank == 0 and drop_torn_line(out_dir / "metrics.jsonl"):
        print(f"Dropped the unfinished last line of {out_dir / 'metrics.jsonl'} (its writer was killed)", flush=True)
    log = TrainLog(out_dir, start_iter, max_iters, images_per_step, settings.display) if rank == 0 else None
    plain_cfg = json.loads(json.dumps(config))
    prefix = snapshot_prefix(settings.snapshot_infix)
    latest_path = out_dir / latest_name(prefix)
    state = {"snapshot": resume, "saved": start_iter, "done": start_iter, "written": time.monotonic()}

    def message(text):
        if log is not None:
            log.message(text)

    def log_step(iteration, lr, losses):
        state["done"] = iteration
        if log is not None:
            log.log(iteration, lr, losses)

    def save_progress():
        """Snapshot the last completed step unless saved, and print how to continue."""
        if state["done"] != state["saved"]:
            snapshot(state["done"])
        if state["snapshot"]:
            message(f"Continue with --resume {state['snapshot']}")

    def write(path, iteration):
        """Write the snapshot of step `iteration` to `path` (rank 0)."""
        extra = {"consumed": consumed + (iteration - start_iter) * images_per_step, "config": plain_cfg,
                 "world_size": world_size}
        state["snapshot"] = save_snapshot(path, model=net, optimizer=optimizer, iteration=iteration,
                                          schedule=schedule._asdict(), scaler=scaler, extra=extra)
        state["written"] = time.monotonic()

    def snapshot(iteration):
        state["saved"] = iteration
        if log is None:
            return
        write(out_dir / snapshot_name(prefix, iteration), iteration)
        latest_path.unlink(missing_ok=True)  # older than this one
        log.plot()
        log.message(f"Wrote snapshot to {state['snapshot']}")

    def checkpoint(iteration):
        if log is not None and latest.due(iteration, time.monotonic() - state["written"]):
            write(latest_path, iteration)

    where = (f"{world_size} processes ({dist.get_backend()}, rank 0 on {device}): {world_size} x {iter_size} = "
             f"{images_per_step} images per SGD step (TRAIN.ITER_SIZE {settings.iter_size})" if distributed
             else f"{device}, {images_per_step} images per step")
    message(f"Training {len(dataset)} images from iteration {start_iter} to {max_iters} on {where}, "
            f"output in {out_dir}")
    if start_iter >= max_iters:
        message(f"note: the snapshot is at iteration {start_iter}, so there is nothing to train up to {max_iters} "
                "(raise --iters to continue)")
    if images_per_step != settings.iter_size:
        message(f"note: TRAIN.ITER_SIZE {settings.iter_size} does not divide over {world_size} processes; "
                f"each SGD step sees {images_per_step} images")
    if resumed is not None and resumed["schedule"] != schedule._asdict():
        message(f"note: lr schedule {schedule._asdict()} differs from the snapshot's {resumed['schedule']}")
    with StopOnSignals() as stop:
        try:
            if distributed:
                _agree_on_start(start_iter, device)
                broadcast_module(net)
            items = raise_item_errors(iter(loader))  # loader workers fork here and inherit the signal handlers
            if resumed is not None:
                set_rng_state(resumed["rng"])
            iteration, reason = train_loop(
                optimizer, items, lambda item: image_losses(net, item, settings.losses, device, autocast_dtype),
                schedule, start_iter=start_iter, max_iters=max_iters, iter_size=iter_size,
                snapshot_every=settings.snapshot, snapshot=snapshot, log=log_step, checkpoint=checkpoint,
                scaler=scaler, average=all_reduce_mean if distributed else None,
                should_stop=(lambda: _strongest(stop(), device)) if distributed else stop)
            if reason == "stopped":
                message(f"Stopped at iteration {iteration}; continue with --resume {state['snapshot']}")
            elif reason == "preempted":
                message(f"Preempted at iteration {iteration}, saved to {state['snapshot']}; the same command with "
                        "--resume auto continues")
            return iteration, reason
        except NonFiniteLoss as e:
            kept = f"the last good snapshot is {state['snapshot']}" if state["snapshot"] else "no snapshot was written"
            raise NonFiniteLoss(f"non-finite loss at {e}; training stopped, {kept}") from None
        except PeerFailure as e:
            lost = lost_ranks(store, rank, world_size, min(5.0, timeout))
            save_progress()
            raise PeerFailure(failure_message(rank, lost, e)) from None
        except ImageError:
            save_progress()
            raise
        finally:
            if log is not None:
                log.close()


def _strongest(reason, device):
    """The strongest stop reason (STOP_REASONS) over all ranks, given this rank's."""
    (index,) = max_over_ranks([STOP_REASONS.index(reason)], device, "agreeing whether to stop")
    return STOP_REASONS[index]
