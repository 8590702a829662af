"""lib/blob.py against hand-worked values: the official test/train scale rule and the pixel pipeline
(float32 BGR minus PIXEL_MEANS, then cv2.resize INTER_LINEAR with fx = fy = scale; docs/training.md §4.3, docs/inference.md §5.2)."""
import cv2
import numpy as np
import pytest

from lib.blob import compute_scale, prep_image, to_tensor

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
