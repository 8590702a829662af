"""Machine-readable detection outputs: one JSON file per run, and face crops.

The JSON file (format "ssh-detections", version 1):

    {"format": "ssh-detections", "version": 1, "model": "SSH.caffemodel", "precision": "fp32",
     "score_thresh": 0.5,
     "images": [
      {"path": "photos/a.jpg", "width": 1024, "height": 768,
       "detections": [{"box": [12.3, 40.1, 80.5, 121.7], "score": 0.998712,
                       "crop": "crops/a_000_12_40_80_121.jpg"}, ...]},
      {"path": "clip.mp4", "width": 1920, "height": 1080, "frame": 25, "detections": []}
     ]}

Boxes are x1, y1, x2, y2 with inclusive corners in the image's pixels, rounded to 0.1 px; scores
are rounded to 6 significant digits; detections are score-descending. "frame" (0-based) is only on
frames of a video or stream, whose name is then "path". "crop" is only on detections whose crop was
saved, as a path relative to the JSON file's folder. Both roundings are stable: writing what was
read writes the same numbers. The file holds one image per line (easy to diff and grep).

A crop is named `<stem>_<index>_<x1>_<y1>_<x2>_<y2><ext>`: the image's name stem, the detection's
row in that image's detections (3 digits at least) and its integer inclusive box.
"""
import json
import math
import os
import time
from pathlib import Path

import numpy as np

from .anonymize import scaled_rects
from .image_io import write_image
from .utils.atomic import atomic_write_text

FORMAT = "ssh-detections"
VERSION = 1
BOX_DECIMALS = 1
SCORE_DIGITS = 6


def _as_dets(dets, name):
    """float64 (N, 5) `dets`; any empty input gives (0, 5)."""
    dets = np.asarray(dets, dtype=np.float64)
    if dets.size == 0:
        return np.zeros((0, 5))
    if dets.ndim != 2 or dets.shape[1] != 5 or not np.isfinite(dets).all():
        raise ValueError(f"{name}: detections must be a finite (N, 5) array, got shape {dets.shape}")
    return dets


def _score(value):
    """`value` rounded to SCORE_DIGITS significant digits, as a Python float."""
    return float(f"{value:.{SCORE_DIGITS}g}")


