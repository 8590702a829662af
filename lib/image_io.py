"""Reading and writing images with OpenCV, with errors that name the file."""
from pathlib import Path

import cv2
import numpy as np

from .utils.atomic import atomic_write_bytes


class ImageError(ValueError):
    """An image file is missing, unreadable or of an unsupported kind."""


def read_image(path, color=False):
    """uint8 image as stored (grey, BGR or BGRA; 16-bit images scaled to 8 bits), or always
    BGR (H, W, 3) with color=True."""
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"image not found: {path}")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR if color else cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ImageError(f"{path}: not an image OpenCV can decode")
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ImageError(f"{path}: unsupported pixel type {image.dtype}")
    return image


def write_image(path, image):
    """Encode `image` by the extension of `path` and write it atomically."""
    path = Path(path)
    ok, data = cv2.imencode(path.suffix or ".jpg", image)
    if not ok:
        raise ImageError(f"{path}: OpenCV cannot encode an image of this type")
    atomic_write_bytes(path, data.tobytes())
