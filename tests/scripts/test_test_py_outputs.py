"""test.py's outputs besides the drawn pictures: JSON, crops, WIDER prediction files for any folder,
anonymised pictures, and originals that are never overwritten."""
import cv2
import numpy as np
import pytest

from lib.anonymize import mask_boxes
from lib.config import get_config
from lib.evaluation.run import run_detection, val_images
from lib.evaluation.wider_txt import format_detections as wider_format
from lib.outputs import crop_region, read_detections_json
from lib.utils.exit_codes import ExitCode
from model.detector import Detector
from shared import DATA, needs_shared
from test import main

MINI = DATA / "mini_wider"

SMALL = ["--set", "TEST.SCALES", "[64]", "--set", "TEST.MAX_SIZE", "96", "--device", "cpu"]


def noise(shape, seed):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """A folder with a photo, a subfolder with two more (one a PNG), and a hidden folder."""
    root = tmp_path_factory.mktemp("photos")
    (root / "event").mkdir()
    (root / ".cache").mkdir()
    cv2.imwrite(str(root / "a.png"), noise((60, 80, 3), 1))
    cv2.imwrite(str(root / "event" / "b.png"), noise((64, 96, 3), 2))
    cv2.imwrite(str(root / "event" / "c.jpg"), noise((50, 70, 3), 3))
    cv2.imwrite(str(root / ".cache" / "skip.png"), noise((50, 70, 3), 4))
    return root


def reference(net, path):
    cfg = get_config()
    cfg.TEST.update(SCALES=[64], MAX_SIZE=96)
    return Detector.from_config(net, cfg).detect(cv2.imread(str(path)))


def test_json_crops_and_wider_files_of_a_folder_tree(random_checkpoint, photos, tmp_path):
    net, pth = random_checkpoint
    out = tmp_path / "out"
    assert main(["--dir", str(photos), "--model", str(pth), "--out", str(out), "--thresh", "0.7", "--save-json",
                 "--save-crops", "--crop-margin", "0.25", "--save-wider"] + SMALL) == 0
    entries = read_detections_json(out / "detections.json")
    assert [e["path"] for e in entries] == [str(photos / n) for n in ("a.png", "event/b.png", "event/c.jpg")]
    for entry in entries:
        path = photos / entry["path"]
        image = cv2.imread(str(path))
        ref = reference(net, path)
        kept = ref[ref[:, 4] >= 0.7]
        assert (entry["height"], entry["width"]) == image.shape[:2] and 0 < len(kept) < len(ref)
        np.testing.assert_allclose(entry["dets"][:, :4], kept[:, :4], atol=0.051)
        np.testing.assert_allclose(entry["dets"][:, 4], kept[:, 4], rtol=1e-5)
        for k, (crop, box) in enumerate(zip(entry["crops"], kept)):
            x1, y1, x2, y2 = crop_region(box, 0.25, image.shape[:2])
            assert crop.startswith(f"crops/{path.stem}_{k:03d}_") and crop.endswith(".jpg")
            jpeg = cv2.imdecode(cv2.imencode(".jpg", image[y1:y2, x1:x2])[1], cv2.IMREAD_COLOR)
            np.testing.assert_array_equal(cv2.imread(str(out / crop)), jpeg)  # the JPEG of those very pixels
        # the official per-image file, every detection above the official floor, whatever --thresh
        rel = path.relative_to(photos).as_posix()
        text = (out / "wider" / rel).with_suffix(".txt").read_text()
        assert text.splitlines()[:2] == [rel, str(len(ref))]
        want = np.loadtxt(wider_format(rel, ref).splitlines()[2:], ndmin=2)
        np.testing.assert_allclose(np.loadtxt(text.splitlines()[2:], ndmin=2), want, atol=1e-5, rtol=1e-5)
    assert not (out / "wider" / ".cache").exists() and len(list((out / "crops").iterdir())) == sum(
        len(e["dets"]) for e in entries)


