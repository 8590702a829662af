"""Reading and writing images with OpenCV, with errors that name the file.

Images are read as the official code reads them, `cv2.imread(path)` with its default flag: BGR
uint8 (H, W, 3) whatever is stored (grey is replicated, alpha dropped, 16 bits keep the high
byte) and the EXIF orientation applied, so a phone photo stored sideways comes out upright.
"""
import warnings
from pathlib import Path

import cv2
from PIL import Image

from .utils.atomic import atomic_write_bytes

# EXIF orientations 5-8 store the picture transposed: width and height swap when it is applied.
_TRANSPOSED = frozenset({5, 6, 7, 8})
_EXIF_ORIENTATION = 0x0112
# OpenCV refuses to decode images of more pixels than this (its CV_IO_MAX_IMAGE_PIXELS default).
_CV_MAX_PIXELS = 1 << 30


class ImageError(ValueError):
    """An image file is missing, unreadable or of an unsupported kind."""


class ImageWarning(UserWarning):
    """An image was decoded, but not all of it: a truncated JPEG (its missing part comes out grey)."""


def jpeg_truncated(data):
    """True when `data` is a JPEG whose compressed picture ends before its end-of-image marker.

    The marker segments before the first start-of-scan are skipped by their lengths (an EXIF
    thumbnail lives there, with an end marker of its own); after it, 0xFFD9 can only be the image's
    end marker, since the entropy-coded data stuffs every 0xFF byte. Bytes after the marker are
    allowed, as decoders ignore them. Not a JPEG: False.
    """
    if data[:2] != b"\xff\xd8":
        return False
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return False  # damaged header: the decoder reports it
        marker = data[pos + 1]
        if marker == 0xFF or marker == 0x01 or 0xD0 <= marker <= 0xD8:
            pos += 1 if marker == 0xFF else 2
            continue
        end = pos + 2 + int.from_bytes(data[pos + 2:pos + 4], "big")
        if marker == 0xDA:
            return data.find(b"\xff\xd9", end) < 0
        pos = end
    return True


def _header(path):
    """(width, height, EXIF orientation or None) from the header of `path`, read with PIL.

    PIL's decompression-bomb limit guards decoding, which PIL never does here (OpenCV decodes and
    has its own limit), so it is lifted while the header is read.
    """
    limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:
        with Image.open(path) as im:
            return (*im.size, im.getexif().get(_EXIF_ORIENTATION))
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def _oversized(path):
    """A sentence when the header of `path` names more pixels than OpenCV decodes, else None."""
    try:
        width, height, _ = _header(path)
    except (OSError, SyntaxError, ValueError):
        return None
    if width * height > _CV_MAX_PIXELS:
        return f"{path}: {width} x {height} pixels is more than OpenCV decodes ({_CV_MAX_PIXELS} pixels)"
    return None


def read_image(path):
    """BGR uint8 (H, W, 3) image of the file at `path`, as `cv2.imread(path)` returns it.

    Missing, unreadable or undecodable files raise ImageError naming the file; a truncated JPEG
    is decoded (as OpenCV does) with an ImageWarning naming it.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"image not found: {path}")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ImageError(f"{path}: cannot read the file ({e.strerror or e})") from None
    if not data:
        raise ImageError(f"{path}: empty file (0 bytes)")
    image = cv2.imread(str(path))  # not imdecode: it rejects truncated JPEGs that imread decodes
    if image is None:
        raise ImageError(_oversized(path) or f"{path}: not an image OpenCV can decode (damaged, or not an image)")
    if jpeg_truncated(data):
        warnings.warn(f"{path}: truncated JPEG (the file ends before the image does); "
                      "its missing part is decoded as grey", ImageWarning, stacklevel=2)
    return image


def image_size(path):
    """(width, height) of the image at `path` as `read_image` returns it, from the header only.

    The EXIF orientation counts: a picture stored transposed (orientations 5-8) swaps its sides.
    """
    try:
        width, height, orientation = _header(path)
    except FileNotFoundError:
        raise ImageError(f"image not found: {path}") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"{path}: cannot read the image header ({e})") from None
    return (height, width) if orientation in _TRANSPOSED else (width, height)


def write_image(path, image):
    """Encode `image` by the extension of `path` and write it atomically."""
    path = Path(path)
    ok, data = cv2.imencode(path.suffix or ".jpg", image)
    if not ok:
        raise ImageError(f"{path}: OpenCV cannot encode an image of this type")
    atomic_write_bytes(path, data.tobytes())
