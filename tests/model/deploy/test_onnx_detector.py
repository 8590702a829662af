"""Whole-detector ONNX export (test.py --export-onnx-detector): one graph maps a blob and its scale to
the detections of `Detector.postprocess`, at blob sizes other than the export size, with the official
+1 NMS areas; an unwritable path exits 2."""
import numpy as np
import pytest
import torch
import torchvision

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from lib.bbox import box_iou  # noqa: E402
from lib.config import get_config  # noqa: E402
from model.detector import Detector  # noqa: E402
from model.deploy.onnx_detector import EXPORT_HW, INPUT_NAMES, OUTPUT_NAME  # noqa: E402
from test import main  # noqa: E402

# (blob height, width, scale): odd sizes and scales != 1; m3 of the smallest has 2 x 2 cells, so
# every module there has fewer anchors than N_DETS_PER_MODULE, while m1 of 197 x 291 has 1850.
CASES = ((97, 131, 1.0), (197, 291, 1.7), (33, 47, 0.6))
MIN_SIZE = 6  # ANCHOR_MIN_SIZE of the exported graph, so that its size filter is exercised


@pytest.fixture(scope="module")
def exported(random_checkpoint, tmp_path_factory):
    """(SSH with seeded random weights, its .pth, the TEST config, ONNX Runtime session of the
    detection graph written by test.py --export-onnx-detector)."""
    net, pth = random_checkpoint
    path = tmp_path_factory.mktemp("onnx_detector") / "detector.onnx"
    assert main(["--export-onnx-detector", str(path), "--model", str(pth),
                 "--set", "TEST.ANCHOR_MIN_SIZE", str(MIN_SIZE)]) == 0
    cfg = get_config()
    cfg.TEST.ANCHOR_MIN_SIZE = MIN_SIZE
    return net, pth, cfg, ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def run_both(exported, h, w, scale, device):
    """(ONNX Runtime detections, Detector.postprocess detections, Detector) for a random h x w blob."""
    net, _, cfg, session = exported
    blob = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(h)) * 60
    detector = Detector.from_config(net, cfg, device=device)
    ref = detector.postprocess(detector.forward(blob), scale, (h, w)).cpu().numpy()
    out, = session.run([OUTPUT_NAME], {"images": blob.numpy(), "scale": np.array(scale, np.float32)})
    return out, ref, detector, blob


def test_graph_contract(exported):
    session = exported[3]
    assert [(i.name, i.shape, i.type) for i in session.get_inputs()] == [
        (INPUT_NAMES[0], [1, 3, "height", "width"], "tensor(float)"), (INPUT_NAMES[1], [], "tensor(float)")]
    assert [(o.name, o.shape[1], o.type) for o in session.get_outputs()] == [(OUTPUT_NAME, 5, "tensor(float)")]


@pytest.mark.parametrize("h, w, scale", CASES + ((*EXPORT_HW, 1.0),))
def test_detections_match_postprocess(exported, device, h, w, scale):
    out, ref, _, _ = run_both(exported, h, w, scale, device)
    assert len(ref) > 10 and out.shape == ref.shape
    np.testing.assert_allclose(out[:, 4], ref[:, 4], rtol=0, atol=1e-5)
    np.testing.assert_allclose(out[:, :4], ref[:, :4], rtol=0, atol=1e-2)
    assert np.all(np.diff(out[:, 4]) <= 0) and out[:, 4].min() > 0.05


def test_min_size_filter_and_plus_one_nms_decide_the_output(exported, device):
    """The graph keeps what the +1 NMS keeps, which here differs from NMS with plain areas, and the
    minimum size removes candidates; no two kept boxes overlap by more than NMS_THRESH (+1 areas)."""
    h, w, scale = CASES[1]
    out, ref, detector, blob = run_both(exported, h, w, scale, device)
    boxes, scores = detector.post.candidates(detector.forward(blob), scale, (h, w))
    keep = scores > detector.post.score_thresh
    boxes, scores = boxes[keep], scores[keep]
    plain = torchvision.ops.nms(boxes, scores, detector.post.nms_thresh)
    assert len(plain) != len(out)
    official = Detector.from_config(exported[0], get_config(), device=device)  # ANCHOR_MIN_SIZE 0
    assert len(official.postprocess(official.forward(blob), scale, (h, w))) != len(ref)
    iou = box_iou(*[torch.from_numpy(out[:, :4])] * 2).fill_diagonal_(0)
    assert iou.max() <= detector.post.nms_thresh


def test_export_to_unwritable_path_exits_2_and_leaves_nothing(exported, tmp_path, capsys):
    pth = exported[1]
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    assert main(["--export-onnx-detector", str(blocker / "detector.onnx"), "--model", str(pth)]) == 2
    assert "cannot write" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["file"]
