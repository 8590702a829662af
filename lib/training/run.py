"""A whole SSH training run (official SSH/train.py train_net + main_train.py): `fit` builds the solver,
the data and a Trainer with its hooks, in one process (train.py) or as one rank of a torch.distributed
process group (train_dist.py).

In a process group `fit` adds data sharding (EpochSampler rank / world_size), the all-reduce of
losses and gradients, all-reduced stop requests and the report of a lost peer. The process that
writes the outputs (rank 0) holds the output folder's lock (lib/utils/lock.py) for the whole run.
"""
import json
import random
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from lib.datasets import EpochSampler, TrainDataset, make_loader
from lib.datasets.loader import raise_item_errors
from lib.solver import CaffeSGD, StepLR
from lib.training.checkpointer import Checkpointer, LatestCadence, snapshot_prefix
from lib.training.hooks import LRSchedule, NonFiniteGuard, PeerFailureReport, RankSync
from lib.training.metrics import MetricsLog
from lib.training.progress import ProgressBar
from lib.training.resume import agree_on_start, resume_split_error
from lib.training.signals import StopRequests
from lib.training.step import amp_dtype, image_losses
from lib.training.tensorboard import TensorBoard
from lib.training.trainer import Trainer
from lib.utils.atomic import remove_stale_temps
from lib.utils.checkpoint import load_snapshot, save_snapshot, set_rng_state
from lib.utils.distributed import all_reduce_mean, broadcast_module, split_iter_size
from lib.utils.lock import folder_lock


def seed_everything(seed):
    """Seed Python, numpy and torch (all devices) generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@contextmanager
def hold_output(out_dir):
    """Lock `out_dir` for the block and remove the temporary files of interrupted writes in it (printed)."""
    with folder_lock(out_dir):
        removed = remove_stale_temps(out_dir)
        if removed:
            print(f"Removed {len(removed)} temporary file(s) of interrupted writes from {out_dir}: "
                  f"{', '.join(removed)}", flush=True)
        yield


def fit(net, settings, roidb, out_dir, *, config, device, max_iters, workers=2, amp=False, resume=None,
        store=None, timeout=30.0, latest=LatestCadence(), tensorboard=True, preview=None, validation=None):
    """Train `net` on `roidb` with the recipe `settings` (TrainSettings) up to `max_iters` SGD steps.

    net: an SSH (anything with param_groups(base_lr, weight_decay)), already initialised. Writes
    `<out_dir>/<prefix>_iter_<N>.pth` snapshots, metrics.jsonl and loss_curve.png and, with
    `tensorboard`, the event files of `<out_dir>/tb` (TensorBoard hook; `preview`, a DetectionPreview
    or None, adds detections on its photos every TRAIN.SNAPSHOT steps), and with `validation` (a
    lib.training.validation.Validation hook, on every rank of a process group, or None) the val AP in
    metrics.jsonl, TensorBoard and the console, under the folder's lock
    (FolderLocked when another run holds it), after removing the temporary files of interrupted
    writes. Between those snapshots `<prefix>_latest.pth` is overwritten at the `latest` cadence
    (LatestCadence) and removed by the next kept snapshot, so a crash loses few steps. `config`: the
    run's whole config (lib/config.py), the one `settings` comes from (TrainSettings.from_config),
    stored as plain data in every snapshot for --resume. `resume`: a snapshot to continue from
    exactly; ValueError when this world size cannot (`resume_split_error`).
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
    distributed = dist.is_available() and dist.is_initialized()
    rank, world_size = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    with hold_output(out_dir) if rank == 0 else nullcontext():
        device = torch.device(device)
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

        def start():
            """The training items, once every rank starts from the same step with rank 0's weights."""
            if distributed:
                agree_on_start(start_iter, device)
                broadcast_module(net)
            items = raise_item_errors(iter(loader))  # loader workers fork here and inherit the signal handlers
            if resumed is not None:
                set_rng_state(resumed["rng"])
            return items

        def loss_fn(item):
            return image_losses(net, item, settings.losses, device, autocast_dtype)

        trainer = Trainer(optimizer, start, loss_fn, start_iter=start_iter, max_iters=max_iters, iter_size=iter_size,
                          images_per_step=images_per_step, scaler=scaler,
                          average=all_reduce_mean if distributed else None)
        trainer.last_snapshot = resume
        trainer.register(StopRequests(device if distributed else None), LRSchedule(schedule), NonFiniteGuard(),
                         validation)
        if rank == 0:
            plain_cfg = json.loads(json.dumps(config))

            def save(path, iteration):
                extra = {"consumed": consumed + (iteration - start_iter) * images_per_step, "config": plain_cfg,
                         "world_size": world_size}
                return save_snapshot(path, model=net, optimizer=optimizer, iteration=iteration,
                                     schedule=schedule._asdict(), scaler=scaler, extra=extra)

            header = _header(settings, len(dataset), start_iter, max_iters, out_dir, device, iter_size, resumed,
                             schedule)
            trainer.register(
                MetricsLog(out_dir, settings.snapshot), ProgressBar(settings.display, header),
                TensorBoard(out_dir / "tb", None if preview is None else (lambda: preview(net)), settings.snapshot)
                if tensorboard else None,
                Checkpointer(out_dir, snapshot_prefix(settings.snapshot_infix), settings.snapshot, save, latest))
        if distributed:
            trainer.register(RankSync(settings.snapshot), PeerFailureReport(store, rank, world_size, timeout))
        return trainer.train()


def _header(settings, num_items, start_iter, max_iters, out_dir, device, iter_size, resumed, schedule):
    """The lines rank 0 prints before the first step: what trains where (iter_size images per SGD step
    in each process), and notes."""
    distributed = dist.is_available() and dist.is_initialized()
    world_size = dist.get_world_size() if distributed else 1
    images_per_step = iter_size * world_size
    where = (f"{world_size} processes ({dist.get_backend()}, rank 0 on {device}): {world_size} x {iter_size} = "
             f"{images_per_step} images per SGD step (TRAIN.ITER_SIZE {settings.iter_size})" if distributed
             else f"{device}, {images_per_step} images per step")
    lines = [f"Training {num_items} images from iteration {start_iter} to {max_iters} on {where}, output in {out_dir}"]
    if start_iter >= max_iters:
        lines.append(f"note: the snapshot is at iteration {start_iter}, so there is nothing to train up to "
                     f"{max_iters} (raise --iters to continue)")
    if images_per_step != settings.iter_size:
        lines.append(f"note: TRAIN.ITER_SIZE {settings.iter_size} does not divide over {world_size} processes; "
                     f"each SGD step sees {images_per_step} images")
    if resumed is not None and resumed["schedule"] != schedule._asdict():
        lines.append(f"note: lr schedule {schedule._asdict()} differs from the snapshot's {resumed['schedule']}")
    return lines
