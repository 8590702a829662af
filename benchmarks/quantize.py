"""int8 calibration choices: head error, detection agreement and network speed per range estimator and float-kept layers.

    python3 -m benchmarks quantize [--model M.pth] [--calib-dir D] [--check-dir V] [--cfg F] [--set K V]
                                   [--speed-hw 480x640] [--runs 3] [--smoke]

Each variant quantizes the same network (model.deploy.quantize) on the same calibration images and
is compared with fp32 on the check images (model.deploy.agreement: relative L2 error per head;
precision and recall of its score >= 0.5 detections against fp32's at IoU >= 0.5); the network
alone (ONNX Runtime) is timed on one --speed-hw blob, all variants and fp32 interleaved. Without
--model the seeded random SSH is used and without --calib-dir / --check-dir the photos matplotlib
installs (speed does not depend on the weights; agreement does, so use trained weights and real
images to choose). This is how the defaults of model/deploy/quantize.py were chosen (docs/decisions.md §8).
"""
import statistics
import tempfile
from pathlib import Path

import numpy as np
import torch
from matplotlib import cbook

from lib.config import add_config_args, config_from_args
from lib.image_io import read_image
from model.deploy.agreement import HEAD_NAMES, detection_agreement, head_errors
from model.deploy.calibration import CalibrationBlobs, load_images
from model.deploy.onnx_runtime import OnnxSSH
from model.deploy.quantize import METHODS, quantize_network
from model.detector import Detector
from model.ssh import SSH
from model.weights.loading import load_network

from .utils import benchmark_parser, cpu_name, hw, parse_args, seconds

SMOKE = {"speed_hw": "64x96", "runs": 1, "images": 2, "variants": ["minmax:none", "minmax:heads"],
         "set": [["TEST.SCALES", "[96]"], ["TEST.MAX_SIZE", "128"]]}
# Float-kept layer groups: SSH convolution paths (model/ssh.py).
HEADS = tuple(f"{m}.{h}" for m in ("m1", "m2", "m3") for h in ("cls_score", "bbox_pred"))
CONTEXT = tuple(f"{m}.context.{c}" for m in ("m1", "m2", "m3") for c in ("dimred", "conv5x5", "conv7x7_1", "conv7x7"))
GROUPS = {"none": (), "heads": HEADS, "conv1_1": ("vgg.conv1_1",), "context": CONTEXT,
          "heads+conv1_1": HEADS + ("vgg.conv1_1",)}
VARIANTS = [f"{m}:none" for m in METHODS] + [f"minmax:{g}" for g in GROUPS if g != "none"]
PHOTOS = ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png", "logo2.png")


def images_of(folder, count, role):
    """Images of `folder` (load_images), or matplotlib's photos when no folder is given."""
    if folder is None:
        return [read_image(cbook.get_sample_data(name, asfileobj=False)) for name in PHOTOS]
    return load_images(folder, count, role)


def network(args):
    if args.model is None:
        torch.manual_seed(0)
        return SSH().eval()
    return load_network(args.model, "pytorch")


def time_networks(detectors, blob, runs):
    """{name: median seconds of detector.forward(blob)}, every detector in turn on each run."""
    for detector in detectors.values():
        detector.forward(blob)
    times = {name: [] for name in detectors}
    for _ in range(runs):
        for name, detector in detectors.items():
            times[name].append(seconds(lambda: detector.forward(blob)))
    return {name: statistics.median(t) for name, t in times.items()}


def main(argv=None):
    parser = benchmark_parser(__name__, __doc__)
    parser.add_argument("--model", type=Path, help=".caffemodel or .pth weights (default: seeded random SSH)")
    parser.add_argument("--calib-dir", type=Path, help="calibration images (default: matplotlib's photos)")
    parser.add_argument("--check-dir", type=Path, help="check images (default: matplotlib's photos)")
    parser.add_argument("--images", type=int, default=32, help="at most this many calibration / check images")
    parser.add_argument("--variants", nargs="+", default=VARIANTS, metavar="METHOD:GROUP",
                        help=f"range estimator ({', '.join(METHODS)}) and float-kept group ({', '.join(GROUPS)})")
    parser.add_argument("--speed-hw", default="480x640", help="blob of the speed column, HxW")
    parser.add_argument("--runs", type=int, default=3)
    add_config_args(parser)
    args = parse_args(parser, argv, SMOKE)
    cfg = config_from_args(args)
    net = network(args)
    reference = Detector.from_config(net, cfg)
    calibration = CalibrationBlobs(images_of(args.calib_dir, args.images, "calibration"), reference)
    check_images = images_of(args.check_dir, args.images, "check")
    check = CalibrationBlobs(check_images, reference)
    print(f"{cpu_name()}, torch {torch.__version__}, {torch.get_num_threads()} threads; model "
          f"{args.model or 'random'}; {len(calibration)} calibration blobs, {len(check)} check blobs "
          f"(TEST.SCALES {list(cfg.TEST.SCALES)}, MAX_SIZE {cfg.TEST.MAX_SIZE})")
    detectors, rows = {"fp32": reference}, {}
    with tempfile.TemporaryDirectory(prefix="ssh-quantize-") as tmp:
        for variant in args.variants:
            method, group = variant.split(":")
            path = quantize_network(net, Path(tmp) / f"{method}_{group}.onnx", calibration, method, GROUPS[group])
            detectors[variant] = Detector.from_config(OnnxSSH.from_file(path), cfg, "cpu", "int8")
            rows[variant] = (head_errors(reference, detectors[variant], check),
                             detection_agreement(reference, detectors[variant], check_images))
        height, width = hw(args.speed_hw)
        blob = torch.from_numpy(np.random.default_rng(0).uniform(-120, 140, (1, 3, height, width)).astype(np.float32))
        speed = time_networks(detectors, blob, args.runs)
    print(f"{'variant':<22} " + " ".join(f"{h:>8}" for h in HEAD_NAMES)
          + f" {'fp32 dets':>9} {'dets':>6} {'precision':>9} {'recall':>7} {'net s @' + args.speed_hw:>15} {'x fp32':>7}")
    print(f"{'fp32':<22} " + " ".join(f"{0:>8.2e}" for _ in HEAD_NAMES) + f" {'':>9} {'':>6} {'':>9} {'':>7} "
          f"{speed['fp32']:>15.3f} {1:>6.2f}x")
    for variant, (errors, agree) in rows.items():
        print(f"{variant:<22} " + " ".join(f"{errors[h]:>8.2e}" for h in HEAD_NAMES)
              + f" {agree.reference:>9} {agree.detections:>6} {agree.precision:>9.4f} {agree.recall:>7.4f}"
              f" {speed[variant]:>15.3f} {speed['fp32'] / speed[variant]:>6.2f}x")
