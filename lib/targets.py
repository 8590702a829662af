"""Anchor labels, regression targets and loss weights of one SSH module (SSH/layers/anchor_target_layer.py).

Boxes are (x1, y1, x2, y2) with inclusive corners (+1 widths); anchors and all outputs are in the
(y, x, a) order of lib/anchors.py. Labels: 1 face, 0 background, -1 ignored (docs/training.md §3).
"""
from typing import NamedTuple

import torch

from lib.bbox import encode

# Anchors per tile of consecutive (y, x, a) indices: gt boxes are matched against tiles first, and
# IoUs are computed only for the anchors of tiles that a gt box touches.
TILE = 8
# At most this many (anchor, gt) IoUs are computed at once (peak about 150 MB on CPU).
MAX_PAIRS = 1 << 19


class AnchorTargets(NamedTuple):
    """Per-anchor training targets of one module, (K*A, ...) in (y, x, a) order."""

    labels: torch.Tensor  # (K*A,) int64 in {1, 0, -1}
    bbox_targets: torch.Tensor  # (K*A, 4) float32 deltas (dx, dy, dw, dh)
    inside_weights: torch.Tensor  # (K*A, 4) float32, 1 on final positives
    outside_weights: torch.Tensor  # (K*A, 4) float32, 1 / n_ex on labelled anchors


def _pair_iou(a, b):
    """(P,) IoU of row-aligned boxes a (P, 4) and b (P, 4) with +1 widths."""
    w = (torch.minimum(a[:, 2], b[:, 2]) - torch.maximum(a[:, 0], b[:, 0]) + 1).clamp(min=0)
    h = (torch.minimum(a[:, 3], b[:, 3]) - torch.maximum(a[:, 1], b[:, 1]) + 1).clamp(min=0)
    inter = w * h
    area_a = (a[:, 2] - a[:, 0] + 1) * (a[:, 3] - a[:, 1] + 1)
    area_b = (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)
    return inter / (area_a + area_b - inter)


