"""Training roidb (official lib/datasets/wider.py gt_roidb, imdb.append_flipped_images, SSH/train.py).

Entries keep the annotation file order (the official order is that of a Python 2 dict, i.e.
arbitrary); the sampler shuffles anyway. Boxes are (x1, y1, x2, y2) in original-image pixels.
"""
from dataclasses import dataclass, replace

import numpy as np

from lib.datasets.wider import annotation_file, image_dir, read_annotations, wider_boxes
from lib.image_io import image_size


@dataclass(frozen=True, eq=False)
class RoidbEntry:
    """One training image: `image` path, `width` x `height` of the file, `boxes` (M, 4) float32.

    Compared by identity (the boxes are an array).
    """
    image: str
    width: int
    height: int
    boxes: np.ndarray
    flipped: bool = False


def gt_roidb(root, split):
    """Unflipped entries of every image listed for `split` ('train' or 'val') under the WIDER root.

    Sizes come from the image headers; boxes follow `wider_boxes` (degenerate ones dropped).
    A missing or unreadable image (no permission, empty, not an image) raises ImageError naming it.
    """
    images = image_dir(root, split)
    roidb = []
    for item in read_annotations(annotation_file(root, split)):
        path = str(images / item.name)
        width, height = image_size(path)
        roidb.append(RoidbEntry(path, width, height, wider_boxes(item.boxes, width, height)))
    return roidb


def flip_boxes(boxes, width):
    """Boxes mirrored in an image of `width`: x1' = W - x2 - 1, x2' = W - x1 - 1 (+1 convention).

    A box clamped to x2 = W therefore gets x1' = -1, as officially.
    """
    flipped = boxes.copy()
    flipped[:, 0] = width - boxes[:, 2] - 1
    flipped[:, 2] = width - boxes[:, 0] - 1
    return flipped


def append_flipped(roidb):
    """`roidb` followed by a horizontally flipped copy of each entry (official order)."""
    return roidb + [replace(e, boxes=flip_boxes(e.boxes, e.width), flipped=not e.flipped) for e in roidb]


def filter_empty(roidb):
    """Entries with at least one gt box: face-less images are not used for training."""
    return [e for e in roidb if len(e.boxes)]


def training_roidb(root, split="train", use_flipped=True):
    """Face-bearing entries of `split`, doubled with flipped copies when `use_flipped`."""
    roidb = filter_empty(gt_roidb(root, split))
    return append_flipped(roidb) if use_flipped else roidb
