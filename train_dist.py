"""Train SSH on several processes, GPUs or machines with torch.distributed (official main_train.py --gpus).

    python3 train_dist.py --master_ip 10.0.0.1 --master_port 29500 --rank 0 --world_size 2 --gpu 0 [train.py options]
    python3 train_dist.py --master_ip 10.0.0.1 --master_port 29500 --rank 1 --world_size 2 --gpu 1 [same options]
    torchrun --nproc_per_node 4 train_dist.py [train.py options]

One process per device: nccl on CUDA, gloo on CPU. Every rank trains on a disjoint shard of each
epoch's permutation (EpochSampler rank / world_size) with the step of train.py; losses and gradients
are averaged over the ranks before each SGD step. TRAIN.ITER_SIZE stays the number of images per
SGD step (8, as the official 4 GPUs x iter_size 2); each rank accumulates ITER_SIZE / world_size
of them (rounded to the nearest count >= 1 when it does not divide). Rank 0 alone logs and writes
snapshots; "consumed" in a snapshot counts the images of all ranks, so a snapshot resumes exactly
under any world size that divides the dataset and keeps the images per step.
"""
import argparse
import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

import train
from lib.config import config_from_args
from lib.datasets import EpochSampler, TrainDataset, make_loader, training_roidb
from lib.solver import CaffeSGD, StepLR
from lib.train_log import TrainLog
from lib.training import (NonFiniteLoss, StopOnSigint, amp_dtype, image_losses, seed_everything, snapshot_prefix,
                          train_loop)
from lib.utils.checkpoint import load_snapshot, save_snapshot, set_rng_state, snapshot_name
from lib.utils.distributed import (PeerFailure, all_reduce_mean, any_rank, broadcast_module, failure_message,
                                   init_distributed, launch_from, lost_ranks, pick_device, split_iter_size)

PEER_FAILURE_EXIT = 4


def parse_args(argv):
    """(distributed options, train.py options) of the command line."""
    parser = argparse.ArgumentParser(
        description="Train SSH on several processes with torch.distributed.", allow_abbrev=False,
        epilog="All other options are those of train.py (see python3 train.py --help). Without --rank and "
               "--world_size the process group comes from torchrun's environment (env://).")
    parser.add_argument("--master_ip", default="127.0.0.1", help="address of rank 0 (default: 127.0.0.1)")
    parser.add_argument("--master_port", type=int, default=29500, help="free TCP port on rank 0 (default: 29500)")
    parser.add_argument("--rank", type=int, help="rank of this process, 0 .. world_size - 1")
    parser.add_argument("--world_size", type=int, help="number of processes")
    parser.add_argument("--gpu", type=int, help="CUDA device of this process (default: LOCAL_RANK, else rank)")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="seconds to wait for a peer that never starts or stops responding (default: 30)")
    dist_args, rest = parser.parse_known_args(argv)
    return dist_args, train.parse_args(rest)


