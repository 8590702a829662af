"""The files of the FDDB evaluation tool: fold lists, ellipse annotations and detection files as
evaluate.cpp reads them (with EllipsesSingleImage::read, RectanglesSingleImage::read), the ROC files
of Results::saveROC, and the writer of a detection file from the detector's boxes.

An annotation or detection file holds one entry per image, in the order of the image list:

    2002/08/11/big/img_591          the image: its path under originalPics/ without ".jpg"
    2                               the number of regions, then one line per region

    annotation (FDDB-fold-NN-ellipseList.txt):  major_radius minor_radius angle centre_x centre_y 1
    rectangle detection (the tool's -f 0):      left top width height score
    ellipse detection (the tool's -f 1):        major_radius minor_radius angle centre_x centre_y score

Angles are in radians, everything else in pixels. A path may also name a folder holding the ten
fold files (FOLD_FILES), read in fold order. Anything the tool would misread raises ValueError
naming file, line and value: a count that is not a whole number >= 0, a region line without exactly
the expected numbers, a number that is not finite or lies beyond the int32 range OpenCV draws in, a
negative ellipse radius. Lines may end in \\r\\n; names lose surrounding whitespace.
"""
import re
from pathlib import Path
from typing import NamedTuple

import numpy as np

from lib.utils.atomic import atomic_write_text

FOLDS = 10
# Kind of file: its name in a folder of the ten folds (runEvaluate.pl's names for detections).
FOLD_FILES = {"list": "FDDB-fold-{:02d}.txt", "annotations": "FDDB-fold-{:02d}-ellipseList.txt",
              "detections": "fold-{:02d}-out.txt"}
# Numbers per region line: annotations may omit the trailing "1".
COLUMNS = {"annotations": (5, 6), "rect": (5,), "ellipse": (6,)}
BOXES = ("rect", "ellipse")
# OpenCV draws in int32 pixel coordinates; larger values are refused rather than wrapped.
COORD_LIMIT = 2.0 ** 30
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_COUNT = re.compile(r"[0-9]+")
# Region lines of exactly n numbers each, separated by spaces or tabs (the fast path of the reader).
_NUM = _NUMBER.pattern
_ROWS = {n: re.compile(rf"(?:[ \t]*{_NUM}(?:[ \t]+{_NUM}){{{n - 1}}}[ \t]*(?:\n|$))*") for n in (5, 6)}


class Entry(NamedTuple):
    """One image of an annotation or detection file: its name, (N, 5 or 6) float64 regions in the
    file's columns, and `where` ("file:line" of the name) for messages."""

    name: str
    regions: np.ndarray
    where: str


def fold_files(path, kind):
    """[path] for a file; for a folder, its ten fold files of `kind` (FOLD_FILES) in fold order."""
    path = Path(path)
    if not path.is_dir():
        if not path.is_file():
            raise FileNotFoundError(f"not found: {path}")
        return [path]
    files = [path / FOLD_FILES[kind].format(k) for k in range(1, FOLDS + 1)]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise ValueError(f"{path}: a folder of FDDB folds needs all ten {FOLD_FILES[kind].format(1)} .. "
                         f"{FOLD_FILES[kind].format(FOLDS)} files; missing: {', '.join(missing)}")
    return files


def _lines(path):
    try:
        return Path(path).read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not a text file (byte {e.start} is not UTF-8)") from None


def read_image_list(path):
    """Image names of a fold list (or a folder of the ten), whitespace-separated as the tool reads
    them (`fin >> s`); names may repeat."""
    return [name for _, name in image_list_entries(path)]


def image_list_entries(path):
    """[(where, name)]: read_image_list with the "file:line" of each name."""
    out = []
    for file in fold_files(path, "list"):
        for number, line in enumerate(_lines(file), 1):
            out += [(f"{file}:{number}", name) for name in line.split()]
    return out


def _bad_line(path, lines, numbers, columns):
    """ValueError naming the first of lines[numbers] that is not a region line of `columns` numbers."""
    expected = " or ".join(map(str, columns))
    for number in numbers:
        tokens = lines[number].split()
        bad = next((t for t in tokens if not _NUMBER.fullmatch(t)), None)
        if bad is not None or len(tokens) not in columns:
            what = f"{bad!r} is not a number" if bad is not None else f"{len(tokens)} numbers"
            return ValueError(f"{path}:{number + 1}: {what}; a region line holds {expected} numbers: "
                              f"{lines[number]!r}")
    return None


