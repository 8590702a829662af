"""lib/webapp/videos.py and browser_video.py: test.py's video run, then an H.264 copy with the source's sound."""
import json

import av
import pytest

from lib.video import VideoError
from lib.webapp.browser_video import browser_mp4
from lib.webapp.videos import VideoOptions, anonymize_video, check_length
from video_fixtures import video_streams, write_video


def test_video_is_anonymised_whole_with_its_sound(small_detector, tmp_path):
    detector, _ = small_detector
    (tmp_path / "in").mkdir()
    clip = write_video(tmp_path / "in" / "clip.mp4", frames=9, size=(65, 97), fps=10)
    steps = []
    results = anonymize_video(detector, clip, tmp_path, VideoOptions(thresh=0.3, every=2), "m.pth", "fp32", 5,
                              10**8, lambda done, total, what: steps.append((done, what)))
    assert (results.frames, results.detected, results.sound) == (9, 5, True)
    assert results.summary() == "**9 frames** written, 5 detected on; with the source's sound"
    assert video_streams(results.video) == (9, (64, 96), "h264", True)
    assert video_streams(tmp_path / "out" / "clip_anonymized.mp4")[:3] == (9, (64, 96), "mpeg4")  # test.py's file
    doc = json.loads(results.downloads[1].read_text())
    assert [(e["path"], e["frame"]) for e in doc["images"]] == [("clip.mp4", k) for k in (0, 2, 4, 6, 8)]
    assert steps[-1] == (9, "encoding for the browser")


def test_without_anonymising_the_boxes_are_drawn_and_a_silent_source_stays_silent(small_detector, tmp_path):
    detector, _ = small_detector
    (tmp_path / "in").mkdir()
    clip = write_video(tmp_path / "in" / "quiet.mp4", frames=4, size=(64, 64), sound=False)
    results = anonymize_video(detector, clip, tmp_path, VideoOptions(anonymize=None), "m", "fp32", 5, 10**8)
    assert results.video.name == "quiet_ssh.mp4" and not results.sound
    assert video_streams(results.video) == (4, (64, 64), "h264", False)


def test_long_or_unreadable_videos_are_refused_before_detection(tmp_path):
    long_clip = write_video(tmp_path / "long.mp4", frames=31, fps=10, sound=False)
    assert check_length(long_clip, 3.1) == (31, 10.0)
    with pytest.raises(VideoError, match=r"long.mp4: 3.1 s is longer than the limit of 3 s"):
        check_length(long_clip, 3)
    (tmp_path / "text.mp4").write_text("no")
    with pytest.raises(VideoError, match="not a video OpenCV can read"):
        check_length(tmp_path / "text.mp4", 3)


def test_browser_copy_keeps_every_frame_and_the_sound(tmp_path):
    clip = write_video(tmp_path / "c.mp4", frames=7, size=(33, 51), fps=25)
    reports = []
    assert browser_mp4(clip, clip, tmp_path / "web.mp4", lambda done, total: reports.append(done)) == (7, True)
    assert video_streams(tmp_path / "web.mp4") == (7, (32, 50), "h264", True)
    assert reports == list(range(1, 8))
    assert browser_mp4(clip, None, tmp_path / "mute.mp4") == (7, False)


def test_sound_longer_than_the_video_is_cut_and_unreadable_sound_is_left_out(tmp_path):
    clip = write_video(tmp_path / "short.mp4", frames=5, fps=10, sound=False)
    long_sound = write_video(tmp_path / "long.mp4", frames=40, fps=10)
    assert browser_mp4(clip, long_sound, tmp_path / "web.mp4") == (5, True)
    with av.open(str(tmp_path / "web.mp4")) as copy:
        assert float(copy.streams.audio[0].duration * copy.streams.audio[0].time_base) < 0.7
    (tmp_path / "junk.wav").write_text("no sound here")
    assert browser_mp4(clip, tmp_path / "junk.wav", tmp_path / "mute.mp4") == (5, False)
