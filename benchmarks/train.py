"""Training speed: seconds per iteration, the share of anchor targets + losses, loader images/s.

    python3 -m benchmarks train [--device cuda] [--amp] [--sizes 600x800 1200x1600] [--data WIDER_ROOT] [--smoke]
    python3 -m benchmarks train --tensorboard [--device cuda] [--tb-iters 12] [--rounds 2] [--set KEY VALUE ...]

For each blob size it times one image's forward, ssh_losses (anchor targets + OHEM + the six
losses) and backward (median of --images images after one warm-up image), the CaffeSGD step, and
reports seconds per iteration = ITER_SIZE x (forward + losses + backward) + step, with the share of
the iteration spent in ssh_losses. Random weights and random blobs with 20 faces of 10..300 px
(speed does not depend on the values). Then the data-loader throughput in images/s per worker at
the configured training scale (the train split of --data: mini_wider from ../shared when present,
else generated JPEGs).

With --tensorboard, only the cost of TensorBoard logging instead: lib.training.fit on the generated
JPEGs (the config's TRAIN settings, random weights), --rounds times with TensorBoard off and on in
turn, --tb-iters steps each: the median seconds per step of each (metrics.jsonl, the first 2 steps of
a run left out), the TensorBoard hook's own time per step (scalars, gradient norm, flush), and the
detection pictures drawn every TRAIN.SNAPSHOT steps (on the mini_wider val photos when present, else
generated ones) spread over those steps.
"""
import contextlib
import io
import statistics
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import torch

from lib.config import add_config_args, config_from_args
from lib.datasets import TrainDataset, append_flipped, training_roidb
from lib.losses import ssh_losses
from lib.solver import CaffeSGD
import lib.training.run
from lib.image_io import read_image
from lib.training import TensorBoard, TrainSettings, amp_dtype, fit, read_metrics
from lib.training.preview import DetectionPreview, preview_photos
from lib.utils.device import default_device, device_arg
from model.ssh import SSH

from .utils import (MINI_WIDER, Stopwatch, benchmark_parser, device_name, hw, parse_args, random_faces, seconds,
                    sync, synthetic_roidb, time_loader)

SMOKE = {"sizes": ["64x96"], "images": 1, "workers": [1], "loader_images": 2, "data": None}


def time_image(net, blob, gt_boxes, settings, autocast):
    """(forward, losses, backward) seconds of one training image."""
    clock = Stopwatch(blob.device)
    with autocast:
        heads = net(blob)
    forward = clock.lap()
    losses = ssh_losses(heads, gt_boxes, tuple(blob.shape[-2:]), settings)
    loss_s = clock.lap()
    sum(losses.values()).backward()
    return forward, loss_s, clock.lap()


def benchmark_size(net, optimizer, height, width, settings, images, autocast):
    """Median (forward, losses, backward) seconds per image and the step's seconds at height x width.

    settings: the LossSettings of ssh_losses.
    """
    device = next(net.parameters()).device
    gen = torch.Generator().manual_seed(0)
    blob = (torch.randn(1, 3, height, width, generator=gen) * 50).to(device)
    gt_boxes = random_faces(20, height, width, gen).to(device)
    optimizer.zero_grad(set_to_none=True)
    time_image(net, blob, gt_boxes, settings, autocast)
    runs = [time_image(net, blob, gt_boxes, settings, autocast) for _ in range(images)]
    return [statistics.median(stage) for stage in zip(*runs)], seconds(optimizer.step, device)


class TimedTensorBoard(TensorBoard):
    """The TensorBoard hook, timing its after_step (the device synchronised before and after)."""

    seconds = []

    def after_step(self):
        device = next(iter(self.trainer.optimizer.param_groups[0]["params"])).device
        sync(device)
        start = time.perf_counter()
        super().after_step()
        sync(device)
        TimedTensorBoard.seconds.append(time.perf_counter() - start)


def step_seconds(out, images_per_step):
    """Seconds of each step of the run in `out` but its first 2 (metrics.jsonl: images per step / images_per_s)."""
    return [images_per_step / r["images_per_s"] for r in read_metrics(out / "metrics.jsonl")[2:]]


