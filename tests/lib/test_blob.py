"""lib/blob.py against hand-worked values: the official test/train scale rule and the pixel pipeline
(float32 BGR minus PIXEL_MEANS, then cv2.resize INTER_LINEAR with fx = fy = scale; docs/training.md §4.3, docs/inference.md §5.2),
and the large-image path that converts only the rows the resize reads, bit for bit against the whole conversion."""
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from lib import blob
from lib.blob import (_resize, compute_scale, minus_means_where_read, prep_image, resize_size, rows_read,
                      to_tensor)

MEANS = np.float32([102.9801, 115.9465, 122.7717])  # B, G, R (docs/training.md §4.3)


@pytest.mark.parametrize("height, width, target, max_size, expected", [
    (600, 800, 1200, 1600, 2.0),            # 2 * 800 = 1600, not > 1600
    (800, 600, 1200, 1600, 2.0),            # portrait: the shorter side is the width
    (683, 1024, 1200, 1600, 1600 / 1024),   # round(1200 / 683 * 1024) = round(1799.12) = 1799 > 1600
    (1000, 1333, 1200, 1600, 1.2),          # 1.2 * 1333 = 1599.6 -> 1600, not > 1600 (kept)
    (875, 1167, 1200, 1600, 1200 / 875),    # 1600.457 -> 1600 (kept; without np.round it would be cut)
    (800, 1067, 1200, 1600, 1.5),           # 1600.5 -> 1600: np.round rounds half to even (kept)
    (1067, 800, 1200, 1600, 1.5),           # the same, portrait
    (800, 1068, 1200, 1600, 1600 / 1068),   # 1602 > 1600
    (750, 1001, 1200, 1600, 1600 / 1001),   # 1601.6 -> 1602 > 1600
    (100, 10000, 1200, -1, 12.0),           # max_size < 0: no bound (pyramid levels)
    (768, 1024, 800, 1200, 800 / 768),      # pyramid base of docs/inference.md §5.3: 1066.67 -> 1067 <= 1200
    (1200, 1600, 600, 1000, 0.5),           # shrinking: 0.5 * 1600 = 800
])
def test_compute_scale_by_hand(height, width, target, max_size, expected):
    assert compute_scale(height, width, target, max_size) == expected


def blob_by_hand(wy, wx):
    """separable_image(ROWS, COLS) minus the means, resized with row weights wy (h', h) and column
    weights wx (w', w) whose rows sum to 1: (wy @ ROWS)[y] + (wx @ COLS)[x] - means."""
    return (np.asarray(wy) @ ROWS)[:, None, :] + (np.asarray(wx) @ COLS)[None, :, :] - MEANS.astype(np.float64)


def separable_image(rows, cols):
    """uint8 image[y, x, c] = rows[y, c] + cols[x, c]."""
    image = np.asarray(rows, np.int64)[:, None, :] + np.asarray(cols, np.int64)[None, :, :]
    assert image.max() <= 255 and image.min() >= 0
    return image.astype(np.uint8)


# Columns per channel (B, G, R); no multiple of 6, so the 1/6 and 5/6 taps give fractions.
COLS = np.array([[0, 10, 5], [31, 40, 17], [62, 100, 50], [125, 130, 103]])
ROWS = np.array([[0, 0, 0], [24, 7, 13], [50, 30, 41]])


