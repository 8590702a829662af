"""A real detector's 3,226 WIDER val prediction files against the official MATLAB tool's AP."""
import json
import tarfile

import pytest

import eval as eval_script
from lib.evaluation import load_ground_truth, wider_eval
from shared import DATA, require

GT_DIR = DATA / "wider_eval_gt"
ARCHIVE = DATA / "wider_val_predictions" / "yolov7face_val_txt.tar.gz"
# wider_eval.m under GNU Octave 7.3 (shared/data/README.md).
OFFICIAL = {"easy": 0.93243941106335027, "medium": 0.91291006177467748, "hard": 0.8297385224210827}


@pytest.fixture(scope="module")
def gt():
    require(GT_DIR)
    return load_ground_truth(GT_DIR)


@pytest.fixture(scope="module")
def predictions(tmp_path_factory):
    require(ARCHIVE)
    out = tmp_path_factory.mktemp("predictions")
    with tarfile.open(ARCHIVE) as tar:
        tar.extractall(out, filter="data")
    return out / "yolov7face"


def test_ground_truth_counts(gt):
    assert len(gt) == 3226 and len(set(gt.events)) == 61
    assert sum(len(b) for b in gt.boxes) == 39708
    assert {s: gt.count_face(s) for s in gt.keep} == {"easy": 7211, "medium": 13319, "hard": 31958}


def test_real_predictions_give_the_official_ap(gt, predictions):
    results = wider_eval(predictions, gt)
    for setting, ap in OFFICIAL.items():
        assert results[setting]["ap"] == pytest.approx(ap, abs=1e-12, rel=0)
        assert results[setting]["precision"].shape == results[setting]["recall"].shape == (1000,)


def test_eval_script_on_a_predictions_folder(gt, predictions, tmp_path, capsys):
    out_json, out_png = tmp_path / "r.json", tmp_path / "pr.png"
    rc = eval_script.main(["--predictions", str(predictions), "--gt", str(GT_DIR),
                           "--json", str(out_json), "--plot", str(out_png)])
    assert rc == 0
    printed = capsys.readouterr().out
    data = json.loads(out_json.read_text())
    for setting, ap in OFFICIAL.items():
        assert data[setting] == pytest.approx(ap, abs=1e-12, rel=0)
        assert f"{setting:<8}{data[setting]!r}" in printed
        assert len(data["pr_curves"][setting]["recall"]) == 1000
    assert "wider_eval(" in printed
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_eval_script_missing_paths_exit_2(gt, tmp_path, capsys):
    assert eval_script.main(["--predictions", str(tmp_path / "nope"), "--gt", str(GT_DIR)]) == 2
    assert eval_script.main(["--predictions", str(tmp_path), "--gt", str(tmp_path / "nogt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"eval.py: error: predictions folder not found: {tmp_path / 'nope'}",
                   f"eval.py: error: ground-truth file not found: {tmp_path / 'nogt' / 'wider_face_val.mat'}"]
