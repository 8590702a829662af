"""test.py as a user runs it: phone photos, folders with bad files, clashing names, odd sizes."""
import cv2
import numpy as np
import pytest
from PIL import Image

from lib.config import get_config
from lib.image_io import ImageWarning
from lib.video import FrameReader
from model.detector import Detector
from lib.sources import output_stems
from lib.utils.exit_codes import ExitCode
from test import main, parse_args

SMALL = ["--set", "TEST.SCALES", "[64]", "--set", "TEST.MAX_SIZE", "96", "--thresh", "0.05", "--device", "cpu"]


def noise(shape, seed):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def small_detector(net):
    cfg = get_config()
    cfg.TEST.update(SCALES=[64], MAX_SIZE=96)
    return Detector.from_config(net, cfg)


def test_phone_photo_with_exif_orientation_is_detected_upright(random_checkpoint, tmp_path):
    """Stored 96 wide x 64 high with orientation 6: the picture and the boxes are those of the
    upright 64 x 96 photo, as the official demo's cv2.imread sees it."""
    net, pth = random_checkpoint
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "phone.jpg"
    Image.fromarray(noise((64, 96, 3), 1)).save(path, exif=exif.tobytes(), quality=95)
    out = tmp_path / "out"
    assert main(["--image", str(path), "--model", str(pth), "--out", str(out)] + SMALL) == 0
    assert cv2.imread(str(out / "phone_ssh.jpg")).shape == (96, 64, 3)
    got = np.loadtxt(out / "phone_ssh.txt", ndmin=2)
    ref = small_detector(net).detect(cv2.imread(str(path)))
    assert len(ref) > 5 and got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=0, atol=0.06)
    assert got[:, 3].max() > 64  # boxes reach below the stored height: the upright frame


def test_folder_goes_on_past_bad_files_and_reports_them(random_checkpoint, tmp_path, capsys):
    net, pth = random_checkpoint
    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "a.jpg"), noise((60, 80, 3), 2))
    cv2.imwrite(str(photos / "a.png"), noise((60, 80, 3), 3))
    cv2.imwrite(str(photos / "long.png"), noise((1, 5000, 3), 4))
    cv2.imwrite(str(photos / "tall.png"), noise((3000, 2, 3), 5))
    (photos / "broken.jpg").write_bytes(b"not an image")
    (photos / "empty.png").write_bytes(b"")
    data = cv2.imencode(".jpg", noise((60, 80, 3), 6))[1].tobytes()
    (photos / "cut.jpg").write_bytes(data[:len(data) // 2])
    out = tmp_path / "out"
    with pytest.warns(ImageWarning, match=r"cut\.jpg: truncated JPEG"):
        code = main(["--dir", str(photos), "--model", str(pth), "--out", str(out), "--batch-size", "2"] + SMALL)
    captured = capsys.readouterr()
    assert code == 1
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{stem}_ssh.{ext}" for stem in ("a_jpg", "a_png", "long", "tall", "cut") for ext in ("jpg", "txt"))
    assert "warning: " in captured.err and "broken.jpg: not an image OpenCV can decode" in captured.err
    assert "error: 5 of 7 images done, these failed:" in captured.err and "empty.png: empty file" in captured.err
    assert "5 of 7 images" in captured.out
    assert " s -> " not in captured.out  # no per-image time when images share a batch
    for stem, name, shape in (("a_png", "a.png", (60, 80)), ("long", "long.png", (1, 5000)), ("tall", "tall.png", (3000, 2))):
        got = np.loadtxt(out / f"{stem}_ssh.txt", ndmin=2)
        ref = small_detector(net).detect(cv2.imread(str(photos / name)))
        assert got.shape == ref.shape and len(ref) > 0
        assert (got[:, 2] <= shape[1]).all() and (got[:, 3] <= shape[0]).all()


def test_output_stems_are_unique():
    from pathlib import Path

    paths = [Path(p) for p in ("x/a.jpg", "x/A.png", "y/a.jpg", "x/b.jpg", "y/c.jpg")]
    assert output_stems(paths) == ["a_jpg", "A_png", "a_jpg_2", "b", "c"]


def test_frame_folder_goes_on_past_a_bad_frame(random_checkpoint, tmp_path, capsys):
    _, pth = random_checkpoint
    frames = tmp_path / "frames"
    frames.mkdir()
    for k in range(4):
        cv2.imwrite(str(frames / f"{k:03d}.png"), noise((64, 96, 3), k))
    (frames / "002.png").write_bytes(b"damaged")
    cv2.imwrite(str(frames / "004.png"), noise((32, 48, 3), 9))  # a frame of another size
    out = tmp_path / "out"
    assert main(["--video", str(frames), "--model", str(pth), "--out", str(out)] + SMALL) == 1
    err = capsys.readouterr().err
    assert "frame 2: " in err and "002.png" in err and "error: 4 of 5 frames done, these failed:" in err
    assert "frame 4 is 48 x 32, the video 96 x 64: resized" in err
    assert sorted(p.name for p in (out / "frames_ssh").iterdir()) == [f"00000{k}.txt" for k in (0, 1, 3, 4)]
    with FrameReader(out / "frames_ssh.mp4") as video:
        assert sum(1 for _ in video) == 4


def test_underscore_spellings_are_hidden_aliases_and_errors_one_line(capsys):
    hyphenated = parse_args(["--batch-size", "2", "--max-pixels", "0"])
    assert parse_args(["--batch_size", "2", "--max_pixels", "0"]) == hyphenated and hyphenated.batch_size == 2
    with pytest.raises(SystemExit) as stopped:
        parse_args(["--batch_size", "0"])
    assert stopped.value.code == ExitCode.BAD_INPUT == 2
    assert capsys.readouterr().err == "error: argument --batch-size: must be at least 1, got 0\n"
