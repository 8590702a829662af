"""Detection speed on the current device: python3 -m model.benchmark [--device cuda] [--fast].

For each blob size it prints the end-to-end latency of Detector.detect (median and min..max of
--runs runs after a warm-up), the share spent outside the network (preprocessing, decoding, NMS),
the network's achieved GFLOP/s next to a large 3x3 convolution timed in the same process, and the
peak memory. With --fast it also runs the reduced-precision mode and reports its head drift.
Random weights are used (speed does not depend on them); images are ORIG_SIZE so blob = image.
"""
import argparse
import resource
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

from lib.config import get_config

from .detector import Detector, default_device
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


def peak_memory_mb(device):
    """Peak GPU memory allocated (CUDA) or peak resident set size of the process (CPU), in MB."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def time_size(detector, height, width, runs):
    """(latencies, network seconds) of `runs` detections of a random height x width image."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
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
    parser.add_argument("--device", default=default_device())
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--fast", action="store_true", help="also benchmark the reduced-precision mode")
    parser.add_argument("--sizes", nargs="+", default=[f"{h}x{w}" for h, w in SIZES])
    args = parser.parse_args()
    device = torch.device(args.device)
    cfg = get_config()
    cfg.TEST.ORIG_SIZE = True
    torch.manual_seed(0)
    net = SSH().eval()
    modes = [("fp32", False)] + ([("fast", True)] if args.fast else [])
    detectors = {name: Detector(net if not fast else SSH().eval(), cfg.TEST, cfg.PIXEL_MEANS, device,
                                fast=fast) for name, fast in modes}
    if args.fast:
        detectors["fast"].net.load_state_dict(net.state_dict())
    print(f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}), "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    ref_fp32 = reference_conv_gflops(device, torch.float32)
    print(f"reference 3x3 conv 512->512 @100x150: {ref_fp32:.1f} GFLOP/s fp32")
    print(f"{'mode':>5} {'size':>10} {'median s':>9} {'min..max s':>14} {'outside net':>11} "
          f"{'net GFLOP/s':>11} {'% of ref':>8} {'peak MB':>8}")
    for size in args.sizes:
        h, w = (int(v) for v in size.split("x"))
        flops = conv_flops(net, torch.zeros(1, 3, h, w))
        for name, detector in detectors.items():
            total, net_s = time_size(detector, h, w, args.runs)
            med = statistics.median(total)
            gflops = flops / net_s / 1e9
            ref = ref_fp32 if name == "fp32" else float("nan")
            print(f"{name:>5} {size:>10} {med:>9.3f} {min(total):>6.3f}..{max(total):<6.3f} "
                  f"{max(0.0, 1 - net_s / med):>10.1%} {gflops:>11.1f} {gflops / ref:>8.0%} "
                  f"{peak_memory_mb(device):>8.0f}")
        if args.fast:
            print(f"{'':>5} {size:>10} fast-mode head drift (max|diff|/max|value|): "
                  f"{head_drift(detectors['fp32'], detectors['fast'], h, w):.2e}")


if __name__ == "__main__":
    main()