def test_upscale_is_linear_with_half_pixel_centres():
    # scale 1.5: source x = (dx + 0.5) / 1.5 - 0.5 = -1/6, 1/2, 7/6, 11/6, 5/2, 19/6; outside [0, 3]
    # it is clamped to the edge pixel. Width round(4 * 1.5) = 6; height round(3 * 1.5) = round(4.5) = 4
    # (half to even), rows from y = -1/6, 1/2, 7/6, 11/6.
    wx = np.array([[1, 0, 0, 0], [1 / 2, 1 / 2, 0, 0], [0, 5 / 6, 1 / 6, 0], [0, 1 / 6, 5 / 6, 0],
                   [0, 0, 1 / 2, 1 / 2], [0, 0, 0, 1]])
    wy = np.array([[1, 0, 0], [1 / 2, 1 / 2, 0], [0, 5 / 6, 1 / 6], [0, 1 / 6, 5 / 6]])
    image = separable_image(ROWS, COLS)
    out = prep_image(image, MEANS, 1.5)
    assert out.dtype == np.float32 and out.shape == (4, 6, 3)
    np.testing.assert_allclose(out, blob_by_hand(wy, wx), rtol=0, atol=1e-4)


def test_downscale_is_linear_not_area():
    # scale 0.75: source x = (dx + 0.5) / 0.75 - 0.5 = 1/6, 3/2, 17/6 (width 3); y = 1/6, 3/2 (round(2.25) = 2).
    # INTER_AREA would average the covered pixels instead (e.g. 3/4 x0 + 1/4 x1 for dx = 0).
    wx = np.array([[5 / 6, 1 / 6, 0, 0], [0, 1 / 2, 1 / 2, 0], [0, 0, 1 / 6, 5 / 6]])
    wy = np.array([[5 / 6, 1 / 6, 0], [0, 1 / 2, 1 / 2]])
    image = separable_image(ROWS, COLS)
    out = prep_image(image, MEANS, 0.75)
    assert out.shape == (2, 3, 3)
    np.testing.assert_allclose(out, blob_by_hand(wy, wx), rtol=0, atol=1e-4)


@pytest.mark.parametrize("scale", [0.61, 1.37])
def test_means_are_subtracted_before_resizing_bit_exact(scale):
    """The exact float32 result of the official order: float32(image) - means, then the resize.

    For linear interpolation the other order differs only by float rounding, so this pins the bits;
    the test first checks that this image and scale do tell the two orders apart.
    """
    image = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    official = cv2.resize(image.astype(np.float32) - MEANS, None, fx=scale, fy=scale,
                          interpolation=cv2.INTER_LINEAR)
    other_order = cv2.resize(image.astype(np.float32), None, fx=scale, fy=scale,
                             interpolation=cv2.INTER_LINEAR) - MEANS
    assert (official != other_order).any()  # the check below can tell the orders apart
    out = prep_image(image, MEANS, scale)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, official)


def test_no_resize_at_scale_one():
    image = np.random.default_rng(1).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    out = prep_image(image, MEANS, 1.0)
    np.testing.assert_array_equal(out, image.astype(np.float32) - MEANS)
    assert out[0, 0, 0] == np.float32(image[0, 0, 0]) - np.float32(102.9801)  # B first


@pytest.mark.parametrize("shape, scale, size", [
    ((5, 7), 0.5, (2, 4)),      # 2.5 -> 2, 3.5 -> 4: OpenCV rounds half to even
    ((3, 4), 1.5, (4, 6)),      # 4.5 -> 4
    ((10, 10), 0.33, (3, 3)),   # 3.3 -> 3
])
def test_output_size_rounds_to_nearest_even(shape, scale, size):
    assert prep_image(np.zeros((*shape, 3), np.uint8), MEANS, scale).shape == (*size, 3)


@pytest.mark.parametrize("shape, expected", [
    ((1, 5000), (1, 1600)),  # 1 x 5000 brought to 1600 wide: height round(0.32) = 0 -> 1 pixel
    ((5000, 1), (1600, 1)),
    ((1, 3), (1, 1)),        # scale 0.4: round(0.4) = 0 and round(1.2) = 1
])
def test_a_side_that_would_round_to_zero_gets_one_pixel(shape, expected):
    planes = np.uint8([10, 100, 200])
    image = np.broadcast_to(planes, (*shape, 3)).copy()
    scale = 0.4 if shape == (1, 3) else compute_scale(*shape, 1200, 1600)
    assert scale == pytest.approx(0.4 if shape == (1, 3) else 0.32)
    out = prep_image(image, MEANS, scale)
    assert out.shape == (*expected, 3)
    # a constant image stays constant under linear interpolation: plane value minus its mean
    np.testing.assert_allclose(out.reshape(-1, 3), np.broadcast_to(planes - MEANS, (out.shape[0] * out.shape[1], 3)),
                               rtol=0, atol=1e-4)


