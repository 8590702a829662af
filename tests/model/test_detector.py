"""Detector: decoding of hand-built heads, thresholds, NMS across modules, pyramid levels, inputs."""
import math
import pathlib
import re

import cv2
import numpy as np
import pytest
import torch

from lib.config import get_config
from lib.heads import face_probs
from model.detector import Detector, as_bgr


def make_detector(device, **test_overrides):
    cfg = get_config()
    cfg.TEST.update(test_overrides)
    return Detector.from_config(torch.nn.Identity(), cfg, device=device)


def low_heads(device, blob_hw=(16, 24)):
    """Heads of a blob_hw blob (16 x 24: m1 2x3, m2 1x2, m3 1x1) with every face logit at -10, zero deltas."""
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


def test_score_threshold_is_strict():
    """PostProcess.select keeps score > 0.05: float32(0.05) goes, the next float32 up stays."""
    at = np.float32(0.05)
    above, below = np.nextafter(at, np.float32(1)), np.nextafter(at, np.float32(0))
    boxes = torch.tensor([[0.0, 0, 9, 9], [20.0, 0, 29, 9], [40.0, 0, 49, 9]])  # disjoint: NMS keeps all
    dets = make_detector("cpu").post.select(boxes, torch.tensor([at, above, below]))
    assert dets.tolist() == [[20, 0, 29, 9, float(above)]]


def test_score_threshold_is_strict_on_decoded_heads():
    heads = low_heads("cpu")
    logit = np.float32(math.log(0.05 / 0.95))  # softmax([0, logit])[1] is float32(0.05) exactly
    assert face_probs(torch.tensor([[[[0.0]], [[logit]]]]))[0, 0].item() == float(np.float32(0.05))
    heads["m1"][0][0, 2, 0, 0] = float(logit)  # a = 0 at (0, 0): (0, 0, 16, 16) -> clipped (0, 0, 16, 15)
    # one float32 step up (probability 0.050000016) at a = 0, (0, 2): (16, 0, 23, 15); the two boxes
    # share one pixel column, IoU 16 / (272 + 128 - 16) = 0.04 < 0.3, so NMS would keep both
    heads["m1"][0][0, 2, 0, 2] = float(np.nextafter(logit, np.float32(0)))
    dets = make_detector("cpu").postprocess(heads, 1.0, (16, 24))
    assert dets[:, :4].tolist() == [[16, 0, 23, 15]] and dets[0, 4].item() > 0.05


def test_decode_unclipped_box_with_deltas_by_hand(device):
    heads = low_heads(device, (64, 64))  # m1 8 x 8, m2 4 x 4, m3 2 x 2
    heads["m1"][0][0, 3, 3, 2] = 2.0  # face logit of anchor a = 1 at (y = 3, x = 2)
    heads["m1"][1][0, 4:8, 3, 2] = torch.tensor([0.25, -0.125, math.log(0.5), math.log(0.75)])
    dets = make_detector(device).postprocess(heads, 0.5, (64, 64)).cpu()
    # anchor (-8, -8, 23, 23) + (16, 24) = (8, 16, 39, 47): +1 widths w = h = 32, centre
    # (8 + 16, 16 + 16) = (24, 32); new centre (24 + 0.25 * 32, 32 - 0.125 * 32) = (32, 28),
    # size (0.5 * 32, 0.75 * 32) = (16, 24); box (32 - 8, 28 - 12, 32 + 8, 28 + 12) = (24, 16, 40, 40)
    # (no -1 on x2, y2), inside the 64 x 64 blob; divided by the scale 0.5.
    assert dets.shape == (1, 5)
    assert dets[0, :4].tolist() == pytest.approx([48, 32, 80, 80], abs=1e-4)
    assert dets[0, 4].item() == pytest.approx(1 / (1 + math.exp(-2)))


