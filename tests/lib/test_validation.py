"""Validation during training (train.py --val-every): which images, the AP eval.py gives on the same
snapshot, training unchanged bit for bit, TensorBoard and metrics.jsonl, the ground truth written back."""
import json

import numpy as np
import pytest
import torch
from wider_fixtures import add_val_split, tiny_wider

import eval as eval_script
import train
from lib.evaluation.ground_truth import SETTINGS, GroundTruth, load_ground_truth, save_ground_truth
from lib.training.metrics import read_metrics
from lib.training.validation import val_subset
from tb_events import scalars

# 64-pixel blobs for training and detection, 2 images per SGD step.
TINY = ["--init", "none", "--device", "cpu", "--workers", "0", "--set", "TRAIN.SCALES", "[64]",
        "--set", "TRAIN.ITER_SIZE", "2", "--set", "TEST.SCALES", "[64]", "--set", "TEST.MAX_SIZE", "96"]
VAL_KEYS = [f"val_ap_{s}" for s in SETTINGS]


@pytest.fixture(scope="module")
def wider(tmp_path_factory):
    """Three random 64x80 images with a face each, as train and as val split with its ground truth."""
    return add_val_split(tiny_wider(tmp_path_factory.mktemp("wider"), 3, seed=2, x0=9, dx=7, y0=11))


def test_val_subset_spreads_the_images_over_the_split():
    names = [f"n{i}" for i in range(10)]
    assert val_subset(names, 3) == ["n0", "n3", "n6"]
    assert val_subset(names, 4) == ["n0", "n2", "n5", "n7"]
    assert val_subset(names, 0) == val_subset(names, 10) == val_subset(names, 11) == names


def test_ground_truth_saved_as_the_official_mat_files_loads_back_equal(tmp_path):
    gt = GroundTruth(["1--A", "1--A", "3--B"], ["a_1", "a_2", "b_1"],
                     [np.array([[1, 2, 3, 4], [5, 6, 7, 8]]), np.zeros((0, 4), np.int64), np.array([[9, 9, 2, 2]])],
                     {"easy": [np.array([1]), np.array([], np.int64), np.array([0])],
                      "medium": [np.array([0, 1]), np.array([], np.int64), np.array([0])],
                      "hard": [np.array([0, 1]), np.array([], np.int64), np.array([], np.int64)]})
    back = load_ground_truth(save_ground_truth(gt, tmp_path / "gt"))
    assert (back.events, back.images) == (gt.events, gt.images)
    assert all(np.array_equal(a, b) for a, b in zip(back.boxes, gt.boxes, strict=True))
    for s in SETTINGS:
        assert all(np.array_equal(a, b) for a, b in zip(back.keep[s], gt.keep[s], strict=True))


def _same_snapshots(a, b):
    a, b = (torch.load(p, weights_only=True) for p in (a, b))
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert all(torch.equal(s["history"], t["history"]) for s, t in
               zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values(), strict=True))


def test_validation_gives_eval_py_ap_and_leaves_training_unchanged(wider, tmp_path, monkeypatch):
    """--val-every 2 over 3 steps validates at steps 2 and 3 (the last): metrics.jsonl and TensorBoard hold
    the AP that eval.py computes on the step's snapshot with the ground truth of those images, from
    byte-identical prediction files; the snapshots and losses equal those of a run without validation."""
    common = ["--data", str(wider), *TINY, "--iters", "3", "--set", "TRAIN.SNAPSHOT", "2"]
    on, off = tmp_path / "on", tmp_path / "off"
    assert train.main([*common, "--out", str(on), "--val-every", "2", "--val-images", "0"]) == 0
    assert train.main([*common, "--out", str(off)]) == 0
    for name in ("SSH_iter_2.pth", "SSH_iter_3.pth"):
        _same_snapshots(on / name, off / name)
    records, plain = read_metrics(on / "metrics.jsonl"), read_metrics(off / "metrics.jsonl")
    losses = [{k: v for k, v in r.items() if k.endswith("_loss")} for r in records]
    assert losses == [{k: v for k, v in r.items() if k.endswith("_loss")} for r in plain]
    assert [[k in r for k in VAL_KEYS] for r in records] == [[False] * 3, [True] * 3, [True] * 3]
    curves = scalars(on / "tb")
    for s in SETTINGS:
        assert [(step, pytest.approx(r[f"val_ap_{s}"], rel=1e-6)) for step, r in zip((2, 3), records[1:])] == \
            curves[f"val/ap_{s}"]
    assert [step for step, _ in curves["time/val_s"]] == [2, 3]

    monkeypatch.chdir(tmp_path)
    assert eval_script.main(["--model", str(on / "SSH_iter_3.pth"), "--data", str(wider), "--device", "cpu",
                             "--no-cache", "--set", "TEST.SCALES", "[64]", "--set", "TEST.MAX_SIZE", "96"]) == 0
    detections = tmp_path / "output" / "SSH" / "wider_val" / "SSH"
    results = json.loads((detections / "results.json").read_text())
    assert {s: results[s] for s in SETTINGS} == {s: records[2][f"val_ap_{s}"] for s in SETTINGS}
    assert results["hard"] > 0  # there were detections to score
    written = sorted((on / "val" / "detections").rglob("*.txt"))
    assert [p.read_bytes() for p in written] == [
        (detections / "detections" / p.relative_to(on / "val" / "detections")).read_bytes() for p in written]
    assert len(written) == 3
    assert load_ground_truth(on / "val" / "ground_truth").images == ["img0", "img1", "img2"]


def test_validation_of_a_set_without_val_split_fails_before_training(tmp_path, capsys):
    data = tiny_wider(tmp_path / "wider", 2, seed=0, x0=10, dx=5, y0=12)
    assert train.main(["--data", str(data), *TINY, "--iters", "2", "--out", str(tmp_path / "out"),
                       "--val-every", "1"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: WIDER val annotations not found: {data / 'wider_face_split' / 'wider_face_val_bbx_gt.txt'}")
    assert not (tmp_path / "out").exists()


def test_validation_without_ground_truth_names_the_folder_and_the_option(wider, tmp_path, capsys):
    assert train.main(["--data", str(wider), *TINY, "--iters", "2", "--out", str(tmp_path / "out"),
                       "--val-every", "1", "--val-gt", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(tmp_path / "nowhere" / "wider_face_val.mat") in err
