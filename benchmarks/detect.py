"""Detection latency, time outside the network, GFLOP/s and peak memory per blob size.

    python3 -m benchmarks detect [--device cuda] [--fast] [--runs 5] [--sizes 480x640 ...] [--smoke]

For each blob size it prints the end-to-end latency of Detector.detect (median and min..max of
--runs runs after a warm-up), the share spent outside the network (preprocessing, decoding, NMS),
the network's achieved GFLOP/s next to a large 3x3 convolution of the same precision timed in the
same process, and the peak memory of one detection (CUDA: peak allocated; CPU: peak resident set of a
fresh process that imports everything, builds the detector and detects one image of that size).
With --fast it also runs the reduced-precision mode and reports its head drift.
Random weights are used (speed does not depend on them); images are ORIG_SIZE so blob = image.
"""
import multiprocessing
import resource
import statistics

import numpy as np
import torch
import torch.nn.functional as F

from lib.config import get_config
from lib.utils.device import default_device, device_arg
from model.detector import Detector
from model.ssh import SSH

from .utils import (DETECT_SIZES, Timing, benchmark_parser, device_name, head_difference, hw, parse_args, random_images,
                    seconds, time_calls)

# The reference convolution's map (VGG conv5 at 1200x1600).
REFERENCE_HW = "100x150"
SMOKE = {"sizes": ["64x96"], "runs": 1, "reference_hw": "10x15"}


def conv_flops(net, blob):
    """Multiply-adds x 2 of every convolution of `net` on `blob` (one forward, counted by hooks)."""
    total = []

    def hook(mod, inputs, out):
        k = mod.weight.shape[2] * mod.weight.shape[3]
        cin = inputs[0].shape[1] // mod.groups
        total.append(2 * cin * k * out.shape[1] * out.shape[2] * out.shape[3])

    convs = [m for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    handles = [m.register_forward_hook(hook) for m in convs]
    with torch.inference_mode():
        net(blob)
    for h in handles:
        h.remove()
    return sum(total)


def reference_conv_gflops(device, dtype, height, width, runs=5):
    """GFLOP/s (best of `runs`) of a 512 -> 512 3x3 convolution on a 1 x 512 x height x width map."""
    x = torch.randn(1, 512, height, width, device=device, dtype=dtype)
    w = torch.randn(512, 512, 3, 3, device=device, dtype=dtype) * 0.01
    flops = 2 * 512 * 9 * 512 * height * width
    with torch.inference_mode():
        return flops / time_calls(lambda: F.conv2d(x, w, padding=1), device, runs).min / 1e9


def _detector(device, fast):
    cfg = get_config()
    cfg.TEST.ORIG_SIZE = True
    torch.manual_seed(0)
    return Detector.from_config(SSH(), cfg, device, fast=fast)


def _detect_once_rss(height, width, fast):
    _detector("cpu", fast).detect(random_images(1, height, width)[0])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_memory_mb(device, height, width, fast):
    """Peak memory in MB of one detection: CUDA peak allocated, or a fresh CPU process's peak RSS."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        _detector(device, fast).detect(random_images(1, height, width)[0])
        return torch.cuda.max_memory_allocated(device) / 2**20
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_detect_once_rss, (height, width, fast))


def time_size(detector, height, width, runs):
    """(Timing of `runs` detections of a random height x width image, median network seconds)."""
    (image,) = random_images(1, height, width)
    blob = torch.from_numpy(np.ascontiguousarray(
        (image.astype(np.float32) - detector.pixel_means).transpose(2, 0, 1)))[None]
    detector.detect(image)
    total, network = [], []
    for _ in range(runs):
        total.append(seconds(lambda: detector.detect(image), detector.device))
        network.append(seconds(lambda: detector.forward(blob), detector.device))
    return Timing.of(total), statistics.median(network)


def main(argv=None):
    parser = benchmark_parser(__name__, __doc__)
    parser.add_argument("--device", type=device_arg, default=default_device())
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--fast", action="store_true", help="also benchmark the reduced-precision mode")
    parser.add_argument("--sizes", nargs="+", default=[f"{h}x{w}" for h, w in DETECT_SIZES])
    parser.add_argument("--reference-hw", default=REFERENCE_HW, help="map of the reference 3x3 convolution, HxW")
    args = parse_args(parser, argv, SMOKE)
    device = torch.device(args.device)
    modes = {"fp32": False, "fast": True} if args.fast else {"fp32": False}
    detectors = {name: _detector(device, fast) for name, fast in modes.items()}
    low = torch.float16 if device.type == "cuda" else torch.bfloat16
    ref = {name: reference_conv_gflops(device, low if fast else torch.float32, *hw(args.reference_hw))
           for name, fast in modes.items()}
    print(f"device {device} ({device_name(device)}), torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"reference 3x3 conv 512->512 @{args.reference_hw}: {ref['fp32']:.1f} GFLOP/s fp32"
          + (f", {ref['fast']:.1f} GFLOP/s {str(low)[6:]}" if args.fast else ""))
    print(f"{'mode':>5} {'size':>10} {'median s':>9} {'min..max s':>14} {'outside net':>11} "
          f"{'net GFLOP/s':>11} {'% of ref':>8} {'peak MB':>8}")
    for size in args.sizes:
        h, w = hw(size)
        flops = conv_flops(detectors["fp32"].net, torch.zeros(1, 3, h, w))
        for name, detector in detectors.items():
            total, net_s = time_size(detector, h, w, args.runs)
            gflops = flops / net_s / 1e9
            print(f"{name:>5} {size:>10} {total.median:>9.3f} {total.min:>6.3f}..{total.max:<6.3f} "
                  f"{max(0.0, 1 - net_s / total.median):>10.1%} {gflops:>11.1f} {gflops / ref[name]:>8.0%} "
                  f"{peak_memory_mb(device, h, w, modes[name]):>8.0f}")
        if args.fast:
            drift = head_difference(detectors["fp32"], detectors["fast"], torch.randn(1, 3, h, w) * 50)
            print(f"{'':>5} {size:>10} fast-mode head drift (max|diff|/max|value|): {drift:.2e}")

