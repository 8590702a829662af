"""Helpers shared by the benchmarks: options, device sync and timing, synthetic inputs, machine names."""
import argparse
import platform
import statistics
import time
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
import scipy.io
import torch

from lib.datasets import EpochSampler, RoidbEntry, make_loader
from lib.evaluation import write_image_detections

# ../shared/data/mini_wider next to the repository: the loader's real images when present.
MINI_WIDER = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "mini_wider"
# Blob sizes (height, width) of the detection benchmarks.
DETECT_SIZES = ((480, 640), (800, 1200), (1200, 1600))
# Events of the WIDER val split, and the smallest face height (px) in each setting of the synthetic one.
VAL_EVENTS = 61
MIN_HEIGHT = {"easy": 50, "medium": 20, "hard": 0}


def benchmark_parser(module_name, doc):
    """Parser of the benchmark module `module_name`, described by its docstring's first line."""
    return argparse.ArgumentParser(prog=f"python3 -m benchmarks {module_name.rsplit('.', 1)[-1]}",
                                   description=doc.splitlines()[0])


def _shown(value):
    if value is None:
        return "synthetic"
    return " ".join(map(str, value)) if isinstance(value, list) else str(value)


def parse_args(parser, argv, smoke):
    """Options of `argv` (None: sys.argv); with --smoke the defaults become `smoke`, explicit options still win."""
    tiny = ", ".join(f"{key}={_shown(value)}" for key, value in smoke.items())
    parser.add_argument("--smoke", action="store_true", help=f"tiny sizes, a few seconds: {tiny}")
    args = parser.parse_args(argv)
    if args.smoke:
        parser.set_defaults(**smoke)
        args = parser.parse_args(argv)
    return args


def hw(size):
    """(height, width) of a 'HxW' size."""
    height, width = (int(v) for v in size.split("x"))
    return height, width


def sync(device):
    """Wait for the work queued on a CUDA device; nothing to wait for on the CPU (or None)."""
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)


class Stopwatch:
    """Wall seconds between laps; the device is synchronised at the start and at each lap."""

    def __init__(self, device=None):
        self.device = device
        sync(device)
        self.last = time.perf_counter()

    def lap(self):
        """Seconds since the start or the previous lap."""
        sync(self.device)
        now = time.perf_counter()
        elapsed, self.last = now - self.last, now
        return elapsed


def seconds(fn, device=None):
    """Wall seconds of one call of fn()."""
    clock = Stopwatch(device)
    fn()
    return clock.lap()


class Timing(NamedTuple):
    """Median, min and max of some runs' seconds."""
    median: float
    min: float
    max: float

    @classmethod
    def of(cls, times):
        return cls(statistics.median(times), min(times), max(times))


def time_calls(fn, device, runs, warmup=1):
    """Timing of `runs` calls of fn() after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    return Timing.of([seconds(fn, device) for _ in range(runs)])


def time_loader(dataset, workers, n_images):
    """Seconds for `n_images` items from a `workers`-process loader, after a warm-up of 2 per worker."""
    iterator = iter(make_loader(dataset, EpochSampler(len(dataset), seed=0), workers, pin_memory=False))
    for _ in range(2 * workers):
        next(iterator)
    return seconds(lambda: [next(iterator) for _ in range(n_images)])


def random_images(count, height, width, seed=0):
    """`count` uniform random height x width x 3 uint8 images."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(count)]


def random_faces(n, height, width, generator, lo=10, hi=300):
    """(n, 4) float32 boxes x1, y1, x2, y2 (inclusive) with sides in [lo, hi) inside a height x width image."""
    side = torch.rand(n, 1, generator=generator) * (hi - lo) + lo
    xy = torch.rand(n, 2, generator=generator) * (torch.tensor([width, height]) - side)
    return torch.cat([xy, xy + side - 1], dim=1)


def synthetic_roidb(folder, count=8, seed=0):
    """Unflipped entries of `count` smooth random 1024-px-wide JPEGs written to `folder`."""
    rng = np.random.default_rng(seed)
    roidb = []
    for i in range(count):
        height = int(rng.integers(500, 1400))
        small = rng.integers(0, 256, (height // 32, 32, 3), dtype=np.uint8)
        image = cv2.resize(small, (1024, height), interpolation=cv2.INTER_CUBIC)
        image = cv2.add(image, rng.integers(0, 16, image.shape, dtype=np.uint8))
        path = str(Path(folder) / f"{i}.jpg")
        cv2.imwrite(path, image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        roidb.append(RoidbEntry(path, 1024, height, np.array([[10, 10, 50, 50]], np.float32)))
    return roidb


def _cells(items):
    """A MATLAB cell column of `items`."""
    cells = np.empty((len(items), 1), dtype=object)
    for i, item in enumerate(items):
        cells[i, 0] = item
    return cells


def synthetic_val(folder, images, seed=0):
    """(predictions folder, ground-truth folder) of a WIDER-val-like set written to `folder`.

    `images` images over up to 61 events with 1..24 faces each (setting by face height); each face is
    found with a jittered box and false positives fill 38 detections per image, the average of the
    real val predictions.
    """
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    events = [f"{i}--Event{i}" for i in range(min(VAL_EVENTS, images))]
    per_event = [len(part) for part in np.array_split(np.arange(images), len(events))]
    files, boxes = [], []
    for e, (event, count) in enumerate(zip(events, per_event)):
        names = [f"{e}_Event{e}_{i}" for i in range(count)]
        faces = []
        for name in names:
            n = int(rng.integers(1, 25))
            wh = rng.integers(6, 200, (n, 2))
            xy = rng.integers(0, 800, (n, 2))
            faces.append(np.concatenate([xy, wh], 1).astype(np.int32))
            jitter = rng.normal(0, 0.1, (n, 4)) * np.concatenate([wh, wh], 1)
            hits = np.concatenate([xy, xy + wh], 1) + jitter
            fp_xy = rng.uniform(0, 800, (max(0, 38 - n), 2))
            misses = np.concatenate([fp_xy, fp_xy + rng.uniform(6, 100, (len(fp_xy), 2))], 1)
            dets = np.concatenate([hits, misses])
            scores = np.concatenate([rng.uniform(0.3, 1, n), rng.uniform(0.06, 0.8, len(misses))])
            write_image_detections(folder / "pred", f"{event}/{name}.jpg", np.column_stack([dets, scores]))
        files.append(names)
        boxes.append(faces)
    gt = folder / "gt"
    gt.mkdir()
    common = {"event_list": _cells(events), "file_list": _cells([_cells(f) for f in files]),
              "face_bbx_list": _cells([_cells(b) for b in boxes])}
    scipy.io.savemat(gt / "wider_face_val.mat", common)
    for setting, height in MIN_HEIGHT.items():
        keep = [_cells([np.flatnonzero(b[:, 3] >= height)[:, None] + 1.0 for b in event]) for event in boxes]
        scipy.io.savemat(gt / f"wider_{setting}_val.mat", {**common, "gt_list": _cells(keep)})
    return folder / "pred", gt


def head_difference(reference, other, blob):
    """max over the six heads of max |other - reference| / max |reference| for one blob (N x 3 x H x W)."""
    ref, out = reference.forward(blob), other.forward(blob)
    return max(((out[m][i] - ref[m][i]).abs().max() / ref[m][i].abs().max()).item() for m in ref for i in range(2))


def cpu_name():
    """The CPU's model name (/proc/cpuinfo on Linux), else what the platform reports, else 'CPU'."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "CPU"


def device_name(device):
    """The GPU's name for a CUDA device, else the CPU's."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
