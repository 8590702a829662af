"""Training speed on the current device: python3 -m model.train_benchmark [--device cuda] [--amp].

For each blob size it times one image's forward, ssh_losses (anchor targets + OHEM + the six
losses) and backward (median of --images images after one warm-up image), the CaffeSGD step, and
reports seconds per iteration = ITER_SIZE x (forward + losses + backward) + step, with the share of
the iteration spent in ssh_losses. Random weights and random blobs with 20 faces of 10..300 px
(speed does not depend on the values). Then the data-loader throughput in images/s per worker at
the configured training scale (mini_wider from ../shared when present, else generated JPEGs).
"""
import argparse
import statistics
import tempfile
import time
from contextlib import nullcontext

import torch

from lib.config import add_config_args, config_from_args
from lib.datasets import TrainDataset, append_flipped, training_roidb
from lib.datasets.benchmark import MINI_WIDER, synthetic_roidb, time_loader
from lib.losses import ssh_losses
from lib.solver import CaffeSGD
from lib.training import amp_dtype
from lib.utils.device import default_device, device_arg

from .ssh import SSH


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def random_faces(n, height, width, generator, lo=10, hi=300):
    """(n, 4) float32 boxes with sides in [lo, hi) inside a height x width blob."""
    side = torch.rand(n, 1, generator=generator) * (hi - lo) + lo
    xy = torch.rand(n, 2, generator=generator) * (torch.tensor([width, height]) - side)
    return torch.cat([xy, xy + side - 1], dim=1)


def time_image(net, blob, gt_boxes, train_cfg, autocast):
    """(forward, losses, backward) seconds of one training image."""
    device = blob.device
    _sync(device)
    t0 = time.perf_counter()
    with autocast:
        heads = net(blob)
    _sync(device)
    t1 = time.perf_counter()
    losses = ssh_losses(heads, gt_boxes, tuple(blob.shape[-2:]), train_cfg)
    _sync(device)
    t2 = time.perf_counter()
    sum(losses.values()).backward()
    _sync(device)
    return t1 - t0, t2 - t1, time.perf_counter() - t2


def time_step(optimizer, device):
    """Seconds of one CaffeSGD step (gradients already present)."""
    _sync(device)
    start = time.perf_counter()
    optimizer.step()
    _sync(device)
    return time.perf_counter() - start


def benchmark_size(net, optimizer, height, width, train_cfg, images, autocast):
    """Median (forward, losses, backward) seconds per image and the step's seconds at height x width."""
    device = next(net.parameters()).device
    gen = torch.Generator().manual_seed(0)
    blob = (torch.randn(1, 3, height, width, generator=gen) * 50).to(device)
    gt_boxes = random_faces(20, height, width, gen).to(device)
    optimizer.zero_grad(set_to_none=True)
    time_image(net, blob, gt_boxes, train_cfg, autocast)
    runs = [time_image(net, blob, gt_boxes, train_cfg, autocast) for _ in range(images)]
    return [statistics.median(stage) for stage in zip(*runs)], time_step(optimizer, device)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", type=device_arg, default=default_device())
    parser.add_argument("--sizes", nargs="+", default=["600x800", "1200x1600"], help="blob sizes HxW")
    parser.add_argument("--images", type=int, default=2, help="timed images per size (after one warm-up)")
    parser.add_argument("--amp", action="store_true", help="forward under autocast as train.py --amp")
    parser.add_argument("--workers", type=int, nargs="*", default=[1, 2], help="loader process counts to time")
    parser.add_argument("--loader-images", type=int, default=24)
    add_config_args(parser)
    args = parser.parse_args()
    cfg = config_from_args(args)
    device = torch.device(args.device)
    torch.manual_seed(0)
    net = SSH().to(device).train()
    optimizer = CaffeSGD(net.param_groups(cfg.TRAIN.BASE_LR, cfg.TRAIN.WEIGHT_DECAY), lr=cfg.TRAIN.BASE_LR,
                         momentum=cfg.TRAIN.MOMENTUM)
    autocast = torch.autocast(device.type, dtype=amp_dtype(device)) if args.amp else nullcontext()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    iter_size = cfg.TRAIN.ITER_SIZE
    print(f"device {device} ({name}), torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{'amp' if args.amp else 'fp32'}, ITER_SIZE {iter_size}, median of {args.images} images")
    print(f"{'size':>10} {'forward s':>10} {'losses s':>9} {'backward s':>10} {'step s':>7} "
          f"{'s/iter':>8} {'losses %':>8}")
    for size in args.sizes:
        height, width = (int(v) for v in size.split("x"))
        (fwd, losses, bwd), step = benchmark_size(net, optimizer, height, width, cfg.TRAIN, args.images,
                                                  autocast)
        per_iter = iter_size * (fwd + losses + bwd) + step
        print(f"{size:>10} {fwd:10.3f} {losses:9.3f} {bwd:10.3f} {step:7.3f} {per_iter:8.2f} "
              f"{100 * iter_size * losses / per_iter:8.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        if MINI_WIDER.is_dir():
            roidb, source = training_roidb(MINI_WIDER, "train"), "mini_wider"
        else:
            roidb, source = append_flipped(synthetic_roidb(tmp)), "generated JPEGs"
        dataset = TrainDataset(roidb, cfg.TRAIN.SCALES[0], cfg.TRAIN.MAX_SIZE, cfg.PIXEL_MEANS, cfg.TRAIN.ORIG_SIZE)
        for workers in args.workers:
            rate = args.loader_images / time_loader(dataset, workers, args.loader_images)
            print(f"loader ({source}, scale {cfg.TRAIN.SCALES[0]}/{cfg.TRAIN.MAX_SIZE}), {workers} workers: "
                  f"{rate:.2f} images/s, {rate / workers:.2f} images/s per worker")


if __name__ == "__main__":
    main()
