"""Box arithmetic in the py-faster-rcnn "+1" convention (bbox_transform.py, cython_bbox.pyx).

Boxes are float tensors (..., 4) of (x1, y1, x2, y2) with inclusive corners: width = x2 - x1 + 1.
Deltas are (dx, dy, dw, dh) without mean/std normalisation (docs/training.md §3.5, docs/inference.md §5.1).
"""
import math

import torch

# dw, dh are clamped to this before exp() so that decoding never overflows float32.
MAX_LOG_SIZE = math.log(1e8)


def box_area(boxes):
    """(N,) areas with +1 widths."""
    return (boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1)


def box_iou(a, b):
    """(N, M) IoU of boxes a (N, 4) and b (M, 4) with +1 widths; 0 where boxes do not overlap."""
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt + 1).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return inter / union


def encode(anchors, gt):
    """Regression targets (N, 4) that move `anchors` (N, 4) onto `gt` (N, 4)."""
    ew = anchors[:, 2] - anchors[:, 0] + 1
    eh = anchors[:, 3] - anchors[:, 1] + 1
    ecx = anchors[:, 0] + 0.5 * ew
    ecy = anchors[:, 1] + 0.5 * eh
    gw = gt[:, 2] - gt[:, 0] + 1
    gh = gt[:, 3] - gt[:, 1] + 1
    gcx = gt[:, 0] + 0.5 * gw
    gcy = gt[:, 1] + 0.5 * gh
    return torch.stack([(gcx - ecx) / ew, (gcy - ecy) / eh, torch.log(gw / ew), torch.log(gh / eh)], dim=1)


def decode(anchors, deltas):
    """Boxes (N, 4) from `anchors` (N, 4) and `deltas` (N, 4); x2 = cx + 0.5 w (no -1), as officially."""
    w = anchors[:, 2] - anchors[:, 0] + 1
    h = anchors[:, 3] - anchors[:, 1] + 1
    cx = anchors[:, 0] + 0.5 * w
    cy = anchors[:, 1] + 0.5 * h
    pcx = deltas[:, 0] * w + cx
    pcy = deltas[:, 1] * h + cy
    pw = torch.exp(deltas[:, 2].clamp(max=MAX_LOG_SIZE)) * w
    ph = torch.exp(deltas[:, 3].clamp(max=MAX_LOG_SIZE)) * h
    return torch.stack([pcx - 0.5 * pw, pcy - 0.5 * ph, pcx + 0.5 * pw, pcy + 0.5 * ph], dim=1)


def clip_boxes(boxes, height, width):
    """Clip x to [0, width - 1] and y to [0, height - 1]."""
    x = boxes[:, 0::2].clamp(0, width - 1)
    y = boxes[:, 1::2].clamp(0, height - 1)
    return torch.stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1]], dim=1)


def min_size_mask(boxes, min_size):
    """(N,) bool: boxes whose +1 width and height are both >= min_size."""
    return (boxes[:, 2] - boxes[:, 0] + 1 >= min_size) & (boxes[:, 3] - boxes[:, 1] + 1 >= min_size)