def max_overlaps(anchors, gt_boxes, tile=TILE, max_pairs=MAX_PAIRS):
    """Max IoU (N,) float64 of each anchor over the gt boxes and its argmax gt (N,) int64.

    Equals box_iou(anchors, gt_boxes).max(dim=1) in float64 (the official bbox_overlaps dtype), argmax
    being the first gt among equal maxima and 0 for anchors that overlap no gt (numpy argmax), but
    only (tile, gt) pairs whose bounding boxes intersect are expanded, in slices of at most
    `max_pairs` IoUs, so memory stays bounded for crowds of 1000+ faces. Zero gt boxes: (0, 0).
    """
    n, g = anchors.shape[0], gt_boxes.shape[0]
    best = torch.zeros(n, dtype=torch.float64, device=anchors.device)
    arg = torch.zeros(n, dtype=torch.int64, device=anchors.device)
    if n == 0 or g == 0:
        return best, arg
    n_tiles = -(-n // tile)
    # Padding with copies of the last anchor leaves the tile boxes unchanged; the padded indices
    # are clamped back onto the last anchor, whose duplicated IoUs do not change max or argmax.
    padded = torch.cat([anchors, anchors[-1:].expand(n_tiles * tile - n, 4)]).view(n_tiles, tile, 4)
    lo, hi = padded[..., :2].amin(dim=1).float(), padded[..., 2:].amax(dim=1).float() + 1
    g_lo, g_hi = gt_boxes[:, :2].float(), gt_boxes[:, 2:].float() + 1
    # +1 rule: boxes intersect iff max(x1) < min(x2) + 1 (and the same in y). The float32 test
    # uses <= so that rounding can only add (tile, gt) pairs, whose IoU is then computed exactly.
    hit = ((lo[:, None, 0] <= g_hi[None, :, 0]) & (g_lo[None, :, 0] <= hi[:, None, 0])
           & (lo[:, None, 1] <= g_hi[None, :, 1]) & (g_lo[None, :, 1] <= hi[:, None, 1]))
    tile_idx, gt_idx = hit.nonzero(as_tuple=True)  # row-major: gt indices ascend within a tile
    offsets = torch.arange(tile, device=anchors.device)
    step = max(1, max_pairs // tile)
    for s in range(0, tile_idx.numel(), step):
        # Later slices only hold higher gt indices of a tile, so they win on strictly larger IoUs.
        ai = ((tile_idx[s:s + step, None] * tile + offsets).clamp(max=n - 1)).reshape(-1)
        gi = gt_idx[s:s + step, None].expand(-1, tile).reshape(-1)
        iou = _pair_iou(anchors[ai].to(torch.float64), gt_boxes[gi].to(torch.float64))
        new_best = best.scatter_reduce(0, ai, iou, "amax")
        first = torch.where(iou == new_best[ai], gi, g)
        new_arg = torch.full_like(arg, g).scatter_reduce(0, ai, first, "amin")
        arg = torch.where(new_best > best, new_arg, arg)
        best = new_best
    return best, arg


def _keep_top(mask, score, k_max, k):
    """Bool mask of the at most k entries of `mask` with the largest `score`; k_max >= k bounds topk.

    k may be a 0-d tensor (no host sync). topk breaks ties arbitrarily; the official layer uses an
    unstable numpy argsort, and equal float probabilities are rare enough not to matter (docs/decisions.md §8.2).
    """
    n = min(k_max, mask.numel())
    idx = torch.where(mask, score, float("-inf")).topk(n).indices
    keep = torch.zeros_like(mask)
    keep[idx] = mask[idx] & (torch.arange(n, device=mask.device) < k)
    return keep


def anchor_targets(anchors, gt_boxes, image_hw, allowed_border, face_prob=None, *, positive_overlap,
                   negative_overlap, batch_size, fg_fraction, hard_positive_mining=True, generator=None):
    """Labels, regression targets and weights of one module for one image (AnchorTargetLayer.forward).

    anchors (K*A, 4) and face_prob (K*A,) in (y, x, a) order; gt_boxes (G, 4) and image_hw = (H, W) in
    blob pixels. face_prob (detached face probabilities of the same forward pass) switches on OHEM:
    the int(fg_fraction * batch_size) positives of lowest probability (random ones without
    hard_positive_mining) and the batch_size - #positives negatives of highest probability are kept.
    Without face_prob both are uniform random subsets drawn with `generator` (on the anchors' device).
    Returns AnchorTargets; anchors outside the image (beyond allowed_border) get label -1 and zeros.
    """
    device = anchors.device
    n = anchors.shape[0]
    gt_boxes = gt_boxes.detach()
    im_h, im_w = image_hw
    b = allowed_border
    inside = ((anchors[:, 0] >= -b) & (anchors[:, 1] >= -b)
              & (anchors[:, 2] < im_w + b) & (anchors[:, 3] < im_h + b))
    # Official fallback: with no anchor inside the image, every anchor counts as inside.
    inside = inside | ~inside.any()

    best, arg = max_overlaps(anchors, gt_boxes)
    neg = inside & (best < negative_overlap)
    pos = inside & (best >= positive_overlap)
    neg &= ~pos

    num_fg = int(fg_fraction * batch_size)
    if face_prob is None:
        keys = torch.rand(n, generator=generator, device=device)
        pos = _keep_top(pos, keys, num_fg, num_fg)
        neg = _keep_top(neg, keys, batch_size, batch_size - pos.sum())
    else:
        prob = face_prob.detach().float()
        if hard_positive_mining:
            # The official layer ranks positives by float32 (1 - p), descending.
            pos = _keep_top(pos, 1 - prob, num_fg, num_fg)
        else:
            pos = _keep_top(pos, torch.rand(n, generator=generator, device=device), num_fg, num_fg)
        neg = _keep_top(neg, prob, batch_size, batch_size - pos.sum())

    labels = torch.where(pos, 1, torch.where(neg, 0, -1))

    if gt_boxes.shape[0] > 0:
        # float64 like the official bbox_transform, then float32 like its output blob.
        deltas = encode(anchors.to(torch.float64), gt_boxes.to(torch.float64)[arg]).float()
        bbox_targets = torch.where(inside[:, None], deltas, 0.0)
    else:
        bbox_targets = torch.zeros((n, 4), dtype=torch.float32, device=device)
    inside_weights = pos[:, None].float().expand(n, 4).contiguous()
    labelled = pos | neg
    n_ex = labelled.sum().clamp(min=1)
    outside_weights = (labelled[:, None].float() / n_ex).expand(n, 4).contiguous()
    return AnchorTargets(labels, bbox_targets, inside_weights, outside_weights)