def tensorboard_overhead(args, cfg, device):
    """Print seconds per step of fit with TensorBoard off and on, the hook's time and the pictures' share."""
    settings = TrainSettings.from_config(cfg)
    print(f"device {device} ({device_name(device)}), torch {torch.__version__}, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}, {torch.get_num_threads()} threads; TRAIN.SCALES "
          f"{list(settings.scales)}/{settings.max_size}, ITER_SIZE {settings.iter_size}, {args.tb_iters} steps x "
          f"{args.rounds} rounds per setting")
    lib.training.run.TensorBoard = TimedTensorBoard
    per_step = {False: [], True: []}
    with tempfile.TemporaryDirectory() as tmp:
        roidb = synthetic_roidb(tmp)
        for round_ in range(args.rounds):
            for on in ((False, True) if round_ % 2 == 0 else (True, False)):  # either order: no drift bias
                out = Path(tmp) / f"run{round_}{'tb' if on else ''}"
                torch.manual_seed(0)
                net = SSH()
                with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                    fit(net, settings, roidb, out, config=cfg, device=device, max_iters=args.tb_iters, workers=1,
                        tensorboard=on)
                per_step[on] += step_seconds(out, settings.iter_size)
        off, on = statistics.median(per_step[False]), statistics.median(per_step[True])
        hook = statistics.median(TimedTensorBoard.seconds)
        print(f"s/step, TensorBoard off {off:.4f}  on {on:.4f}  (on/off {on / off:.4f}; medians of "
              f"{len(per_step[False])} steps each)")
        print(f"TensorBoard hook: {1000 * hook:.2f} ms/step (median; max {1000 * max(TimedTensorBoard.seconds):.2f}), "
              f"{100 * hook / off:.3f}% of a step")
        photos = [read_image(p) for p in preview_photos(MINI_WIDER)] if MINI_WIDER.is_dir() else []
        source = "mini_wider val" if photos else "generated"
        photos = photos or [read_image(entry.image) for entry in roidb[:3]]
        preview = DetectionPreview.from_config(cfg, photos)
        net.to(device)
        preview(net)  # warm-up
        drawn = Stopwatch(device)
        preview(net)
        pictures = drawn.lap()
        print(f"detection pictures ({len(photos)} {source} photos, TEST.SCALES[0] {cfg.TEST.SCALES[0]}): "
              f"{pictures:.3f} s every TRAIN.SNAPSHOT {settings.snapshot} steps = "
              f"{1000 * pictures / settings.snapshot:.2f} ms/step, "
              f"{100 * pictures / settings.snapshot / off:.3f}% of a step")
        print(f"TensorBoard overhead at this step time: {100 * (hook + pictures / settings.snapshot) / off:.3f}%")


def main(argv=None):
    parser = benchmark_parser(__name__, __doc__)
    parser.add_argument("--device", type=device_arg, default=default_device())
    parser.add_argument("--sizes", nargs="+", default=["600x800", "1200x1600"], help="blob sizes HxW")
    parser.add_argument("--images", type=int, default=2, help="timed images per size (after one warm-up)")
    parser.add_argument("--amp", action="store_true", help="forward under autocast as train.py --amp")
    parser.add_argument("--workers", type=int, nargs="*", default=[1, 2], help="loader process counts to time")
    parser.add_argument("--loader-images", type=int, default=24)
    parser.add_argument("--data", type=Path, default=MINI_WIDER if MINI_WIDER.is_dir() else None,
                        help="WIDER root of the loader timing (default: ../shared mini_wider when present, "
                             "else generated JPEGs)")
    parser.add_argument("--tensorboard", action="store_true",
                        help="instead: seconds per step of training with TensorBoard off and on")
    parser.add_argument("--tb-iters", type=int, default=12, help="steps of each --tensorboard run")
    parser.add_argument("--rounds", type=int, default=2, help="--tensorboard runs of each setting, in turn")
    add_config_args(parser)
    args = parse_args(parser, argv, SMOKE)
    settings = TrainSettings.from_config(config_from_args(args))
    device = torch.device(args.device)
    if args.tensorboard:
        tensorboard_overhead(args, config_from_args(args), device)
        return
    torch.manual_seed(0)
    net = SSH().to(device).train()
    optimizer = CaffeSGD(net.param_groups(settings.base_lr, settings.weight_decay), lr=settings.base_lr,
                         momentum=settings.momentum)
    autocast = torch.autocast(device.type, dtype=amp_dtype(device)) if args.amp else nullcontext()
    iter_size = settings.iter_size
    print(f"device {device} ({device_name(device)}), torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{'amp' if args.amp else 'fp32'}, ITER_SIZE {iter_size}, median of {args.images} images")
    print(f"{'size':>10} {'forward s':>10} {'losses s':>9} {'backward s':>10} {'step s':>7} "
          f"{'s/iter':>8} {'losses %':>8}")
    for size in args.sizes:
        height, width = hw(size)
        (fwd, losses, bwd), step = benchmark_size(net, optimizer, height, width, settings.losses, args.images,
                                                  autocast)
        per_iter = iter_size * (fwd + losses + bwd) + step
        print(f"{size:>10} {fwd:10.3f} {losses:9.3f} {bwd:10.3f} {step:7.3f} {per_iter:8.2f} "
              f"{100 * iter_size * losses / per_iter:8.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        if args.data is None:
            roidb, source = append_flipped(synthetic_roidb(tmp)), "generated JPEGs"
        else:
            roidb, source = training_roidb(args.data, "train"), args.data.name
        dataset = TrainDataset(roidb, settings.scales[0], settings.max_size, settings.pixel_means, settings.orig_size)
        for workers in args.workers:
            rate = args.loader_images / time_loader(dataset, workers, args.loader_images)
            print(f"loader ({source}, scale {settings.scales[0]}/{settings.max_size}), {workers} workers: "
                  f"{rate:.2f} images/s, {rate / workers:.2f} images/s per worker")

