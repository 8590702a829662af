"""WIDER FACE annotations (official lib/datasets/wider.py and wider_eval_tools/wider_write_csv.m).

Text format of `wider_face_split/wider_face_{train,val}_bbx_gt.txt`: an image path line, a count
line, then `count` box lines `x y w h blur expression illumination invalid occlusion pose`. Only
x, y, w, h are used; the attributes (the `invalid` flag included) are ignored, as officially.
An image without faces is written with one all-zero dummy box line, its count being 0 in the train
file and 1 in the val file; both forms are accepted.
"""
from itertools import chain
from pathlib import Path
from typing import NamedTuple

import numpy as np


class WiderImage(NamedTuple):
    """One annotated image: `name` relative to WIDER_<split>/images, raw `boxes` (N, 4) float64 x, y, w, h."""
    name: str
    boxes: np.ndarray


def annotation_file(root, split):
    """Path of the official box list of `split` ('train' or 'val') under the WIDER root folder."""
    return Path(root) / "wider_face_split" / f"wider_face_{split}_bbx_gt.txt"


def image_dir(root, split):
    """Folder holding the `<event>/<name>.jpg` images of `split`."""
    return Path(root) / f"WIDER_{split}" / "images"


def _parse_count(path, lineno, text):
    try:
        count = int(text)
    except ValueError:
        raise ValueError(f"{path}:{lineno}: expected a face count, got {text.strip()!r}") from None
    if count < 0:
        raise ValueError(f"{path}:{lineno}: negative face count {count}")
    return count


def _is_dummy(line):
    """True for the all-zero box line that follows a count of 0."""
    tokens = line.split()
    try:
        return len(tokens) >= 4 and all(float(t) == 0 for t in tokens)
    except ValueError:
        return False


def _parse_ragged(path, lines, linenos):
    """Slow path of `_parse_numbers`: lines may differ in length; a short, then a non-numeric line raises."""
    tokens = [line.split() for line in lines]
    lengths = np.fromiter(map(len, tokens), dtype=np.int64, count=len(tokens))
    short = np.flatnonzero(lengths < 4)
    if short.size:
        k = short[0]
        raise ValueError(f"{path}:{linenos[k]}: a box line needs at least 4 numbers (x y w h), "
                         f"got {lines[k].strip()!r}")
    try:
        flat = np.array(list(chain.from_iterable(tokens)), dtype=np.float64)
    except ValueError:
        for k, line in enumerate(tokens):
            try:
                np.array(line, dtype=np.float64)
            except ValueError:
                raise ValueError(f"{path}:{linenos[k]}: non-numeric value in box line "
                                 f"{lines[k].strip()!r}") from None
        raise
    starts = np.cumsum(lengths) - lengths
    return flat[starts[:, None] + np.arange(4)]


def _parse_numbers(path, lines, linenos):
    """(N, 4) float64 x, y, w, h of box lines; a bad line raises with its file:line.

    Fast path: numpy's C reader when every line has the same number (>= 4) of numbers.
    """
    if not lines:
        return np.zeros((0, 4))
    try:
        table = np.loadtxt(lines, dtype=np.float64, comments=None, ndmin=2)
    except ValueError:
        table = None
    if table is None or table.shape != (len(lines), table.shape[1]) or table.shape[1] < 4:
        boxes = _parse_ragged(path, lines, linenos)
    else:
        boxes = table[:, :4]
    bad = np.flatnonzero(~np.isfinite(boxes).all(axis=1))
    if bad.size:
        k = bad[0]
        raise ValueError(f"{path}:{linenos[k]}: non-finite value in box line {lines[k].strip()!r}")
    return boxes


def read_annotations(path):
    """Images of a WIDER box list in file order, each with its raw x, y, w, h boxes.

    A count-0 image consumes its dummy line and gets a (0, 4) array (the official parser crashes
    on it, SSH issue #60); the val form (count 1, zero box) is returned as written, one zero row.
    Malformed input raises ValueError naming the file and 1-based line number.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not a UTF-8 text file ({e.reason} at byte {e.start})") from None
    while lines and not lines[-1].strip():
        lines.pop()
    names, counts, starts = [], [], []
    i = 0
    while i < len(lines):
        name = lines[i].strip()
        if not name:
            raise ValueError(f"{path}:{i + 1}: empty line where an image path was expected")
        if i + 1 >= len(lines):
            raise ValueError(f"{path}:{i + 2}: file ends before the face count of {name}")
        count = _parse_count(path, i + 2, lines[i + 1])
        n_lines = max(count, 1)
        if i + 2 + n_lines > len(lines):
            raise ValueError(f"{path}:{len(lines) + 1}: file ends inside the {n_lines} box line(s) of {name}")
        if count == 0 and not _is_dummy(lines[i + 2]):
            raise ValueError(f"{path}:{i + 3}: an image with count 0 must be followed by an all-zero "
                             f"dummy line, got {lines[i + 2].strip()!r}")
        names.append(name)
        counts.append(count)
        starts.append(i + 2)
        i += 2 + n_lines
    if not names:
        return []
    counts = np.asarray(counts, dtype=np.int64)
    ends = np.cumsum(counts)
    line_idx = np.repeat(np.asarray(starts) - ends + counts, counts) + np.arange(ends[-1])
    boxes = _parse_numbers(path, [lines[k] for k in line_idx], line_idx + 1)
    return [WiderImage(name, b) for name, b in zip(names, np.split(boxes, ends[:-1]))]


def matlab_round(a):
    """Round half away from zero (MATLAB `round`), elementwise."""
    return np.sign(a) * np.floor(np.abs(a) + 0.5)


def wider_boxes(xywh, width, height):
    """(M, 4) float32 x1, y1, x2, y2 boxes from raw (N, 4) x, y, w, h of a `width` x `height` image.

    Official rule: wider_write_csv.m rounds x, y, w, h with MATLAB `round` (half away from zero, not
    Python 3 / numpy half-to-even; the official text files hold integers, so this only matters for
    fractional input); then x1 = max(0, x), y1 = max(0, y), x2 = x1 + w, y2 = y1 + h (so a box with
    negative x is shifted, not clipped, and is 1 px larger than annotated under the +1 rule),
    x2 = min(width, x2), y2 = min(height, y2). Boxes with x2 - x1 < 1 or y2 - y1 < 1 are dropped;
    the official loader instead leaves them as [0, 0, 0, 0] rows, which can never be positives.
    """
    r = matlab_round(np.asarray(xywh, dtype=np.float64).reshape(-1, 4))
    x1 = np.maximum(r[:, 0], 0)
    y1 = np.maximum(r[:, 1], 0)
    x2 = np.minimum(x1 + r[:, 2], width)
    y2 = np.minimum(y1 + r[:, 3], height)
    keep = (x2 - x1 >= 1) & (y2 - y1 >= 1)
    return np.stack([x1, y1, x2, y2], axis=1)[keep].astype(np.float32)
