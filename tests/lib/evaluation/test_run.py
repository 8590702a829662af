"""The detection loop over WIDER val: prediction files, cache, resume, and eval.py's detection mode."""
import json
from pathlib import Path

import numpy as np
import pytest

import eval as eval_script
from lib.evaluation.read_pred import read_pred_file
from lib.evaluation.run import run_detection, val_images
from lib.utils.exit_codes import ExitCode
from shared import DATA, needs_shared, require

MINI = DATA / "mini_wider"
GT_DIR = DATA / "wider_eval_gt"

pytestmark = needs_shared(MINI)


class FakeDetector:
    """One detection per image derived from its size; raises after `fail_after` calls."""

    def __init__(self, fail_after=None):
        self.calls, self.fail_after = 0, fail_after

    def prepare(self, image):
        return image.shape[:2]

    def detect_prepared(self, prepared):
        if self.fail_after is not None and self.calls == self.fail_after:
            raise KeyboardInterrupt
        self.calls += len(prepared)
        return [np.array([[1.5, 2.5, w / 2, h / 2, 0.75]], dtype=np.float32) for h, w in prepared]


@pytest.fixture(scope="module")
def mini():
    return val_images(MINI)


def test_val_images_follow_the_split_file(mini):
    names, root = mini
    assert len(names) == 17 and names[0] == "0--Parade/0_Parade_marchingband_1_465.jpg"
    assert all((root / n).is_file() for n in names)


def test_run_writes_every_file_and_resumes_from_the_cache(mini, tmp_path):
    names, root = mini
    pred, cache = tmp_path / "detections", tmp_path / "cache"
    with pytest.raises(KeyboardInterrupt):
        run_detection(FakeDetector(fail_after=5), names, root, pred, cache, {"m": 1}, progress=False)
    assert len(list(cache.rglob("*.npy"))) == 5
    detector = FakeDetector()
    assert run_detection(detector, names, root, pred, cache, {"m": 1}, progress=False) == 12
    assert detector.calls == 12
    files = sorted(pred.rglob("*.txt"))
    assert len(files) == 17
    text = (pred / "0--Parade" / "0_Parade_marchingband_1_465.txt").read_text()
    assert text == "0--Parade/0_Parade_marchingband_1_465.jpg\n1\n1 2 511 337 0.75 \n"  # 1024 x 678
    assert all(read_pred_file(f)[1] is None for f in files)
    assert run_detection(FakeDetector(), names, root, pred, cache, {"m": 1}, progress=False) == 0


def test_prefetching_threads_resume_and_write_the_same_files(mini, tmp_path):
    """With 2 threads reading ahead: an interrupted run keeps what was detected, the rerun completes the
    other images, and the files equal those of a run in turn."""
    names, root = mini
    with pytest.raises(KeyboardInterrupt):
        run_detection(FakeDetector(fail_after=5), names, root, tmp_path / "a", tmp_path / "cache", {"m": 1},
                      progress=False, workers=2)
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == 5
    assert run_detection(FakeDetector(), names, root, tmp_path / "a", tmp_path / "cache", {"m": 1},
                         progress=False, workers=2) == 12
    run_detection(FakeDetector(), names, root, tmp_path / "b", None, progress=False, workers=0)
    texts = [{p.relative_to(d): p.read_bytes() for d in [tmp_path / run] for p in d.rglob("*.txt")} for run in "ab"]
    assert texts[0] == texts[1] and len(texts[0]) == 17


def test_a_changed_key_or_no_cache_recomputes(mini, tmp_path):
    names, root = mini
    names = names[:3]
    pred, cache = tmp_path / "detections", tmp_path / "cache"
    assert run_detection(FakeDetector(), names, root, pred, cache, {"m": 1}, progress=False) == 3
    assert run_detection(FakeDetector(), names, root, pred, cache, {"m": 2}, progress=False) == 3
    assert run_detection(FakeDetector(), names, root, pred, cache, {"m": 2}, progress=False) == 0
    assert run_detection(FakeDetector(), names, root, pred, None, progress=False) == 3


def test_a_corrupt_cache_file_is_recomputed(mini, tmp_path):
    names, root = mini
    cache = tmp_path / "cache"
    run_detection(FakeDetector(), names[:2], root, tmp_path / "d", cache, None, progress=False)
    (cache / Path(names[0]).with_suffix(".npy")).write_bytes(b"junk")
    assert run_detection(FakeDetector(), names[:2], root, tmp_path / "d", cache, None, progress=False) == 1


def test_missing_images_fail_before_detecting(mini, tmp_path):
    names, root = mini
    detector = FakeDetector()
    with pytest.raises(FileNotFoundError, match="1 of 2 images are missing"):
        run_detection(detector, names[:1] + ["0--Parade/nope.jpg"], root, tmp_path, None, progress=False)
    assert detector.calls == 0


@pytest.fixture
def fake_eval(monkeypatch, tmp_path):
    """(eval.py arguments, run folder) of a detection-mode run with a fake detector, in tmp_path."""
    require(GT_DIR)
    import model.detector

    def build(path, cfg, device, precision):
        build.precisions.append(precision)
        return FakeDetector()

    build.precisions = []
    monkeypatch.setattr(model.detector, "build_detector", build)
    monkeypatch.chdir(tmp_path)
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"")
    argv = ["--model", str(weights), "--data", str(MINI), "--gt", str(GT_DIR), "--net-name", "fake",
            "--set", "EXP_DIR", "exp"]
    return argv, tmp_path / "output" / "exp" / "wider_val" / "fake"