def test_to_tensor_is_nchw():
    blob = np.arange(2 * 3 * 3, dtype=np.float32).reshape(2, 3, 3)
    t = to_tensor(blob)
    assert t.shape == (1, 3, 2, 3)
    assert t[0, 1].tolist() == [[1, 4, 7], [10, 13, 16]]  # channel 1 (G) of every pixel


def official_blob(image, scale):
    """The official order on the whole image: float32(image) - means, then `_resize` (the resize
    call of prep_image, with its 1-pixel rule for a side that would round to 0)."""
    return _resize(image.astype(np.float32) - MEANS, scale)


def random_cases(count, seed):
    """(image, scale) pairs: sizes 1..300 per side (odd, even, 1-pixel), shrinking scales from
    0.003 to 1 and the special ones (0.5 takes OpenCV's 2 x 2 area path; 1/3, 1/4: exact steps)."""
    rng = np.random.default_rng(seed)
    special = [0.5, 0.25, 1 / 3, 0.2, 0.1, 0.999, 1200 / 5773]
    for k in range(count):
        height, width = (int(v) for v in rng.integers(1, 301, 2))
        if k % 10 == 0:
            height = 1
        elif k % 10 == 1:
            width = 1
        scale = special[k % len(special)] if k % 3 == 0 else float(rng.uniform(0.003, 1.0))
        yield rng.integers(0, 256, (height, width, 3), dtype=np.uint8), scale


def test_converting_only_the_rows_read_is_bit_exact():
    """minus_means_where_read then the resize equals the whole-image official order bit for bit
    (float32 bits, so -0.0 and 0.0 differ) on 600 random images and scales."""
    for image, scale in random_cases(600, seed=0):
        expected = official_blob(image, scale)
        got = _resize(minus_means_where_read(image, MEANS, scale), scale)
        assert got.shape == expected.shape, (image.shape, scale)
        assert np.array_equal(got.view(np.uint32), expected.view(np.uint32)), (image.shape, scale)


def test_the_resize_reads_no_row_outside_rows_read():
    """With every row outside rows_read set to NaN, the resize's output has no NaN (a NaN row read
    even with weight 0 would show), so the rows left unconverted are never read."""
    for image, scale in random_cases(400, seed=1):
        height, width = image.shape[:2]
        out_w, out_h = resize_size(height, width, scale)
        inv = scale if min(out_w, out_h) > 0 else max(out_h, 1) / height
        poisoned = image.astype(np.float32) - MEANS
        poisoned[~rows_read(height, max(out_h, 1), inv)] = np.nan
        assert not np.isnan(_resize(poisoned, scale)).any(), (image.shape, scale)


def test_rows_read_by_hand():
    # 10 rows to 2 (scale 0.2): source y = (0.5) / 0.2 - 0.5 = 2 (an integer: rows 1, 2, 3 within the
    # margin) and 7 (rows 6, 7, 8); the last output row is not clamped (7 < 9), so only that.
    assert np.flatnonzero(rows_read(10, 2, 0.2)).tolist() == [1, 2, 3, 6, 7, 8]
    # 9 rows to 2 at scale 0.25: y = 1.5 (rows 1, 2) and 5.5 (rows 5, 6)
    assert np.flatnonzero(rows_read(9, 2, 0.25)).tolist() == [1, 2, 5, 6]
    # 5 rows to round(1.5) = 2 at scale 0.3: y = 1.17 (rows 1, 2) and 4.5, clamped to the last row 4,
    # which counts the last two rows (OpenCV weighs row 3 by about 1e-8 there)
    assert np.flatnonzero(rows_read(5, 2, 0.3)).tolist() == [1, 2, 3, 4]
    assert np.flatnonzero(rows_read(1, 1, 0.5)).tolist() == [0]


