"""Read a WIDER predictions folder exactly as wider_eval_tools/read_pred.m does.

Per image `<pred_dir>/<event>/<image>.txt`: line 1 (the image name) is ignored, line 2 is the
detection count, then one `x y w h score` line per detection. Rules of the official tool:

- lines are split at \\n, \\r\\n or \\r and lose their leading whitespace (`textscan`);
- numbers are read like MATLAB `str2num`: separated by spaces, tabs or commas, with signs,
  exponents (`e` or `d`), `Inf` and `NaN`; only the first five numbers of a box line are used;
- count 0 gives no boxes and the following lines are ignored; only the first `count` box lines
  are read, later lines are ignored;
- a missing file or folder (reported in one summary warning), a 0-byte file, a file with only the name line, a count that is not one
  non-negative integer, fewer box lines than the count, or a box line with fewer than five numbers
  (or anything `str2num` would reject) leaves the whole image without boxes. The official tool only
  prints a message; here a `PredictionWarning` names the file and line.
- boxes are sorted by score, descending and stable (MATLAB `sort`, NaN first).

MATLAB expressions (`1+2`, `;`, hexadecimal, complex) are not evaluated; such lines count as
unreadable.

One departure from the official tool (`drop_bad_rows`): a box row whose x, y, w, h or score is
not finite (Inf, -Inf, NaN; also a number too large for a double, such as 1e400, and a score too
large for the float32 normalisation, such as 1e39) or whose w or h is negative is left out alone,
with a warning naming the file and line; the image keeps its other boxes. The official tool would
score such a row: one Inf score makes every other normalised score 0 and the APs collapse; a NaN
score sorts first and is a false positive once any other box of its image passes a threshold.
w = 0 or h = 0 is kept: with the tool's inclusive corners (x2 = x + w) it is a box one pixel wide,
and real detectors write it (`int(x2) - int(x1)` of a box narrower than a pixel; one such row of
the yolov7-face files moves the APs by 1e-9).

The number patterns match each number in one way only (digits, then an optional fraction; not
`digits, optional dot, digits`, which splits `123` three ways): a line that fails the fast pattern
then costs linear time, not one try per split of every number of the file (a hang).
"""
import re
import warnings
from pathlib import Path

import numpy as np

_NUM = r"[+-]?(?:(?:\d+(?:\.\d*)?|\.\d+)(?:[eEdD][+-]?\d+)?|Inf|inf|NaN|nan)"
_FAST_NUM = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_NUMBER_LINE = re.compile(rf"{_NUM}(?:(?:[ \t]*,[ \t]*|[ \t]+){_NUM})*[ \t]*,?[ \t]*")
_NUMBER = re.compile(_NUM)
_FIVE = rf"[ \t]*{_FAST_NUM}(?:[ \t]+{_FAST_NUM}){{4}}[ \t]*"
_FIVE_BLOCK = re.compile(rf"(?:{_FIVE}\n)*{_FIVE}")
_LINE_END = re.compile(r"\r\n|\r|\n")
_LEADING = " \b\t"
EMPTY = np.zeros((0, 5), dtype=np.float64)
FIELDS = ("x", "y", "w", "h", "score")
FIRST_BOX_LINE = 3  # 1-based line of box row 0: line 1 is the name, line 2 the count
# The smallest double that float32 rounds to Inf (halfway between its max and 2^128, ties to even):
# norm_score.m's `single` turns a score this large into Inf.
SINGLE_INF = 2.0 ** 128 - 2.0 ** 103
_DOUBLE_MAX, _SINGLE_MAX = np.finfo(np.float64).max, np.nextafter(SINGLE_INF, 0)
# The range of each column in a row that is kept (`drop_bad_rows`); NaN fails both bounds.
_LOW = np.array([-_DOUBLE_MAX, -_DOUBLE_MAX, 0, 0, -_SINGLE_MAX])
_HIGH = np.array([_DOUBLE_MAX, _DOUBLE_MAX, _DOUBLE_MAX, _DOUBLE_MAX, _SINGLE_MAX])


