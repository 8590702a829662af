"""lib/outputs.py: the detections JSON file has the documented schema, survives Ctrl-C, reads back to
the documented rounding and refuses damaged files by entry and field; crops are the boxes' pixels."""
import json

import cv2
import numpy as np
import pytest

from lib.outputs import DetectionsJson, crop_name, crop_region, read_detections_json, save_crops

DETS = np.array([[12.34, 40.06, 80.51, 121.749, 0.99871234],
                 [100.0, 5.5, 140.26, 60.0, 0.5000004]], np.float32)


def write_run(path, **kwargs):
    crops = [path.parent / "crops" / "a_000.jpg", None]
    with DetectionsJson(path, "SSH.caffemodel", "fp32", 0.5, **kwargs) as out:
        out.add("photos/a.jpg", (768, 1024), DETS, crops=crops)
        out.add("clip.mp4", (1080, 1920), DETS[:0], frame=25)
    return path


def test_schema_has_exactly_the_documented_keys(tmp_path):
    doc = json.loads(write_run(tmp_path / "run" / "dets.json").read_text())
    assert list(doc) == ["format", "version", "model", "precision", "score_thresh", "images"]
    assert doc["format"] == "ssh-detections" and doc["version"] == 1
    assert (doc["model"], doc["precision"], doc["score_thresh"]) == ("SSH.caffemodel", "fp32", 0.5)
    image, frame = doc["images"]
    assert list(image) == ["path", "width", "height", "detections"]
    assert list(frame) == ["path", "width", "height", "frame", "detections"]
    assert (image["width"], image["height"], frame["frame"], frame["detections"]) == (1024, 768, 25, [])
    first, second = image["detections"]
    assert first == {"box": [12.3, 40.1, 80.5, 121.7], "score": 0.998712, "crop": "crops/a_000.jpg"}
    assert second == {"box": [100.0, 5.5, 140.3, 60.0], "score": 0.5}


def test_round_trip_is_exact_to_the_rounding_and_stable(tmp_path):
    dets = np.random.default_rng(0).uniform(0, 2000, (50, 5)).astype(np.float32)
    dets[:, 4] /= 2000
    path = tmp_path / "dets.json"
    with DetectionsJson(path, "m", "int8", 0.02) as out:
        out.add("x.jpg", (1080, 1920), dets)
    (entry,) = read_detections_json(path)
    assert (entry["path"], entry["width"], entry["height"], entry["frame"], entry["crops"]) == \
        ("x.jpg", 1920, 1080, None, None)
    assert entry["dets"].dtype == np.float32 and entry["dets"].shape == (50, 5)
    # Boxes to 0.1 px, scores to 6 significant digits, each then read as float32.
    assert np.array_equal(entry["dets"][:, :4], np.round(dets[:, :4].astype(float), 1).astype(np.float32))
    assert np.array_equal(entry["dets"][:, 4], np.array([f"{s:.6g}" for s in dets[:, 4]], float).astype(np.float32))
    assert np.abs(entry["dets"] - dets).max() < 0.05 + 1e-3
    again = tmp_path / "again.json"
    with DetectionsJson(again, "m", "int8", 0.02) as out:
        out.add("x.jpg", (1080, 1920), entry["dets"])
    assert again.read_text() == path.read_text()


def test_ctrl_c_still_leaves_a_valid_file(tmp_path):
    path = tmp_path / "dets.json"
    with pytest.raises(KeyboardInterrupt):
        with DetectionsJson(path, "m", "fp32", 0.5) as out:
            out.add("a.jpg", (10, 20), DETS)
            out.add("b.jpg", (10, 20), DETS[:1])
            raise KeyboardInterrupt
    assert [(e["path"], len(e["dets"])) for e in read_detections_json(path)] == [("a.jpg", 2), ("b.jpg", 1)]


def test_flush_every_writes_during_the_run(tmp_path):
    path = tmp_path / "dets.json"
    out = DetectionsJson(path, "m", "fp32", 0.5, flush_every=0)
    out.add("a.jpg", (10, 20), DETS)
    assert len(read_detections_json(path)) == 1, "a killed run keeps what was flushed"
    assert not DetectionsJson(tmp_path / "never.json", "m", "fp32", 0.5).path.exists()