def test_nms_runs_across_modules(device):
    heads = low_heads(device)
    heads["m1"][0][0, 3, 1, 2] = 2.0   # box (8, 0, 23, 15) after clipping, score 0.881
    heads["m2"][0][0, 2, 0, 0] = 1.0   # anchor (-24, -24, 39, 39) -> (0, 0, 23, 15), score 0.731
    heads["m3"][0][0, 2, 0, 0] = 0.5   # same clipped box as m2, score 0.622
    det = make_detector(device)
    # IoU(m1, m2) = 16 * 16 / (24 * 16) = 0.667 > 0.3: only the m1 box survives
    dets = det.postprocess(heads, 1.0, (16, 24)).cpu()
    assert dets[:, :4].tolist() == [[8, 0, 23, 15]] and dets[:, 4].tolist() == pytest.approx([0.8808], abs=1e-4)
    det = make_detector(device, NMS_THRESH=0.7)  # m2 survives m1 (0.667), m3 equals m2 (IoU 1) and goes
    dets = det.postprocess(heads, 1.0, (16, 24)).cpu()
    assert dets[:, 4].tolist() == pytest.approx([0.8808, 0.7311], abs=1e-4)


def test_top_n_per_module(device):
    heads = low_heads(device)
    face = torch.linspace(1, 2, 12, device=device)  # anchor k = (y * 3 + x) * 2 + a gets face[k]
    heads["m1"][0][0, 2:] = face.reshape(2, 3, 2).permute(2, 0, 1)
    det = make_detector(device, N_DETS_PER_MODULE=3)
    _, scores = det.post.candidates(heads, 1.0, (16, 24))
    assert len(scores) == 3 + 3 + 2  # m1 12 -> 3, m2 4 -> 3, m3 2 anchors
    assert scores[:3].tolist() == pytest.approx(torch.sigmoid(face[[11, 10, 9]]).tolist())


def test_pyramid_levels_match_the_spec():
    det = make_detector("cpu", SCALES=[500, 800, 1200, 1600], MAX_SIZE=-1, PYRAMID_BASE_SIZE=[800, 1200])
    levels = det.scales(768, 1024)
    assert [round(s, 4) for s, _ in levels] == [0.651, 1.0417, 1.5625, 2.0833]
    assert [m for _, m in levels] == [("m1", "m2", "m3")] * 3 + [("m1", "m2")]


def test_from_config_passes_each_test_key_as_a_plain_value():
    cfg = get_config()
    cfg.TEST.update(SCALES=[300, 500], MAX_SIZE=700, PYRAMID_BASE_SIZE=[400, 600], NMS_THRESH=0.4,
                    N_DETS_PER_MODULE=7, ANCHOR_MIN_SIZE=3)
    det = Detector.from_config(torch.nn.Identity(), cfg, score_thresh=0.25)
    post = det.post
    assert (det.test_scales, det.max_size, det.pyramid_base_size) == ((300, 500), 700, (400, 600))
    assert det.orig_size is False
    assert (post.nms_thresh, post.top_n, post.min_size, post.score_thresh) == (0.4, 7, 3, 0.25)
    assert post.level_modules == (("m1", "m2", "m3"), ("m1", "m2"))
    explicit = Detector(torch.nn.Identity(), cfg.PIXEL_MEANS, scales=[300, 500], max_size=700,
                        pyramid_base_size=[400, 600], orig_size=False, nms_thresh=0.4, top_n=7, min_size=3,
                        score_thresh=0.25)
    assert explicit.scales(480, 640) == det.scales(480, 640)
    assert make_detector("cpu", SCALES=[300, 500], ORIG_SIZE=True).post.level_modules == (("m1", "m2", "m3"),)


def test_postprocess_takes_one_input_per_test_level():
    det = make_detector("cpu", SCALES=[48, 64], MAX_SIZE=-1, PYRAMID_BASE_SIZE=[64, 96])
    with pytest.raises(ValueError, match="expected 2 test level"):
        det.post([(low_heads("cpu"), 1.0, (16, 24))])


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