def _parse_regions(path, lines, numbers, columns):
    """(len(numbers), max(columns)) float64 array of the region lines lines[numbers]; a line of
    fewer numbers (an annotation without its trailing 1) gets 1 in the last column."""
    width = max(columns)
    block = "\n".join(lines[k] for k in numbers)
    if _ROWS[width].fullmatch(block):
        regions = np.array(block.split(), dtype=np.float64).reshape(len(numbers), width)
    else:
        error = _bad_line(path, lines, numbers, columns)
        if error is not None:
            raise error
        rows = [lines[k].split() for k in numbers]
        regions = np.array([row + ["1"] * (width - len(row)) for row in rows], dtype=np.float64).reshape(-1, width)
    bad_rows, bad_cols = np.nonzero(~(np.abs(regions) < COORD_LIMIT))
    if len(bad_rows):
        number = numbers[bad_rows[0]]
        token = lines[number].split()[bad_cols[0]]
        raise ValueError(f"{path}:{number + 1}: {token} is not a finite number below 2^30 in magnitude (OpenCV "
                         f"draws in int32 pixels): {lines[number]!r}")
    return regions


def _file_entries(file, kind):
    """[Entry] of one annotation or detection file."""
    lines = _lines(file)
    heads = []  # (name, count, line index of the name)
    k = 0
    while k < len(lines):
        name = lines[k].strip()
        if not name:
            if all(not line.strip() for line in lines[k:]):
                break  # blank lines at the end
            raise ValueError(f"{file}:{k + 1}: an empty line where an image name is expected")
        if k + 1 >= len(lines):
            raise ValueError(f"{file}:{k + 1}: the file ends after the image name {name!r}, before its count")
        count_text = lines[k + 1].strip()
        if not _COUNT.fullmatch(count_text):
            raise ValueError(f"{file}:{k + 2}: the number of regions of {name!r} must be a whole number "
                             f">= 0, not {count_text!r}")
        count = int(count_text)
        if k + 2 + count > len(lines):
            raise ValueError(f"{file}:{len(lines)}: the file ends before the {count} region lines of {name!r} "
                             f"(line {k + 1})")
        heads.append((name, count, k))
        k += 2 + count
    numbers = [n for _, count, k in heads for n in range(k + 2, k + 2 + count)]
    regions = _parse_regions(file, lines, numbers, COLUMNS[kind])
    if kind != "rect" and (regions[:, :2] < 0).any():
        row = int(np.flatnonzero((regions[:, :2] < 0).any(axis=1))[0])
        raise ValueError(f"{file}:{numbers[row] + 1}: an ellipse radius is negative: {lines[numbers[row]]!r}")
    if kind == "annotations":
        regions = regions[:, :5]
    ends = np.cumsum([count for _, count, _ in heads])
    return [Entry(name, part, f"{file}:{k + 1}")
            for (name, _, k), part in zip(heads, np.split(regions, ends[:-1]))]


def read_entries(path, kind):
    """[Entry] of an annotation file (`kind` 'annotations') or a detection file ('rect' or 'ellipse'),
    or of a folder of the ten fold files of that kind. Annotations keep 5 columns."""
    return [entry for file in fold_files(path, "annotations" if kind == "annotations" else "detections")
            for entry in _file_entries(file, kind)]


def read_annotations(path):
    """[Entry] of FDDB-fold-NN-ellipseList.txt (or a folder of the ten): (N, 5) float64 major radius,
    minor radius, angle (radians), centre x, centre y."""
    return read_entries(path, "annotations")


def read_detections(path, box="rect"):
    """[Entry] of a detection file (or a folder of the ten fold-NN-out.txt): (N, 5) left, top, width,
    height, score for box 'rect' (the tool's -f 0); (N, 6) major radius, minor radius, angle, centre
    x, centre y, score for 'ellipse' (-f 1)."""
    if box not in BOXES:
        raise ValueError(f"box must be one of {BOXES}, not {box!r}")
    return read_entries(path, box)


def align(names, annotations, detections, list_where=None):
    """(annotations, detections) of the images `names`, in order, after the tool's check that the
    files list the same images in the same order (entries beyond the list are ignored, as there).
    `list_where`: "file:line" per name, for messages."""
    for k, name in enumerate(names):
        where = f" ({list_where[k]})" if list_where else ""
        for what, entries in (("annotations", annotations), ("detections", detections)):
            if k >= len(entries):
                raise ValueError(f"the {what} end after {len(entries)} images; the image list has {len(names)}: "
                                 f"no entry for image {k + 1}, {name!r}{where}")
            if entries[k].name != name:
                raise ValueError(f"{entries[k].where}: the {what} give image {k + 1} as {entries[k].name!r}, the "
                                 f"image list as {name!r}{where}; the files must list the same images in the same order")
    return list(annotations[:len(names)]), list(detections[:len(names)])


# ------------------------------------------------------------------------------------ detection file


def to_rects(dets):
    """(N, 5) left, top, width, height, score of (N, 5) x1, y1, x2, y2, score boxes with inclusive
    corners. The tool fills the pixels from (left, top) to (left + width, top + height) inclusive,
    so width = x2 - x1 keeps exactly the detected pixels x1..x2 (a width of x2 - x1 + 1 would grow
    each box by a column and a row)."""
    d = np.asarray(dets, dtype=np.float64).reshape(-1, 5)
    return np.column_stack([d[:, 0], d[:, 1], d[:, 2] - d[:, 0], d[:, 3] - d[:, 1], d[:, 4]])


