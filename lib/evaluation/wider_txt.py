"""Per-image WIDER prediction files as the official tester writes them (lib/datasets/wider.py).

`<out_dir>/<event>/<image>.txt`: line 1 the image path as listed in the split file, line 2 the
number of detections, then `int(x1) int(y1) int(x2)-int(x1) int(y2)-int(y1) %g(score) ` per
detection (truncation toward zero, six significant digits, one trailing space).
"""
from pathlib import Path

import numpy as np

from lib.utils.atomic import atomic_write_text

SCORE_THRESH = 0.05


def format_detections(image_name, dets):
    """Text of one prediction file; `dets` (N, 5) x1, y1, x2, y2, score, rows with score > 0.05 kept."""
    dets = np.asarray(dets, dtype=np.float32).reshape(-1, 5)
    if not np.isfinite(dets).all():
        raise ValueError(f"{image_name}: detections hold NaN or Inf")
    dets = dets[dets[:, 4] > SCORE_THRESH]
    lines = [image_name, str(len(dets))]
    for x1, y1, x2, y2, score in dets:
        lines.append("%d %d %d %d %g " % (int(x1), int(y1), int(x2) - int(x1), int(y2) - int(y1), score))
    return "\n".join(lines) + "\n"


def prediction_path(out_dir, image_name):
    """`<out_dir>/<event>/<image>.txt` for the split-file name `<event>/<image>.jpg`."""
    return Path(out_dir) / Path(image_name).with_suffix(".txt")


def write_image_detections(out_dir, image_name, dets):
    """Write the prediction file of `image_name` (e.g. '0--Parade/0_Parade_..._465.jpg'); returns its path."""
    path = prediction_path(out_dir, image_name)
    atomic_write_text(path, format_detections(image_name, dets))
    return path