def test_anonymised_pictures_change_the_masks_and_nothing_else(random_checkpoint, photos, tmp_path):
    net, pth = random_checkpoint
    out = tmp_path / "out"
    image = cv2.imread(str(photos / "a.png"))
    ref = reference(net, photos / "a.png")
    thresh = (ref[1, 4] + ref[2, 4]) / 2  # the two best boxes of the random network (large ones)
    assert main(["--image", str(photos / "a.png"), "--model", str(pth), "--out", str(out), "--thresh", str(thresh),
                 "--anonymize", "solid", "--mask-shape", "box", "--mask-scale", "0.5"] + SMALL) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a_anonymized.png", "a_ssh.txt"]  # no drawn picture
    inside = np.zeros(image.shape[:2], bool)
    for x1, y1, x2, y2 in mask_boxes(ref[:2], 0.5, image.shape[:2]):
        inside[y1:y2, x1:x2] = True
    assert 0 < inside.mean() < 0.9
    got = cv2.imread(str(out / "a_anonymized.png"))
    assert (got[inside] == 0).all()
    np.testing.assert_array_equal(got[~inside], image[~inside])


def test_anonymize_with_draw_writes_both(random_checkpoint, photos, tmp_path):
    _, pth = random_checkpoint
    out = tmp_path / "out"
    assert main(["--image", str(photos / "event" / "c.jpg"), "--model", str(pth), "--out", str(out),
                 "--anonymize", "pixelate", "--draw"] + SMALL) == 0
    assert sorted(p.name for p in out.iterdir()) == ["c_anonymized.jpg", "c_ssh.jpg", "c_ssh.txt"]


def test_inputs_are_never_overwritten(random_checkpoint, tmp_path, capsys):
    _, pth = random_checkpoint
    folder = tmp_path / "photos"
    folder.mkdir()
    cv2.imwrite(str(folder / "p.png"), noise((60, 80, 3), 5))
    cv2.imwrite(str(folder / "p_anonymized.png"), noise((60, 80, 3), 6))
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    code = main(["--dir", str(folder), "--out", str(folder), "--model", str(pth), "--anonymize", "blur"] + SMALL)
    assert code == 2
    assert "p_anonymized.png is an input of this run: refusing to overwrite it" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.name in before} == before


def test_anonymised_pictures_that_mask_nothing_are_named(random_checkpoint, photos, tmp_path, capsys):
    """A threshold above every score writes 'anonymised' copies equal to the inputs: each is named in a
    warning and in the summary, so nobody publishes them believing they are masked."""
    _, pth = random_checkpoint
    out = tmp_path / "out"
    assert main(["--dir", str(photos), "--model", str(pth), "--out", str(out), "--anonymize", "blur",
                 "--thresh", "1"] + SMALL) == 0
    err = capsys.readouterr().err
    for name in ("a.png", "event/b.png", "event/c.jpg"):
        assert err.count(f"{photos / name}: no face with score >= 1.0 in the image: its anonymised output "
                         "masks nothing") == 2  # the warning, and the summary's list
    assert "warning: 3 of 3 anonymised outputs mask no face" in err
    assert (out / "a_anonymized.png").read_bytes() and cv2.imread(str(out / "a_anonymized.png")).tobytes() == (
        cv2.imread(str(photos / "a.png")).tobytes())
    assert main(["--dir", str(photos), "--model", str(pth), "--out", str(out), "--anonymize", "blur",
                 "--thresh", "0"] + SMALL) == 0
    assert "mask" not in capsys.readouterr().err  # every picture has a face masked


def test_images_over_max_pixels_are_skipped_before_decoding(random_checkpoint, photos, tmp_path, capsys):
    _, pth = random_checkpoint
    out = tmp_path / "out"
    assert main(["--dir", str(photos), "--model", str(pth), "--out", str(out), "--max-pixels", "4800"] + SMALL) == 1
    err = capsys.readouterr().err
    for name, (w, h) in (("event/b.png", (96, 64)), ):  # 6,144 pixels; a.png (4,800) and c.jpg (3,500) pass
        assert (f"warning: {photos / name}: {w} x {h} pixels ({w * h:,}) is more than the limit of 4,800 pixels, a "
                "guard against decompression bombs; raise it with --max-pixels N on the command line") in err
    assert sorted(p.name for p in out.glob("*.txt")) == ["a_ssh.txt", "c_ssh.txt"]
    assert main(["--dir", str(photos), "--model", str(pth), "--out", str(out), "--max-pixels", "0"] + SMALL) == 0


