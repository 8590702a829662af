"""FDDB regions drawn as the tool draws them, and their pixel overlaps, by hand and against full-image
masks drawn with the tool's own OpenCV calls (cvEllipse / cvRectangle, filled, on a zeroed mask)."""
import math

import numpy as np
import pytest
from fddb_fixtures import tool_ellipse_mask, tool_rect_mask

from lib.evaluation.fddb_regions import draw_ellipses, ellipse_drawing, overlap_scores, rect_pixels


def full_mask(raster, width, height):
    m = np.zeros((height, width), bool)
    h, w = raster.mask.shape
    m[raster.y0:raster.y0 + h, raster.x0:raster.x0 + w] = raster.mask
    return m


def diamond(cx, cy, radius, width, height):
    """|dx| + |dy| <= radius: OpenCV's ellipse of both axes `radius` < 3 (a 4-vertex polygon, 90° steps)."""
    y, x = np.mgrid[:height, :width]
    return np.abs(x - cx) + np.abs(y - cy) <= radius


def test_ellipse_arguments():
    # centre: the float32 of the value, rounded half to even; axes truncated; angle in degrees
    centres, axes, angles = ellipse_drawing(np.array([[2.9, 2.2, 0.0, 5.5, 4.5],
                                                      [7.99, 3.01, -math.pi / 2, 10.500000001, 11.5],
                                                      [20, 12, 0.7, 3.49, -0.5]]))
    # 10.500000001 is 10.5 in float32, and 10.5 rounds to even 10 (a double would round to 11)
    assert centres.tolist() == [[6, 4], [10, 12], [3, 0]]
    assert axes.tolist() == [[2, 2], [7, 3], [20, 12]]
    # 180 - (pi - theta) * 180 / pi: the file's radians as degrees (OpenCV then rounds to whole degrees)
    assert angles[0] == pytest.approx(0, abs=1e-12) and angles[1] == pytest.approx(-90)
    assert angles[2] == pytest.approx(40.10704566, abs=1e-8)


def test_small_ellipses_are_diamonds_clipped_at_the_border():
    # Axes below 3 px: OpenCV's polygon has the four axis ends only, so axes (2, 2) fill |dx| + |dy| <= 2.
    W, H = 20, 15
    a, b, c = draw_ellipses(np.array([[2.9, 2.2, 0.0, 5.5, 5.4],   # axes (2, 2), centre (6, 5): 13 px
                                      [1.5, 1.0, 0.0, 9.0, 7.0],   # axes (1, 1): 5 px
                                      [2.0, 2.0, 0.0, 0.0, 0.0]]), W, H)  # centre in the corner
    np.testing.assert_array_equal(full_mask(a, W, H), diamond(6, 5, 2, W, H))
    assert a.area == 13 and b.area == 5
    # only the quarter inside the image: (0,0) (1,0) (2,0) (0,1) (1,1) (0,2)
    np.testing.assert_array_equal(full_mask(c, W, H), diamond(0, 0, 2, W, H))
    assert c.area == 6


def test_angles_are_whole_degrees_and_a_right_angle_swaps_the_axes():
    W, H = 80, 70
    rows = np.array([[20, 12, math.pi / 2, 40, 35], [12, 20, 0, 40, 35], [20, 12, -math.pi / 2, 40, 35],
                     [20, 12, 0.7, 40, 35], [20, 12, math.radians(40), 40, 35], [20, 12, 0.71, 40, 35]])
    m = [full_mask(r, W, H) for r in draw_ellipses(rows, W, H)]
    np.testing.assert_array_equal(m[0], m[1])  # pi/2: the major axis vertical
    np.testing.assert_array_equal(m[0], m[2])
    np.testing.assert_array_equal(m[3], m[4])  # 0.7 rad = 40.107 degrees, drawn at 40
    assert (m[3] != m[5]).any()  # 0.71 rad = 40.68 degrees, drawn at 41
    assert (m[0] != m[3]).any()


def test_rect_pixels_by_hand():
    W, H = 20, 15
    boxes = rect_pixels(np.array([[2.5, 3.4, 4.0, 2.2],     # corners round to (2, 3) and (6.5 -> 6, 5.6 -> 6)
                                  [10.0, 1.0, -4.0, 2.0],   # a negative width draws 6 .. 10
                                  [-3.0, -3.0, 4.0, 4.0],   # partly outside: 0 .. 1
                                  [-30.0, 2.0, 10.0, 2.0],  # outside: empty
                                  [18.0, 13.0, 5.0, 5.0]]), W, H)
    assert boxes.tolist() == [[2, 3, 6, 6], [6, 1, 10, 3], [0, 0, 1, 1], [0, 2, -20, 4], [18, 13, 19, 14]]


