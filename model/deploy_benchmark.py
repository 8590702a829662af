"""ONNX Runtime vs PyTorch: python3 -m model.deploy_benchmark [--runs 3] [--device cpu].

Exports the network (random weights; speed does not depend on them) to a temporary ONNX file,
then prints, per blob size, the median end-to-end Detector.detect latency of each backend and the
heads' agreement (max |onnx - torch| / max |torch| over the six heads), and the images/s of
batched detection (Detector.detect on a list of same-size images) for each batch size.
Images are ORIG_SIZE, so blob = image.
"""
import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime
import torch

from lib.config import get_config
from lib.utils.device import default_device, device_arg

from .benchmark import SIZES, _sync
from .detector import Detector
from .onnx_export import export_onnx
from .onnx_runtime import OnnxSSH
from .ssh import SSH

BATCH_HW = (480, 640)
BATCH_SIZES = (1, 2, 4)


def median_seconds(fn, device, runs):
    """Median wall time of `runs` calls of fn() after one warm-up call."""
    fn()
    times = []
    for _ in range(runs):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def head_agreement(reference, other, height, width):
    """max over the six heads of max |other - reference| / max |reference| on a random blob."""
    blob = torch.randn(1, 3, height, width, generator=torch.Generator().manual_seed(0)) * 60
    ref, out = reference.forward(blob), other.forward(blob)
    return max(((out[m][i] - ref[m][i]).abs().max() / ref[m][i].abs().max()).item() for m in ref for i in range(2))


def random_images(count, height, width):
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(count)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", type=device_arg, default=default_device())
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sizes", nargs="+", default=[f"{h}x{w}" for h, w in SIZES])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=list(BATCH_SIZES))
    args = parser.parse_args()
    device = torch.device(args.device)
    cfg = get_config()
    cfg.TEST.ORIG_SIZE = True
    torch.manual_seed(0)
    net = SSH().eval()
    with tempfile.TemporaryDirectory() as folder:
        path = export_onnx(net, Path(folder) / "ssh.onnx")
        onnx_net = OnnxSSH.from_file(path, device)
    detectors = {"pytorch": Detector(net, cfg.TEST, cfg.PIXEL_MEANS, device),
                 "onnxruntime": Detector(onnx_net, cfg.TEST, cfg.PIXEL_MEANS, device)}
    print(f"device {device}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"onnxruntime {onnxruntime.__version__} ({', '.join(onnx_net.session.get_providers())})")
    print(f"{'size':>10} {'pytorch s':>10} {'onnxruntime s':>14} {'speed-up':>9} {'head agreement':>15}")
    for size in args.sizes:
        h, w = (int(v) for v in size.split("x"))
        (image,) = random_images(1, h, w)
        pt, ort = (median_seconds(lambda d=d: d.detect(image), device, args.runs) for d in detectors.values())
        agreement = head_agreement(detectors["pytorch"], detectors["onnxruntime"], h, w)
        print(f"{size:>10} {pt:>10.3f} {ort:>14.3f} {pt / ort:>8.2f}x {agreement:>15.2e}")
    h, w = BATCH_HW
    print(f"batched detection at {h}x{w}, images/s")
    print(f"{'batch':>10} {'pytorch':>10} {'onnxruntime':>14}")
    for batch_size in args.batch_sizes:
        images = random_images(batch_size, h, w)
        rates = [batch_size / median_seconds(lambda d=d: d.detect(images), device, args.runs)
                 for d in detectors.values()]
        print(f"{batch_size:>10} {rates[0]:>10.2f} {rates[1]:>14.2f}")


if __name__ == "__main__":
    main()
