"""Frames through a detector: every Nth frame detected, batches, order, failures and latency."""
import numpy as np

from lib.detection_run import detect_frames


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