@pytest.mark.parametrize("shape", [(0, 0, 3), (0, 5, 3), (5, 0, 3), (0, 5), (5, 0, 1), (0, 0, 4)])
def test_empty_images_raise_a_value_error_naming_the_shape(shape):
    """Any side of 0 pixels: detect, __call__ and a list (which names the image) raise ValueError with
    the shape, before anything runs (the network below would fail the test if called)."""
    det = Detector.from_config(StubNet(fire=lambda *_: pytest.fail("the network ran")), get_config())
    empty = np.zeros(shape, np.uint8)
    message = re.escape(f"expected an image with pixels, got an empty one of shape {shape}")
    for call in (det.detect, det):
        with pytest.raises(ValueError, match=f"^{message}$"):
            call(empty)
    with pytest.raises(ValueError, match=f"^image 1 of the list: {message}$"):
        det.detect([np.zeros((4, 5, 3), np.uint8), empty])


@pytest.mark.parametrize("image, message", [
    (np.zeros((4, 5, 3), np.float32), "expected a uint8 numpy image (0..255, as cv2.imread gives), got float32 of shape (4, 5, 3)"),
    (np.zeros((4, 5, 3), np.uint16), "expected a uint8 numpy image (0..255, as cv2.imread gives), got uint16 of shape (4, 5, 3)"),
    (np.zeros((4, 5), bool), "expected a uint8 numpy image (0..255, as cv2.imread gives), got bool of shape (4, 5)"),
    (np.zeros((4, 5, 2), np.uint8), "expected an H x W grey, BGR or BGRA image, got shape (4, 5, 2)"),
    (np.zeros(5, np.uint8), "expected an H x W grey, BGR or BGRA image, got shape (5,)"),
    (np.zeros((2, 4, 5, 3), np.uint8),
     "expected an H x W grey, BGR or BGRA image, got shape (2, 4, 5, 3) (a batch goes in as a list of images)"),
    (torch.zeros(4, 5, 3, dtype=torch.uint8), "expected a uint8 numpy image, got torch.Tensor"),
    ("photo.jpg", "expected a decoded uint8 numpy image, got the path 'photo.jpg': read it first"),
    (pathlib.Path("photo.jpg"), "expected a decoded uint8 numpy image, got the path PosixPath('photo.jpg')"),
])
def test_wrong_inputs_raise_a_value_error_saying_what_they_are(image, message):
    det = Detector.from_config(StubNet(fire=lambda *_: pytest.fail("the network ran")), get_config())
    if isinstance(image, pathlib.Path) and not isinstance(image, pathlib.PosixPath):
        message = message.replace("PosixPath", type(image).__name__)
    with pytest.raises(ValueError, match=f"^{re.escape(message)}"):
        det(image)
    with pytest.raises(ValueError, match=f"^image 1 of the list: {re.escape(message)}"):
        det.detect([np.zeros((4, 5, 3), np.uint8), image])
    with pytest.raises(ValueError, match="image 0 of the list: expected a uint8 numpy image, got int"):
        det.detect([1, 2])


@pytest.mark.parametrize("shape", [(5, 7), (1, 1, 1), (7, 5, 4), (40, 3000, 3)])
def test_detect_any_image_size_and_kind(device, shape):
    """Grey, single-channel, BGRA, tiny and very elongated images give boxes inside the image."""
    from model import SSH

    torch.manual_seed(0)
    cfg = get_config()
    cfg.TEST.update(SCALES=[64], MAX_SIZE=96)
    det = Detector.from_config(SSH(), cfg, device=device)
    image = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    dets = det.detect(image)
    h, w = shape[:2]
    assert dets.dtype == np.float32 and dets.ndim == 2 and dets.shape[1] == 5 and len(dets) > 0
    assert np.isfinite(dets).all() and (dets[:, 4] > 0.05).all()
    assert (dets[:, :2] >= 0).all() and (dets[:, 2] <= w).all() and (dets[:, 3] <= h).all()
    assert (np.diff(dets[:, 4]) <= 0).all()


