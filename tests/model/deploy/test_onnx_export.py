"""ONNX export (test.py --export-onnx) and the ONNX Runtime backend: a valid graph with dynamic
batch/height/width whose heads and detections match PyTorch at sizes other than the export size,
and clear exit-2 errors for bad paths and files."""
import math

import cv2
import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from lib.config import get_config  # noqa: E402
from model.detector import Detector  # noqa: E402
from model.deploy.onnx_export import EXPORT_HW, OUTPUT_NAMES, check_onnx  # noqa: E402
from model.deploy.onnx_runtime import OnnxSSH, load_session  # noqa: E402
from model.ssh import SSH  # noqa: E402
from test import main  # noqa: E402

# Sizes other than the export size (64 x 96), odd ones included: 97 -> 49 -> 25 -> 13 -> 7 -> 4
# rows, where ceil pooling and the conv5_128_crop both matter.
SIZES = ((97, 131), (197, 291), EXPORT_HW)


@pytest.fixture(scope="module")
def exported(random_checkpoint, tmp_path_factory):
    """(SSH with seeded random weights, its .pth, its ONNX file written by test.py --export-onnx)."""
    net, pth = random_checkpoint
    path = tmp_path_factory.mktemp("onnx") / "ssh.onnx"
    assert main(["--export-onnx", str(path), "--model", str(pth)]) == 0
    return net, pth, path


def relative_errors(net, onnx_net, images):
    """({output name: max |onnx - torch| / max |torch|}, the ONNX Runtime heads) for one batch."""
    with torch.inference_mode():
        ref, out = net(images), onnx_net(images)
    return {f"{m}_{kind}": ((out[m][i] - ref[m][i]).abs().max() / ref[m][i].abs().max()).item()
            for m in ref for i, kind in enumerate(("cls_score", "bbox_pred"))}, out


def test_graph_is_valid_and_fully_dynamic(exported):
    _, _, path = exported
    check_onnx(path)  # onnx's full checker plus the input/output contract
    model = onnx.load(str(path))
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, "height", "width"]
    assert tuple(o.name for o in model.graph.output) == OUTPUT_NAMES
    pools = [n for n in model.graph.node if n.op_type == "MaxPool"]
    assert len(pools) == 5  # pool1..pool4 and pool6, all with Caffe's ceil rounding
    assert all(onnx.helper.get_attribute_value(a) == 1 for n in pools for a in n.attribute if a.name == "ceil_mode")


@pytest.mark.parametrize("hw", SIZES)
def test_onnxruntime_heads_match_pytorch(exported, hw):
    net, _, path = exported
    images = torch.randn(2, 3, *hw, generator=torch.Generator().manual_seed(hw[0])) * 60
    errors, out = relative_errors(net, OnnxSSH.from_file(path), images)
    for m, stride in (("m1", 8), ("m2", 16), ("m3", 32)):
        assert out[m][0].shape == (2, 4, math.ceil(hw[0] / stride), math.ceil(hw[1] / stride))
        assert out[m][1].shape == (2, 8, math.ceil(hw[0] / stride), math.ceil(hw[1] / stride))
    assert max(errors.values()) <= 1e-4, errors


def test_onnxruntime_detector_matches_pytorch(exported, device):
    net, _, path = exported
    cfg = get_config()
    cfg.TEST.SCALES, cfg.TEST.MAX_SIZE = [150], 1000  # images are resized, as in a real test
    image = np.random.default_rng(1).integers(0, 256, (97, 131, 3), dtype=np.uint8)
    ref = Detector.from_config(net, cfg, device=device).detect(image)
    out = Detector.from_config(OnnxSSH.from_file(path, device), cfg, device=device).detect(image)
    assert len(ref) > 10 and out.shape == ref.shape
    np.testing.assert_allclose(out[:, 4], ref[:, 4], rtol=0, atol=1e-5)
    np.testing.assert_allclose(out[:, :4], ref[:, :4], rtol=0, atol=1e-2)


def read_detections(path):
    return np.loadtxt(path, ndmin=2).reshape(-1, 5)


def test_cli_onnxruntime_backend_matches_pytorch_backend(exported, tmp_path):
    _, pth, path = exported
    image = tmp_path / "faces.png"
    cv2.imwrite(str(image), np.random.default_rng(2).integers(0, 256, (64, 96, 3), dtype=np.uint8))
    common = ["--image", str(image), "--thresh", "0.05", "--set", "TEST.ORIG_SIZE", "True", "--device", "cpu"]
    assert main(common + ["--model", str(pth), "--out", str(tmp_path / "pt")]) == 0
    assert main(common + ["--backend", "onnxruntime", "--model", str(path), "--out", str(tmp_path / "ort")]) == 0
    ref, out = (read_detections(tmp_path / d / "faces_ssh.txt") for d in ("pt", "ort"))
    assert len(ref) > 10 and out.shape == ref.shape
    np.testing.assert_allclose(out, ref, rtol=0, atol=0.11)  # boxes printed with 1 decimal


def test_non_onnx_and_missing_files_exit_2(tmp_path, capsys):
    bogus = tmp_path / "ssh.onnx"
    bogus.write_bytes(b"this is not a protobuf")
    assert main(["--backend", "onnxruntime", "--model", str(bogus)]) == 2
    assert "not an ONNX model ONNX Runtime can load" in capsys.readouterr().err
    assert main(["--backend", "onnxruntime", "--model", str(tmp_path / "absent.onnx")]) == 2
    assert "model file not found" in capsys.readouterr().err
    assert main(["--model", str(bogus)]) == 2  # .onnx runs with onnxruntime by default
    assert "not an ONNX model ONNX Runtime can load" in capsys.readouterr().err
    assert main(["--backend", "pytorch", "--model", str(bogus)]) == 2  # the pytorch backend names the right one
    assert "onnxruntime backend" in capsys.readouterr().err


def test_foreign_onnx_graph_is_rejected(tmp_path):
    h = onnx.helper
    graph = h.make_graph([h.make_node("Relu", ["x"], ["y"])], "relu",
                         [h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 4, 4])],
                         [h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 3, 4, 4])])
    path = tmp_path / "relu.onnx"
    onnx.save(h.make_model(graph, opset_imports=[h.make_opsetid("", 18)]), str(path))
    with pytest.raises(ValueError, match="not an SSH graph"):
        load_session(path)
    with pytest.raises(ValueError, match="expected one input images"):
        check_onnx(path)


def test_export_to_unwritable_path_exits_2_and_leaves_nothing(exported, tmp_path, capsys):
    _, pth, _ = exported
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    assert main(["--export-onnx", str(blocker / "ssh.onnx"), "--model", str(pth)]) == 2
    assert "cannot write" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["file"]


def test_export_of_a_channels_last_network(exported, tmp_path):
    """A network a Detector has switched to channels_last exports unchanged and stays channels_last."""
    from model.deploy.onnx_export import export_onnx

    net = SSH().eval()
    net.load_state_dict(exported[0].state_dict())
    cfg = get_config()
    Detector.from_config(net, cfg, device="cpu")
    path = export_onnx(net, tmp_path / "cl.onnx")
    errors, _ = relative_errors(net, OnnxSSH.from_file(path, "cpu"), torch.randn(1, 3, 97, 131) * 50)
    assert max(errors.values()) <= 1e-4, errors
    assert net.vgg.conv1_1.weight.is_contiguous(memory_format=torch.channels_last)
