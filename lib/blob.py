"""Image to network blob (lib/utils/blob.py, SSH/test.py _get_image_blob of the official code).

Pixels stay BGR on the 0..255 scale; the means are subtracted *before* resizing (official order).
"""
import cv2
import numpy as np
import torch


def compute_scale(height, width, target_size, max_size):
    """Scale that brings the shorter side to `target_size`, reduced so round(s * longer) <= max_size.

    `max_size` < 0 disables the bound (pyramid levels).
    """
    s = float(target_size) / min(height, width)
    if max_size >= 0 and np.round(s * max(height, width)) > max_size:
        s = float(max_size) / max(height, width)
    return s


def prep_image(image, pixel_means, scale):
    """float32 (h', w', 3) blob image: BGR uint8 `image` minus `pixel_means`, resized by `scale`.

    cv2.INTER_LINEAR with fx = fy = scale; the resize is skipped when scale == 1. A side that
    would round to 0 pixels (a 1 x 5000 image brought to 1600 wide) is given 1 pixel instead, the
    only case where the output size is passed to OpenCV rather than the scale.
    """
    im = image.astype(np.float32, copy=True)
    im -= np.asarray(pixel_means, dtype=np.float32).reshape(1, 1, 3)
    if scale != 1.0:
        height, width = im.shape[:2]
        size = (round(width * scale), round(height * scale))  # OpenCV's cvRound: half to even
        if min(size) > 0:
            im = cv2.resize(im, None, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
        else:
            im = cv2.resize(im, (max(size[0], 1), max(size[1], 1)), interpolation=cv2.INTER_LINEAR)
    return im


def to_tensor(blob_image):
    """(1, 3, H, W) float32 tensor from a (H, W, 3) blob image."""
    return torch.from_numpy(np.ascontiguousarray(blob_image.transpose(2, 0, 1)))[None]
