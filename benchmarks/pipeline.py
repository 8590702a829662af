"""Detection images/s over a folder of JPEGs: read, prepare and network in turn vs prepared ahead on threads.

    python3 -m benchmarks pipeline [--size 1200x1600] [--images 8] [--workers 0 1 2] [--precision fp32 int8]
                                   [--threads N] [--no-outputs] [--smoke]

--images mini WIDER val photos (../shared/data/mini_wider next to the repository; else uniform-noise
pictures, which decode slower than photos) are resized to --size, or its transpose for portrait
ones, and written as JPEGs to a temporary folder. Each (precision, workers) row runs test.py's loop,
lib.detection_run.run_items, in a fresh spawned process: images are read (lib.image_io.read_image) and
prepared (Detector.prepare) on `workers` threads ahead of the network (Detector.detect_prepared, one
image per pass) and the outputs (the drawn picture and text file; --no-outputs: none) are written on
one more thread behind it; 0 workers: everything in turn. The random SSH detects at scale 1
(TEST.ORIG_SIZE: the official single-scale test's scale for a 1200 x 1600 photo), so preparing is
decoding and the float conversion, with no resize; int8 runs it quantized by ONNX Runtime as the detect
benchmark does. After a warm-up image of each shape (landscape, portrait), a row reports the network's
seconds per image (inside detect_prepared), the preparation's (read_image + prepare of every image,
timed alone after the run), the writing's (timed in the run), images/s, the ideal rate
1 / max(network, preparation + writing) of a perfect overlap and the share of it reached, the network's
busy share of the wall time, and the process's peak resident set (VmHWM). --threads sets
torch.set_num_threads (and ONNX Runtime's intra-op threads) in every row, e.g. 1 to leave a core to
the preparing and writing threads.
"""
import argparse
import contextlib
import importlib.util
import io
import multiprocessing
import os
import re
import tempfile
import time
from pathlib import Path

import cv2
import torch

from lib.config import get_config
from lib.detection_run import run_items
from lib.image_io import read_image
from lib.sinks import OutputOptions, Sinks, image_sinks
from lib.sources import Item
from model.detector import Detector
from model.precision import PRECISIONS

from .detect import quantize_random_ssh, random_ssh
from .utils import MINI_WIDER, benchmark_parser, cpu_name, hw, parse_args, random_images

SMOKE = {"size": "120x160", "images": 3, "workers": [0, 1]}
JPEG_QUALITY = 95


def write_jpegs(folder, count, height, width):
    """(paths, description) of `count` JPEGs in `folder`: mini WIDER val photos resized to height x width
    (width x height when portrait), cycled when fewer; uniform noise when ../shared is absent."""
    sources = sorted(MINI_WIDER.glob("WIDER_val/images/*/*.jpg"))
    if sources:
        what = f"{len(sources[:count])} mini WIDER val photos"
        images = [read_image(path) for path in sources[:count]]
        images = [images[i % len(images)] for i in range(count)]
    else:
        what = "uniform-noise pictures (../shared absent)"
        images = random_images(count, height, width)
    paths = []
    for i, image in enumerate(images):
        portrait = image.shape[0] > image.shape[1]
        size = (height, width) if portrait == (height > width) else (width, height)
        path = Path(folder) / f"{i}.jpg"
        cv2.imwrite(str(path), cv2.resize(image, size[::-1], interpolation=cv2.INTER_AREA),
                    [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        paths.append(path)
    megabytes = sum(p.stat().st_size for p in paths) / 1e6
    return paths, f"{count} JPEGs ({megabytes:.2f} MB, quality {JPEG_QUALITY}) of {what} at {height}x{width}"


def make_detector(precision, int8_path, threads):
    """Scale-1 detector of the random SSH in `precision`; int8 runs the graph at `int8_path`."""
    cfg = get_config()
    cfg.TEST.ORIG_SIZE = True
    if precision == "int8":
        from model.deploy.onnx_runtime import OnnxSSH
        return Detector.from_config(OnnxSSH.from_file(int8_path, threads=threads or 0), cfg, "cpu", "int8")
    return Detector.from_config(random_ssh(), cfg, "cpu", precision)


def _peak_mb():
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"^VmHWM:\s+(\d+) kB", status, re.M).group(1)) / 1024


class TimedSinks(Sinks):
    """Sinks that add up the seconds their writes take (on the write-behind thread when there is one)."""
    seconds = 0.0

    def write(self, result):
        start = time.perf_counter()
        super().write(result)
        self.seconds += time.perf_counter() - start


