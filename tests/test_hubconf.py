"""hubconf.py / model/hub.py: torch.hub.load(repo, "ssh", source="local") gives a ready Detector,
random or with the official weights from the cache (no network: a fixture caffemodel there), with
the config given as None, YAML, dotted or nested overrides; the NMS works without the Cython kernel;
precision="auto" says what it chose, an emulated bf16 warns (faked CPUs)."""
import importlib
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from matplotlib import cbook

import hubconf
import lib.utils.cpu_capabilities
from cpus import ZEN3, ZEN4
from lib.config import get_config
from lib.utils.integrity import record_path
from model.detector import Detector
from model.hub import REPO, cache_dir, hub_config
from model.precision import PrecisionWarning
from model.weights.loading import load_network
from weights_fixtures import write_ssh_caffemodel

QUICK = {"TEST.SCALES": [128], "TEST": {"MAX_SIZE": 200}}


@pytest.fixture(scope="module")
def image():
    return cv2.imread(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_ssh_caffemodel(root / "SSH_models" / "SSH.caffemodel", seed=1)
    return root


def hub_load(**kwargs):
    return torch.hub.load(str(REPO), "ssh", source="local", device="cpu", **kwargs)


def test_random_network_runs_on_an_image(image):
    detector = hub_load(pretrained=False, cfg=QUICK)
    assert isinstance(detector, Detector)
    assert detector.test_scales == (128,) and detector.max_size == 200
    dets = detector(image)
    assert dets.dtype == np.float32 and dets.ndim == 2 and dets.shape[1] == 5


@pytest.mark.parametrize("image, message", [
    (np.zeros((0, 0, 3), np.uint8), "expected an image with pixels, got an empty one of shape (0, 0, 3)"),
    (np.zeros((480, 0), np.uint8), "expected an image with pixels, got an empty one of shape (480, 0)"),
    (np.zeros((4, 5, 3), np.float64), "expected a uint8 numpy image (0..255, as cv2.imread gives), got float64"),
    (np.zeros((4, 5, 3, 1), np.uint8), "expected an H x W grey, BGR or BGRA image, got shape (4, 5, 3, 1)"),
])
def test_hub_detector_refuses_empty_and_wrong_images_with_a_value_error(image, message):
    """The hub's detector (not ZeroDivisionError from the scale rule for an empty image)."""
    detector = hub_load(pretrained=False, cfg=QUICK)
    with pytest.raises(ValueError, match=re.escape(message)):
        detector(image)
    with pytest.raises(ValueError, match=re.escape(message)):
        detector.detect([image])


@pytest.mark.parametrize("cfg, score_thresh, message", [
    (QUICK, -1, "score_thresh must be a number from 0 to 1, got -1"),
    (QUICK, 2, "score_thresh must be a number from 0 to 1, got 2"),
    (QUICK, float("nan"), "score_thresh must be a number from 0 to 1, got nan"),
    ({**QUICK, "TEST.NMS_THRESH": 1.5}, 0.05, "nms_thresh (TEST.NMS_THRESH) must be a number from 0 to 1, got 1.5"),
])
def test_thresholds_outside_0_1_are_refused(cfg, score_thresh, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        hub_load(pretrained=False, cfg=cfg, score_thresh=score_thresh)


@pytest.mark.parametrize("how", ["data_dir", "env"])
def test_pretrained_loads_the_cached_weights_bit_identically(data, image, monkeypatch, how):
    path = data / "SSH_models" / "SSH.caffemodel"
    if how == "env":
        monkeypatch.setenv("SSH_DATA_DIR", str(data))
        detector = hub_load(cfg=QUICK)
    else:
        detector = hub_load(cfg=QUICK, data_dir=data)
    assert record_path(path).is_file()  # verified by ensure_weights on first use
    reference = load_network(path)
    for (name, a), b in zip(detector.net.state_dict().items(), reference.state_dict().values()):
        assert torch.equal(a, b), name
    own = hub_load(weights=path, cfg=QUICK)
    assert np.array_equal(detector(image), own(image))


def test_missing_int8_model_names_the_quantize_command(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"int8 model {tmp_path}/SSH_models/SSH_int8.onnx not found: "
                                                "write it with `python3 -m model.deploy quantize`"):
        hub_load(precision="int8", data_dir=tmp_path)


@pytest.mark.parametrize("cpu, precision", [(ZEN3, "fp32"), (ZEN4, "bf16")])
def test_auto_says_once_what_it_chose_and_why(data, monkeypatch, capsys, cpu, precision):
    monkeypatch.setattr(lib.utils.cpu_capabilities, "read_capabilities", lambda: cpu)
    detector = hub_load(cfg=QUICK, data_dir=data, precision="auto")
    assert detector.precision == precision
    err = capsys.readouterr().err
    assert re.fullmatch(rf"precision auto: {precision} \(.*; no int8 model {data}/SSH_models/SSH_int8.onnx "
                        r"\(`python3 -m model.deploy quantize --model .*SSH.caffemodel` makes one\)\)\n", err), err
    random = hub_load(pretrained=False, cfg=QUICK, precision="auto")
    assert random.precision == precision
    assert capsys.readouterr().err.endswith("; no int8 model of a random network)\n")


def test_emulated_bf16_warns_in_one_line(monkeypatch):
    monkeypatch.setattr(lib.utils.cpu_capabilities, "read_capabilities", lambda: ZEN3)
    with pytest.warns(PrecisionWarning, match=r"^bf16 is emulated on this CPU \(torch AVX2, no avx512_bf16 or "
                                              r"amx_bf16\): about 5-10x slower than fp32; use fp32, or auto"):
        assert hub_load(pretrained=False, cfg=QUICK, precision="bf16").precision == "bf16"


def test_config_forms(tmp_path):
    yaml_file = tmp_path / "c.yml"
    yaml_file.write_text("TEST:\n  SCALES: [500, 800]\n")
    assert hub_config(None) == get_config()
    assert hub_config(yaml_file).TEST.SCALES == [500, 800]
    assert hub_config(str(yaml_file)).TEST.SCALES == [500, 800]
    mixed = hub_config({"TEST.SCALES": [128], "TEST": {"MAX_SIZE": 200}, "TEST.NMS_THRESH": 0.4})
    assert (mixed.TEST.SCALES, mixed.TEST.MAX_SIZE, mixed.TEST.NMS_THRESH) == ([128], 200, 0.4)
    whole = get_config(set_pairs=[("TEST.SCALES", "[640]")])
    assert hub_config(whole) == whole
    with pytest.raises(KeyError, match="unknown config key TEST.SCALE"):
        hub_config({"TEST.SCALE": [1]})
    with pytest.raises(ValueError, match="cfg must be None, a YAML path or a mapping"):
        hub_config([800])


def test_cache_dir_is_the_repository_data_unless_told(tmp_path, monkeypatch):
    monkeypatch.delenv("SSH_DATA_DIR", raising=False)
    assert cache_dir(None, get_config()) == REPO / "data" == Path(hubconf.__file__).parent / "data"
    assert cache_dir(tmp_path, get_config()) == tmp_path
    monkeypatch.setenv("SSH_DATA_DIR", str(tmp_path / "env"))
    assert cache_dir(None, get_config()) == tmp_path / "env"


def test_help_and_dependencies():
    doc = hubconf.ssh.__doc__
    assert "pretrained" in doc and "cfg" in doc and "x1, y1, x2, y2, score" in doc
    for name in hubconf.dependencies:
        importlib.import_module(name)


def test_hub_works_without_the_cython_nms(image):
    code = (
        "import sys; sys.modules['lib.nms.cpu_nms'] = None\n"  # as if `make -C lib` never ran
        "import cv2, torch\n"
        f"d = torch.hub.load({str(REPO)!r}, 'ssh', source='local', pretrained=False, device='cpu', cfg={QUICK!r})\n"
        "import lib.nms\n"
        "assert lib.nms._cpu_nms_sorted is None\n"
        f"print(d(cv2.imread({cbook.get_sample_data('grace_hopper.jpg', asfileobj=False)!r})).shape)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd="/", capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith(", 5)")
