"""Layout of the raw SSH head outputs (Caffe's m?@ssh_cls_score / m?@ssh_bbox_pred).

cls_score is N x 2A x H x W: channel a = background logit of anchor a, channel A + a = face logit.
bbox_pred is N x 4A x H x W: channel 4a + j = delta j (dx, dy, dw, dh) of anchor a.
Flattened per-anchor tensors use the (y, x, a) order of lib/anchors.py.
"""
import torch

NUM_ANCHORS = 2


def pair_logits(cls_score):
    """(N, H*W*A, 2) [background, face] logits in (y, x, a) order."""
    n, c, h, w = cls_score.shape
    a = c // 2
    return cls_score.reshape(n, 2, a, h, w).permute(0, 3, 4, 2, 1).reshape(n, h * w * a, 2)


def face_probs(cls_score):
    """(N, H*W*A) face probabilities (softmax over each anchor's 2 logits) in (y, x, a) order."""
    return torch.softmax(pair_logits(cls_score).float(), dim=-1)[..., 1]


def flat_deltas(bbox_pred):
    """(N, H*W*A, 4) deltas in (y, x, a) order."""
    n, c, h, w = bbox_pred.shape
    return bbox_pred.permute(0, 2, 3, 1).reshape(n, h * w * (c // 4), 4)

