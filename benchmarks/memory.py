"""Peak memory of reading a large photo and detecting on it, and the time of its preprocessing.

    python3 -m benchmarks memory [--size 5773x8660] [--test-size 1200x1600] [--repeats 3] [--runs 5] [--smoke]

A smooth random photo of --size (default 50 MP) is written as a JPEG, also with EXIF orientation 6
(stored sideways). Fresh processes (spawned, one per row) read it with lib.image_io.read_image, then
prepare the blob of the official single-scale test (--test-size: shorter side 1200, longer <= 1600)
with lib.blob.prep_image or run Detector.detect on it (random SSH, fp32, CPU), and report the peak
resident set (VmHWM) above the process's own after it has imported and built everything, as
min..max over --repeats processes (the peak of one detection varies by about 130 MB from process to
process with the allocator's choices). VmHWM, not
getrusage's ru_maxrss: Linux carries ru_maxrss over fork and exec, so a spawned child would report
its parent's peak. "whole" converts the whole image to float32 before resizing (the path of images
under lib.blob.ROWS_READ_MIN_PIXELS); "rows read" converts only the rows the resize reads (the path
of larger ones). A photo of the same aspect with shorter side --test-size's first number gives the
same blob, hence the network's own share. Then the median time of prep_image each way at --size, at
30 MP (where prep_image starts converting only the rows read), at a 12 MP phone photo and at a
1200 x 1600 photo brought to the pyramid's smallest level.
"""
import math
import multiprocessing
import re
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

import lib.blob
from lib.blob import compute_scale, prep_image
from lib.config import get_config
from lib.image_io import read_image
from model.detector import Detector
from model.ssh import SSH

from .utils import Timing, benchmark_parser, cpu_name, hw, parse_args

SMOKE = {"size": "300x450", "test_size": "60x80", "repeats": 1, "runs": 1}
MODES = {"whole": math.inf, "rows read": 0}
# Other sizes timed: (height, width, scale or None for the official test's).
PHOTOS = ((4740, 6320, None), (3000, 4000, None), (1200, 1600, 500 / 1200))


def photo(height, width, seed=0):
    """A smooth random uint8 BGR picture (compresses like a photo, unlike noise)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(2, height // 64), max(2, width // 64), 3), dtype=np.uint8)
    image = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    return cv2.add(image, rng.integers(0, 24, image.shape, dtype=np.uint8))


def with_orientation(jpeg, orientation):
    """The JPEG bytes `jpeg` with an APP1 EXIF segment holding `orientation` after the SOI marker."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    payload = exif.tobytes()
    return jpeg[:2] + b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload + jpeg[2:]


def _status_mb(key):
    text = Path("/proc/self/status").read_text()
    return int(re.search(rf"{key}:\s+(\d+) kB", text).group(1)) / 1024


def _measure(path, stage, mode, test_size):
    """Peak MB above the set-up process's resident set for `stage` (read, prep, detect) of `path`."""
    lib.blob.ROWS_READ_MIN_PIXELS = MODES[mode]
    cfg = get_config()
    cfg.TEST.SCALES, cfg.TEST.MAX_SIZE = [test_size[0]], test_size[1]
    detector = Detector.from_config(SSH(), cfg)
    base = _status_mb("VmRSS")
    image = read_image(path)
    if stage == "prep":
        prep_image(image, detector.pixel_means, detector.scales(*image.shape[:2])[0][0])
    elif stage == "detect":
        detector.detect(image)
    return _status_mb("VmHWM") - base


def peak_mb(path, stage, mode, test_size, repeats):
    """'min..max' (or one number) of `_measure` in `repeats` fresh processes."""
    peaks = []
    for _ in range(repeats):
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            peaks.append(pool.apply(_measure, (str(path), stage, mode, test_size)))
    low, high = round(min(peaks)), round(max(peaks))
    return f"{low}" if low == high else f"{low}..{high}"