def fit_distributed(net, cfg, roidb, out_dir, *, device, store, max_iters, workers=2, amp=False, resume=None,
                    timeout=30.0):
    """lib.training.fit for this rank of the current process group; returns (steps completed, "done" | "stopped").

    Each rank takes its EpochSampler shard and accumulates split_iter_size(TRAIN.ITER_SIZE, world
    size) images per step; losses and gradients are averaged over the ranks (all_reduce_mean) and
    a Ctrl-C on any rank stops all of them. Rank 0 alone logs and writes snapshots, whose "consumed"
    counts the images of all ranks. NonFiniteLoss is raised on every rank (the losses are averaged);
    a failed collective raises PeerFailure naming the lost ranks, after rank 0 has saved the weights
    of the last completed step.
    """
    train_cfg = cfg.TRAIN
    rank, world_size = dist.get_rank(), dist.get_world_size()
    out_dir = Path(out_dir)
    iter_size = split_iter_size(train_cfg.ITER_SIZE, world_size)
    images_per_step = iter_size * world_size
    net.to(device).train()
    optimizer = CaffeSGD(net.param_groups(train_cfg.BASE_LR, train_cfg.WEIGHT_DECAY), lr=train_cfg.BASE_LR,
                         momentum=train_cfg.MOMENTUM)
    schedule = StepLR(train_cfg.BASE_LR, train_cfg.GAMMA, train_cfg.STEPSIZE)
    autocast_dtype = amp_dtype(device) if amp else None
    scaler = torch.amp.GradScaler(device.type, enabled=autocast_dtype == torch.float16)
    start_iter, consumed, resumed = 0, 0, None
    if resume is not None:
        resumed = load_snapshot(resume, model=net, optimizer=optimizer, scaler=scaler, restore_rng=False)
        start_iter, consumed = resumed["iteration"], resumed["extra"]["consumed"]
    dataset = TrainDataset(roidb, train_cfg.SCALES[0], train_cfg.MAX_SIZE, cfg.PIXEL_MEANS, train_cfg.ORIG_SIZE)
    sampler = EpochSampler(len(dataset), cfg.RNG_SEED, rank, world_size, start=consumed // world_size)
    loader = make_loader(dataset, sampler, workers, pin_memory=device.type == "cuda")
    log = TrainLog(out_dir, start_iter, max_iters, images_per_step, train_cfg.DISPLAY) if rank == 0 else None
    plain_cfg = json.loads(json.dumps(cfg))
    state = {"snapshot": resume, "saved": start_iter, "done": start_iter}

    def message(text, file=None):
        if log is not None:
            log.message(text, file=file)

    def log_step(iteration, lr, losses):
        state["done"] = iteration
        if log is not None:
            log.log(iteration, lr, losses)

    def snapshot(iteration):
        state["saved"] = iteration
        if log is None:
            return
        extra = {"consumed": consumed + (iteration - start_iter) * images_per_step, "config": plain_cfg,
                 "world_size": world_size}
        state["snapshot"] = save_snapshot(out_dir / snapshot_name(snapshot_prefix(train_cfg.SNAPSHOT_INFIX), iteration),
                                          model=net, optimizer=optimizer, iteration=iteration,
                                          schedule=schedule._asdict(), scaler=scaler, extra=extra)
        log.plot()
        log.message(f"Wrote snapshot to {state['snapshot']}")

    message(f"Training {len(dataset)} images from iteration {start_iter} to {max_iters} on {world_size} processes "
            f"({dist.get_backend()}, rank 0 on {device}): {world_size} x {iter_size} = {images_per_step} images "
            f"per SGD step (TRAIN.ITER_SIZE {train_cfg.ITER_SIZE}), output in {out_dir}")
    if images_per_step != train_cfg.ITER_SIZE:
        message(f"note: TRAIN.ITER_SIZE {train_cfg.ITER_SIZE} does not divide over {world_size} processes; "
                f"each SGD step sees {images_per_step} images")
    if resumed is not None and resumed["schedule"] != schedule._asdict():
        message(f"note: lr schedule {schedule._asdict()} differs from the snapshot's {resumed['schedule']}")
    with StopOnSigint() as stop:
        try:
            broadcast_module(net)
            items = iter(loader)  # loader workers fork here and inherit the Ctrl-C handler
            if resumed is not None:
                set_rng_state(resumed["rng"])
            iteration, reason = train_loop(
                optimizer, items, lambda item: image_losses(net, item, train_cfg, device, autocast_dtype), schedule,
                start_iter=start_iter, max_iters=max_iters, iter_size=iter_size, snapshot_every=train_cfg.SNAPSHOT,
                snapshot=snapshot, log=log_step, scaler=scaler, average=all_reduce_mean,
                should_stop=lambda: any_rank(stop(), device))
            if reason == "stopped":
                message(f"Stopped at iteration {iteration}; continue with --resume {state['snapshot']}")
            return iteration, reason
        except NonFiniteLoss as e:
            kept = f"the last good snapshot is {state['snapshot']}" if state["snapshot"] else "no snapshot was written"
            raise NonFiniteLoss(f"non-finite loss at {e}; training stopped, {kept}") from None
        except PeerFailure as e:
            lost = lost_ranks(store, rank, world_size, min(5.0, timeout))
            if state["done"] != state["saved"]:
                snapshot(state["done"])
            if state["snapshot"]:
                message(f"Continue with --resume {state['snapshot']}")
            raise PeerFailure(failure_message(rank, lost, e)) from None
        finally:
            if log is not None:
                log.close()


def main(argv=None):
    dist_args, args = parse_args(argv)
    cfg = config_from_args(args)
    try:
        launch = launch_from(dist_args.rank, dist_args.world_size, dist_args.master_ip, dist_args.master_port)
        device = pick_device(args.device, dist_args.gpu, launch)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    seed_everything(cfg.RNG_SEED)
    try:
        net = train.build_network("none" if args.resume else args.init)
        roidb = training_roidb(args.data, "train", cfg.TRAIN.USE_FLIPPED)
        if len(roidb) < launch.world_size:
            raise ValueError(f"{len(roidb)} training images cannot be shared by {launch.world_size} processes")
    except (FileNotFoundError, ValueError) as e:
        print(f"rank {launch.rank}: error: {e}", file=sys.stderr)
        return 2
    try:
        store = init_distributed(launch, device, dist_args.timeout)
    except PeerFailure as e:
        print(f"error: {e}", file=sys.stderr)
        return PEER_FAILURE_EXIT
    try:
        fit_distributed(net, cfg, roidb, args.out or Path("output") / cfg.EXP_DIR / "wider_train", device=device,
                        store=store, max_iters=cfg.TRAIN.MAX_ITERS if args.iters is None else args.iters,
                        workers=args.workers, amp=args.amp, resume=args.resume, timeout=dist_args.timeout)
    except NonFiniteLoss as e:
        if launch.rank == 0:
            print(f"error: {e}", file=sys.stderr)
        return 3
    except PeerFailure as e:
        print(f"error: {e}", file=sys.stderr)
        return PEER_FAILURE_EXIT
    finally:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