def _run_row(paths, precision, workers, threads, int8_path, out):
    """(network s/image, preparation s/image, writing s/image, wall s, peak MB) of one row, in this (fresh)
    process: lib.detection_run.run_items, test.py's loop, writing the drawn picture and text file of
    each image into `out` (no outputs when None)."""
    if threads:
        torch.set_num_threads(threads)
    detector = make_detector(precision, int8_path, threads)

    def load(path):
        image = read_image(path)
        return image, detector.prepare(image)

    for path in {read_image(p).shape: p for p in paths}.values():  # warm-up: one image per shape
        detector.detect_prepared([load(path)[1]])
    paths = [Path(p) for p in paths]
    sinks = TimedSinks(image_sinks(OutputOptions(out=Path(out)), paths) if out else [])
    items = [Item(path, path.stem, path.name) for path in paths]
    with contextlib.redirect_stdout(io.StringIO()):  # run_items's closing line: the table says it
        report = run_items(detector, items, sinks, 0.5, workers=workers)
    if report.failed or report.done != len(paths):
        raise RuntimeError(f"{len(paths) - report.done} images failed: {report.failed}")
    peak = _peak_mb()
    start = time.perf_counter()
    for path in paths:
        load(path)
    prep = time.perf_counter() - start
    return report.busy / len(paths), prep / len(paths), sinks.seconds / len(paths), report.seconds, peak


def run_row(paths, precision, workers, threads, int8_path, out):
    """`_run_row` in a fresh spawned process, so rows neither share warm caches nor mix peaks."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_run_row, ([str(p) for p in paths], precision, workers, threads, int8_path, out))


def choose_precisions(requested):
    """The requested precisions, int8 dropped with a note when ONNX Runtime is not installed."""
    if "int8" in requested and importlib.util.find_spec("onnxruntime") is None:
        print("note: int8 skipped: it needs onnxruntime (not installed)")
        return [p for p in requested if p != "int8"]
    return list(requested)


def main(argv=None):
    parser = benchmark_parser(__name__, __doc__)
    parser.add_argument("--size", default="1200x1600", help="image size HxW (transposed for portrait photos)")
    parser.add_argument("--images", type=int, default=8, help="images per row")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="preparing threads per row")
    parser.add_argument("--precision", nargs="+", choices=PRECISIONS, default=["fp32", "int8"])
    parser.add_argument("--threads", type=int, help="torch (and ONNX Runtime) threads (default: torch's)")
    parser.add_argument("--outputs", action=argparse.BooleanOptionalAction, default=True,
                        help="write test.py's default outputs, the drawn picture and the text file (default: yes)")
    args = parse_args(parser, argv, SMOKE)
    height, width = hw(args.size)
    precisions = choose_precisions(args.precision)
    threads = args.threads or torch.get_num_threads()
    print(f"{cpu_name()} ({os.cpu_count()} CPUs), torch {torch.__version__} CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}, {threads} network threads"
          + ("" if args.threads else " (default)"))
    with tempfile.TemporaryDirectory(prefix="ssh-pipeline-") as tmp:
        paths, description = write_jpegs(tmp, args.images, height, width)
        print(description)
        int8_path = str(Path(tmp) / "random_int8.onnx")
        if "int8" in precisions:
            quantize_random_ssh(int8_path, make_detector("fp32", None, None), height, width)
        print("outputs: " + ("the drawn picture and the text file of each image" if args.outputs else "none"))
        print(f"{'mode':>5} {'workers':>7} {'net s/img':>9} {'prep s/img':>10} {'write s/img':>11} {'images/s':>8} "
              f"{'ideal/s':>7} {'% ideal':>7} {'net busy':>8} {'peak MB':>7}")
        for precision in precisions:
            for workers in args.workers:
                out = str(Path(tmp) / f"out_{precision}_{workers}") if args.outputs else None
                net, prep, write, wall, peak = run_row(paths, precision, workers, args.threads, int8_path, out)
                rate, ideal = len(paths) / wall, 1 / max(net, prep + write)
                print(f"{precision:>5} {workers:>7} {net:>9.3f} {prep:>10.4f} {write:>11.4f} {rate:>8.3f} "
                      f"{ideal:>7.3f} {rate / ideal:>7.0%} {net * len(paths) / wall:>8.0%} {peak:>7.0f}", flush=True)
