"""Frames through a detector: every Nth frame detected, batches, order, failures and latency; images
through run_items: order, cache, resume and failures."""
import cv2
import numpy as np
import pytest

from lib.detection_run import detect_frames, run_items
from lib.sinks import Sink, Sinks
from lib.sources import Item


class Recorder:
    """Returns one box whose score is the frame's value; fails on the frames of `fail`."""

    def __init__(self, fail=()):
        self.calls, self.fail = [], set(fail)

    def detect(self, images):
        values = [int(image[0, 0]) for image in images]
        self.calls.append(values)
        if self.fail & set(values):
            raise RuntimeError("out of memory\ndetails")
        return [np.array([[0, 0, 1, 1, v]], np.float32) for v in values]


def frames(count):
    return ((k, np.full((2, 2), k, np.uint8)) for k in range(count))


def run(count, batch_size, every, fail=()):
    detector, failed = Recorder(fail), []
    out = [(index, int(dets[0, 4]) if len(dets) else None, detected)
           for index, _, dets, detected in detect_frames(detector, frames(count), batch_size, every, failed)]
    return out, detector.calls, failed


def test_every_third_frame_in_batches_of_two():
    out, calls, failed = run(8, 2, 3)
    assert calls == [[0, 3], [6]] and failed == []
    assert out == [(0, 0, True), (1, 0, False), (2, 0, False), (3, 3, True), (4, 3, False), (5, 3, False),
                   (6, 6, True), (7, 6, False)]


def test_every_frame_one_at_a_time():
    out, calls, _ = run(3, 1, 1)
    assert calls == [[0], [1], [2]] and [d for _, _, d in out] == [True] * 3


def test_frames_between_leave_at_once():
    """With batch size 1, a frame that is not detected on is not held back for the next detection."""
    detector, seen = Recorder(), []
    stream = detect_frames(detector, frames(7), 1, 3, [])
    for index, _, _, _ in stream:
        seen.append((index, len(detector.calls)))
    assert seen == [(0, 1), (1, 1), (2, 1), (3, 2), (4, 2), (5, 2), (6, 3)]


def test_a_failed_batch_is_reported_and_left_out():
    out, calls, failed = run(6, 1, 2, fail={2})
    assert [index for index, _, _ in out] == [0, 1, 3, 4, 5]
    assert out[2] == (3, 0, False)  # frame 2 failed: frame 3 reuses frame 0's detections
    assert failed == [(2, "detection failed: out of memory")]


class Prepared:
    """A detector for run_items: the image's value as score; records each network pass."""

    def __init__(self):
        self.passes = []

    def prepare(self, image):
        return [(1.0, image)]

    def detect_prepared(self, prepared):
        values = [int(blobs[0][1][0, 0, 0]) for blobs in prepared]
        self.passes.append(values)
        return [np.array([[0, 0, 1, 1, v / 8]], np.float32) for v in values]  # exact in float32


class Log(Sink):
    """A sink that records what it was handed; `done_for` finished earlier, `cached` recallable."""

    def __init__(self, log, done_for=(), cached=None, needs_image=False):
        self.log, self.done_for, self.cached, self.needs_image = log, set(done_for), cached or {}, needs_image

    def done(self, item):
        return item.stem in self.done_for

    def keep(self, item):
        self.log.append(("keep", item.stem))

    def recall(self, item):
        return self.cached.get(item.stem)

    def write(self, result):
        self.log.append(("recalled" if result.recalled else "written", result.item.stem, float(result.dets[0, 4])))


def folder(tmp_path, count):
    items = []
    for k in range(count):
        path = tmp_path / f"{k}.png"
        cv2.imwrite(str(path), np.full((4, 4, 3), k, np.uint8))
        items.append(Item(path, str(k), path.name))
    return items


@pytest.mark.parametrize("workers", [0, 2])
def test_run_items_writes_in_input_order_and_skips_the_network_for_cache_and_resume(tmp_path, workers):
    """Items 1 and 4 come from a cache, 2 was finished earlier (--resume): the network sees only the
    others, batch by batch, and the sinks get every item in input order, whatever the threads."""
    log, detector = [], Prepared()
    cached = {"1": np.array([[0, 0, 1, 1, 0.25]], np.float32), "4": np.array([[0, 0, 1, 1, 0.5]], np.float32)}
    sinks = Sinks([Log(log, done_for={"2"}, cached=cached)])
    report = run_items(detector, folder(tmp_path, 6), sinks, 0.0, batch_size=2, workers=workers, resume=True)
    assert detector.passes == [[0, 3], [5]]
    assert log == [("written", "0", 0.0), ("recalled", "1", 0.25), ("keep", "2"), ("written", "3", 0.375),
                   ("recalled", "4", 0.5), ("written", "5", 0.625)]
    assert (report.done, report.detected, report.earlier, report.failed) == (5, 3, 1, [])


def test_run_items_reads_every_image_when_a_sink_needs_the_pixels(tmp_path):
    log, detector = [], Prepared()
    sinks = Sinks([Log(log, cached={"1": np.zeros((0, 5), np.float32)}, needs_image=True)])
    run_items(detector, folder(tmp_path, 3), sinks, 0.0)
    assert detector.passes == [[0], [1], [2]] and [entry[0] for entry in log] == ["written"] * 3


def test_run_items_reports_an_unreadable_image_and_goes_on(tmp_path, capsys):
    log = []
    items = folder(tmp_path, 3)
    items[1].path.write_bytes(b"not a picture")
    report = run_items(Prepared(), items, Sinks([Log(log)]), 0.0, workers=1)
    assert [entry[1] for entry in log] == ["0", "2"]
    assert len(report.failed) == 1 and str(items[1].path) in report.failed[0][1]
    assert "2 of 3 images in" in capsys.readouterr().out
