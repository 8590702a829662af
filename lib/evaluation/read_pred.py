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
"""
import re
import warnings
from pathlib import Path

import numpy as np

_NUM = r"[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eEdD][+-]?\d+)?|Inf|inf|NaN|nan)"
_FAST_NUM = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
_NUMBER_LINE = re.compile(rf"{_NUM}(?:(?:[ \t]*,[ \t]*|[ \t]+){_NUM})*[ \t]*,?[ \t]*")
_NUMBER = re.compile(_NUM)
_FIVE = rf"[ \t]*{_FAST_NUM}(?:[ \t]+{_FAST_NUM}){{4}}[ \t]*"
_FIVE_BLOCK = re.compile(rf"(?:{_FIVE}\n)*{_FIVE}")
_LINE_END = re.compile(r"\r\n|\r|\n")
_LEADING = " \b\t"
EMPTY = np.zeros((0, 5), dtype=np.float64)


class PredictionWarning(UserWarning):
    """A prediction file the official tool would not read; its image gets no boxes."""


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


def read_pred_file(path):
    """(sorted boxes, problem) of one prediction file; see `parse_pred`. A missing file is a
    problem of its own kind: FileNotFoundError is raised for the caller to count."""
    try:
        text = Path(path).read_bytes().decode("latin-1")
    except FileNotFoundError:
        raise
    except OSError as e:
        return EMPTY, f"{path}: cannot read the prediction file ({e.strerror or e})"
    boxes, problem = parse_pred(text, str(path))
    return sort_by_score(boxes), problem


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
    other unreadable file one warning each.
    """
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        archive = " (an archive: unpack it and give the folder)" if pred_dir.is_file() else ""
        raise FileNotFoundError(f"predictions folder not found: {pred_dir}{archive}")
    present = {e for e in set(gt.events) if (pred_dir / e).is_dir()}
    preds, missing = [], []
    for event, image in zip(gt.events, gt.images):
        path = pred_dir / event / f"{image}.txt"
        boxes = EMPTY
        if event not in present:
            missing.append(path)
        else:
            try:
                boxes, problem = read_pred_file(path)
            except FileNotFoundError:
                missing.append(path)
                problem = None
            if problem:
                warnings.warn(f"{problem}; the image has no predictions", PredictionWarning, stacklevel=2)
        preds.append(boxes)
    if len(missing) == len(preds):
        raise FileNotFoundError(f"no prediction file for any of the {len(preds)} images in {pred_dir}: expected "
                                f"<event>/<image>.txt files such as {missing[0]}{_layout_hint(pred_dir, gt)}")
    if missing:
        examples = ", ".join(str(p.relative_to(pred_dir)) for p in missing[:3])
        warnings.warn(f"{pred_dir}: no prediction file for {len(missing)} of {len(preds)} images "
                      f"(e.g. {examples}); they have no predictions", PredictionWarning, stacklevel=2)
    return preds