@pytest.mark.parametrize("layout", ["contiguous", "cropped", "channels reversed"])
def test_large_images_take_the_rows_read_path_bit_exactly(monkeypatch, layout):
    """prep_image switches to the rows-read conversion from ROWS_READ_MIN_PIXELS on (here lowered to
    a small image), for any memory layout of the input, with the official blob's bits; scale 1 and
    enlarging keep the whole conversion."""
    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, (301, 407, 3), dtype=np.uint8)
    if layout == "cropped":
        image = rng.integers(0, 256, (320, 430, 3), dtype=np.uint8)[7:308, 11:418]
    elif layout == "channels reversed":
        image = image[:, :, ::-1]
    calls = []
    monkeypatch.setattr(blob, "ROWS_READ_MIN_PIXELS", image.shape[0] * image.shape[1])
    monkeypatch.setattr(blob, "minus_means_where_read",
                        lambda *args: calls.append(args[2]) or minus_means_where_read(*args))
    for scale in (0.05, 0.185, 1 / 3, 0.5, 0.61, 0.999, 1.0, 1.37):
        out = prep_image(image, MEANS, scale)
        assert np.array_equal(out.view(np.uint32), official_blob(image, scale).view(np.uint32)), scale
    assert calls == [0.05, 0.185, 1 / 3, 0.5, 0.61, 0.999]
    monkeypatch.setattr(blob, "ROWS_READ_MIN_PIXELS", image.shape[0] * image.shape[1] + 1)
    prep_image(image, MEANS, 0.5)
    assert len(calls) == 6  # one pixel fewer than the threshold: the whole conversion


def test_rows_read_conversion_leaves_the_other_rows_unwritten():
    """The float copy's rows that the resize does not read are zero (never written), and a 5773-row
    image shrunk to 1067 rows reads 2134 of them (two per output row, none shared at this scale)."""
    image = np.full((5773, 3, 3), 200, np.uint8)
    scale = 1600 / 8660
    out = minus_means_where_read(image, MEANS, scale)
    read = rows_read(5773, 1067, scale)
    assert read.sum() == 2134
    assert (out[~read] == 0).all()
    np.testing.assert_array_equal(out[read], np.broadcast_to(np.float32(200) - MEANS, (2134, 3, 3)))


@pytest.mark.parametrize("height, width", [(0, 5), (5, 0), (0, 0)])
def test_compute_scale_refuses_an_empty_image(height, width):
    with pytest.raises(ValueError, match=f"{height} x {width} pixels"):
        compute_scale(height, width, 1200, 1600)


@pytest.mark.skipif(not Path("/proc/self/statm").is_file(), reason="resident set read from Linux /proc")
def test_the_rows_read_copy_takes_memory_only_for_those_rows():
    """The float copy of a 2000 x 3000 image shrunk 10x (72 MB whole) is resident only in the 400
    rows read (14 MB): its other pages are never touched, not even as huge pages around them."""
    image = np.random.default_rng(3).integers(0, 256, (2000, 3000, 3), dtype=np.uint8)
    page = os.sysconf("SC_PAGE_SIZE")
    resident = lambda: int(Path("/proc/self/statm").read_text().split()[1]) * page  # noqa: E731
    before = resident()
    out = minus_means_where_read(image, MEANS, 0.1)
    grown = resident() - before
    assert rows_read(2000, 200, 0.1).sum() == 400
    assert grown < 0.4 * out.nbytes, f"{grown / 2**20:.0f} MB resident of a {out.nbytes / 2**20:.0f} MB copy"
