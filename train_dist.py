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
import sys
from pathlib import Path

import torch.distributed as dist

import train
from lib.config import config_from_args
from lib.datasets import training_roidb
from lib.training import NonFiniteLoss, fit, seed_everything
from lib.utils.distributed import PeerFailure, init_distributed, launch_from, pick_device

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
        fit(net, cfg, roidb, args.out or Path("output") / cfg.EXP_DIR / "wider_train", device=device,
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
