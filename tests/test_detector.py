"""Detector: decoding of hand-built heads, thresholds, NMS across modules, pyramid levels, inputs."""
import math

import numpy as np
import pytest
import torch

from lib.config import get_config
from model.detector import Detector, as_bgr


def make_detector(device, **test_overrides):
    cfg = get_config()
    cfg.TEST.update(test_overrides)
    return Detector(torch.nn.Identity(), cfg.TEST, cfg.PIXEL_MEANS, device)


def low_heads(device, blob_hw=(16, 24)):
    """Heads of a 16 x 24 blob (m1 2x3, m2 1x2, m3 1x1) with every face logit at -10, zero deltas."""
    heads = {}
    for m, stride in (("m1", 8), ("m2", 16), ("m3", 32)):
        h, w = math.ceil(blob_hw[0] / stride), math.ceil(blob_hw[1] / stride)
        cls = torch.zeros(1, 4, h, w, device=device)
        cls[:, 2:] = -10
        heads[m] = (cls, torch.zeros(1, 8, h, w, device=device))
    return heads


def test_decode_one_anchor_by_hand(device):
    heads = low_heads(device)
    heads["m1"][0][0, 3, 1, 2] = 2.0  # face logit of anchor a = 1 at (y = 1, x = 2)
    dets = make_detector(device).postprocess(heads, 0.5, (16, 24)).cpu()
    # anchor (8, 0, 39, 31); zero deltas decode to (8, 0, 40, 32); clipped to the 24 x 16 blob
    # gives (8, 0, 23, 15); divided by the scale 0.5
    assert dets.shape == (1, 5)
    assert dets[0, :4].tolist() == [16, 0, 46, 30]
    assert dets[0, 4].item() == pytest.approx(1 / (1 + math.exp(-2)))


def test_score_threshold_is_strict(device):
    heads = low_heads(device)
    logit = math.log(0.05 / 0.95)  # face probability exactly 0.05 (to float32 rounding)
    heads["m3"][0][0, 2, 0, 0] = logit
    heads["m3"][0][0, 3, 0, 0] = logit + 1e-3
    dets = make_detector(device).postprocess(heads, 1.0, (16, 24)).cpu()
    assert len(dets) == 1 and dets[0, 4] > 0.05


def test_nms_runs_across_modules(device):
    heads = low_heads(device)
    heads["m1"][0][0, 3, 1, 2] = 2.0   # box (8, 0, 23, 15) after clipping, score 0.881
    heads["m2"][0][0, 2, 0, 0] = 1.0   # anchor (-24, -24, 39, 39) -> (0, 0, 23, 15), score 0.731
    heads["m3"][0][0, 2, 0, 0] = 0.5   # same clipped box as m2, score 0.622
    det = make_detector(device)
    # IoU(m1, m2) = 16 * 16 / (24 * 16) = 0.667 > 0.3: only the m1 box survives
    assert det.postprocess(heads, 1.0, (16, 24)).shape[0] == 1
    det.cfg.NMS_THRESH = 0.7  # m2 survives m1 (0.667), m3 equals m2 (IoU 1) and goes
    dets = det.postprocess(heads, 1.0, (16, 24)).cpu()
    assert dets[:, 4].tolist() == pytest.approx([0.8808, 0.7311], abs=1e-4)


def test_top_n_per_module(device):
    heads = low_heads(device)
    face = torch.linspace(1, 2, 12, device=device)  # anchor k = (y * 3 + x) * 2 + a gets face[k]
    heads["m1"][0][0, 2:] = face.reshape(2, 3, 2).permute(2, 0, 1)
    det = make_detector(device, N_DETS_PER_MODULE=3)
    _, scores = det.candidates(heads, 1.0, (16, 24))
    assert len(scores) == 3 + 3 + 2  # m1 12 -> 3, m2 4 -> 3, m3 2 anchors
    assert scores[:3].tolist() == pytest.approx(torch.sigmoid(face[[11, 10, 9]]).tolist())


def test_pyramid_levels_match_the_spec():
    det = make_detector("cpu", SCALES=[500, 800, 1200, 1600], MAX_SIZE=-1, PYRAMID_BASE_SIZE=[800, 1200])
    levels = det.scales(768, 1024)
    assert [round(s, 4) for s, _ in levels] == [0.651, 1.0417, 1.5625, 2.0833]
    assert [m for _, m in levels] == [("m1", "m2", "m3")] * 3 + [("m1", "m2")]


def test_single_scale_and_orig_size():
    det = make_detector("cpu")
    assert det.scales(900, 1024) == [(1200 / 900, ("m1", "m2", "m3"))]
    assert det.scales(683, 1024)[0][0] == 1600 / 1024  # round(1200 / 683 * 1024) = 1799 > 1600
    assert det.scales(600, 1900)[0][0] == 1600 / 1900  # longer side bounded by MAX_SIZE
    assert make_detector("cpu", ORIG_SIZE=True).scales(10, 20) == [(1.0, ("m1", "m2", "m3"))]


def test_as_bgr_conversions():
    grey = np.full((4, 5), 7, np.uint8)
    assert as_bgr(grey).shape == (4, 5, 3) and (as_bgr(grey) == 7).all()
    bgra = np.zeros((4, 5, 4), np.uint8)
    bgra[..., 0] = 9
    assert as_bgr(bgra).shape == (4, 5, 3) and (as_bgr(bgra)[..., 0] == 9).all()
    with pytest.raises(ValueError, match="uint8"):
        as_bgr(np.zeros((4, 5, 3), np.float32))
    with pytest.raises(ValueError, match="shape"):
        as_bgr(np.zeros((4, 5, 2), np.uint8))


@pytest.mark.parametrize("shape", [(5, 7), (1, 1, 1), (7, 5, 4), (40, 3000, 3)])
def test_detect_any_image_size_and_kind(device, shape):
    """Grey, single-channel, BGRA, tiny and very elongated images give boxes inside the image."""
    from model import SSH

    torch.manual_seed(0)
    cfg = get_config()
    cfg.TEST.update(SCALES=[64], MAX_SIZE=96)
    det = Detector(SSH(), cfg.TEST, cfg.PIXEL_MEANS, device)
    image = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    dets = det.detect(image)
    h, w = shape[:2]
    assert dets.dtype == np.float32 and dets.ndim == 2 and dets.shape[1] == 5 and len(dets) > 0
    assert np.isfinite(dets).all() and (dets[:, 4] > 0.05).all()
    assert (dets[:, :2] >= 0).all() and (dets[:, 2] <= w).all() and (dets[:, 3] <= h).all()
    assert (np.diff(dets[:, 4]) <= 0).all()
