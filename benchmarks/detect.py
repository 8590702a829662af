"""Detection latency, time outside the network, GFLOP/s and peak memory per precision and blob size.

    python3 -m benchmarks detect [--device cuda] [--precisions fp32 bf16 int8] [--runs 5] [--sizes 480x640 ...]
                                 [--smoke]

The precisions (model/precision.py; default on the CPU fp32 and those it runs natively, bf16 where
it has bf16 instructions and int8; fp32 fp16 on CUDA, where int8 is not available) run side by side
in one process: for each blob size, every run times each mode in turn, so machine noise hits all
modes alike. Below the device, `cpu:` names the CPU's capabilities (lib/utils/cpu_capabilities.py);
a mode this CPU only emulates is left out of the default with a note, and marked `*` (with its
warning) when asked for. fp32 always runs: it is the baseline of the ratios and the head drift.
The int8 network is the same random SSH quantized by model.deploy.quantize, calibrated on 4 random
images of the first size.
Per mode and size it prints the end-to-end latency of Detector.detect (resize, network, decoding,
NMS: median and min..max of --runs runs after a warm-up), the share spent outside the network, the
network's achieved GFLOP/s next to a large 3x3 convolution timed in the same process (in the mode's
format; int8 against the fp32 convolution), the speed-up over fp32 (x fp32) and the peak memory of
one detection (CUDA: peak allocated; CPU: peak resident set of a fresh process that imports
everything, builds or loads the detector and detects one image of that size). Each reduced
precision's head drift against fp32 follows the rows of a size.
Random weights are used (speed does not depend on them); images are ORIG_SIZE so blob = image.
"""
import multiprocessing
import re
import statistics
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lib.config import get_config
from lib.utils.cpu_capabilities import read_capabilities
from lib.utils.device import default_device, device_arg
from model.deploy.calibration import CalibrationBlobs
from model.detector import Detector
from model.precision import AUTOCAST_DTYPES, PRECISIONS, emulation_warning
from model.ssh import SSH

from .utils import (DETECT_SIZES, Timing, benchmark_parser, device_name, head_difference, hw, parse_args, random_images,
                    seconds, time_calls)

# The reference convolution's map (VGG conv5 at 1200x1600).
REFERENCE_HW = "100x150"
SMOKE = {"sizes": ["64x96"], "runs": 1, "reference_hw": "10x15"}
CALIBRATION_IMAGES = 4


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


def random_ssh():
    """The benchmark's SSH: random weights, the same in every process (seeded)."""
    torch.manual_seed(0)
    return SSH()


def make_detector(device, precision, int8_path=None):
    """ORIG_SIZE detector of the random SSH in `precision`; int8 runs the graph saved at `int8_path`."""
    cfg = get_config()
    cfg.TEST.ORIG_SIZE = True
    if precision == "int8":
        from model.deploy.onnx_runtime import OnnxSSH
        return Detector.from_config(OnnxSSH.from_file(int8_path), cfg, "cpu", precision="int8")
    return Detector.from_config(random_ssh(), cfg, device, precision=precision)


def quantize_random_ssh(path, fp32_detector, height, width):
    """Write the random SSH quantized to int8 at `path`, calibrated on random height x width images."""
    from model.deploy.quantize import quantize_network
    images = random_images(CALIBRATION_IMAGES, height, width, seed=1)
    return quantize_network(random_ssh(), path, CalibrationBlobs(images, fp32_detector))


def _detect_once_rss(height, width, precision, int8_path):
    """Peak RSS in MB of this process after one detection. VmHWM, not getrusage's ru_maxrss: Linux
    carries ru_maxrss over fork and exec, so a spawned child would report its parent's peak."""
    make_detector("cpu", precision, int8_path).detect(random_images(1, height, width)[0])
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"^VmHWM:\s+(\d+) kB", status, re.M).group(1)) / 1024


