"""NMS semantics (+1 areas, suppress IoU > thresh) and equality of the Cython and torchvision paths."""
import pytest
import torch

from lib import nms as nms_mod
from lib.nms import nms, nms_cython, nms_torchvision

IMPLS = [nms_torchvision, nms_cython]


@pytest.fixture(autouse=True)
def _cython_built():
    if nms_mod._cpu_nms_sorted is None:
        pytest.fail("lib/nms/cpu_nms is not built: run `make -C lib`")


@pytest.mark.parametrize("impl", IMPLS)
def test_plus_one_areas_decide(impl):
    # +1 rule: inter 2x4 = 8, areas 16 -> IoU 8 / 24 = 0.333 > 0.3 (without +1 it would be 3 / 15 = 0.2)
    boxes = torch.tensor([[0.0, 0, 3, 3], [2.0, 0, 5, 3]])
    assert impl(boxes, torch.tensor([0.9, 0.8]), 0.3).tolist() == [0]


@pytest.mark.parametrize("impl", IMPLS)
def test_iou_equal_to_threshold_is_kept(impl):
    boxes = torch.tensor([[0.0, 0, 9, 19], [0.0, 0, 9, 9], [100.0, 100, 120, 120]])
    scores = torch.tensor([0.5, 0.9, 0.7])
    assert impl(boxes, scores, 0.5).tolist() == [1, 2, 0]  # IoU exactly 0.5 survives
    assert impl(boxes, scores, 0.49).tolist() == [1, 2]


@pytest.mark.parametrize("impl", IMPLS)
def test_threshold_compared_in_float32(impl):
    # IoU = 30 / 100, which in float32 is 0.3f: not > 0.3f, so kept (a double 0.3 would suppress it)
    boxes = torch.tensor([[0.0, 0, 9, 9], [0.0, 0, 9, 2]])
    assert impl(boxes, torch.tensor([0.9, 0.8]), 0.3).tolist() == [0, 1]


@pytest.mark.parametrize("impl", IMPLS)
def test_empty(impl):
    assert impl(torch.zeros(0, 4), torch.zeros(0), 0.3).numel() == 0


def test_cython_equals_torchvision_on_random_boxes():
    g = torch.Generator().manual_seed(0)
    for n in (1, 10, 500, 3000):
        xy = torch.rand(n, 2, generator=g) * 300
        wh = torch.rand(n, 2, generator=g) * 40 + 1
        boxes = torch.cat([xy, xy + wh], 1).round()  # integer boxes create exact ties in IoU
        scores = torch.rand(n, generator=g)
        for thresh in (0.3, 0.5, 0.7):
            assert torch.equal(nms_torchvision(boxes, scores, thresh), nms_cython(boxes, scores, thresh))


def test_dispatch_on_cpu_uses_cython(monkeypatch):
    monkeypatch.setattr(nms_mod, "nms_torchvision", lambda *a: pytest.fail("torchvision used on CPU"))
    assert nms(torch.tensor([[0.0, 0, 9, 9]]), torch.tensor([1.0]), 0.3).tolist() == [0]