def test_empty_folder_is_an_error_not_the_demo_photo(random_checkpoint, tmp_path, capsys):
    _, pth = random_checkpoint
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    assert main(["--dir", str(tmp_path / "empty"), "--model", str(pth), "--out", str(tmp_path / "out")] + SMALL) == 2
    assert "no image files" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, message", [
    (["--every", "2"], "apply to --video"),
    (["--hold", "3", "--video", "x.mp4"], "--hold keeps masks of --anonymize"),
    (["--video", "x.mp4", "--save-wider"], "--save-wider writes one file per image"),
    (["--every", "0", "--video", "x.mp4"], "must be at least 1, got 0"),
    (["--crop-margin", "-1"], "must be at least 0, got -1"),
    (["--anonymize", "smudge"], "invalid choice"),
    (["--thresh", "-1"], "must be a score from 0 to 1, got -1"),
    (["--thresh", "2"], "must be a score from 0 to 1, got 2"),
    (["--thresh", "nan"], "must be a score from 0 to 1, got nan"),
    (["--thresh", "high"], "expected a score from 0 to 1, got 'high'"),
    (["--mask-scale", "nan"], "must be greater than 0, got nan"),
    (["--mask-scale", "inf"], "must be greater than 0, got inf"),
    (["--crop-margin", "wide"], "expected a number, got 'wide'"),
    (["--timeout", "0"], "must be a positive number of seconds, got 0"),
])
def test_option_errors(args, message, capsys):
    with pytest.raises(SystemExit) as e:
        main(args)
    assert e.value.code == 2 and message in capsys.readouterr().err


@needs_shared(MINI)
def test_wider_files_of_a_folder_equal_eval_pys(random_checkpoint, tmp_path):
    """--save-wider over the mini WIDER val images writes, byte for byte, the files eval.py's detection
    loop writes for them (the files the official evaluation reads)."""
    net, pth = random_checkpoint
    names, root = val_images(MINI)
    cfg = get_config()
    cfg.TEST.update(SCALES=[64], MAX_SIZE=96)
    run_detection(Detector.from_config(net, cfg), names, root, tmp_path / "eval", tmp_path / "cache", {"k": 1},
                  progress=False)
    out = tmp_path / "out"
    assert main(["--dir", str(root), "--model", str(pth), "--out", str(out), "--save-wider", str(tmp_path / "test")]
                + SMALL) == 0
    eval_files = sorted(p.relative_to(tmp_path / "eval") for p in (tmp_path / "eval").rglob("*.txt"))
    assert len(eval_files) == 17
    assert sorted(p.relative_to(tmp_path / "test") for p in (tmp_path / "test").rglob("*.txt")) == eval_files
    for rel in eval_files:
        assert (tmp_path / "test" / rel).read_bytes() == (tmp_path / "eval" / rel).read_bytes(), rel


