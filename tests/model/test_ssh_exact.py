"""SSH equals the official Caffe network: same weights run through OpenCV's Caffe importer.

A caffemodel with deterministic random weights is written for ssh_heads.prototxt (the official
test_ssh.prototxt cut at the six head convolutions); OpenCV's `readNetFromCaffe` runs the official
graph, SSH.load_caffemodel + forward runs ours. Also the loader's file-format and strictness rules.
"""
import cv2
import numpy as np
import pytest
import torch

from caffe_fixtures import REFERENCE, blob_shapes, prototxt_layers, random_weights
from model import SSH
from model.weights.caffemodel import write_caffemodel
from model.vgg16 import LAYER_NAMES as VGG_LAYERS
from shared import needs_shared

HEADS_PROTOTXT = REFERENCE / "ssh_heads.prototxt"
pytestmark = needs_shared(HEADS_PROTOTXT)
OUTPUTS = [(m, i, f"{m}@ssh_{head}_output")
           for m in ("m1", "m2", "m3") for i, head in enumerate(("cls_score", "bbox_pred"))]


def caffe_layers(weights, names=None):
    return [(name, "Deconvolution" if name == "conv5_128_up" else "Convolution", weights[name])
            for name in (names if names is not None else weights)]


@pytest.fixture(scope="module")
def weights():
    return random_weights(blob_shapes(HEADS_PROTOTXT), seed=0)


@pytest.fixture(scope="module")
def caffemodel(weights, tmp_path_factory):
    path = tmp_path_factory.mktemp("exact") / "heads.caffemodel"
    write_caffemodel(path, caffe_layers(weights))
    return path


@pytest.fixture(scope="module")
def loaded(caffemodel):
    net = SSH().eval()
    report = net.load_caffemodel(caffemodel)
    return net, report


def run_opencv(prototxt, caffemodel, x):
    net = cv2.dnn.readNetFromCaffe(str(prototxt), str(caffemodel))
    net.setInput(x)
    return dict(zip([o[2] for o in OUTPUTS], net.forward([o[2] for o in OUTPUTS])))


# Max relative error (max |ours - OpenCV| / max |OpenCV| over the six heads) measured on the 2-core
# CPU (torch 2.14.1, OpenCV 4.14.0; 1 and 2 threads): 4.8e-6, 7.5e-6 and 8.2e-6 at the three sizes
# (8.6e-6 in the README's run). Tolerance: 2x the measured value (2x 8.6e-6 for the largest size),
# rounded up. CUDA was not measured (its convolutions may use TF32 by default): it keeps 1e-4.
CPU_TOLERANCE = {(64, 64): 1e-5, (197, 291): 1.6e-5, (250, 333): 1.8e-5}
CUDA_TOLERANCE = 1e-4


@pytest.mark.parametrize("size", list(CPU_TOLERANCE))
def test_heads_match_opencv_caffe(loaded, caffemodel, device, size):
    net, _ = loaded
    x = np.random.default_rng(size[0]).normal(0.0, 1.0, (1, 3, *size)).astype(np.float32)
    ref = run_opencv(HEADS_PROTOTXT, caffemodel, x)
    with torch.no_grad():
        out = net.to(device)(torch.from_numpy(x).to(device))
    tolerance = CPU_TOLERANCE[size] if device.type == "cpu" else CUDA_TOLERANCE
    errors = {}
    for m, i, name in OUTPUTS:
        got = out[m][i].cpu().numpy()
        assert got.shape == ref[name].shape, name
        scale = np.abs(ref[name]).max()
        assert ref[name].std() > 0.1 * scale > 0, f"{name}: degenerate reference output"
        errors[name] = float(np.abs(got - ref[name]).max() / scale)
    print(f"{size} max relative error {max(errors.values()):.2e} (tolerance {tolerance:.1e}):", errors)
    assert max(errors.values()) <= tolerance, errors


def test_strict_load_report(loaded, weights):
    net, report = loaded
    assert report.loaded == tuple(weights) and report.missing == report.skipped == report.duplicates == ()
    for spec, layer in net.caffe_layers():
        for p, w in zip(layer.parameters(), weights[spec.caffe_name]):
            assert np.array_equal(p.detach().cpu().numpy(), w), spec.caffe_name


def test_legacy_unpacked_file_gives_identical_weights(loaded, caffemodel, weights, tmp_path):
    path = tmp_path / "legacy.caffemodel"
    write_caffemodel(path, caffe_layers(weights), legacy=True, packed=False)
    net = SSH()
    assert net.load_caffemodel(path).loaded == tuple(weights)
    for a, b in zip(net.state_dict().values(), loaded[0].state_dict().values()):
        assert torch.equal(a, b.cpu())
    x = np.random.default_rng(5).normal(0.0, 1.0, (1, 3, 64, 64)).astype(np.float32)
    legacy, current = run_opencv(HEADS_PROTOTXT, path, x), run_opencv(HEADS_PROTOTXT, caffemodel, x)
    assert all(np.array_equal(legacy[name], current[name]) for name in current)  # OpenCV reads it alike


