"""Face regions as the FDDB tool rasterises them, and their overlap scores: EllipseR::display,
RectangleR::display, Region::setIntersect / setUnion and Matching::computeScore.

The tool draws every region filled (value 10, CV_FILLED) into a zeroed mask of the image's size
and scores a pair by |A and B| / |A or B|, pixels counted. The drawing calls, as the tool makes them:

- ellipse: `cvEllipse(mask, centre, axes, angle, 0, 360, ...)` with centre = the float32 value of
  (cx, cy) rounded half to even (cvPointFrom32f(cvPoint2D32f(cx, cy))), axes = (int) of the radii
  (truncation), angle = 180 - (pi - theta) * 180 / pi degrees (EllipsesSingleImage::read turns the
  file's radians into degrees, EllipseR::display subtracts them from 180), which OpenCV rounds to
  whole degrees. OpenCV fills the polygon of ellipse2Poly; the port calls the same cv2.ellipse.
- rectangle: `cvRectangle(mask, (x, y), (x + w, y + h), ...)` with both corners rounded like the
  centre; filled, it covers the pixels between the corners inclusive, whichever corner is smaller
  (a negative width still draws).

Both are clipped at the image border. Rectangles are not drawn here: their pixels are the clipped
integer box, and their overlap with a drawn ellipse is read from the ellipse's integral image.
"""
import cv2
import numpy as np


def ellipse_drawing(ellipses):
    """(centres (N, 2) int64, axes (N, 2) int64, angles (N,) float64) that cvEllipse receives for
    rows major radius, minor radius, theta (radians), centre x, centre y (further columns ignored)."""
    e = np.asarray(ellipses, dtype=np.float64)
    centres = np.rint(e[:, 3:5].astype(np.float32)).astype(np.int64)
    axes = np.trunc(e[:, 0:2]).astype(np.int64)
    degrees = (np.pi - e[:, 2]) * 180 / np.pi
    return centres, axes, 180 - degrees


def rect_pixels(rects, width, height):
    """(N, 4) int64 inclusive pixel box x0, y0, x1, y1 of rows left, top, width, height, clipped to a
    width x height image; an empty box (outside the image) has x0 > x1 or y0 > y1."""
    r = np.asarray(rects, dtype=np.float64)
    p1 = np.rint(r[:, 0:2].astype(np.float32)).astype(np.int64)
    p2 = np.rint((r[:, 0:2] + r[:, 2:4]).astype(np.float32)).astype(np.int64)
    lo = np.maximum(np.minimum(p1, p2), 0)
    hi = np.minimum(np.maximum(p1, p2), [width - 1, height - 1])
    return np.concatenate([lo, hi], axis=1)


class Raster:
    """The pixels of one drawn region: a bool mask over the window x0 .. x0 + w - 1, y0 .. y0 + h - 1
    of the image (empty for a region outside it)."""

    __slots__ = ("x0", "y0", "mask", "area", "_integral")

    def __init__(self, x0, y0, mask):
        self.x0, self.y0, self.mask = x0, y0, mask
        self.area = int(np.count_nonzero(mask))
        self._integral = None

    @property
    def integral(self):
        """(h + 1, w + 1) int64 summed-area table of the mask."""
        if self._integral is None:
            self._integral = cv2.integral(self.mask.view(np.uint8), sdepth=cv2.CV_32S).astype(np.int64)
        return self._integral

    def count_in(self, boxes):
        """(N,) pixels of this region inside each inclusive box x0, y0, x1, y1 of (N, 4) `boxes`."""
        h, w = self.mask.shape
        x0 = np.clip(boxes[:, 0] - self.x0, 0, w)
        y0 = np.clip(boxes[:, 1] - self.y0, 0, h)
        x1 = np.maximum(np.clip(boxes[:, 2] + 1 - self.x0, 0, w), x0)
        y1 = np.maximum(np.clip(boxes[:, 3] + 1 - self.y0, 0, h), y0)
        s = self.integral
        return s[y1, x1] - s[y0, x1] - s[y1, x0] + s[y0, x0]

    def overlap(self, other):
        """Pixels shared with another Raster."""
        x0, y0 = max(self.x0, other.x0), max(self.y0, other.y0)
        x1 = min(self.x0 + self.mask.shape[1], other.x0 + other.mask.shape[1])
        y1 = min(self.y0 + self.mask.shape[0], other.y0 + other.mask.shape[0])
        if x0 >= x1 or y0 >= y1:
            return 0
        a = self.mask[y0 - self.y0:y1 - self.y0, x0 - self.x0:x1 - self.x0]
        b = other.mask[y0 - other.y0:y1 - other.y0, x0 - other.x0:x1 - other.x0]
        return int(np.count_nonzero(a & b))


def draw_ellipses(ellipses, width, height):
    """[Raster] of each ellipse row drawn as the tool draws it into a width x height mask."""
    centres, axes, angles = ellipse_drawing(ellipses)
    canvas = np.zeros((height, width), dtype=np.uint8)
    out = []
    for (cx, cy), (ax, ay), angle in zip(centres.tolist(), axes.tolist(), angles.tolist()):
        cv2.ellipse(canvas, (cx, cy), (ax, ay), angle, 0, 360, 1, -1)
        r = max(ax, ay) + 1  # ellipse2Poly's vertices lie within the larger radius of the centre
        x0, y0 = min(max(cx - r, 0), width), min(max(cy - r, 0), height)
        x1, y1 = max(min(cx + r + 1, width), x0), max(min(cy + r + 1, height), y0)
        window = canvas[y0:y1, x0:x1]
        out.append(Raster(x0, y0, window.astype(bool)))
        window[:] = 0
    return out


def overlap_scores(annotations, detections, width, height, box="rect"):
    """(N, M) float64 overlap |A and D| / |A or D| of N annotation ellipses and M detections (rows
    of the detection file, `box` 'rect' or 'ellipse') in a width x height image, pixel for pixel
    as the tool computes it. A pair of which neither region has a pixel in the image raises
    ValueError (the tool's 0 / 0)."""
    rasters = draw_ellipses(annotations, width, height)
    n, m = len(rasters), len(detections)
    if n == 0 or m == 0:
        return np.zeros((n, m))
    if box == "rect":
        boxes = rect_pixels(detections, width, height)
        det_area = (np.maximum(boxes[:, 2] - boxes[:, 0] + 1, 0) * np.maximum(boxes[:, 3] - boxes[:, 1] + 1, 0))
        inter = np.stack([a.count_in(boxes) for a in rasters])
    else:
        dets = draw_ellipses(detections, width, height)
        det_area = np.array([d.area for d in dets])
        inter = np.array([[a.overlap(d) for d in dets] for a in rasters], dtype=np.int64).reshape(n, m)
    union = np.array([a.area for a in rasters])[:, None] + det_area[None, :] - inter
    if (union == 0).any():
        i, j = np.argwhere(union == 0)[0]
        raise ValueError(f"annotation {i + 1} and detection {j + 1} both lie outside the {width} x {height} "
                         "image: the official tool's overlap would be 0 / 0")
    return inter / union