def feature_hw(blob_hw, stride):
    """Caffe ceil-rounded feature size of a blob at stride 8, 16 or 32 (docs/network.md §1.7)."""
    h, w = blob_hw
    for _ in range(int(math.log2(stride))):
        h, w = math.ceil(h / 2), math.ceil(w / 2)
    return h, w


class StubNet(torch.nn.Module):
    """Stands in for SSH: records each input blob and returns heads with every face logit at -10
    and zero deltas, except the face logits that `fire(module, blob_hw)` returns as {(a, y, x): logit}."""

    def __init__(self, fire=lambda module, blob_hw: {}):
        super().__init__()
        self.fire, self.blobs = fire, []

    def forward(self, blob):
        self.blobs.append(blob.detach().cpu().clone())
        heads = {}
        for m, stride in (("m1", 8), ("m2", 16), ("m3", 32)):
            h, w = feature_hw(blob.shape[2:], stride)
            cls = torch.zeros(blob.shape[0], 4, h, w)
            cls[:, 2:] = -10
            for (a, y, x), logit in self.fire(m, tuple(blob.shape[2:])).items():
                cls[:, 2 + a, y, x] = logit
            heads[m] = (cls, torch.zeros(blob.shape[0], 8, h, w))
        return heads


def test_pyramid_detect_leaves_m3_out_of_the_largest_level():
    """M3 fires on every level (more strongly on larger blobs), M2 only on the largest: the detections
    hold M3's boxes of the three smaller levels and M2's box of the largest, never M3's largest."""
    def fire(module, blob_hw):
        if module == "m3":
            return {(0, 0, 0): blob_hw[0] / 40}  # 1.25, 2, 3, 4 on the four levels
        return {(0, 0, 0): 0.0} if module == "m2" and blob_hw[0] == 160 else {}

    net = StubNet(fire)
    cfg = get_config()
    cfg.TEST.update(SCALES=[50, 80, 120, 160], MAX_SIZE=-1, PYRAMID_BASE_SIZE=[80, 120], NMS_THRESH=1.0)
    dets = Detector.from_config(net, cfg).detect(np.zeros((60, 80, 3), np.uint8))
    # base = 80 / 60 (round(80 * 4 / 3) = 107 <= 120); levels s = base * t / 80 = 5/6, 4/3, 2, 8/3:
    # blobs 50 x 67, 80 x 107, 120 x 160, 160 x 213 (round to nearest).
    assert [tuple(b.shape) for b in net.blobs] == [(1, 3, 50, 67), (1, 3, 80, 107), (1, 3, 120, 160),
                                                   (1, 3, 160, 213)]
    # M3 anchor a = 0 at (0, 0) is (-120, -120, 135, 135) -> zero deltas (-120, -120, 136, 136),
    # clipped to [0, W - 1] x [0, H - 1], divided by s:
    #   50 x 67 -> (0, 0, 66, 49) * 6/5; 80 x 107 -> (0, 0, 106, 79) * 3/4; 120 x 160 -> (0, 0, 136, 119) / 2
    #   (the largest level would give (0, 0, 136, 136) * 3/8 = (0, 0, 51, 51) with score sigmoid(4)).
    # M2 anchor a = 0 at (0, 0) on the largest level: (-24, -24, 39, 39) -> (-24, -24, 40, 40)
    # -> (0, 0, 40, 40) * 3/8 = (0, 0, 15, 15), score 0.5. NMS_THRESH 1 keeps every box.
    sig = lambda z: 1 / (1 + math.exp(-z))
    expected = [[0, 0, 68, 59.5, sig(3)], [0, 0, 79.5, 59.25, sig(2)], [0, 0, 79.2, 58.8, sig(1.25)],
                [0, 0, 15, 15, 0.5]]
    assert dets.shape == (4, 5)
    np.testing.assert_allclose(dets, expected, rtol=0, atol=1e-4)