def test_training_snapshot_layout(weights, tmp_path):
    """Layers in train_ssh.prototxt order: OHEM copies share values, mi@ssh_7x7 stored twice (OHEM copy first)."""
    layers = []
    for layer in prototxt_layers(REFERENCE / "train_ssh.prototxt"):
        owner = layer["name"].removesuffix("_ohem")
        blobs = weights[owner] if layer["type"] in ("Convolution", "Deconvolution") else []
        layers.append((layer["name"], layer["type"], blobs))
    path = tmp_path / "SSH.caffemodel"
    write_caffemodel(path, layers)
    net = SSH()
    report = net.load_caffemodel(path)
    assert report.duplicates == ("m3@ssh_7x7", "m2@ssh_7x7", "m1@ssh_7x7")
    assert report.missing == () and sorted(report.loaded) == sorted(weights)
    # 3x3, dimred, 5x5, 7x7-1, cls_score of each module (the OHEM copy of 7x7 has no suffix)
    assert len(report.skipped) == 3 * 5 and all(n.endswith("_ohem") for n in report.skipped)
    assert np.array_equal(net.m2.context.conv7x7.weight.detach().numpy(), weights["m2@ssh_7x7"][0])

    first = next(i for i, l in enumerate(layers) if l[0] == "m2@ssh_7x7")
    layers[first] = ("m2@ssh_7x7", "Convolution", [weights["m2@ssh_7x7"][0], weights["m2@ssh_7x7"][1] + 1])
    write_caffemodel(path, layers)
    with pytest.raises(ValueError, match="'m2@ssh_7x7' occurs twice with different values"):
        SSH().load_caffemodel(path)


def test_vgg16_like_file_non_strict(weights, tmp_path):
    rng = np.random.default_rng(1)
    fc = [(name, "InnerProduct", [rng.normal(size=(8, 16)).astype(np.float32), np.zeros(8, np.float32)])
          for name in ("fc6", "fc7", "fc8")]
    extra = [("relu1_1", "ReLU", []), ("pool5", "Pooling", []), ("drop6", "Dropout", [])]
    path = tmp_path / "VGG16.caffemodel"
    write_caffemodel(path, caffe_layers(weights, VGG_LAYERS) + extra + fc, legacy=True)
    net = SSH()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    report = net.load_caffemodel(path, strict=False)
    assert report.loaded == VGG_LAYERS and report.skipped == ("fc6", "fc7", "fc8")
    assert report.missing == tuple(n for n in weights if n not in VGG_LAYERS)
    for name, value in net.state_dict().items():
        if name.startswith("vgg."):
            layer, kind = name.split(".")[1:]
            assert np.array_equal(value.numpy(), weights[layer][kind == "bias"]), name
        else:
            assert torch.equal(value, before[name]), name
    with pytest.raises(ValueError, match=r"missing layers conv5_128, conv5_128_up, .*m1@ssh_bbox_pred$"):
        SSH().load_caffemodel(path, strict=True)


def test_missing_layer_and_shape_mismatch_raise(weights, tmp_path):
    path = tmp_path / "partial.caffemodel"
    write_caffemodel(path, caffe_layers(weights, [n for n in weights if n != "m1@ssh_5x5"]))
    with pytest.raises(ValueError, match=r"missing layers m1@ssh_5x5$"):
        SSH().load_caffemodel(path)
    report = SSH().load_caffemodel(path, strict=False)
    assert report.missing == ("m1@ssh_5x5",)

    wrong = dict(weights, **{"m2@ssh_dimred": [weights["m2@ssh_dimred"][0][:, :, :1, :1].copy(),
                                                weights["m2@ssh_dimred"][1]]})
    write_caffemodel(path, caffe_layers(wrong, ["conv1_1", "m2@ssh_dimred"]))
    for strict in (True, False):
        with pytest.raises(ValueError, match=r"layer 'm2@ssh_dimred' blob of shape \(128, 512, 1, 1\) does not fit"):
            SSH().load_caffemodel(path, strict=strict)
    write_caffemodel(path, caffe_layers(dict(weights, conv5_128_up=[weights["conv5_128_up"][0] * 2]), ["conv5_128_up"]))
    with pytest.raises(ValueError, match="'conv5_128_up' is not the fixed bilinear kernel"):
        SSH().load_caffemodel(path, strict=False)
    with pytest.raises(FileNotFoundError, match="nothing.caffemodel"):
        SSH().load_caffemodel(tmp_path / "nothing.caffemodel")
