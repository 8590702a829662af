"""Scaling of train_dist.py's SGD step over processes: seconds per step, averaging time, images/s.

    python3 -m benchmarks distributed [--device cuda] [--procs 1 2 4] [--size 128x160] [--smoke]

For each process count N in --procs, N processes on this machine (gloo on CPU, nccl on CUDA, one
GPU each) run lib.training.train_step with the all-reduce average of train_dist.py at a fixed number
of images per SGD step (default: the official 8, split as train_dist.py splits TRAIN.ITER_SIZE).
Every rank trains on the same random blob with 20 random faces (speed does not depend on values).
Reports the median seconds per step after one warm-up step, the part spent averaging gradients
(waiting for the slowest rank included), images/s, and the speed-up of images/s over the first
count with its scaling efficiency (speed-up / relative process count).
"""
import socket
import statistics

import torch
import torch.multiprocessing as mp

from lib.config import get_config
from lib.solver import CaffeSGD
from lib.training import TrainSettings, image_losses, train_step
from lib.utils.distributed import (Launch, all_reduce_mean, broadcast_module, init_distributed, pick_device,
                                   split_iter_size)
from model.ssh import SSH

from .utils import Stopwatch, benchmark_parser, cpu_name, hw, parse_args, random_faces, seconds

SMOKE = {"procs": [2], "size": "64x64", "images_per_step": 2, "steps": 1}


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world_size, port, args, results):
    """One rank: median (step seconds, averaging seconds) over args.steps steps, put on `results` by rank 0."""
    torch.set_num_threads(args.threads)
    launch = Launch(rank, world_size, rank, ("127.0.0.1", port))
    device = pick_device(args.device, None, launch)
    init_distributed(launch, device, timeout=60)
    try:
        settings = TrainSettings.from_config(get_config())
        torch.manual_seed(0)
        net = SSH().to(device).train()
        broadcast_module(net)
        optimizer = CaffeSGD(net.param_groups(settings.base_lr, settings.weight_decay), lr=settings.base_lr,
                             momentum=settings.momentum)
        height, width = hw(args.size)
        gen = torch.Generator().manual_seed(rank)
        item = {"data": torch.randn(3, height, width, generator=gen) * 50,
                "gt_boxes": random_faces(20, height, width, gen, hi=min(300, height, width) - 1)}
        items = [item] * split_iter_size(args.images_per_step, world_size)
        averaging = [0.0]

        def average(tensors):
            averaging[0] += seconds(lambda: all_reduce_mean(tensors), device)

        steps = []
        for _ in range(args.steps + 1):
            averaging[0] = 0.0
            torch.distributed.barrier()
            clock = Stopwatch(device)
            train_step(optimizer, items, lambda it: image_losses(net, it, settings.losses, device), average=average)
            steps.append((clock.lap(), averaging[0]))
        if rank == 0:
            results.put([statistics.median(v) for v in zip(*steps[1:])])
    finally:
        torch.distributed.destroy_process_group()


def measure(procs, args):
    """(seconds per step, seconds averaging) of `procs` processes."""
    results = mp.get_context("spawn").Queue()
    mp.start_processes(_worker, args=(procs, _free_port(), args, results), nprocs=procs, start_method="spawn")
    return results.get(timeout=10)


def main(argv=None):
    parser = benchmark_parser(__name__, __doc__)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--procs", type=int, nargs="+", default=[1, 2], help="process counts to time")
    parser.add_argument("--size", default="128x160", help="blob size HxW (default 128x160)")
    parser.add_argument("--images-per-step", type=int, default=8, help="images per SGD step over all ranks")
    parser.add_argument("--steps", type=int, default=3, help="timed steps (after one warm-up step)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    args = parse_args(parser, argv, SMOKE)
    name = (torch.cuda.get_device_name() if args.device == "cuda"
            else f"{cpu_name()}, {args.threads} thread(s) per process")
    print(f"{args.device} ({name}), torch {torch.__version__}, blob {args.size}, "
          f"{args.images_per_step} images per step, median of {args.steps} steps")
    print(f"{'procs':>5} {'img/rank':>8} {'s/step':>8} {'averaging s':>11} {'img/s':>7} {'speed-up':>8} "
          f"{'efficiency':>10}")
    base = None
    for procs in args.procs:
        step, averaging = measure(procs, args)
        per_rank = split_iter_size(args.images_per_step, procs)
        rate = per_rank * procs / step
        base = base or (procs, rate)
        speed_up = rate / base[1]
        print(f"{procs:5d} {per_rank:8d} {step:8.3f} {averaging:11.4f} {rate:7.2f} {speed_up:8.2f} "
              f"{speed_up * base[0] / procs:10.0%}")