def to_ellipses(dets):
    """(N, 6) major radius, minor radius, angle, centre x, centre y, score of the ellipses inscribed
    in (N, 5) x1, y1, x2, y2, score boxes: the box covers x1 - 0.5 .. x2 + 0.5, so the radii are
    (x2 - x1 + 1) / 2 and (y2 - y1 + 1) / 2 and the centre is the box's; a box taller than wide gets
    its major axis vertical (angle pi / 2), otherwise horizontal (0)."""
    d = np.asarray(dets, dtype=np.float64).reshape(-1, 5)
    rx, ry = (d[:, 2] - d[:, 0] + 1) / 2, (d[:, 3] - d[:, 1] + 1) / 2
    tall = ry > rx
    return np.column_stack([np.where(tall, ry, rx), np.where(tall, rx, ry), np.where(tall, np.pi / 2, 0.0),
                            (d[:, 0] + d[:, 2]) / 2, (d[:, 1] + d[:, 3]) / 2, d[:, 4]])


def fddb_regions(dets, box="rect"):
    """The detection file's rows for (N, 5) x1, y1, x2, y2, score boxes: to_rects or to_ellipses."""
    if box not in BOXES:
        raise ValueError(f"box must be one of {BOXES}, not {box!r}")
    return to_rects(dets) if box == "rect" else to_ellipses(dets)


def format_detections(names, detections, box="rect"):
    """Text of the detection file for the images `names` in order; `detections` maps each name to its
    (N, 5) x1, y1, x2, y2, score boxes. Numbers are written with Python's repr of the float64 value,
    so the file reads back to exactly the values evaluated in memory."""
    parts = []
    for name in names:
        if name not in detections:
            raise ValueError(f"no detections given for image {name!r} (an empty (0, 5) array means none)")
        dets = np.asarray(detections[name], dtype=np.float64).reshape(-1, 5)
        if not np.isfinite(dets).all():
            raise ValueError(f"{name}: detections hold NaN or Inf")
        rows = fddb_regions(dets, box)
        parts += [name, str(len(rows))] + [" ".join(map(repr, map(float, row))) for row in rows]
    return "\n".join(parts) + "\n" if parts else ""


def write_detections(path, names, detections, box="rect"):
    """Write the detection file (format_detections) atomically; returns its path."""
    atomic_write_text(path, format_detections(names, detections, box))
    return Path(path)


# -------------------------------------------------------------------------------------------- ROC files


def _g(x):
    """A number as a C++ ostream prints a double by default (printf %g)."""
    return "%g" % x


def format_roc(result):
    """(DiscROC text, ContROC text) of `result` (fddb.evaluate_fddb) as Results::saveROC writes them:
    per threshold `TPR FP threshold` and `TPR FP`, or `0 0 threshold` and `0 0` without faces."""
    disc, cont = result["discrete"], result["continuous"]
    if result["faces"]:
        disc_lines = [f"{_g(tpr)} {_g(fp)} {_g(t)}" for tpr, fp, t in disc]
        cont_lines = [f"{_g(tpr)} {_g(fp)}" for tpr, fp in cont]
    else:
        disc_lines = [f"0 0 {_g(t)}" for t in disc[:, 2]]
        cont_lines = ["0 0"] * len(cont)
    return "".join(line + "\n" for line in disc_lines), "".join(line + "\n" for line in cont_lines)


def roc_paths(prefix):
    """(PREFIX + 'DiscROC.txt', PREFIX + 'ContROC.txt'): the tool appends to the prefix as text."""
    return Path(f"{prefix}DiscROC.txt"), Path(f"{prefix}ContROC.txt")


def write_roc(prefix, result):
    """Write PREFIX + 'DiscROC.txt' and PREFIX + 'ContROC.txt' atomically; returns the two paths."""
    paths = roc_paths(prefix)
    for path, text in zip(paths, format_roc(result)):
        atomic_write_text(path, text)
    return paths


def read_roc(path):
    """(K, 2) TPR, false positives of a ROC file: the tool's DiscROC.txt (TPR FP threshold) or
    ContROC.txt (TPR FP), as published for other methods; other columns are ignored."""
    rows = []
    for number, line in enumerate(_lines(path), 1):
        tokens = line.split()
        if not tokens:
            continue
        try:
            tpr, fp = float(tokens[0]), float(tokens[1])
        except (IndexError, ValueError):
            raise ValueError(f"{path}:{number}: a ROC line starts with two numbers, TPR and false positives: "
                             f"{line!r}") from None
        rows.append((tpr, fp))
    if not rows:
        raise ValueError(f"{path}: no ROC points")
    return np.array(rows, dtype=np.float64)
