"""Image to network blob (lib/utils/blob.py, SSH/test.py _get_image_blob of the official code).

Pixels stay BGR on the 0..255 scale; the means are subtracted *before* resizing (official order).
A large image that is shrunk is converted to float32 only in the rows that the resize reads
(`rows_read`): the rest of its float copy stays unwritten, so it takes no memory, and the resize
call and every value it reads are those of the official order, so the blob is bit-identical.
Resizing bands of rows with a cv2.resize call each would not be: OpenCV's float resize rounds the
last bit of some values differently with the number of rows one call processes (2-row bands and
the whole image differ), so there is one call on the whole, partly written, image.
"""
import mmap

import cv2
import numpy as np
import torch

# Shrinking an image of at least this many pixels converts only the rows the resize reads (about
# 2 x the blob's height); smaller images are converted whole. Below about 30 MP the saving is small
# (the resize reads most rows) and the 4 KB pages of the partial copy cost more time than the whole
# copy's huge pages: rows read / whole time 1.8 at 12 MP, 1.2 at 30 MP, 0.87 at 50 MP, 0.46 at
# 179 MP (`python3 -m benchmarks memory`, 2-core AMD EPYC).
ROWS_READ_MIN_PIXELS = 30_000_000
# Margin around an integer source row coordinate within which both neighbours count as read: covers
# the float rounding of OpenCV's coordinate (double, 1e-16) with room to spare.
_ROW_MARGIN = 1e-3


def compute_scale(height, width, target_size, max_size):
    """Scale that brings the shorter side to `target_size`, reduced so round(s * longer) <= max_size.

    `max_size` < 0 disables the bound (pyramid levels). An image without pixels raises ValueError.
    """
    if min(height, width) <= 0:
        raise ValueError(f"cannot scale an image of {height} x {width} pixels (height x width): it is empty")
    s = float(target_size) / min(height, width)
    if max_size >= 0 and np.round(s * max(height, width)) > max_size:
        s = float(max_size) / max(height, width)
    return s


def resize_size(height, width, scale):
    """(width, height) that cv2.resize gives for fx = fy = scale (OpenCV's cvRound: half to even)."""
    return round(width * scale), round(height * scale)


def rows_read(in_rows, out_rows, inv_scale):
    """Boolean mask of the `in_rows` source rows that cv2.resize INTER_LINEAR reads to make `out_rows`
    rows at scale `inv_scale` (out / in, OpenCV's inv_scale_y).

    Output row y samples source coordinate f = (y + 0.5) / inv_scale - 0.5, clamped to the image:
    rows floor(f) and floor(f) + 1 with weights 1 - frac(f) and frac(f) (also at exactly 1/2, where
    OpenCV takes its 2 x 2 area path, which reads the same two rows). A coordinate within 1e-3 of an
    integer counts both of its neighbouring rows, and a clamped coordinate the two rows at that edge
    (OpenCV 4.14 reads row H - 2 with a weight of 1e-8 for a last output row clamped to H - 1).
    tests/lib/test_blob.py checks on many sizes and scales that no other row is read.
    """
    f = (np.arange(out_rows) + 0.5) * (1.0 / inv_scale) - 0.5
    lo = np.floor(f - _ROW_MARGIN).astype(np.int64)
    hi = np.floor(f + _ROW_MARGIN).astype(np.int64) + 1
    read = np.zeros(in_rows, bool)
    for k in range(3):
        rows = lo + k
        read[np.clip(rows[rows <= hi], 0, in_rows - 1)] = True
    if lo.min() <= 0:
        read[:2] = True
    if hi.max() >= in_rows - 1:
        read[-2:] = True
    return read


def _unwritten_float32(shape):
    """Zero float32 array of `shape` whose pages take memory only once written: an anonymous map,
    without the transparent huge pages numpy asks for (they would fault in 2 MB around every row)."""
    buffer = mmap.mmap(-1, max(1, int(np.prod(shape))) * 4)
    if hasattr(buffer, "madvise") and hasattr(mmap, "MADV_NOHUGEPAGE"):
        buffer.madvise(mmap.MADV_NOHUGEPAGE)
    return np.frombuffer(buffer, np.float32, count=int(np.prod(shape))).reshape(shape)


def minus_means_where_read(image, pixel_means, scale):
    """float32 (H, W, 3) `image` minus `pixel_means` in the rows that resizing it by `scale` reads
    (`rows_read`), zero and unwritten elsewhere: the input of the official resize at a fraction of
    the memory of a whole float32 copy (about 2 x blob height / H of it).

    The conversion is elementwise, float32(pixel) - float32(mean) as in the whole-image order, done
    one run of consecutive read rows at a time with no temporary.
    """
    height, width = image.shape[:2]
    out_w, out_h = resize_size(height, width, scale)
    inv_scale = scale if min(out_w, out_h) > 0 else max(out_h, 1) / height
    out = _unwritten_float32(image.shape)
    # One mean per float of a row (B, G, R repeated): numpy subtracts it far faster than a (3,) array.
    means = np.tile(np.asarray(pixel_means, dtype=np.float32).reshape(3), width)
    rows_out = out.reshape(height, width * 3)
    read = rows_read(height, max(out_h, 1), inv_scale).astype(np.int8)
    edges = np.flatnonzero(np.diff(read, prepend=0, append=0))  # starts and ends of runs of read rows
    for r0, r1 in edges.reshape(-1, 2):
        block = rows_out[r0:r1]
        block[...] = image[r0:r1].reshape(r1 - r0, width * 3)  # a copy only for a strided run
        block -= means
    return out


def _resize(blob, scale):
    """cv2.INTER_LINEAR with fx = fy = scale, skipped when scale == 1; a side that would round to 0
    pixels (a 1 x 5000 image brought to 1600 wide) is given 1 pixel instead, the only case where the
    output size is passed to OpenCV rather than the scale."""
    if scale == 1.0:
        return blob
    height, width = blob.shape[:2]
    size = resize_size(height, width, scale)
    if min(size) > 0:
        return cv2.resize(blob, None, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    return cv2.resize(blob, (max(size[0], 1), max(size[1], 1)), interpolation=cv2.INTER_LINEAR)


def prep_image(image, pixel_means, scale):
    """float32 (h', w', 3) blob image: BGR uint8 `image` minus `pixel_means`, resized by `scale`.

    cv2.INTER_LINEAR with fx = fy = scale (see `_resize`). Shrinking an image of ROWS_READ_MIN_PIXELS
    or more converts only the rows the resize reads (`minus_means_where_read`), bit-identical to the
    whole conversion: peak memory about image + 2 x blob height x W x 12 bytes instead of image +
    H x W x 12 bytes (50 MP: 0.2 GB instead of 0.6 GB for the float copy).
    """
    if scale < 1.0 and image.shape[0] * image.shape[1] >= ROWS_READ_MIN_PIXELS:
        return _resize(minus_means_where_read(image, pixel_means, scale), scale)
    im = image.astype(np.float32, copy=True)
    im -= np.asarray(pixel_means, dtype=np.float32).reshape(1, 1, 3)
    im = _resize(im, scale)
    return im


def to_tensor(blob_image):
    """(1, 3, H, W) float32 tensor from a (H, W, 3) blob image."""
    return torch.from_numpy(np.ascontiguousarray(blob_image.transpose(2, 0, 1)))[None]
