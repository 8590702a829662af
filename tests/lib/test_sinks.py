"""lib/sinks.py: the outputs of one image, composed for test.py and eval.py."""
from pathlib import Path

import numpy as np
import pytest

from lib.outputs import DetectionsJson
from lib.sinks import (AnonymisedPicture, Crops, DetectionCache, DrawnPicture, JsonEntry, OutputOptions, Result,
                       TextFile, WiderFile, as_detections, image_sinks)
from lib.sources import Item

DETS = np.array([[10.7, 5.2, 30.9, 40.1, 0.9], [2, 3, 8, 9, 0.2]], np.float32)


def result(item, image=None, dets=DETS, thresh=0.5, recalled=False):
    return Result(item, image, dets, dets[dets[:, 4] >= thresh], recalled=recalled)


def test_image_sinks_follow_the_options_with_the_text_file_last_but_the_json(tmp_path):
    item = Item(tmp_path / "in" / "a.PNG", "a", "party/a.PNG")
    with DetectionsJson(tmp_path / "d.json", "m", "fp32", 0.5) as json:
        opts = OutputOptions(out=tmp_path, anonymize="blur", wider=tmp_path / "w", crops=True, json=json)
        sinks = list(image_sinks(opts, [item.path]))
    assert [type(s) for s in sinks] == [DrawnPicture, AnonymisedPicture, WiderFile, Crops, TextFile, JsonEntry]
    assert [f for s in sinks for f in s.files(item)] == [
        tmp_path / "a_ssh.jpg", tmp_path / "a_anonymized.png", tmp_path / "w" / "party" / "a.txt", tmp_path / "a_ssh.txt"]
    assert [type(s) for s in image_sinks(OutputOptions(out=tmp_path, draw=False, anonymize="solid"), [])] == [AnonymisedPicture,
                                                                                                    TextFile]


def test_an_item_is_done_when_every_output_is_there(tmp_path):
    item = Item(tmp_path / "a.jpg", "a", "a.jpg")
    image = np.full((50, 40, 3), 128, np.uint8)
    sinks = image_sinks(OutputOptions(out=tmp_path / "out", wider=tmp_path / "w"), [item.path])
    assert not sinks.done(item)
    sinks.write(result(item, image))
    assert sinks.done(item)
    assert (tmp_path / "out" / "a_ssh.txt").read_text() == "10.7 5.2 30.9 40.1 0.900000\n"
    assert (tmp_path / "w" / "a.txt").read_text() == "a.jpg\n2\n10 5 20 35 0.9 \n2 3 6 6 0.2 \n"  # every detection
    (tmp_path / "out" / "a_ssh.jpg").unlink()
    assert not sinks.done(item)


def test_an_input_file_is_never_written_over(tmp_path):
    item = Item(tmp_path / "a_ssh.jpg", "a", "a_ssh.jpg")
    sinks = image_sinks(OutputOptions(out=tmp_path), [item.path])
    with pytest.raises(ValueError, match="a_ssh.jpg is an input of this run: refusing to overwrite it"):
        sinks.write(result(item, np.zeros((8, 8, 3), np.uint8)))


def test_the_cache_gives_back_what_it_stored_and_ignores_damaged_files(tmp_path):
    cache = DetectionCache(tmp_path)
    item = Item(Path("/x/0--Parade/a.jpg"), "a", "0--Parade/a.jpg")
    assert cache.recall(item) is None
    cache.write(result(item))
    np.testing.assert_array_equal(cache.recall(item), DETS)
    path = tmp_path / "0--Parade" / "a.npy"
    stamp = path.stat().st_mtime_ns
    cache.write(result(item, dets=DETS[:1], recalled=True))  # recalled detections are not stored again
    assert path.stat().st_mtime_ns == stamp and len(cache.recall(item)) == 2
    path.write_bytes(b"junk")
    assert cache.recall(item) is None
    np.save(path, DETS.astype(np.float64))
    assert cache.recall(item) is None  # not what the cache writes: recomputed


def test_a_detector_giving_another_shape_is_named():
    with pytest.raises(ValueError, match=r"a.jpg: the detector returned shape \(3, 4\), expected \(N, 5\)"):
        as_detections(np.zeros((3, 4)), Item(Path("a.jpg"), "a", "a.jpg"))
