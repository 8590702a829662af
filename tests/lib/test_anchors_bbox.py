"""Anchors and +1 box arithmetic against values worked out by hand from docs/anchors.md §2, docs/training.md §3.5, docs/inference.md §5.1."""
import math

import pytest
import torch

from lib.anchors import MODULES, generate_anchors, module_anchors, shift_anchors
from lib.bbox import box_iou, clip_boxes, decode, encode, min_size_mask


@pytest.mark.parametrize("module, expected", [
    ("m1", [[0, 0, 15, 15], [-8, -8, 23, 23]]),
    ("m2", [[-24, -24, 39, 39], [-56, -56, 71, 71]]),
    ("m3", [[-120, -120, 135, 135], [-248, -248, 263, 263]]),
])
def test_cell_zero_anchors(module, expected):
    assert generate_anchors(scales=MODULES[module].scales).tolist() == expected


def test_ratio_order_is_ratios_outer_scales_inner():
    # ratio 0.5: w = round(sqrt(256 / 0.5)) = round(22.63) = 23, h = round(11.5) = 12 (half to even)
    a = generate_anchors(ratios=(0.5, 1.0), scales=(1, 2))
    assert a.tolist() == [[-3.5, 2.0, 18.5, 13.0], [-15.0, -4.0, 30.0, 19.0],
                          [0, 0, 15, 15], [-8, -8, 23, 23]]


def test_shift_order_is_y_x_a_with_a_fastest():
    anchors = module_anchors("m1", 2, 3, "cpu")
    assert anchors.shape == (2 * 3 * 2, 4)
    # k = (y * W + x) * A + a; y = 1, x = 2, a = 1 -> 11: base (-8, -8, 23, 23) + (16, 8)
    assert anchors[11].tolist() == [8, 0, 39, 31]
    assert anchors[2].tolist() == [8, 0, 23, 15]  # y = 0, x = 1, a = 0
    assert torch.equal(shift_anchors(generate_anchors(), 1, 1, 8), generate_anchors())


def test_module_anchor_strides():
    for name, stride in (("m2", 16), ("m3", 32)):
        a = module_anchors(name, 3, 4, "cpu").reshape(3, 4, 2, 4)
        assert (a[1, 0] - a[0, 0]).tolist() == [[0, stride, 0, stride]] * 2
        assert (a[0, 1] - a[0, 0]).tolist() == [[stride, 0, stride, 0]] * 2


def test_iou_uses_plus_one_areas():
    a = torch.tensor([[0.0, 0, 9, 9]])
    b = torch.tensor([[5.0, 5, 14, 14], [10.0, 0, 19, 9], [0.0, 0, 9, 19]])
    # inter 5x5 = 25 over 100 + 100 - 25; touching at x = 10 -> 0; nested 100 / 200
    assert box_iou(a, b)[0].tolist() == pytest.approx([25 / 175, 0.0, 0.5])


def test_encode_decode_by_hand():
    anchor = torch.tensor([[0.0, 0, 15, 15]])
    gt = torch.tensor([[2.0, 4, 33, 19]])  # w 32, h 16, centre (18, 12); anchor centre (8, 8)
    d = encode(anchor, gt)
    assert d[0].tolist() == pytest.approx([0.625, 0.25, math.log(2), 0.0])
    # decode gives x2 = cx + w / 2 (no -1): (2, 4, 34, 20)
    assert decode(anchor, d)[0].tolist() == pytest.approx([2, 4, 34, 20])


def test_decode_never_overflows():
    # exp(1e4) overflows float32; the clamped box is still finite, far larger than any image, centred on
    # the anchor centre (8, 8), and clips to the whole image. exp(-1e4) = 0 collapses to the centre.
    boxes = decode(torch.tensor([[0.0, 0, 15, 15]] * 2), torch.tensor([[0.0, 0, 1e4, 1e4], [0.0, 0, -1e4, -1e4]]))
    assert torch.isfinite(boxes).all()
    x1, y1, x2, y2 = boxes[0].tolist()
    assert x2 - x1 > 1e6 and y2 - y1 > 1e6
    assert abs((x1 + x2) / 2 - 8) <= 1e-6 * (x2 - x1) and abs((y1 + y2) / 2 - 8) <= 1e-6 * (y2 - y1)
    assert clip_boxes(boxes, 480, 640).tolist() == [[0, 0, 639, 479], [8, 8, 8, 8]]


def test_clip_and_min_size():
    boxes = torch.tensor([[-5.0, -3, 700, 500], [10, 10, 12, 30]])
    assert clip_boxes(boxes, 480, 640).tolist() == [[0, 0, 639, 479], [10, 10, 12, 30]]
    # second box is 3 px wide with +1 widths
    assert min_size_mask(boxes, 3).tolist() == [True, True]
    assert min_size_mask(boxes, 4).tolist() == [True, False]