@pytest.mark.parametrize("option, message", [
    (["--save-json", "{tmp}"], "cannot write {tmp}: a folder, a file name is needed."),
    (["--save-json", "{tmp}/file/x.json"], "cannot write {tmp}/file/x.json: {tmp}/file is a file, not a folder."),
    (["--out", "{tmp}/file"], "cannot write {tmp}/file: a file, a folder is needed."),
    (["--save-wider", "{tmp}/file/wider"], "cannot write {tmp}/file/wider: {tmp}/file is a file, not a folder."),
    (["--save-json", "/proc/x.json"], "cannot write /proc/x.json: "),
])
def test_output_places_are_checked_before_the_model_loads(monkeypatch, tmp_path, capsys, option, message):
    import test as test_script

    def build_detector(*args, **kwargs):
        raise AssertionError("the model loaded before the outputs were checked")

    monkeypatch.setattr(test_script, "build_detector", build_detector)
    (tmp_path / "file").write_bytes(b"x")
    args = [a.format(tmp=tmp_path) for a in option]
    assert main(args + ["--model", str(tmp_path / "missing.pth")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: " + message.format(tmp=tmp_path)) and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # nothing created


def test_prefetching_workers_change_no_output_byte(random_checkpoint, photos, tmp_path, capsys):
    """Reading and preparing on 0, 1 or 3 threads ahead of the network: the same files, byte for byte, and the
    summary says how busy the network was."""
    _, pth = random_checkpoint
    (photos / "event" / "broken.jpg").write_bytes(b"not a picture")
    try:
        outputs = []
        for workers in ("0", "1", "3"):
            out = tmp_path / workers
            assert main(["--dir", str(photos), "--model", str(pth), "--out", str(out), "--save-json", "--save-crops",
                         "--save-wider", "--thresh", "0.3", "--workers", workers, "--batch-size", "2"] + SMALL) == 1
            err = capsys.readouterr()
            assert f"{photos / 'event' / 'broken.jpg'}: not an image OpenCV can decode" in err.err
            assert f"batch size 2, {workers} preparing thread(s); the network busy " in err.out
            outputs.append({p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()})
        assert outputs[0] == outputs[1] == outputs[2] and len(outputs[0]) > 10
    finally:
        (photos / "event" / "broken.jpg").unlink()


def test_resume_finishes_an_interrupted_folder_run_as_one_run(random_checkpoint, photos, tmp_path, monkeypatch,
                                                               capsys):
    """Ctrl-C after the first image, then the same command: the images done are skipped, their JSON entries kept
    in place, and every output equals a run never interrupted, byte for byte. Other settings are refused."""
    import test as test_script

    net, pth = random_checkpoint
    args = ["--dir", str(photos), "--model", str(pth), "--save-json", "--save-crops", "--save-wider", "--thresh",
            "0.3", "--resume", "--workers", "1"] + SMALL
    assert main(args + ["--out", str(tmp_path / "whole")]) == 0

    build = test_script.build_detector

    def interrupted_after_one(*a, **k):
        detector = build(*a, **k)
        real, calls = detector.detect_prepared, []

        def detect_prepared(prepared):
            calls.append(1)
            if len(calls) == 2:
                raise KeyboardInterrupt
            return real(prepared)
        detector.detect_prepared = detect_prepared
        return detector

    monkeypatch.setattr(test_script, "build_detector", interrupted_after_one)
    out = tmp_path / "split"
    assert main(args + ["--out", str(out)]) == ExitCode.INTERRUPTED
    assert len(read_detections_json(out / "detections.json")) == 1
    monkeypatch.setattr(test_script, "build_detector", build)
    capsys.readouterr()
    assert main(args + ["--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"--resume: 1 of 3 images were done by an earlier run in {out}; they are skipped" in printed
    assert "2 of 3 images (and 1 done before) in" in printed

    def files(folder):  # all but the settings record, which names its own folder
        return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*")
                if p.is_file() and p.name != ".ssh_run.json"}
    assert files(out) == files(tmp_path / "whole") and (out / ".ssh_run.json").is_file()

    assert main(args[:-len(SMALL)] + ["--out", str(out), "--set", "TEST.SCALES", "[80]", "--set", "TEST.MAX_SIZE",
                                      "96", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --resume: {out} holds the outputs of a run with other settings (TEST was ")
    assert files(out) == files(tmp_path / "whole")  # nothing written


def test_sigterm_stops_like_ctrl_c_and_resume_finishes(random_checkpoint, tmp_path):
    """SIGTERM (a scheduler's or torchrun's stop) mid-folder: exit 130 with whole outputs and a valid JSON file;
    the same command then finishes with the outputs of an unbroken run."""
    import signal
    import subprocess
    import sys
    import time

    from shared import ROOT

    _, pth = random_checkpoint
    folder = tmp_path / "in"
    folder.mkdir()
    for k in range(30):
        cv2.imwrite(str(folder / f"{k:02d}.png"), noise((60, 80, 3), k))
    args = [sys.executable, "test.py", "--dir", str(folder), "--model", str(pth), "--save-json", "--resume",
            "--thresh", "0.3"] + SMALL
    proc = subprocess.Popen(args + ["--out", str(tmp_path / "split")], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list((tmp_path / "split").glob("*_ssh.txt")):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    written = int(err.split("stopped by Ctrl-C after ")[1].split()[0])
    assert 0 < written < 30 and len(read_detections_json(tmp_path / "split" / "detections.json")) == written
    for out in ("split", "whole"):
        done = subprocess.run(args + ["--out", str(tmp_path / out)], cwd=ROOT, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
    files = [{p.name: p.read_bytes() for p in (tmp_path / out).iterdir() if p.name != ".ssh_run.json"}
             for out in ("split", "whole")]
    assert files[0] == files[1] and len(files[0]) == 61
