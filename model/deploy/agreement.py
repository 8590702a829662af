"""How far a reduced-precision detector is from the fp32 one on the same images (docs/inference.md §5.5).

Two measures: the relative error of each raw head, ||h - h_fp32|| / ||h_fp32|| over all check
blobs, and detection agreement at the official thresholds: detections with score >= 0.5 of both
detectors are matched one to one (each reduced-precision detection, best score first, takes the
unmatched fp32 detection of highest IoU >= 0.5), precision = matched / reduced-precision detections,
recall = matched / fp32 detections.
"""
from dataclasses import dataclass

import torch

from lib.anchors import MODULE_NAMES
from lib.bbox import box_iou

SCORE = 0.5
IOU = 0.5
HEAD_NAMES = tuple(f"{m} {head}" for m in MODULE_NAMES for head in ("cls", "bbox"))


def head_errors(reference, other, blobs):
    """{head name: relative L2 error of `other`'s heads against `reference`'s} over `blobs`
    (1 x 3 x H x W arrays); both are model.detector.Detector."""
    diff = dict.fromkeys(HEAD_NAMES, 0.0)
    norm = dict.fromkeys(HEAD_NAMES, 0.0)
    for blob in blobs:
        blob = torch.from_numpy(blob)
        ref, out = reference.forward(blob), other.forward(blob)
        for m in MODULE_NAMES:
            for name, a, b in zip((f"{m} cls", f"{m} bbox"), out[m], ref[m]):
                diff[name] += (a.cpu().double() - b.cpu().double()).square().sum().item()
                norm[name] += b.cpu().double().square().sum().item()
    return {name: (diff[name] / norm[name]) ** 0.5 if norm[name] else 0.0 for name in HEAD_NAMES}


def matched_count(reference, other, score=SCORE, iou=IOU):
    """Detections of `other` ((N, 5) rows x1, y1, x2, y2, score) matched one to one to those of
    `reference` at IoU >= `iou`, both taken at score >= `score`; returns (matched, n_other, n_reference)."""
    ref = torch.as_tensor(reference[reference[:, 4] >= score], dtype=torch.float64)
    out = torch.as_tensor(other[other[:, 4] >= score], dtype=torch.float64)
    out = out[out[:, 4].argsort(descending=True)]
    if len(ref) == 0 or len(out) == 0:
        return 0, len(out), len(ref)
    overlaps = box_iou(out[:, :4], ref[:, :4])
    taken = torch.zeros(len(ref), dtype=torch.bool)
    matched = 0
    for row in overlaps:
        row = row.masked_fill(taken, -1.0)
        best = int(row.argmax())
        if row[best] >= iou:
            taken[best] = True
            matched += 1
    return matched, len(out), len(ref)


@dataclass
class Agreement:
    """Detection agreement summed over images: matched, reduced-precision and fp32 detection counts."""

    matched: int = 0
    detections: int = 0
    reference: int = 0

    def add(self, counts):
        self.matched += counts[0]
        self.detections += counts[1]
        self.reference += counts[2]

    @property
    def precision(self):
        return self.matched / self.detections if self.detections else 1.0

    @property
    def recall(self):
        return self.matched / self.reference if self.reference else 1.0


def detection_agreement(reference, other, images, score=SCORE, iou=IOU):
    """`Agreement` of detector `other` with `reference` (model.detector.Detector) on `images`."""
    total = Agreement()
    for image in images:
        total.add(matched_count(reference.detect(image), other.detect(image), score, iou))
    return total
