"""Reading and writing images with OpenCV, with errors that name the file.

Images are read as the official code reads them, `cv2.imread(path)` with its default flag: BGR
uint8 (H, W, 3) whatever is stored (grey is replicated, alpha dropped, 16 bits keep the high
byte) and the EXIF orientation applied, so a phone photo stored sideways comes out upright.
Images of more than `max_pixels` pixels (default DEFAULT_MAX_PIXELS) are refused from their header,
before anything is decoded: a small file can hold a picture too large for memory (a decompression
bomb: a 1.2 MB PNG of 20000 x 20000 pixels decodes to 1.2 GB, 6.9 GB by the time it is a float blob).
"""
import operator
import struct
import threading
import warnings
from contextlib import nullcontext
from pathlib import Path

import cv2
from PIL import Image

from .utils.atomic import atomic_write_bytes
from .utils.native_stderr import captured_stderr

# EXIF orientations 5-8 store the picture transposed: width and height swap when it is applied.
_TRANSPOSED = frozenset({5, 6, 7, 8})
_EXIF_ORIENTATION = 0x0112
# Held while Pillow's global bomb limit is lifted to read a header.
_PIL_LIMIT_LOCK = threading.Lock()
# OpenCV refuses to decode images of more pixels than this (its CV_IO_MAX_IMAGE_PIXELS default).
_CV_MAX_PIXELS = 1 << 30
# read_image refuses images of more pixels than this unless told otherwise: Pillow's decompression
# bomb error threshold (2 x Image.MAX_IMAGE_PIXELS), 179 MP, beyond any camera's photos. A 3-channel
# image this size is 0.5 GB decoded.
DEFAULT_MAX_PIXELS = 178_956_970


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

    PIL's decompression-bomb limit guards decoding, which PIL never does here (OpenCV decodes;
    read_image applies its own limit, from this header), so it is lifted while the header is read.
    """
    with _PIL_LIMIT_LOCK:
        limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            with Image.open(path) as im:
                if im.format == "PNG" and "exif" not in im.info:
                    # Pillow would decode the whole picture to look for an eXIf chunk after it
                    exif = Image.Exif()
                    exif.load(_png_chunk(path, b"eXIf") or b"")
                else:
                    exif = im.getexif()
                return (*im.size, exif.get(_EXIF_ORIENTATION))
        finally:
            Image.MAX_IMAGE_PIXELS = limit


def _png_chunk(path, kind):
    """The data of the first `kind` chunk of the PNG file at `path`, or None: the chunks are walked
    by their lengths, so the pixel data is skipped, not read."""
    with open(path, "rb") as f:
        f.seek(8)  # the PNG signature
        while len(head := f.read(8)) == 8:
            length, name = struct.unpack(">I4s", head)
            if name == kind:
                return f.read(length)
            if name == b"IEND":
                return None
            f.seek(length + 4, 1)  # data and CRC
    return None


def _oversized(path, header):
    """A sentence when `header` (width, height, ...) names more pixels than OpenCV decodes, else None."""
    if header is not None and header[0] * header[1] > _CV_MAX_PIXELS:
        return f"{path}: {header[0]} x {header[1]} pixels is more than OpenCV decodes ({_CV_MAX_PIXELS} pixels)"
    return None


def check_max_pixels(max_pixels):
    """`max_pixels` as read_image takes it: a positive whole number, or None for no limit (0 too);
    anything else raises ValueError."""
    if max_pixels is None:
        return None
    try:
        limit = None if isinstance(max_pixels, bool) else operator.index(max_pixels)
    except TypeError:
        limit = None
    if limit is None or limit < 0:
        raise ValueError(f"max_pixels must be a whole number of pixels, or 0 or None for no limit, got {max_pixels!r}")
    return limit or None


def _check_pixels(path, width, height, max_pixels):
    """ImageError when a width x height image is over `max_pixels` (None: no limit)."""
    if max_pixels is not None and width * height > max_pixels:
        raise ImageError(f"{path}: {width} x {height} pixels ({width * height:,}) is more than the limit of "
                         f"{max_pixels:,} pixels, a guard against decompression bombs; raise it with "
                         f"--max-pixels N on the command line or read_image(path, max_pixels=N) in Python "
                         f"(0 or None: no limit)")


def read_image(path, max_pixels=DEFAULT_MAX_PIXELS):
    """BGR uint8 (H, W, 3) image of the file at `path`, as `cv2.imread(path)` returns it.

    Missing, unreadable or undecodable files raise ImageError naming the file; a truncated JPEG
    is decoded (as OpenCV does) with an ImageWarning naming it. An image of more than `max_pixels`
    pixels (default DEFAULT_MAX_PIXELS, about 179 MP; 0 or None: no limit, up to OpenCV's own 2^30)
    raises ImageError, from its header before decoding; for the few formats whose header Pillow
    cannot read (OpenEXR, Radiance HDR) the check comes after decoding.
    """
    max_pixels = check_max_pixels(max_pixels)
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"image not found: {path}")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ImageError(f"{path}: cannot read the file ({e.strerror or e})") from None
    if not data:
        raise ImageError(f"{path}: empty file (0 bytes)")
    try:
        header = _header(path)
    except Exception:  # not a format Pillow reads, or a header it chokes on: OpenCV decides
        header = None
    if header is not None:
        _check_pixels(path, *_oriented(*header), max_pixels)
    truncated = jpeg_truncated(data)
    del data  # not held while the image is decoded
    # not imdecode: it rejects truncated JPEGs that imread decodes; libjpeg's own "Premature end of JPEG
    # file" line is kept off the terminal (our warning names the file)
    with captured_stderr() if truncated else nullcontext():
        image = cv2.imread(str(path))
    if image is None:
        raise ImageError(_oversized(path, header) or f"{path}: not an image OpenCV can decode (damaged, or not an image)")
    if header is None:
        _check_pixels(path, image.shape[1], image.shape[0], max_pixels)
    if truncated:
        warnings.warn(f"{path}: truncated JPEG (the file ends before the image does); "
                      "its missing part is decoded as grey", ImageWarning, stacklevel=2)
    return image


def _oriented(width, height, orientation):
    """(width, height) of a stored width x height picture once its EXIF `orientation` is applied."""
    return (height, width) if orientation in _TRANSPOSED else (width, height)


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
    return _oriented(width, height, orientation)


def write_image(path, image):
    """Encode `image` by the extension of `path` and write it atomically."""
    path = Path(path)
    ok, data = cv2.imencode(path.suffix or ".jpg", image)
    if not ok:
        raise ImageError(f"{path}: OpenCV cannot encode an image of this type")
    atomic_write_bytes(path, data.tobytes())