def test_eval_script_detection_mode(fake_eval, capsys):
    argv, run_dir = fake_eval
    with pytest.warns(UserWarning):  # the 3,209 val images outside mini WIDER have no predictions
        assert eval_script.main(argv) == 0
    assert len(list((run_dir / "detections").rglob("*.txt"))) == 17
    assert len(list((run_dir / "cache").rglob("*.npy"))) == 17
    results = json.loads((run_dir / "results.json").read_text())
    assert set(results) == {"easy", "medium", "hard", "pr_curves"}
    assert (run_dir / "pr_curves.png").is_file()
    assert "17 images detected, 0 taken from the cache" in capsys.readouterr().out


def test_eval_script_precision_reaches_the_detector_and_keys_the_cache(fake_eval, capsys):
    """--precision int8 builds an int8 detector, and its detections are not taken from the fp32 cache."""
    import model.detector

    argv, run_dir = fake_eval
    with pytest.warns(UserWarning):
        assert eval_script.main(argv) == 0
        assert eval_script.main(argv + ["--precision", "int8"]) == 0
        assert eval_script.main(argv + ["--precision", "int8"]) == 0
    assert model.detector.build_detector.precisions == ["fp32", "int8", "int8"]
    out = capsys.readouterr().out
    assert out.count("17 images detected, 0 taken from the cache") == 2
    assert out.count("0 images detected, 17 taken from the cache") == 1


def test_eval_script_missing_model_exits_2(tmp_path, capsys):
    require(GT_DIR)
    argv = ["--model", str(tmp_path / "none.caffemodel"), "--data", str(MINI), "--gt", str(GT_DIR)]
    assert eval_script.main(argv) == 2
    assert capsys.readouterr().err == f"error: model file not found: {tmp_path / 'none.caffemodel'}\n"


def test_eval_script_locks_its_run_folder_and_cleans_interrupted_writes(fake_eval, capsys):
    """A second eval.py on the same run folder stops with one sentence; the temporary files of a
    killed run are removed at the next start."""
    from lib.utils.atomic import TEMP_MARKER
    from lib.utils.lock import folder_lock

    argv, run_dir = fake_eval
    with folder_lock(run_dir, eval_script.EVAL_LOCK):
        assert eval_script.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "output/exp/wider_val/fake is in use by another run (pid" in err
    stale = run_dir / "cache" / "0--Parade" / f".0_Parade_Parade_0_43.npy.abcd1234{TEMP_MARKER}.npy"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"half")
    with pytest.warns(UserWarning):
        assert eval_script.main(argv) == 0
    assert not stale.exists()
    assert "Removed 1 temporary file(s) of an interrupted run" in capsys.readouterr().out


def test_eval_script_ctrl_c_keeps_the_cache_and_the_rerun_goes_on(fake_eval, monkeypatch, capsys):
    import model.detector

    argv, run_dir = fake_eval
    monkeypatch.setattr(model.detector, "build_detector", lambda *a: FakeDetector(fail_after=4))
    assert eval_script.main(argv) == ExitCode.INTERRUPTED == 130
    assert "stopped; the detections cached so far are kept" in capsys.readouterr().err
    assert len(list((run_dir / "cache").rglob("*.npy"))) == 4
    monkeypatch.setattr(model.detector, "build_detector", lambda *a: FakeDetector())
    with pytest.warns(UserWarning):
        assert eval_script.main(argv) == 0
    assert "13 images detected, 4 taken from the cache" in capsys.readouterr().out


def test_run_names_undecodable_images_after_doing_the_others(mini, tmp_path):
    import shutil

    names, root = mini
    copy = tmp_path / "images"
    for name in names[:3]:
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(root / name, copy / name)
    (copy / names[1]).write_bytes(b"junk")
    with pytest.raises(ValueError, match=rf"1 of 3 images could not be detected \(the others are written and "
                                         rf"cached\): .*{names[1]}"):
        run_detection(FakeDetector(), names[:3], copy, tmp_path / "pred", tmp_path / "cache", {"m": 1}, progress=False)
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == 2 == len(list((tmp_path / "pred").rglob("*.txt")))


def test_images_scored_alone_get_eval_py_ap_on_those_images(mini, tmp_path):
    """detect_images + score_images (validation during training) equal wider_eval of eval.py's prediction
    files against the ground truth of those images; a second call writes its files afresh."""
    from lib.evaluation import load_ground_truth, wider_eval
    from lib.evaluation.run import detect_images, score_images

    require(GT_DIR)
    names, root = mini
    gt = load_ground_truth(GT_DIR)
    run_detection(FakeDetector(), names, root, tmp_path / "eval", None, progress=False)
    expected = {s: r["ap"] for s, r in wider_eval(tmp_path / "eval", gt.subset(names)).items()}
    assert score_images(detect_images(FakeDetector(), names, root), gt, tmp_path / "val") == expected
    assert score_images(detect_images(FakeDetector(), names[:4], root), gt, tmp_path / "val") == {
        s: r["ap"] for s, r in wider_eval(tmp_path / "eval", gt.subset(names[:4])).items()}
    assert len(list((tmp_path / "val").rglob("*.txt"))) == 4