class PredictionWarning(UserWarning):
    """A prediction file the official tool would not read (its image gets no boxes), or a box row
    left out of the evaluation (`drop_bad_rows`)."""


def str2num(text):
    """Numbers of one line as MATLAB `str2num` reads a plain list of numbers; None if unreadable."""
    text = text.lstrip(_LEADING)
    if not _NUMBER_LINE.fullmatch(text):
        return None
    return [float(t.replace("d", "e").replace("D", "e")) for t in _NUMBER.findall(text)]


def sort_by_score(boxes):
    """Rows sorted by column 4 descending, stable, NaN first (MATLAB `sort(..., 'descend')`)."""
    s = boxes[:, 4]
    nan = np.isnan(s)
    rest = np.flatnonzero(~nan)
    order = np.concatenate([np.flatnonzero(nan), rest[np.argsort(-s[rest], kind="stable")]])
    return boxes[order]


def parse_pred(text, name="<text>"):
    """(boxes, problem) of one prediction file's text.

    boxes: (N, 5) float64 x, y, w, h, score in file order; problem: None, or a message naming
    `name` and the 1-based line when the official tool would give the image no boxes.
    """
    lines = _LINE_END.split(text)
    if lines[-1] == "":
        lines.pop()
    if len(lines) < 2:
        return EMPTY, f"{name}: no count line (file has {len(lines)} line(s))"
    count = str2num(lines[1])
    if count is None or len(count) != 1:
        return EMPTY, f"{name}:2: expected one detection count, got {lines[1].strip()!r}"
    count = count[0]
    if count == 0:
        return EMPTY, None
    if not (count > 0 and np.isfinite(count) and count == int(count)):
        return EMPTY, f"{name}:2: detection count {lines[1].strip()!r} is not a non-negative integer"
    count = int(count)
    block = lines[2:2 + count]
    if len(block) < count:
        return EMPTY, f"{name}:{len(lines) + 1}: count says {count} detections, file has {len(block)}"
    joined = "\n".join(block)
    if _FIVE_BLOCK.fullmatch(joined):
        return np.array(joined.split(), dtype=np.float64).reshape(count, 5), None
    boxes = np.empty((count, 5), dtype=np.float64)
    for k, line in enumerate(block):
        values = str2num(line)
        if values is None or len(values) < 5:
            what = "unreadable numbers" if values is None else f"{len(values)} number(s), 5 needed"
            return EMPTY, f"{name}:{k + 3}: {what} in {line.strip()!r}"
        boxes[k] = values[:5]
    return boxes, None


def _row_problem(row):
    """What is wrong with one box row of `drop_bad_rows`, e.g. 'non-finite score inf'."""
    parts = []
    bad = [f"{f} {v:g}" for f, v in zip(FIELDS, row) if not np.isfinite(v)]
    if np.isfinite(row[4]) and abs(row[4]) > _SINGLE_MAX:
        bad.append(f"score {row[4]:g} (beyond float32)")
    if bad:
        parts.append("non-finite " + ", ".join(bad))
    bad = [f"{f} {v:g}" for f, v in zip(FIELDS[2:4], row[2:4]) if -np.inf < v < 0]
    if bad:
        parts.append("negative " + ", ".join(bad))
    return "; ".join(parts)


def drop_bad_rows(boxes, name="<text>"):
    """(kept rows, one message per row left out) of `parse_pred`'s boxes in file order.

    A row is left out when any of x, y, w, h, score is not finite (the score also in float32, as
    norm_score.m computes: 1e39 is Inf there) or w or h is negative; its message names `name`, the
    1-based line and the values. A file without such rows costs a column min and max (no per-row
    temporaries, which also slowed the evaluation after them by disturbing the allocator) and is
    returned as is.
    """
    if len(boxes) == 0 or ((boxes.min(axis=0) >= _LOW).all() and (boxes.max(axis=0) <= _HIGH).all()):
        return boxes, []
    good = ((boxes >= _LOW) & (boxes <= _HIGH)).all(axis=1)
    return boxes[good], [f"{name}:{k + FIRST_BOX_LINE}: {_row_problem(boxes[k])}" for k in np.flatnonzero(~good)]


