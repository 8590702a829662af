"""eval.py --dataset fddb: the official tool's files from a detection file, and detection on FDDB-style
folders (detection file in list order, cache, ROC files, JSON, plots) with a fake detector."""
import json

import cv2
import numpy as np
import pytest

import eval as eval_script
from lib.evaluation.fddb import evaluate_fddb_files
from lib.evaluation.fddb_io import read_detections

# name: (width, height, ellipse annotations)
IMAGES = {"2002/07/19/big/img_1": (120, 90, [(30.0, 20.0, 1.4, 50.0, 40.0)]),
          "2002/07/19/big/img_2": (100, 140, [(25.0, 18.0, -1.5, 40.0, 60.0), (12.0, 9.0, 1.5, 80.0, 30.0)]),
          "2003/01/01/big/img_3": (80, 80, [])}


@pytest.fixture
def fddb(tmp_path):
    """(originalPics folder, folds folder) of IMAGES as one fold: fold 1 lists img_1 twice, as the real one does."""
    pics, folds = tmp_path / "originalPics", tmp_path / "FDDB-folds"
    folds.mkdir()
    for name, (w, h, _) in IMAGES.items():
        (pics / name).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(pics / f"{name}.jpg"), np.zeros((h, w, 3), np.uint8))
    names = list(IMAGES)
    for k in range(1, 11):
        listed = names + [names[0]] if k == 1 else []
        (folds / f"FDDB-fold-{k:02d}.txt").write_text("".join(f"{n}\n" for n in listed))
        ellipses = "".join(f"{n}\n{len(IMAGES[n][2])}\n" + "".join(" ".join(map(str, e)) + " 1\n" for e in IMAGES[n][2])
                           for n in listed)
        (folds / f"FDDB-fold-{k:02d}-ellipseList.txt").write_text(ellipses)
    return pics, folds


class FaceFinder:
    """A detector giving the box of each face it is told of, and a false one; counts network passes."""

    def __init__(self):
        self.images = 0

    def prepare(self, image):
        return image.shape[:2]

    def detect_prepared(self, prepared):
        self.images += len(prepared)
        boxes = {(h, w): [(e[3] - e[1], e[4] - e[0], e[3] + e[1], e[4] + e[0], 0.9 - 0.1 * k) for k, e in enumerate(ell)]
                 for w, h, ell in IMAGES.values()}
        return [np.array(boxes[hw] + [(0, 0, 9, 9, 0.3)], np.float32) for hw in prepared]


def test_detection_writes_the_official_file_in_list_order_and_evaluates_it(fddb, tmp_path, monkeypatch, capsys):
    import model.detector

    pics, folds = fddb
    finder = FaceFinder()
    monkeypatch.setattr(model.detector, "build_detector", lambda *a: finder)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "w.pth").write_bytes(b"")
    argv = ["--dataset", "fddb", "--images", str(pics), "--folds", str(folds), "--model", "w.pth", "--net-name", "fake",
            "--set", "EXP_DIR", "exp"]
    assert eval_script.main(argv) == 0
    run = tmp_path / "output" / "exp" / "fddb" / "fake"
    text = (run / "detections.txt").read_text().splitlines()
    assert [line for line in text if line.startswith("200")] == list(IMAGES) + ["2002/07/19/big/img_1"]
    assert text[1:3] == ["2", "30.0 10.0 40.0 60.0 0.8999999761581421"]  # left top width height score, x2 - x1
    assert finder.images == 3  # the repeated image is detected once
    expected = evaluate_fddb_files(folds, run / "detections.txt", pics, folds)
    for kind, file in (("discrete", "DiscROC.txt"), ("continuous", "ContROC.txt")):
        assert (run / file).is_file()
        np.testing.assert_array_equal(np.array(json.loads((run / "results.json").read_text())["roc"][kind]),
                                      expected[kind])
    assert (run / "roc.png").is_file() and (run / "roc_continuous.png").is_file()
    out = capsys.readouterr().out
    assert "3 images detected, 0 taken from the cache" in out and "FDDB: 4 faces in 4 images" in out
    assert "discrete   TPR 1.0000 at 1000 FP, 1.0000 at 2000 FP" in out  # every face found, 4 false positives
    assert eval_script.main(argv + ["--fddb-box", "ellipse"]) == 0
    assert "0 images detected, 3 taken from the cache" in capsys.readouterr().out
    assert read_detections(run / "detections.txt", "ellipse")[0].regions.shape == (2, 6)


def test_a_detection_file_is_scored_as_the_official_tool(fddb, tmp_path, capsys):
    pics, folds = fddb
    dets = tmp_path / "dets.txt"
    dets.write_text("2002/07/19/big/img_1\n1\n20 20 40 40 0.5\n2002/07/19/big/img_2\n0\n2003/01/01/big/img_3\n0\n"
                    "2002/07/19/big/img_1\n1\n20 20 40 40 0.5\n")
    argv = ["--dataset", "fddb", "--annotations", str(folds), "--predictions", str(dets), "--images", str(pics),
            "--list", str(folds), "--roc", str(tmp_path / "ours")]
    assert eval_script.main(argv) == 0
    expected = evaluate_fddb_files(folds, dets, pics, folds, roc_prefix=tmp_path / "ref")
    assert (tmp_path / "oursDiscROC.txt").read_text() == (tmp_path / "refDiscROC.txt").read_text()
    assert (tmp_path / "oursContROC.txt").read_text() == (tmp_path / "refContROC.txt").read_text()
    assert expected["faces"] == 4 and "FDDB: 4 faces in 4 images" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--dataset", "fddb", "--folds", "f"], "--dataset fddb needs --images DIR"),
    (["--dataset", "fddb", "--images", "p"], "--dataset fddb needs --folds DIR (FDDB-folds/) or --annotations PATH"),
    (["--dataset", "fddb", "--images", "p", "--folds", "f", "--gt", "g"], "--gt is a WIDER option"),
    (["--folds", "f"], "--folds is an FDDB option: give --dataset fddb"),
])
def test_options_of_the_other_benchmark_are_refused(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        eval_script.main(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