@pytest.mark.parametrize("orig_size", [True, False])
def test_network_input_is_bgr_minus_the_means(orig_size):
    """The blob handed to the network is the image's B, G, R planes (in that order) minus PIXEL_MEANS."""
    planes = np.array([10, 100, 200], np.uint8)  # B, G, R
    image = np.broadcast_to(planes, (20, 24, 3)).copy()
    image[:, :12] += np.uint8(30)  # a step, so that the planes are not constant
    net = StubNet()
    cfg = get_config()
    cfg.TEST.update(ORIG_SIZE=orig_size, SCALES=[30], MAX_SIZE=1000)  # scale 30 / 20 = 1.5 when resized
    Detector.from_config(net, cfg).detect(image)
    (blob,) = net.blobs
    means = np.float32([102.9801, 115.9465, 122.7717])  # docs/training.md §4.3, B, G, R
    expected = image.astype(np.float32) - means
    if not orig_size:
        expected = cv2.resize(expected, None, fx=1.5, fy=1.5, interpolation=cv2.INTER_LINEAR)
    assert blob.dtype == torch.float32 and blob.shape == (1, 3, *expected.shape[:2])
    np.testing.assert_array_equal(blob[0].numpy(), expected.transpose(2, 0, 1))
    # far from the step the blob is the plane value minus its mean: B 10 - 102.9801 = -92.9801, ...
    assert blob[0, :, 0, -1].tolist() == pytest.approx([-92.9801, -15.9465, 77.2283], abs=1e-4)


def test_reduced_precision_detections_match_fp32(device):
    """Detector(precision="bf16" on the CPU, "fp16" on CUDA) against fp32 on a fixed image: each of
    the 10 best fp32 detections has a reduced-precision detection whose score is within 0.01 and whose
    box has IoU >= 0.9 with it.

    Measured on the 2-core CPU (bf16 autocast, seeded random weights, this image): score differences
    <= 0.004 and IoUs >= 0.949 over the 10 best; the bounds leave 2.5x the score difference and 2x
    the IoU loss (1 - 0.949). The two must differ somewhere (the precision really changes).
    """
    from lib.bbox import box_iou
    from model import SSH

    torch.manual_seed(0)
    net = SSH().eval()
    cfg = get_config()
    cfg.TEST.ORIG_SIZE = True
    image = np.random.default_rng(8).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    ref = torch.from_numpy(Detector.from_config(net, cfg, device=device).detect(image))
    precision = "fp16" if device.type == "cuda" else "bf16"
    fast = torch.from_numpy(Detector.from_config(net, cfg, device=device, precision=precision).detect(image))
    top = ref[:10]
    assert len(top) == 10 and len(fast) > 0
    close = (top[:, None, 4] - fast[None, :, 4]).abs() <= 0.01
    iou = torch.where(close, box_iou(top[:, :4], fast[:, :4]), torch.zeros(()))
    best = iou.max(dim=1).values
    print(f"{precision} vs fp32, 10 best: min IoU", best.min().item())
    assert (best >= 0.9).all(), best
    assert not torch.equal(ref, fast)


@pytest.mark.parametrize("precision, dtype", [("bf16", torch.bfloat16), ("fp16", torch.float16)])
def test_precision_runs_the_network_under_its_autocast_and_decodes_in_float32(precision, dtype):
    """--precision bf16 / fp16 is autocast in that dtype around the network only; fp32 is none."""
    seen = []

    class Recorder(StubNet):
        def forward(self, blob):
            seen.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))
            return super().forward(blob)

    cfg = get_config()
    cfg.TEST.update(SCALES=[64], MAX_SIZE=96)
    image = np.zeros((48, 64, 3), np.uint8)
    Detector.from_config(Recorder(), cfg, precision=precision).detect(image)
    Detector.from_config(Recorder(), cfg).detect(image)
    assert seen[0] == (True, dtype) and seen[1][0] is False


def test_build_detector_keeps_the_official_test_threshold(random_checkpoint):
    """eval.py's curves need every detection above 0.05 (official test_net thresh), not the demo's 0.5."""
    from model.detector import build_detector

    _, pth = random_checkpoint
    assert build_detector(pth, get_config(), "cpu").post.score_thresh == 0.05
