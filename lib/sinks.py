"""What a detection run writes for each image, one sink per output (docs/inference.md §5.6).

A run (lib.detection_run.run_items) hands each image's `Result` to its sinks, in their order. A sink
says whether it needs the pixels (`needs_image`), whether an earlier run wrote its output of an item
completely (`done`, for --resume; `keep` then carries over what lives in a shared file), and writes it
(`write`). A cache sink can also give back the detections of an earlier run (`recall`), so the
network skips the image. `image_sinks` composes test.py's outputs; eval.py's are a `DetectionCache`
and a `WiderFile`, the same sink as test.py --save-wider, so their files are the same by construction.

Per image `<stem>`: the picture with boxes drawn `<stem>_ssh.jpg`, the anonymised picture
`<stem>_anonymized.<ext>`, the official WIDER prediction file (every detection, as the official
evaluation reads them), face crops under `crops/`, the text file `<stem>_ssh.txt` (`x1 y1 x2 y2 score`
per detection with score >= the threshold; written after the others, it marks the image complete),
an entry of the run's JSON file, and eval's `.npy` cache. Files are written atomically and never over
an input file.
"""
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .anonymize import DEFAULT_HOLD, DEFAULT_SCALE, DEFAULT_SHAPE, anonymize
from .evaluation.wider_txt import prediction_path, write_image_detections
from .image_io import write_image
from .outputs import save_crops
from .sources import Item
from .utils.atomic import atomic_path, atomic_write_text
from .visualize import draw_detections, format_detections

# Extensions an anonymised picture keeps (others are written as .jpg).
KEEP_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})


@dataclass(frozen=True)
class OutputOptions:
    """The outputs asked for on the command line; `json` is the open lib.outputs.DetectionsJson or None."""
    out: Path
    thresh: float = 0.5
    draw: bool = True
    anonymize: str | None = None
    mask_scale: float = DEFAULT_SCALE
    mask_shape: str = DEFAULT_SHAPE
    hold: int = DEFAULT_HOLD
    crops: bool = False
    crop_margin: float = 0.0
    wider: Path | None = None
    json: object = None


class Inputs:
    """The input files of a run: `check(path)` refuses to write over any of them."""

    def __init__(self, paths):
        self._resolved = {Path(p).resolve() for p in paths}

    def check(self, path):
        path = Path(path)
        if path.resolve() in self._resolved:
            raise ValueError(f"{path} is an input of this run: refusing to overwrite it (choose another --out)")
        return path


@dataclass
class Result:
    """An item's detections: `dets` all of them (N, 5) float32, `kept` those with score >= the run's
    threshold; `image` its pixels, None when they were not read (detections recalled from a cache).
    `recalled`: the detections came from a cache. `crops` is set by the Crops sink for the JSON entry."""
    item: Item
    image: np.ndarray | None
    dets: np.ndarray
    kept: np.ndarray
    recalled: bool = False
    crops: list | None = field(default=None)


def as_detections(dets, item):
    """`dets` as (N, 5) float32; another shape raises ValueError naming the item (a detector's bug)."""
    dets = np.asarray(dets)
    if dets.ndim != 2 or dets.shape[1] != 5:
        raise ValueError(f"{item.path}: the detector returned shape {dets.shape}, expected (N, 5)")
    return dets.astype(np.float32, copy=False)


class Sink:
    """One output of a run (see the module docstring); this base writes nothing."""
    needs_image = False

    def files(self, item):
        """The files `write` makes for `item` (those known before writing)."""
        return []

    def done(self, item):
        """True when an earlier run wrote this output of `item` completely."""
        return all(path.is_file() for path in self.files(item))

    def keep(self, item):
        """Carry over the output of `item` an earlier run wrote (--resume), where a file holds several items."""

    def recall(self, item):
        """Detections of `item` an earlier run computed, or None."""
        return None

    def write(self, result):
        raise NotImplementedError


class DrawnPicture(Sink):
    """`<stem>_ssh.jpg`: the image with the kept detections drawn."""
    needs_image = True

    def __init__(self, out, thresh, inputs):
        self.out, self.thresh, self.inputs = Path(out), thresh, inputs

    def files(self, item):
        return [self.out / f"{item.stem}_ssh.jpg"]

    def write(self, result):
        write_image(self.inputs.check(self.files(result.item)[0]),
                    draw_detections(result.image, result.kept, self.thresh))


