"""ONNX Runtime vs PyTorch: detection latency, head agreement and batched images/s.

    python3 -m benchmarks deploy [--device cpu] [--runs 3] [--sizes 480x640 ...] [--batch-sizes 1 2 4] [--smoke]

Exports the network (random weights; speed does not depend on them) to a temporary ONNX file,
then prints, per blob size, the median end-to-end Detector.detect latency of each backend and the
heads' agreement (max |onnx - torch| / max |torch| over the six heads), and the images/s of
batched detection (Detector.detect on a list of same-size images) for each batch size.
Images are ORIG_SIZE, so blob = image.
"""
import tempfile
from pathlib import Path

import onnxruntime
import torch

from lib.config import get_config
from lib.utils.device import default_device, device_arg
from model.detector import Detector
from model.deploy.onnx_export import export_onnx
from model.deploy.onnx_runtime import OnnxSSH
from model.ssh import SSH

from .utils import DETECT_SIZES, benchmark_parser, head_difference, hw, parse_args, random_images, time_calls

BATCH_HW = (480, 640)
BATCH_SIZES = (1, 2, 4)
SMOKE = {"sizes": ["64x96"], "runs": 1, "batch_sizes": [1, 2], "batch_hw": "64x96"}


def main(argv=None):
    parser = benchmark_parser(__name__, __doc__)
    parser.add_argument("--device", type=device_arg, default=default_device())
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sizes", nargs="+", default=[f"{h}x{w}" for h, w in DETECT_SIZES])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=list(BATCH_SIZES))
    parser.add_argument("--batch-hw", default="x".join(map(str, BATCH_HW)), help="image size of batched detection, HxW")
    args = parse_args(parser, argv, SMOKE)
    device = torch.device(args.device)
    cfg = get_config()
    cfg.TEST.ORIG_SIZE = True
    torch.manual_seed(0)
    net = SSH().eval()
    with tempfile.TemporaryDirectory() as folder:
        path = export_onnx(net, Path(folder) / "ssh.onnx")
        onnx_net = OnnxSSH.from_file(path, device)
    detectors = {"pytorch": Detector.from_config(net, cfg, device),
                 "onnxruntime": Detector.from_config(onnx_net, cfg, device)}
    print(f"device {device}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"onnxruntime {onnxruntime.__version__} ({', '.join(onnx_net.session.get_providers())})")
    print(f"{'size':>10} {'pytorch s':>10} {'onnxruntime s':>14} {'speed-up':>9} {'head agreement':>15}")
    for size in args.sizes:
        h, w = hw(size)
        (image,) = random_images(1, h, w)
        pt, ort = (time_calls(lambda d=d: d.detect(image), device, args.runs).median for d in detectors.values())
        blob = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(0)) * 60
        agreement = head_difference(detectors["pytorch"], detectors["onnxruntime"], blob)
        print(f"{size:>10} {pt:>10.3f} {ort:>14.3f} {pt / ort:>8.2f}x {agreement:>15.2e}")
    h, w = hw(args.batch_hw)
    print(f"batched detection at {h}x{w}, images/s")
    print(f"{'batch':>10} {'pytorch':>10} {'onnxruntime':>14}")
    for batch_size in args.batch_sizes:
        images = random_images(batch_size, h, w)
        rates = [batch_size / time_calls(lambda d=d: d.detect(images), device, args.runs).median
                 for d in detectors.values()]
        print(f"{batch_size:>10} {rates[0]:>10.2f} {rates[1]:>14.2f}")