def test_rects_and_ellipses_match_the_tools_masks():
    rng = np.random.default_rng(0)
    W, H = 57, 43
    rects = np.column_stack([rng.uniform(-30, 70, (300, 2)), rng.uniform(-20, 40, (300, 2))])
    for row, box in zip(rects, rect_pixels(rects, W, H)):
        ours = np.zeros((H, W), bool)
        if box[0] <= box[2] and box[1] <= box[3]:
            ours[box[1]:box[3] + 1, box[0]:box[2] + 1] = True
        np.testing.assert_array_equal(ours, tool_rect_mask(row, W, H))
    ellipses = np.column_stack([rng.uniform(0, 40, (300, 2)), rng.uniform(-4, 4, 300),
                                rng.uniform(-20, 80, 300), rng.uniform(-20, 60, 300)])
    for row, raster in zip(ellipses, draw_ellipses(ellipses, W, H)):
        np.testing.assert_array_equal(full_mask(raster, W, H), tool_ellipse_mask(row, W, H))


def test_overlaps_by_hand():
    W, H = 20, 20
    ann = np.array([[2.0, 2.0, 0.0, 5.0, 5.0],    # 13-pixel diamond around (5, 5)
                    [2.0, 2.0, 0.0, 0.0, 0.0]])   # its 6 pixels inside the image, at the corner
    rects = np.array([[4.0, 4.0, 2.0, 2.0, 0.9],      # 4..6 x 4..6: 9 px, all in the first diamond
                      [5.0, 5.0, 3.0, 3.0, 0.8],      # 5..8 x 5..8: 16 px, 6 in it (dx + dy <= 2)
                      [-3.0, -3.0, 4.0, 4.0, 0.7],    # clipped to 0..1 x 0..1: 4 px, all in the second
                      [-10.0, -10.0, 3.0, 3.0, 0.6]])  # outside the image: no pixel
    expected = np.array([[9 / 13, 6 / 23, 0 / 17, 0 / 13],
                         [0 / 15, 0 / 22, 4 / 6, 0 / 6]])
    np.testing.assert_array_equal(overlap_scores(ann, rects, W, H), expected)
    ellipses = np.array([[2.0, 2.0, math.pi / 2, 5.0, 5.0, 0.9],  # the same diamond, turned by 90 degrees
                         [1.0, 1.0, 0.0, 5.0, 5.0, 0.8],   # 5 px inside it
                         [2.0, 2.0, 0.0, 1.0, 0.0, 0.7]])  # the corner diamond shifted right: 9 px inside
    # row 2: diamond at (1, 0) clipped: 8 px; shares (0,0) (1,0) (2,0) (0,1) (1,1) with the corner's 6
    np.testing.assert_array_equal(overlap_scores(ann, ellipses, W, H, box="ellipse"),
                                  [[13 / 13, 5 / 13, 0 / 21], [0 / 19, 0 / 11, 5 / 9]])


def test_overlaps_match_full_masks():
    rng = np.random.default_rng(1)
    W, H = 64, 48
    ann = np.column_stack([rng.uniform(1, 30, (6, 2)), rng.uniform(-3, 3, 6), rng.uniform(0, W, 6),
                           rng.uniform(0, H, 6)])
    rects = np.column_stack([rng.uniform(-20, 70, (40, 2)), rng.uniform(-10, 40, (40, 2)), rng.random(40)])
    ells = np.column_stack([rng.uniform(0, 25, (40, 2)), rng.uniform(-3, 3, 40), rng.uniform(-10, 75, 40),
                            rng.uniform(-10, 60, 40), rng.random(40)])
    a_masks = [tool_ellipse_mask(r, W, H) for r in ann]
    for dets, box, draw in ((rects, "rect", tool_rect_mask), (ells, "ellipse", tool_ellipse_mask)):
        d_masks = [draw(r, W, H) for r in dets]
        expected = [[np.count_nonzero(a & d) / np.count_nonzero(a | d) for d in d_masks] for a in a_masks]
        np.testing.assert_array_equal(overlap_scores(ann, dets, W, H, box), expected)


def test_two_regions_outside_the_image_raise():
    ann = np.array([[2.0, 2.0, 0.0, -10.0, -10.0]])
    with pytest.raises(ValueError, match="annotation 1 and detection 1 both lie outside the 20 x 20 image"):
        overlap_scores(ann, np.array([[30.0, 30.0, 2.0, 2.0, 0.5]]), 20, 20)
    # with a detection inside the image the pair just does not overlap
    assert overlap_scores(ann, np.array([[3.0, 3.0, 2.0, 2.0, 0.5]]), 20, 20).tolist() == [[0.0]]
