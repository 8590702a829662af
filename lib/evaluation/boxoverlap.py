"""Overlap of predictions with int32 ground truth (wider_eval_tools/boxoverlap.m), vectorised.

MATLAB computes `boxoverlap(gt_bbx, pred)` with int32 `gt_bbx`, so it runs in int32 arithmetic:
the prediction's corners are rounded inside max/min, the intersection is int32 (+1 pixel rule),
the prediction's own area stays double, `area_gt + area_pred` is rounded to int32 and the ratio
is an integer division rounded to nearest. Overlaps are therefore integers (normally 0 or 1).
"""
import numpy as np

from . import matlab_int as mi


def _int32_max(a, b):
    """MATLAB max(int32 a, double b): NaN in b is ignored, otherwise max(a, int32(b))."""
    return np.maximum(a, mi.to_int32(np.where(np.isnan(b), -np.inf, b)))


def _int32_min(a, b):
    """MATLAB min(int32 a, double b): NaN in b is ignored, otherwise min(a, int32(b))."""
    return np.minimum(a, mi.to_int32(np.where(np.isnan(b), np.inf, b)))


def boxoverlap(gt, pred):
    """Integer overlaps, shape (N, M), of N predictions with M ground-truth boxes.

    gt: (M, 4) int32-valued x1, y1, x2, y2; pred: (N, 4) float64 x1, y1, x2, y2.
    Row n is MATLAB's `boxoverlap(gt_bbx, pred(n, :))`.
    """
    a = np.asarray(gt, dtype=np.int64)[None, :, :]
    b = np.asarray(pred, dtype=np.float64)[:, None, :]
    x1 = _int32_max(a[..., 0], b[..., 0])
    y1 = _int32_max(a[..., 1], b[..., 1])
    x2 = _int32_min(a[..., 2], b[..., 2])
    y2 = _int32_min(a[..., 3], b[..., 3])
    w = mi.add(mi.sub(x2, x1), 1)
    h = mi.add(mi.sub(y2, y1), 1)
    o = np.zeros(w.shape, dtype=np.int64)
    n, m = np.nonzero((w > 0) & (h > 0))  # elsewhere MATLAB sets the overlap to 0
    a, b = a[0, m], b[n, 0]
    inter = mi.mul(w[n, m], h[n, m])
    a_area = mi.mul(mi.add(mi.sub(a[:, 2], a[:, 0]), 1), mi.add(mi.sub(a[:, 3], a[:, 1]), 1))
    b_area = (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)
    union = mi.sub(mi.to_int32(a_area + b_area), inter)
    o[n, m] = mi.div(inter, union)
    return o