def prep_times(image, scale, runs):
    """{mode: Timing} of prep_image(image) at `scale`, the modes interleaved run by run."""
    means = get_config().PIXEL_MEANS
    saved, times = lib.blob.ROWS_READ_MIN_PIXELS, {mode: [] for mode in MODES}
    try:
        for _ in range(runs + 1):  # the first round warms up
            for mode, threshold in MODES.items():
                lib.blob.ROWS_READ_MIN_PIXELS = threshold
                start = time.perf_counter()
                prep_image(image, means, scale)
                times[mode].append(time.perf_counter() - start)
    finally:
        lib.blob.ROWS_READ_MIN_PIXELS = saved
    return {mode: Timing.of(t[1:]) for mode, t in times.items()}


def main(argv=None):
    parser = benchmark_parser(__name__, __doc__)
    parser.add_argument("--size", default="5773x8660", help="photo size HxW (default 50 MP)")
    parser.add_argument("--test-size", default="1200x1600", help="TEST.SCALES[0] x TEST.MAX_SIZE")
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per peak measured")
    parser.add_argument("--runs", type=int, default=5, help="timed runs of prep_image per mode")
    args = parse_args(parser, argv, SMOKE)
    height, width = hw(args.size)
    test_size = hw(args.test_size)
    scale = compute_scale(height, width, *test_size)
    blob_hw = (round(height * scale), round(width * scale))
    print(f"{cpu_name()}, torch {torch.__version__} CPU capability {torch.backends.cpu.get_cpu_capability()}, "
          f"{torch.get_num_threads()} threads; ROWS_READ_MIN_PIXELS {lib.blob.ROWS_READ_MIN_PIXELS:,}")
    image = photo(height, width)
    with tempfile.TemporaryDirectory() as tmp:
        path, rotated, small = Path(tmp) / "photo.jpg", Path(tmp) / "rotated.jpg", Path(tmp) / "small.jpg"
        cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 92])
        rotated.write_bytes(with_orientation(path.read_bytes(), 6))
        short = test_size[0]
        cv2.imwrite(str(small), photo(short, round(short * width / height), seed=1), [cv2.IMWRITE_JPEG_QUALITY, 92])
        print(f"{height} x {width} JPEG ({height * width / 1e6:.1f} MP, {path.stat().st_size / 1e6:.1f} MB; "
              f"decoded {image.nbytes / 2**20:.0f} MB, float32 copy {image.nbytes * 4 / 2**20:.0f} MB) "
              f"-> blob {blob_hw[0]} x {blob_hw[1]} (scale {scale:.4f})")
        print(f"peak resident set above the set-up process (MB), min..max of {args.repeats} fresh processes")
        print(f"{'':<40} {'whole':>10} {'rows read':>10}")
        small_w = round(short * width / height)
        rows = (("read_image", path, "read", False), ("read_image, EXIF-rotated", rotated, "read", False),
                ("read_image + prep_image", path, "prep", True), ("read_image + Detector.detect", path, "detect", True),
                (f"{short} x {small_w} photo (same blob): detect", small, "detect", False))
        for label, file, stage, both in rows:
            cells = [peak_mb(file, stage, mode, test_size, args.repeats) for mode in (MODES if both else ["whole"])]
            print(f"{label:<40} {cells[0]:>10} {cells[1] if both else 'same':>10}", flush=True)
    print(f"\nprep_image, median of {args.runs} (ms); rows read / whole")
    sizes = [(height, width, None)] + ([] if args.smoke else list(PHOTOS))
    for h, w, level_scale in sizes:
        s = level_scale or compute_scale(h, w, *test_size)
        times = prep_times(image if (h, w) == (height, width) else photo(h, w), s, args.runs)
        whole, read = times["whole"].median, times["rows read"].median
        print(f"{h} x {w} at scale {s:.3f}: whole {whole * 1e3:7.1f}, rows read {read * 1e3:7.1f}, "
              f"ratio {read / whole:.2f}")


if __name__ == "__main__":
    main()
