"""Test-time post-processing: raw heads of one image's test levels -> (N, 5) detections.

Mirrors what follows the network in im_detect / test_net of SSH/test.py, with the TEST phase of
SSH/layers/proposal_layer.py for each module (docs/inference.md §5.1-5.4). The one implementation
behind `Detector` (model/detector.py) and the exported whole-detector ONNX graph
(model/deploy/onnx_detector.py): plain tensor code that torch.onnx's dynamo exporter traces, with the
anchors shifted over the runtime feature-map size and NMS by lib/nms (torchvision's operator, i.e.
ONNX NonMaxSuppression, while exporting).
"""
import torch
from torch import nn

from .anchors import MODULE_NAMES, MODULES, generate_anchors, module_anchors, shift_anchors
from .nms import nms
from .proposals import decode_proposals

# Detections are kept when their score is above this: the `thresh` default of the official test_net.
SCORE_THRESH = 0.05


class PostProcess(nn.Module):
    """Decoding, merge, score threshold and NMS of the official test, for one image.

    nms_thresh: IoU above which NMS suppresses (TEST.NMS_THRESH); top_n: boxes kept per module and
    level (TEST.N_DETS_PER_MODULE, <= 0 keeps all); min_size: minimum +1 box side in original-image
    pixels (TEST.ANCHOR_MIN_SIZE, 0 disables); score_thresh: detections kept when score > it;
    level_modules: for each test level, the names of the modules whose heads are used (one level
    with every module in the single-scale test). Parameter-free; its buffers, the cell-(0, 0)
    anchors of each module, are shifted over the runtime feature-map size while tracing (export);
    eager calls take the same anchors from lib.anchors.module_anchors' cache.
    """

    def __init__(self, nms_thresh, top_n, min_size=0, score_thresh=SCORE_THRESH,
                 level_modules=(MODULE_NAMES,)):
        super().__init__()
        for name, value in (("score_thresh", score_thresh), ("nms_thresh (TEST.NMS_THRESH)", nms_thresh)):
            if not 0 <= value <= 1:  # also False for NaN
                raise ValueError(f"{name} must be a number from 0 to 1, got {value}")
        self.nms_thresh = nms_thresh
        self.top_n = top_n
        self.min_size = min_size
        self.score_thresh = score_thresh
        self.level_modules = tuple(tuple(modules) for modules in level_modules)
        for m in MODULE_NAMES:
            self.register_buffer(f"{m}_base", generate_anchors(scales=MODULES[m].scales), persistent=False)

    def proposals(self, module, cls_score, bbox_pred, blob_hw, scale):
        """(boxes (M, 4) on the blob, scores (M,)) of one module: lib.proposals.decode_proposals with
        the module's anchors over the h x w grid of its 1 x 2A x h x w `cls_score`."""
        h, w = cls_score.shape[-2:]
        if torch.compiler.is_compiling():
            anchors = shift_anchors(getattr(self, f"{module}_base"), h, w, MODULES[module].stride)
        else:
            anchors = module_anchors(module, h, w, str(cls_score.device))
        min_size = self.min_size * scale if self.min_size > 0 else None
        return decode_proposals(anchors, cls_score, bbox_pred, blob_hw, min_size, self.top_n)

    def candidates(self, heads, scale, blob_hw, modules=MODULE_NAMES):
        """(boxes (M, 4) in original-image pixels, scores (M,)) of the given modules of one level.

        heads: {module: (cls_score, bbox_pred)} of one blob, as `SSH.forward` gives for a batch of 1;
        scale: blob size / original size (a number or 0-d tensor); blob_hw: (H, W) of the blob, to
        which boxes are clipped before the division by the scale.
        """
        boxes, scores = zip(*(self.proposals(m, *heads[m], blob_hw, scale) for m in modules))
        return torch.cat(boxes) / scale, torch.cat(scores)

    def select(self, boxes, scores):
        """(N, 5) float32 detections: score > score_thresh, then NMS (IoU > nms_thresh suppressed)."""
        keep = scores > self.score_thresh
        boxes, scores = boxes[keep], scores[keep]
        keep = nms(boxes, scores, self.nms_thresh)
        return torch.cat([boxes[keep], scores[keep, None]], dim=1)

    def forward(self, levels):
        """(N, 5) rows x1, y1, x2, y2, score in original-image pixels, score-descending.

        levels: one (heads, scale, blob_hw) per entry of level_modules (see `candidates`); the
        candidates of all levels are pooled before the threshold and one NMS.
        """
        if len(levels) != len(self.level_modules):
            raise ValueError(f"expected {len(self.level_modules)} test level(s), got {len(levels)}")
        boxes, scores = zip(*(self.candidates(heads, scale, blob_hw, modules)
                              for (heads, scale, blob_hw), modules in zip(levels, self.level_modules)))
        return self.select(torch.cat(boxes), torch.cat(scores))