class DetectionsJson:
    """The JSON detections file of a run, written atomically when the `with` block ends.

    The file is written whatever ends the block (an error or Ctrl-C included), and also by `add`
    when `flush_every` seconds have passed since the last write (None: only at the end), so a
    killed run leaves a valid file with most of its entries. Entries are serialised once, on `add`.
    """

    def __init__(self, path, model, precision, score_thresh, flush_every=10.0, resume=False):
        self.path = Path(path)
        self._earlier = self._read_earlier() if resume else {}
        self._header = {"format": FORMAT, "version": VERSION, "model": str(model), "precision": str(precision),
                        "score_thresh": float(score_thresh)}
        self.flush_every = flush_every
        self._entries = []
        self._written = time.monotonic()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.write()
        return False

    def add(self, path, image_hw, dets, frame=None, crops=None):
        """Record the detections `dets` (N, 5) of an image of `image_hw` = (height, width).

        path: the image (or video / stream name for a frame); frame: the frame index of a video
        or stream; crops: N paths (or None for a detection whose crop was not saved) of saved
        crops, stored relative to the JSON file's folder.
        """
        dets = _as_dets(dets, path)
        if crops is not None and len(crops) != len(dets):
            raise ValueError(f"{path}: {len(crops)} crop paths for {len(dets)} detections")
        height, width = (int(v) for v in image_hw)
        entry = {"path": str(path), "width": width, "height": height}
        if frame is not None:
            entry["frame"] = int(frame)
        boxes = np.round(dets[:, :4], BOX_DECIMALS).tolist()
        entry["detections"] = [{"box": box, "score": _score(score)} for box, score in zip(boxes, dets[:, 4])]
        for det, crop in zip(entry["detections"], crops or ()):
            if crop is not None:
                det["crop"] = Path(os.path.relpath(crop, self.path.parent)).as_posix()
        self._entries.append(json.dumps(entry))
        if self.flush_every is not None and time.monotonic() - self._written >= self.flush_every:
            self.write()

    def part_path(self, rank):
        """Where rank `rank` of a multi-process run keeps its own entries (rank 0 merges them into `path`)."""
        return self.path.with_name(f"{self.path.name}.rank{rank}.part")

    def _read_earlier(self):
        """Serialised image entries (not frames) of the file already at `path` and of the part files of an
        interrupted multi-process run beside it, by image path."""
        earlier = {}
        for path in [self.path, *sorted(self.path.parent.glob(f"{self.path.name}.rank*.part"))]:
            if path.is_file():
                read_detections_json(path)  # a damaged file raises ValueError naming the entry and field
                earlier.update((e["path"], json.dumps(e)) for e in json.loads(path.read_text())["images"]
                               if "frame" not in e)
        return earlier

    @property
    def entries(self):
        """The serialised entries so far, in the order added."""
        return list(self._entries)

    def replace_entries(self, entries, order):
        """Make the file hold the serialised image `entries` (of several ranks) sorted by `order`, a
        dict image path -> position (the one-process order), and remove the ranks' part files."""
        self._entries = sorted(entries, key=lambda e: order[json.loads(e)["path"]])
        self.write()
        for part in self.path.parent.glob(f"{self.path.name}.rank*.part"):
            part.unlink()

    def has(self, path):
        """True when the file being resumed has an entry for image `path`."""
        return str(path) in self._earlier

    def keep(self, path):
        """Carry the resumed file's entry of image `path` over, in the place of an `add` (byte-identical)."""
        self._entries.append(self._earlier[str(path)])

    def write(self):
        """Write the file with every entry added so far (atomically: readers never see half of it)."""
        images = "[\n  " + ",\n  ".join(self._entries) + "\n ]" if self._entries else "[]"
        atomic_write_text(self.path, json.dumps(self._header)[:-1] + f',\n "images": {images}}}\n')
        self._written = time.monotonic()


