"""WIDER FACE training data: annotation parsing, roidb, training images, sampler and loader."""
from lib.datasets.loader import EpochSampler, TrainDataset, make_loader
from lib.datasets.roidb import RoidbEntry, append_flipped, filter_empty, flip_boxes, gt_roidb, training_roidb
from lib.datasets.wider import (WiderImage, annotation_file, image_dir, matlab_round,
                                read_annotations, wider_boxes)

__all__ = [
    "EpochSampler", "TrainDataset", "make_loader",
    "RoidbEntry", "append_flipped", "filter_empty", "flip_boxes", "gt_roidb", "training_roidb",
    "WiderImage", "annotation_file", "image_dir", "matlab_round", "read_annotations",
    "wider_boxes",
]
