"""SSH training losses of one image: SoftmaxWithLoss and caffe-ssh SmoothL1Loss per module (train_ssh.prototxt).

Each module contributes mi@ssh_cls_loss (softmax cross-entropy over labelled anchors, VALID
normalisation) and mi@ssh_reg_loss (smooth L1, sigma 3, weighted by 1 / n_ex); all weights are 1.
"""
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from lib.anchors import MODULES, module_anchors
from lib.heads import face_probs, flat_deltas, pair_logits
from lib.targets import anchor_targets


@dataclass(frozen=True)
class LossSettings:
    """Anchor-target settings of ssh_losses (official anchor_target_layer.py, TRAIN.* of lib/config.py).

    positive_overlap / negative_overlap: IoU at or above which an anchor is a face, below which it is
    background; batch_size: labelled anchors per module and image; fg_fraction: their largest face
    share; hard_positive_mining: keep the faces of lowest probability (OHEM) instead of random ones.
    """

    positive_overlap: float
    negative_overlap: float
    batch_size: int
    fg_fraction: float
    hard_positive_mining: bool

    @classmethod
    def from_config(cls, cfg):
        """The settings of `cfg.TRAIN` (lib/config.py)."""
        train = cfg.TRAIN
        return cls(positive_overlap=train.ANCHOR_POSITIVE_OVERLAP, negative_overlap=train.ANCHOR_NEGATIVE_OVERLAP,
                   batch_size=train.ANCHORS_PER_BATCH, fg_fraction=train.ANCHOR_FG_FRACTION,
                   hard_positive_mining=train.HARD_POSITIVE_MINING)


def smooth_l1(pred, target, inside_w, outside_w, sigma=3.0):
    """caffe-ssh SmoothL1Loss with batch size 1: sum of w_out * f(w_in * (pred - target)).

    f(d) = 0.5 * sigma^2 * d^2 if |d| < 1 / sigma^2 else |d| - 0.5 / sigma^2. All inputs (..., 4).
    """
    s2 = sigma * sigma
    d = inside_w * (pred - target)
    ad = d.abs()
    f = torch.where(ad < 1.0 / s2, 0.5 * s2 * d * d, ad - 0.5 / s2)
    return (outside_w * f).sum()


def module_losses(cls_score, bbox_pred, labels, bbox_targets, inside_w, outside_w, sigma=3.0):
    """(cls_loss, reg_loss) float32 scalars of one module for one image.

    cls_score 1 x 2A x H x W and bbox_pred 1 x 4A x H x W are the raw heads; labels (H*W*A,) and
    targets / weights (H*W*A, 4) are in the (y, x, a) order of lib/targets.anchor_targets.
    The cross-entropy is summed over anchors with label >= 0 and divided by max(1, their number)
    (Caffe normalize: true); it is 0, not NaN, when nothing is labelled.
    """
    logits = pair_logits(cls_score)[0].float()
    ce = F.cross_entropy(logits, labels, ignore_index=-1, reduction="sum")
    cls_loss = ce / (labels >= 0).sum().clamp(min=1)
    deltas = flat_deltas(bbox_pred)[0].float()
    reg_loss = smooth_l1(deltas, bbox_targets, inside_w, outside_w, sigma)
    return cls_loss, reg_loss


def ssh_losses(heads, gt_boxes, image_hw, settings, generator=None):
    """The six named training losses of one image, e.g. {"m1@ssh_cls_loss": ..., "m3@ssh_reg_loss": ...}.

    heads: {"m1": (cls_score, bbox_pred), ...} of a batch of one image; gt_boxes (G, 4) blob
    coordinates on the heads' device; image_hw = (H, W) of the blob; settings: LossSettings.
    OHEM uses the detached face probabilities of the same forward pass, as the official _ohem copies.
    """
    losses = {}
    for name, (cls_score, bbox_pred) in heads.items():
        geo = MODULES[name]
        h, w = cls_score.shape[-2:]
        anchors = module_anchors(name, h, w, str(cls_score.device))
        targets = anchor_targets(
            anchors, gt_boxes, image_hw, geo.allowed_border, face_probs(cls_score.detach())[0],
            positive_overlap=settings.positive_overlap,
            negative_overlap=settings.negative_overlap,
            batch_size=settings.batch_size,
            fg_fraction=settings.fg_fraction,
            hard_positive_mining=settings.hard_positive_mining,
            generator=generator,
        )
        cls_loss, reg_loss = module_losses(cls_score, bbox_pred, *targets)
        losses[f"{name}@ssh_cls_loss"] = cls_loss
        losses[f"{name}@ssh_reg_loss"] = reg_loss
    return losses