def read_pred_file(path):
    """(sorted boxes, problem, dropped) of one prediction file: `parse_pred`, then `drop_bad_rows`
    (dropped: its messages). A missing file is a problem of its own kind: FileNotFoundError is
    raised for the caller to count."""
    try:
        text = Path(path).read_bytes().decode("latin-1")
    except FileNotFoundError:
        raise
    except OSError as e:
        return EMPTY, f"{path}: cannot read the prediction file ({e.strerror or e})", []
    boxes, problem = parse_pred(text, str(path))
    boxes, dropped = drop_bad_rows(boxes, str(path))
    return sort_by_score(boxes), problem, dropped


def _layout_hint(pred_dir, gt):
    """Where the prediction files probably are, when `pred_dir` is one level off."""
    if any(pred_dir.glob("*.txt")):
        return "; this folder holds .txt files itself, so it is probably one event folder: give its parent"
    events = set(gt.events)
    for sub in sorted(p for p in pred_dir.iterdir() if p.is_dir()):
        if any((sub / e).is_dir() for e in events):
            return f"; the event folders are one level down: give {sub}"
    if pred_dir.parent != pred_dir and any((pred_dir.parent / e).is_dir() for e in events):
        return f"; the event folders are beside it: give {pred_dir.parent}"
    return ""


def read_pred(pred_dir, gt):
    """Per image of `gt` (official order) its (N, 5) x, y, w, h, score predictions, sorted.

    A missing `pred_dir`, or one without the prediction file of any image (an empty folder, or one
    level too high or low: the message says where the files seem to be), raises FileNotFoundError.
    Images without a prediction file (or event folder) get no boxes and one summary warning; every
    other unreadable file one warning each; every box row left out by `drop_bad_rows` one warning
    each, and one summary warning counts them.
    """
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        archive = " (an archive: unpack it and give the folder)" if pred_dir.is_file() else ""
        raise FileNotFoundError(f"predictions folder not found: {pred_dir}{archive}")
    present = {e for e in set(gt.events) if (pred_dir / e).is_dir()}
    preds, missing, dropped_rows, dropped_files = [], [], 0, 0
    for event, image in zip(gt.events, gt.images):
        path = pred_dir / event / f"{image}.txt"
        boxes = EMPTY
        if event not in present:
            missing.append(path)
        else:
            try:
                boxes, problem, dropped = read_pred_file(path)
            except FileNotFoundError:
                missing.append(path)
                problem, dropped = None, []
            if problem:
                warnings.warn(f"{problem}; the image has no predictions", PredictionWarning, stacklevel=2)
            for message in dropped:
                warnings.warn(f"{message}; the row is left out", PredictionWarning, stacklevel=2)
            dropped_rows += len(dropped)
            dropped_files += bool(dropped)
        preds.append(boxes)
    if len(missing) == len(preds):
        raise FileNotFoundError(f"no prediction file for any of the {len(preds)} images in {pred_dir}: expected "
                                f"<event>/<image>.txt files such as {missing[0]}{_layout_hint(pred_dir, gt)}")
    if missing:
        examples = ", ".join(str(p.relative_to(pred_dir)) for p in missing[:3])
        warnings.warn(f"{pred_dir}: no prediction file for {len(missing)} of {len(preds)} images "
                      f"(e.g. {examples}); they have no predictions", PredictionWarning, stacklevel=2)
    if dropped_rows:
        warnings.warn(f"{pred_dir}: {dropped_rows} box row(s) in {dropped_files} file(s) left out of the evaluation "
                      "(a non-finite number or a negative width or height; each named above)",
                      PredictionWarning, stacklevel=2)
    return preds