class AnonymisedPicture(Sink):
    """`<stem>_anonymized.<ext>` (the input's extension where an image format keeps it, else .jpg): the
    image with the kept detections masked (lib.anonymize)."""
    needs_image = True

    def __init__(self, out, method, scale, shape, inputs):
        self.out, self.method, self.scale, self.shape, self.inputs = Path(out), method, scale, shape, inputs

    def files(self, item):
        suffix = item.path.suffix.lower() if item.path.suffix.lower() in KEEP_SUFFIXES else ".jpg"
        return [self.out / f"{item.stem}_anonymized{suffix}"]

    def write(self, result):
        write_image(self.inputs.check(self.files(result.item)[0]),
                    anonymize(result.image, result.kept, self.method, self.scale, self.shape))


class WiderFile(Sink):
    """`<folder>/<rel without extension>.txt`: the official WIDER prediction file, every detection
    (lib.evaluation.wider_txt), whatever the run's threshold."""

    def __init__(self, folder):
        self.folder = Path(folder)

    def files(self, item):
        return [prediction_path(self.folder, item.rel)]

    def write(self, result):
        write_image_detections(self.folder, result.item.rel, result.dets)


class Crops(Sink):
    """`<folder>/<stem>_<k>_<box>.jpg`: each kept face cut out (lib.outputs.save_crops); their paths go to
    the result for the JSON entry. Which files are made is known only when written: the text file
    after them marks them complete."""
    needs_image = True

    def __init__(self, folder, margin):
        self.folder, self.margin = Path(folder), margin

    def write(self, result):
        result.crops = save_crops(self.folder, result.item.stem, result.image, result.kept, self.margin)


class TextFile(Sink):
    """`<stem>_ssh.txt`: `x1 y1 x2 y2 score` per kept detection."""

    def __init__(self, out, inputs):
        self.out, self.inputs = Path(out), inputs

    def files(self, item):
        return [self.out / f"{item.stem}_ssh.txt"]

    def write(self, result):
        atomic_write_text(self.inputs.check(self.files(result.item)[0]), format_detections(result.kept))


class JsonEntry(Sink):
    """The item's entry in the run's JSON file (lib.outputs.DetectionsJson, opened by the caller)."""
    needs_image = True  # its size

    def __init__(self, json):
        self.json = json

    def done(self, item):
        return self.json.has(item.path)

    def keep(self, item):
        self.json.keep(item.path)

    def write(self, result):
        self.json.add(str(result.item.path), result.image.shape[:2], result.kept, crops=result.crops)


class DetectionCache(Sink):
    """`<folder>/<rel without extension>.npy`: all detections, float32 (N, 5), read back with
    allow_pickle=False; eval.py's per-image cache (lib.evaluation.run.open_cache keys the folder)."""

    def __init__(self, folder):
        self.folder = Path(folder)

    def files(self, item):
        return [self.folder / Path(item.rel).with_suffix(".npy")]

    def recall(self, item):
        try:
            dets = np.load(self.files(item)[0], allow_pickle=False)
        except (OSError, ValueError, EOFError):
            return None
        return dets if dets.ndim == 2 and dets.shape[1] == 5 and dets.dtype == np.float32 else None

    def write(self, result):
        if result.recalled:
            return
        with atomic_path(self.files(result.item)[0]) as tmp, open(tmp, "wb") as f:
            np.save(f, result.dets, allow_pickle=False)


class Collect(Sink):
    """Keeps every item's detections in memory (`dets`, by item): for outputs written once the run is
    over, such as FDDB's one detection file."""

    def __init__(self):
        self.dets = {}

    def write(self, result):
        self.dets[result.item] = result.dets


class Sinks:
    """Several sinks as one, in order: an item is done when every sink says so."""

    def __init__(self, sinks):
        self.sinks = list(sinks)
        self.needs_image = any(s.needs_image for s in self.sinks)

    def __iter__(self):
        return iter(self.sinks)

    def done(self, item):
        return all(s.done(item) for s in self.sinks)

    def keep(self, item):
        for s in self.sinks:
            s.keep(item)

    def recall(self, item):
        return next((dets for dets in (s.recall(item) for s in self.sinks) if dets is not None), None)

    def write(self, result):
        for s in self.sinks:
            s.write(result)


def image_sinks(opts, inputs):
    """The sinks of OutputOptions `opts` for a run over the input files `inputs`: pictures, WIDER file,
    crops, then the text file (complete once it exists) and the JSON entry."""
    inputs = Inputs(inputs)
    sinks = [DrawnPicture(opts.out, opts.thresh, inputs)] if opts.draw else []
    if opts.anonymize:
        sinks.append(AnonymisedPicture(opts.out, opts.anonymize, opts.mask_scale, opts.mask_shape, inputs))
    if opts.wider is not None:
        sinks.append(WiderFile(opts.wider))
    if opts.crops:
        sinks.append(Crops(opts.out / "crops", opts.crop_margin))
    sinks.append(TextFile(opts.out, inputs))
    if opts.json is not None:
        sinks.append(JsonEntry(opts.json))
    return Sinks(sinks)
