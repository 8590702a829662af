"""A real detector's 3,226 WIDER val prediction files against the official MATLAB tool's AP."""
import json

import numpy as np
import pytest

import eval as eval_script
from shared import DATA

GT_DIR = DATA / "wider_eval_gt"
# wider_eval.m under GNU Octave 7.3 (shared/data/README.md).
OFFICIAL = {"easy": 0.93243941106335027, "medium": 0.91291006177467748, "hard": 0.8297385224210827}


def test_ground_truth_counts(wider_gt):
    gt = wider_gt
    assert len(gt) == 3226 and len(set(gt.events)) == 61
    assert sum(len(b) for b in gt.boxes) == 39708
    assert {s: gt.count_face(s) for s in gt.keep} == {"easy": 7211, "medium": 13319, "hard": 31958}


def test_real_predictions_give_the_official_ap(yolov7face_results):
    results = yolov7face_results
    for setting, ap in OFFICIAL.items():
        assert results[setting]["ap"] == pytest.approx(ap, abs=1e-12, rel=0)
        assert results[setting]["precision"].shape == results[setting]["recall"].shape == (1000,)


def test_eval_script_on_a_predictions_folder(wider_gt, yolov7face, tmp_path, capsys):
    out_json, out_png = tmp_path / "r.json", tmp_path / "pr.png"
    rc = eval_script.main(["--predictions", str(yolov7face), "--gt", str(GT_DIR),
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


def test_eval_script_missing_paths_exit_2(wider_gt, tmp_path, capsys):
    assert eval_script.main(["--predictions", str(tmp_path / "nope"), "--gt", str(GT_DIR)]) == 2
    assert eval_script.main(["--predictions", str(tmp_path), "--gt", str(tmp_path / "nogt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: predictions folder not found: {tmp_path / 'nope'}",
                   f"error: ground-truth file not found: {tmp_path / 'nogt' / 'wider_face_val.mat'}"]


def test_a_subset_of_every_image_in_any_order_gives_the_official_ap(wider_gt, yolov7face, yolov7face_results):
    from lib.evaluation import wider_eval

    names = [f"{e}/{im}.jpg" for e, im in zip(wider_gt.events, wider_gt.images)][::-1]
    results = wider_eval(yolov7face, wider_gt.subset(names))
    assert {s: r["ap"] for s, r in results.items()} == {s: r["ap"] for s, r in yolov7face_results.items()}


def test_a_subset_keeps_its_images_faces_in_the_official_order(wider_gt):
    picked = [7, 3, 2000, 1500]
    sub = wider_gt.subset([f"{wider_gt.events[i]}/{wider_gt.images[i]}.jpg" for i in picked])
    assert sub.images == [wider_gt.images[i] for i in sorted(picked)]
    assert all(np.array_equal(a, wider_gt.boxes[i]) for a, i in zip(sub.boxes, sorted(picked)))
    assert {s: sub.count_face(s) for s in sub.keep} == {s: sum(len(wider_gt.keep[s][i]) for i in picked)
                                                        for s in wider_gt.keep}
    with pytest.raises(ValueError, match="not in the WIDER val ground truth: 0--Parade/nope.jpg"):
        wider_gt.subset(["0--Parade/nope.jpg"])
