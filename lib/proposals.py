"""Test-time per-module proposals (SSH/layers/proposal_layer.py, TEST phase; docs/inference.md §5.1).

Turns one image's raw head outputs of one module into at most `top_n` scored boxes on the blob:
decode every anchor with its deltas, clip to the blob, drop boxes under the minimum size, keep the
best `top_n` by face probability. No NMS here; it runs once over all modules (lib/postprocess.py).
"""
import torch

from .bbox import clip_boxes, decode, min_size_mask
from .heads import face_probs, flat_deltas


def decode_proposals(anchors, cls_score, bbox_pred, blob_hw, min_size, top_n):
    """(boxes (M, 4) on the blob, scores (M,)), score-descending, for one module's `anchors` (K*A, 4).

    cls_score: 1 x 2A x h x w logits, bbox_pred: 1 x 4A x h x w; blob_hw: (H, W) of the network input;
    min_size: minimum +1 box side on the blob (a number or 0-d tensor; None disables);
    top_n: boxes kept (<= 0 keeps all). Traceable, for the exported detector (lib/postprocess.py).
    """
    scores = face_probs(cls_score)[0]
    boxes = clip_boxes(decode(anchors, flat_deltas(bbox_pred)[0].float()), *blob_hw)
    if min_size is not None:
        keep = min_size_mask(boxes, min_size)
        boxes, scores = boxes[keep], scores[keep]
    k = scores.shape[0] if top_n <= 0 else min(top_n, scores.shape[0])
    scores, order = torch.topk(scores, k, sorted=True)
    return boxes[order], scores