def peak_memory_mb(device, height, width, precision, int8_path):
    """Peak memory in MB of one detection: CUDA peak allocated, or a fresh CPU process's peak RSS."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        make_detector(device, precision).detect(random_images(1, height, width)[0])
        return torch.cuda.max_memory_allocated(device) / 2**20
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_detect_once_rss, (height, width, precision, int8_path))


def network_blob(image, pixel_means):
    """The 1 x 3 x H x W float32 network input of `image` at scale 1."""
    return torch.from_numpy(np.ascontiguousarray((image.astype(np.float32) - pixel_means).transpose(2, 0, 1)))[None]


def time_interleaved(detectors, height, width, runs):
    """{mode: (Timing of detections, median network seconds)} of a random height x width image.

    Each run times every mode in turn (detection, then the network alone), after one warm-up each.
    """
    (image,) = random_images(1, height, width)
    blob = network_blob(image, detectors["fp32"].pixel_means)
    totals = {name: [] for name in detectors}
    networks = {name: [] for name in detectors}
    for detector in detectors.values():
        detector.detect(image)
    for _ in range(runs):
        for name, detector in detectors.items():
            totals[name].append(seconds(lambda: detector.detect(image), detector.device))
            networks[name].append(seconds(lambda: detector.forward(blob), detector.device))
    return {name: (Timing.of(totals[name]), statistics.median(networks[name])) for name in detectors}


def choose_precisions(requested, device, capabilities):
    """fp32 first, then the other requested precisions, or by default those `capabilities` (of the
    CPU) run natively on `device`; an emulated default is left out and int8 dropped on CUDA, each
    with a note."""
    native = capabilities.native(device.type)
    default = [p for p in ("fp32", "bf16", "int8") if p in native] if device.type == "cpu" else ["fp32", "fp16"]
    if device.type == "cpu" and requested is None and "bf16" not in native:
        print(f"note: bf16 left out, {emulation_warning('bf16', 'cpu', capabilities)}; "
              "--precisions fp32 bf16 times it anyway")
    names = list(dict.fromkeys(["fp32", *(requested or default)]))
    if device.type != "cpu" and "int8" in names:
        print(f"note: int8 runs on the CPU only (ONNX Runtime); not benchmarked on {device}")
        names.remove("int8")
    return names


def build_detectors(device, precisions, int8_path, calibration_hw):
    """{precision: Detector} in `precisions` order (fp32 first); int8 first quantizes into `int8_path`."""
    detectors = {"fp32": make_detector(device, "fp32")}
    if "int8" in precisions:
        quantize_random_ssh(int8_path, detectors["fp32"], *calibration_hw)
    for precision in precisions[1:]:
        detectors[precision] = make_detector(device, precision, int8_path)
    return detectors


def reference_rates(device, precisions, reference_hw):
    """{precision: GFLOP/s of the reference convolution in its format}; int8 gets the fp32 rate."""
    dtypes = {p: getattr(torch, AUTOCAST_DTYPES.get(p, "float32")) for p in precisions if p != "int8"}
    rates = {p: reference_conv_gflops(device, dtype, *hw(reference_hw)) for p, dtype in dtypes.items()}
    return {**rates, "int8": rates["fp32"]}


def print_rows(size, flops, timings, ref, peaks, emulated=()):
    """One table row per mode at `size`; x fp32 is fp32's median detection time over the mode's;
    modes in `emulated` are marked `*`."""
    base = timings["fp32"][0].median
    for name, (total, net_s) in timings.items():
        gflops = flops / net_s / 1e9
        shown = f"{name}*" if name in emulated else name
        print(f"{shown:>5} {size:>10} {total.median:>9.3f} {total.min:>6.3f}..{total.max:<6.3f} "
              f"{max(0.0, 1 - net_s / total.median):>10.1%} {gflops:>11.1f} {gflops / ref[name]:>8.0%} "
              f"{base / total.median:>6.2f}x {peaks[name]:>8.0f}")


def run_table(args, device, detectors, int8_path, capabilities):
    """Print the header, reference rates and, per size, the interleaved rows and head drifts."""
    ref = reference_rates(device, detectors, args.reference_hw)
    emulated = {p: emulation_warning(p, device.type, capabilities) for p in detectors}
    emulated = {p: text for p, text in emulated.items() if text}
    print(f"device {device} ({device_name(device)}), torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"cpu: {capabilities.describe()}")
    for text in emulated.values():
        print(f"* {text}")
    print(f"reference 3x3 conv 512->512 @{args.reference_hw}: "
          + ", ".join(f"{ref[p]:.1f} GFLOP/s {p}" for p in detectors if p != "int8")
          + ("; int8's % of ref is of fp32's" if "int8" in detectors else ""))
    print(f"{'mode':>5} {'size':>10} {'median s':>9} {'min..max s':>14} {'outside net':>11} "
          f"{'net GFLOP/s':>11} {'% of ref':>8} {'x fp32':>7} {'peak MB':>8}")
    for size in args.sizes:
        h, w = hw(size)
        flops = conv_flops(detectors["fp32"].net, torch.zeros(1, 3, h, w))
        timings = time_interleaved(detectors, h, w, args.runs)
        peaks = {p: peak_memory_mb(device, h, w, p, int8_path) for p in detectors}
        print_rows(size, flops, timings, ref, peaks, emulated)
        for name in list(detectors)[1:]:
            drift = head_difference(detectors["fp32"], detectors[name], torch.randn(1, 3, h, w) * 50)
            print(f"{'':>5} {size:>10} {name} head drift vs fp32 (max|diff|/max|value|): {drift:.2e}")


def main(argv=None):
    parser = benchmark_parser(__name__, __doc__)
    parser.add_argument("--device", type=device_arg, default=default_device())
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--precisions", nargs="+", choices=PRECISIONS,
                        help="modes side by side (default: fp32 and the CPU's native bf16 and int8, fp32 fp16 on CUDA)")
    parser.add_argument("--sizes", nargs="+", default=[f"{h}x{w}" for h, w in DETECT_SIZES])
    parser.add_argument("--reference-hw", default=REFERENCE_HW, help="map of the reference 3x3 convolution, HxW")
    args = parse_args(parser, argv, SMOKE)
    device = torch.device(args.device)
    capabilities = read_capabilities()
    precisions = choose_precisions(args.precisions, device, capabilities)
    with tempfile.TemporaryDirectory(prefix="ssh-benchmark-") as tmp:
        int8_path = Path(tmp) / "random_int8.onnx"
        detectors = build_detectors(device, precisions, int8_path, hw(args.sizes[0]))
        run_table(args, device, detectors, int8_path, capabilities)
