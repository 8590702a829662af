"""Detection speed on the current device: python3 -m model.benchmark [--device cuda] [--fast].

For each blob size it prints the end-to-end latency of Detector.detect (median and min..max of
--runs runs after a warm-up), the share spent outside the network (preprocessing, decoding, NMS),
the network's achieved GFLOP/s next to a large 3x3 convolution of the same precision timed in the
same process, and the peak memory of one detection (CUDA: peak allocated; CPU: peak resident set of a
fresh process that imports everything, builds the detector and detects one image of that size).
With --fast it also runs the reduced-precision mode and reports its head drift.
Random weights are used (speed does not depend on them); images are ORIG_SIZE so blob = image.
"""
import argparse
import multiprocessing
import resource
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

from lib.config import get_config
from lib.utils.device import default_device, device_arg

from .detector import Detector
from .ssh import SSH

SIZES = ((480, 640), (800, 1200), (1200, 1600))


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


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


def reference_conv_gflops(device, dtype, runs=5):
    """GFLOP/s of a 512 -> 512 3x3 convolution on a 1 x 512 x 100 x 150 map (VGG conv5 at 1200x1600)."""
    x = torch.randn(1, 512, 100, 150, device=device, dtype=dtype)
    w = torch.randn(512, 512, 3, 3, device=device, dtype=dtype) * 0.01
    flops = 2 * 512 * 9 * 512 * 100 * 150
    with torch.inference_mode():
        F.conv2d(x, w, padding=1)
        _sync(device)
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            F.conv2d(x, w, padding=1)
            _sync(device)
            times.append(time.perf_counter() - t)
    return flops / min(times) / 1e9


def _detector(device, fast):
    cfg = get_config()
    cfg.TEST.ORIG_SIZE = True
    torch.manual_seed(0)
    return Detector(SSH(), cfg.TEST, cfg.PIXEL_MEANS, device, fast=fast)


def random_image(height, width):
    return np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _detect_once_rss(height, width, fast):
    _detector("cpu", fast).detect(random_image(height, width))
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_memory_mb(device, height, width, fast):
    """Peak memory in MB of one detection: CUDA peak allocated, or a fresh CPU process's peak RSS."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        _detector(device, fast).detect(random_image(height, width))
        return torch.cuda.max_memory_allocated(device) / 2**20
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_detect_once_rss, (height, width, fast))


def time_size(detector, height, width, runs):
    """(latencies, network seconds) of `runs` detections of a random height x width image."""
    image = random_image(height, width)
    blob = torch.from_numpy(np.ascontiguousarray(
        (image.astype(np.float32) - detector.pixel_means).transpose(2, 0, 1)))[None]
    detector.detect(image)
    total, network = [], []
    for _ in range(runs):
        _sync(detector.device)
        t = time.perf_counter()
        detector.detect(image)
        _sync(detector.device)
        total.append(time.perf_counter() - t)
        t = time.perf_counter()
        detector.forward(blob)
        _sync(detector.device)
        network.append(time.perf_counter() - t)
    return total, statistics.median(network)


def head_drift(reference, fast, height, width):
    """max |fast - fp32| / max |fp32| over the six heads for one random image."""
    blob = torch.randn(1, 3, height, width) * 50
    ref, out = reference.forward(blob), fast.forward(blob)
    return max(((ref[m][i] - out[m][i]).abs().max() / ref[m][i].abs().max()).item()
               for m in ref for i in range(2))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", type=device_arg, default=default_device())
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--fast", action="store_true", help="also benchmark the reduced-precision mode")
    parser.add_argument("--sizes", nargs="+", default=[f"{h}x{w}" for h, w in SIZES])
    args = parser.parse_args()
    device = torch.device(args.device)
    modes = {"fp32": False, "fast": True} if args.fast else {"fp32": False}
    detectors = {name: _detector(device, fast) for name, fast in modes.items()}
    low = torch.float16 if device.type == "cuda" else torch.bfloat16
    ref = {"fp32": reference_conv_gflops(device, torch.float32), "fast": reference_conv_gflops(device, low)}
    print(f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}), "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"reference 3x3 conv 512->512 @100x150: {ref['fp32']:.1f} GFLOP/s fp32"
          + (f", {ref['fast']:.1f} GFLOP/s {str(low)[6:]}" if args.fast else ""))
    print(f"{'mode':>5} {'size':>10} {'median s':>9} {'min..max s':>14} {'outside net':>11} "
          f"{'net GFLOP/s':>11} {'% of ref':>8} {'peak MB':>8}")
    for size in args.sizes:
        h, w = (int(v) for v in size.split("x"))
        flops = conv_flops(detectors["fp32"].net, torch.zeros(1, 3, h, w))
        for name, detector in detectors.items():
            total, net_s = time_size(detector, h, w, args.runs)
            med = statistics.median(total)
            gflops = flops / net_s / 1e9
            print(f"{name:>5} {size:>10} {med:>9.3f} {min(total):>6.3f}..{max(total):<6.3f} "
                  f"{max(0.0, 1 - net_s / med):>10.1%} {gflops:>11.1f} {gflops / ref[name]:>8.0%} "
                  f"{peak_memory_mb(device, h, w, modes[name]):>8.0f}")
        if args.fast:
            print(f"{'':>5} {size:>10} fast-mode head drift (max|diff|/max|value|): "
                  f"{head_drift(detectors['fp32'], detectors['fast'], h, w):.2e}")


if __name__ == "__main__":
    main()
