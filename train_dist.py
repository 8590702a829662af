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

import train
from lib.config import config_from_args
from lib.datasets import EpochSampler, TrainDataset, make_loader, training_roidb
from lib.solver import CaffeSGD, StepLR
from lib.train_log import TrainLog
from lib.training import NonFiniteLoss, StopOnSigint, amp_dtype, image_losses, seed_everything, train_loop
from lib.utils.checkpoint import load_snapshot, save_snapshot, set_rng_state, snapshot_name
from lib.utils.distributed import (PeerFailure, all_reduce_mean, any_rank, broadcast_module, failure_message,
                                   init_distributed, launch_from, lost_ranks, pick_device,
                                   split_iter_size)

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


def main(argv=None):
    dist_args, args = parse_args(argv)
    cfg = config_from_args(args)
    train_cfg = cfg.TRAIN
    try:
        launch = launch_from(dist_args.rank, dist_args.world_size, dist_args.master_ip, dist_args.master_port)
        device = pick_device(args.device, dist_args.gpu, launch)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    rank, world_size = launch.rank, launch.world_size
    is_main = rank == 0
    iter_size = split_iter_size(train_cfg.ITER_SIZE, world_size)
    images_per_step = iter_size * world_size
    max_iters = train_cfg.MAX_ITERS if args.iters is None else args.iters
    out = args.out or Path("output") / cfg.EXP_DIR / "wider_train"
    prefix = "SSH" + (f"_{train_cfg.SNAPSHOT_INFIX}" if train_cfg.SNAPSHOT_INFIX else "")

    seed_everything(cfg.RNG_SEED)
    try:
        net = train.build_network("none" if args.resume else args.init)
        roidb = training_roidb(args.data, "train", train_cfg.USE_FLIPPED)
    except (FileNotFoundError, ValueError) as e:
        print(f"rank {rank}: error: {e}", file=sys.stderr)
        return 2
    net.to(device).train()
    optimizer = CaffeSGD(net.param_groups(train_cfg.BASE_LR, train_cfg.WEIGHT_DECAY), lr=train_cfg.BASE_LR,
                         momentum=train_cfg.MOMENTUM)
    schedule = StepLR(train_cfg.BASE_LR, train_cfg.GAMMA, train_cfg.STEPSIZE)
    autocast_dtype = amp_dtype(device) if args.amp else None
    scaler = torch.amp.GradScaler(device.type, enabled=autocast_dtype == torch.float16)

    start_iter, consumed, resumed = 0, 0, None
    if args.resume is not None:
        resumed = load_snapshot(args.resume, model=net, optimizer=optimizer, scaler=scaler, restore_rng=False)
        start_iter, consumed = resumed["iteration"], resumed["extra"]["consumed"]

    dataset = TrainDataset(roidb, train_cfg.SCALES[0], train_cfg.MAX_SIZE, cfg.PIXEL_MEANS, train_cfg.ORIG_SIZE)
    try:
        sampler = EpochSampler(len(dataset), cfg.RNG_SEED, rank, world_size, start=consumed // world_size)
        store = init_distributed(launch, device, dist_args.timeout)
    except (ValueError, PeerFailure) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2 if isinstance(e, ValueError) else PEER_FAILURE_EXIT
    try:
        loader = make_loader(dataset, sampler, args.workers, pin_memory=device.type == "cuda")
        log = TrainLog(out, start_iter, max_iters, images_per_step, train_cfg.DISPLAY) if is_main else None
        plain_cfg = json.loads(json.dumps(cfg))
        state = {"path": args.resume, "iteration": start_iter, "saved": start_iter}

        def message(text, file=None):
            if log is not None:
                log.message(text, file=file)

        def log_step(iteration, lr, losses):
            state["iteration"] = iteration
            if log is not None:
                log.log(iteration, lr, losses)

        def snapshot(iteration):
            state["saved"] = iteration
            if not is_main:
                return
            extra = {"consumed": consumed + (iteration - start_iter) * images_per_step, "config": plain_cfg,
                     "world_size": world_size}
            state["path"] = save_snapshot(out / snapshot_name(prefix, iteration), model=net, optimizer=optimizer,
                                          iteration=iteration, schedule=schedule._asdict(), scaler=scaler,
                                          extra=extra)
            log.plot()
            log.message(f"Wrote snapshot to {state['path']}")

        message(f"Training {len(dataset)} images from iteration {start_iter} to {max_iters} on {world_size} "
                f"processes ({torch.distributed.get_backend()}, rank 0 on {device}): {world_size} x {iter_size} = "
                f"{images_per_step} images per SGD step (TRAIN.ITER_SIZE {train_cfg.ITER_SIZE}), output in {out}")
        if images_per_step != train_cfg.ITER_SIZE:
            message(f"note: TRAIN.ITER_SIZE {train_cfg.ITER_SIZE} does not divide over {world_size} processes; "
                    f"each SGD step sees {images_per_step} images")
        if resumed is not None and resumed["schedule"] != schedule._asdict():
            message(f"note: lr schedule {schedule._asdict()} differs from the snapshot's {resumed['schedule']}")
        with StopOnSigint() as stop:
            try:
                broadcast_module(net)
                items = iter(loader)
                if resumed is not None:
                    set_rng_state(resumed["rng"])
                iteration, reason = train_loop(
                    optimizer, items, lambda item: image_losses(net, item, train_cfg, device, autocast_dtype),
                    schedule, start_iter=start_iter, max_iters=max_iters, iter_size=iter_size,
                    snapshot_every=train_cfg.SNAPSHOT, snapshot=snapshot, log=log_step, scaler=scaler,
                    average=all_reduce_mean, should_stop=lambda: any_rank(stop(), device))
            except NonFiniteLoss as e:
                kept = f"the last good snapshot is {state['path']}" if state["path"] else "no snapshot was written"
                message(f"error: non-finite loss at {e}; training stopped, {kept}", file=sys.stderr)
                return 3
            except PeerFailure as e:
                lost = lost_ranks(store, rank, world_size, min(5.0, dist_args.timeout))
                print(f"error: {failure_message(rank, lost, e)}", file=sys.stderr, flush=True)
                if is_main and state["iteration"] != state["saved"]:
                    snapshot(state["iteration"])
                if is_main and state["path"]:
                    message(f"Continue with --resume {state['path']}")
                return PEER_FAILURE_EXIT
            finally:
                if log is not None:
                    log.close()
        if reason == "stopped" and is_main:
            print(f"Stopped at iteration {iteration}; continue with --resume {state['path']}")
        return 0
    finally:
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