def test_a_run_without_images_writes_an_empty_list(tmp_path):
    with DetectionsJson(tmp_path / "dets.json", "m", "fp32", 0.5):
        pass
    assert json.loads((tmp_path / "dets.json").read_text())["images"] == []
    assert read_detections_json(tmp_path / "dets.json") == []


def test_crops_and_frames_read_back(tmp_path):
    entries = read_detections_json(write_run(tmp_path / "dets.json"))
    assert entries[0]["crops"] == ["crops/a_000.jpg", None] and entries[0]["frame"] is None
    assert entries[1]["frame"] == 25 and entries[1]["dets"].shape == (0, 5) and entries[1]["crops"] is None


@pytest.mark.parametrize("damage, words", [
    (lambda d: d.update(version=2), ["version 2"]),
    (lambda d: d.update(format="coco"), ["format"]),
    (lambda d: d.pop("images"), ["images"]),
    (lambda d: d["images"][1].pop("width"), ["images[1]", "width"]),
    (lambda d: d["images"][0].update(height="768"), ["images[0].height"]),
    (lambda d: d["images"][1].update(frame=-1), ["images[1].frame"]),
    (lambda d: d["images"][0]["detections"][1].update(box=[1, 2, 3]), ["images[0].detections[1].box"]),
    (lambda d: d["images"][0]["detections"][0].pop("score"), ["images[0].detections[0]", "score"]),
])
def test_damaged_files_are_refused_by_entry_and_field(tmp_path, damage, words):
    path = write_run(tmp_path / "dets.json")
    doc = json.loads(path.read_text())
    damage(doc)
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError) as error:
        read_detections_json(path)
    for word in [str(path), *words]:
        assert word in str(error.value)


def test_not_json_is_refused(tmp_path):
    path = tmp_path / "dets.json"
    path.write_text('{"format": "ssh-detections", "version": 1, "images": [')
    with pytest.raises(ValueError, match="not valid JSON"):
        read_detections_json(path)


def test_crop_region_by_hand():
    # Box 10..29 x 20..59 (20 x 40 px): margin 0 is its pixels; float corners truncate.
    assert crop_region([10, 20, 29, 59], 0, (100, 100)) == (10, 20, 30, 60)
    assert crop_region([10.7, 20.2, 29.9, 59.5, 0.9], 0.0, (100, 100)) == (10, 20, 30, 60)
    # Margin 0.5: 10 px more left and right, 20 px more above and below.
    assert crop_region([30, 30, 49, 69], 0.5, (200, 200)) == (20, 10, 60, 90)
    # ... clipped at the left and bottom border of a 100 x 70 image.
    assert crop_region([4, 20, 23, 59], 0.5, (70, 100)) == (0, 0, 34, 70)
    with pytest.raises(ValueError, match="outside"):
        crop_region([120, 20, 130, 30], 0, (70, 100))
    with pytest.raises(ValueError, match="-0.5"):
        crop_region([4, 20, 23, 59], -0.5, (70, 100))


def test_save_crops_writes_the_box_pixels_named_after_their_rows(tmp_path):
    image = np.random.default_rng(0).integers(0, 256, (70, 100, 3), dtype=np.uint8)
    dets = np.array([[10.7, 20.2, 29.9, 59.5, 0.9], [4, 20, 23, 59, 0.8]], np.float32)
    paths = save_crops(tmp_path / "crops", "img", image, dets, margin=0.0, ext=".png")
    assert [p.name for p in paths] == ["img_000_10_20_29_59.png", "img_001_4_20_23_59.png"]
    assert crop_name("img", 1, dets[1], ".png") == paths[1].name
    assert np.array_equal(cv2.imread(str(paths[0])), image[20:60, 10:30])
    assert np.array_equal(cv2.imread(str(paths[1])), image[20:60, 4:24])
    grown = save_crops(tmp_path / "grown", "img", image, dets[1:], margin=0.5, ext=".png")
    assert np.array_equal(cv2.imread(str(grown[0])), image[0:70, 0:34])
    assert save_crops(tmp_path / "none", "img", image, np.zeros((0, 5))) == []