def _fail(path, where, message):
    raise ValueError(f"{path}: {where}: {message}")


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _whole(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _read_entry(path, i, entry):
    """One checked entry of `images` as `read_detections_json` returns it."""
    where = f"images[{i}]"
    if not isinstance(entry, dict):
        _fail(path, where, f"expected an object, got {type(entry).__name__}")
    for key, check, what in (("path", lambda v: isinstance(v, str), "a string"),
                             ("width", lambda v: _whole(v) and v > 0, "a whole number > 0"),
                             ("height", lambda v: _whole(v) and v > 0, "a whole number > 0"),
                             ("detections", lambda v: isinstance(v, list), "a list")):
        if key not in entry:
            _fail(path, where, f'missing field "{key}"')
        if not check(entry[key]):
            _fail(path, f"{where}.{key}", f"expected {what}, got {entry[key]!r}")
    frame = entry.get("frame")
    if frame is not None and not (_whole(frame) and frame >= 0):
        _fail(path, f"{where}.frame", f"expected a whole number >= 0, got {frame!r}")
    dets = np.zeros((len(entry["detections"]), 5), np.float32)
    crops = []
    for j, det in enumerate(entry["detections"]):
        at = f"{where}.detections[{j}]"
        if not isinstance(det, dict):
            _fail(path, at, f"expected an object, got {type(det).__name__}")
        for key in ("box", "score"):
            if key not in det:
                _fail(path, at, f'missing field "{key}"')
        box, score, crop = det["box"], det["score"], det.get("crop")
        if not (isinstance(box, list) and len(box) == 4 and all(map(_number, box))):
            _fail(path, f"{at}.box", f"expected 4 numbers, got {box!r}")
        if not _number(score):
            _fail(path, f"{at}.score", f"expected a number, got {score!r}")
        if crop is not None and not isinstance(crop, str):
            _fail(path, f"{at}.crop", f"expected a string, got {crop!r}")
        dets[j] = (*box, score)
        crops.append(crop)
    return {"path": entry["path"], "width": entry["width"], "height": entry["height"], "frame": frame,
            "dets": dets, "crops": crops if any(c is not None for c in crops) else None}


def read_detections_json(path):
    """The images of a detections JSON file: a list of dicts with "path", "width", "height",
    "frame" (None for a still image), "dets" (N, 5) float32 and "crops" (N paths relative to the
    file's folder, None where not saved; None when no crop was saved).

    A file of another format or version, or a missing or mistyped field, raises ValueError naming
    the file, the entry and the field.
    """
    try:
        doc = json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError(f'{path}: not an SSH detections file (expected "format": "{FORMAT}")')
    if doc.get("version") != VERSION:
        raise ValueError(f"{path}: detections file version {doc.get('version')!r}, this code reads version {VERSION}")
    for key, check, what in (("model", lambda v: isinstance(v, str), "a string"),
                             ("precision", lambda v: isinstance(v, str), "a string"),
                             ("score_thresh", _number, "a number"),
                             ("images", lambda v: isinstance(v, list), "a list")):
        if key not in doc:
            _fail(path, "header", f'missing field "{key}"')
        if not check(doc[key]):
            _fail(path, key, f"expected {what}, got {doc[key]!r}")
    return [_read_entry(path, i, entry) for i, entry in enumerate(doc["images"])]


def crop_regions(dets, margin, image_hw):
    """int64 (N, 4) x1, y1, x2, y2 with exclusive ends: the boxes of `dets` (N, 4|5) grown by
    `margin` times their width / height on each side, clipped to an image of (height, width).
    Margin 0 gives exactly the pixels int(x1)..int(x2), int(y1)..int(y2)."""
    if not (_number(margin) and margin >= 0):
        raise ValueError(f"crop margin must be a number >= 0, got {margin!r}")
    height, width = image_hw
    return np.clip(scaled_rects(dets, 1 + 2 * margin), 0, [width, height, width, height])


def crop_region(box, margin, image_hw):
    """(x1, y1, x2, y2) ints with exclusive ends of one box (see `crop_regions`); a box that
    leaves no pixel of the image raises ValueError."""
    x1, y1, x2, y2 = crop_regions(np.asarray(box, dtype=np.float64)[None, :4], margin, image_hw)[0].tolist()
    if x2 <= x1 or y2 <= y1:
        raise ValueError(f"box {list(box)} lies outside the {image_hw[1]} x {image_hw[0]} image")
    return x1, y1, x2, y2


def crop_name(stem, index, box, ext=".jpg"):
    """File name of the crop of detection `index` (its row in the image's detections) with box
    (x1, y1, x2, y2[, score]): `<stem>_<index:03d>_<int x1>_<int y1>_<int x2>_<int y2><ext>`."""
    x1, y1, x2, y2 = (math.floor(v) for v in box[:4])
    return f"{stem}_{index:03d}_{x1}_{y1}_{x2}_{y2}{ext}"


def save_crops(folder, stem, image, dets, margin=0.0, ext=".jpg"):
    """Write the crop of every detection of `dets` (N, 5) in `image` into `folder` (atomically,
    encoded by `ext`), named by `crop_name`; returns their paths in detection order."""
    dets = _as_dets(dets, stem)
    regions = crop_regions(dets, margin, image.shape[:2])
    paths = []
    for index, (det, (x1, y1, x2, y2)) in enumerate(zip(dets, regions.tolist())):
        if x2 <= x1 or y2 <= y1:
            raise ValueError(f"{stem}: detection {index} {det[:4].tolist()} lies outside the image")
        path = Path(folder) / crop_name(stem, index, det, ext)
        write_image(path, image[y1:y2, x1:x2])
        paths.append(path)
    return paths
