"""lib/webapp/photos.py and named_json.py: the Photos tab's run is test.py's, JSON file byte for byte."""
import json
import zipfile

import cv2
import numpy as np

from lib.webapp.limits import Limits
from lib.webapp.photos import JSON_NAME, PhotoOptions, detect_photos
from lib.webapp.uploads import photo_inputs
from test import main as run_test_py

SMALL = ["--set", "TEST.SCALES", "[64]", "--set", "TEST.MAX_SIZE", "96"]  # conftest.py's detector


def noise(path, shape, seed):
    cv2.imwrite(str(path), np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8))
    return path


def test_outputs_of_uploads_and_a_zip_equal_test_py_run_in_their_folder(small_detector, tmp_path, monkeypatch):
    detector, pth = small_detector
    sent = tmp_path / "sent"
    sent.mkdir()
    a = noise(sent / "a.jpg", (60, 80, 3), 1)
    other = tmp_path / "other"
    other.mkdir()
    a2 = noise(other / "a.jpg", (50, 70, 3), 2)
    with zipfile.ZipFile(sent / "trip.zip", "w") as archive:
        archive.write(noise(tmp_path / "x.png", (64, 48, 3), 3), "day 1/x.png")
        archive.write(noise(tmp_path / "y.jpg", (40, 90, 3), 4), "y.jpg")
    (sent / "bad.jpg").write_text("not a picture")
    folder = tmp_path / "request"
    inputs, problems = photo_inputs([a, a2, sent / "trip.zip", sent / "bad.jpg"], folder / "in", Limits())
    assert problems == []
    options = PhotoOptions(thresh=0.3, anonymize="pixelate", mask_shape="box", mask_scale=1.5, crops=True,
                           crop_margin=0.1)
    steps = []
    results = detect_photos(detector, inputs, folder, options, str(pth), "fp32", 10**8,
                            lambda done, total: steps.append((done, total)))
    names = ["a.jpg", "a (2).jpg", "trip/day 1/x.png", "trip/y.jpg"]
    assert steps == [(0, 5), (1, 5), (2, 5), (3, 5), (4, 5)]
    assert results.problems == ["bad.jpg: not an image OpenCV can decode (damaged, or not an image)"]
    assert results.images == 4 and [caption.split(":")[0] for _, caption in results.drawn] == names
    assert [p.name for p in results.downloads] == ["anonymized.zip", JSON_NAME, "crops.zip"]

    monkeypatch.chdir(folder / "in")
    images = [arg for name in names + ["bad.jpg"] for arg in ("--image", name)]
    code = run_test_py([*images, "--model", str(pth), *SMALL, "--out", "../ref", "--save-json", "--save-crops",
                        "--crop-margin", "0.1", "--thresh", "0.3", "--anonymize", "pixelate", "--mask-shape", "box",
                        "--mask-scale", "1.5", "--draw"])
    assert code == 1  # bad.jpg
    ref = folder / "ref"
    assert (folder / "out" / JSON_NAME).read_bytes() == (ref / JSON_NAME).read_bytes()
    for path, _ in results.drawn + results.anonymized:
        assert path.read_bytes() == (ref / path.name).read_bytes()
    entries = json.loads((ref / JSON_NAME).read_text())["images"]
    assert [e["path"] for e in entries] == names
    assert results.faces == sum(len(e["detections"]) for e in entries) == len(results.rows) > 0
    assert results.rows[0] == ["a.jpg", 1, *entries[0]["detections"][0]["box"], entries[0]["detections"][0]["score"]]
    with zipfile.ZipFile(results.downloads[2]) as crops:
        assert sorted(crops.namelist()) == sorted(f"crops/{p.name}" for p in (ref / "crops").iterdir())
    with zipfile.ZipFile(results.downloads[0]) as masked:
        assert sorted(masked.namelist()) == ["a (2)_anonymized.jpg", "a_anonymized.jpg", "x_anonymized.png",
                                             "y_anonymized.jpg"]


def test_one_photo_without_anonymising_offers_its_json_only(small_detector, tmp_path):
    detector, pth = small_detector
    photo = noise(tmp_path / "p.jpg", (60, 80, 3), 5)
    inputs, _ = photo_inputs([photo], tmp_path / "r" / "in", Limits())
    results = detect_photos(detector, inputs, tmp_path / "r", PhotoOptions(), "m.pth", "fp32", 10**8)
    assert results.anonymized == [] and [p.name for p in results.downloads] == [JSON_NAME]
    assert results.summary(0.5) == f"**{results.faces} face{'s' * (results.faces != 1)}** (score ≥ 0.5) in 1 image"
    header = json.loads(results.downloads[0].read_text())
    assert (header["model"], header["precision"], header["score_thresh"]) == ("m.pth", "fp32", 0.5)


def test_nothing_readable_gives_no_results_and_the_reasons(small_detector, tmp_path):
    detector, _ = small_detector
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "e.png").write_bytes(b"")
    results = detect_photos(detector, [tmp_path / "in" / "e.png"], tmp_path, PhotoOptions(), "m", "fp32", 10**8)
    assert results.images == 0 and results.downloads == [] and results.problems == ["e.png: empty file (0 bytes)"]
