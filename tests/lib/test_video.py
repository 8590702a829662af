"""Frames from videos and image sequences, atomic video/folder writing, and test.py --video."""
from pathlib import Path

import cv2
import numpy as np
import pytest

from lib.config import get_config
from lib.utils.atomic import atomic_folder
from lib.sources import image_tree
from lib.video import (FrameReader, VideoError, VideoWarning, atomic_video, parse_source, public_url,
                       source_name)
from lib.visualize import format_detections
from model.detector import Detector
from test import main

HW = (64, 96)


def frames(count, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (*HW, 3), dtype=np.uint8) for _ in range(count)]


def write_avi(path, count, fps=10):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, HW[::-1])
    for frame in frames(count):
        writer.write(frame)
    writer.release()
    return path


def test_video_file_frames_count_and_fps(tmp_path):
    with FrameReader(write_avi(tmp_path / "clip.avi", 5)) as reader:
        decoded = list(reader)
        assert (reader.count, reader.fps, reader.failed) == (5, 10, [])
    assert [k for k, _ in decoded] == list(range(5))
    assert all(f.shape == (*HW, 3) and f.dtype == np.uint8 for _, f in decoded)


def test_image_sequence_is_read_in_name_order(tmp_path):
    originals = frames(3, seed=1)
    for name, frame in zip(("b.png", "a.png", "c.png"), originals):
        cv2.imwrite(str(tmp_path / name), frame)
    (tmp_path / "notes.txt").write_text("not a frame")
    reader = FrameReader(tmp_path)
    assert reader.count == 3
    for (index, got), want in zip(reader, (originals[1], originals[0], originals[2])):
        np.testing.assert_array_equal(got, want)  # PNG is lossless
    assert index == 2


def test_truncated_video_keeps_its_frames_and_names_the_missing_ones(tmp_path):
    data = write_avi(tmp_path / "clip.avi", 8).read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[:len(data) * 6 // 10])  # the header still announces 8 frames
    reader = FrameReader(cut)
    with pytest.warns(VideoWarning, match=r"frames (\d) to 7 failed to decode \(the file announces 8 frames\)"):
        decoded = [k for k, _ in reader]
    assert 0 < len(decoded) < 8 and decoded == list(range(len(decoded)))
    assert reader.failed == [(len(decoded), f"{cut}: frames {len(decoded)} to 7 failed to decode "
                                            "(the file announces 8 frames)")]


def test_unreadable_sources(tmp_path):
    with pytest.raises(VideoError, match="video not found"):
        FrameReader(tmp_path / "absent.mp4")
    (tmp_path / "text.mp4").write_text("not a video")
    with pytest.raises(VideoError, match="not a video OpenCV can read"):
        FrameReader(tmp_path / "text.mp4")
    (tmp_path / "seq").mkdir()
    with pytest.raises(VideoError, match="no image files"):
        FrameReader(tmp_path / "seq")
    cv2.imwrite(str(tmp_path / "seq" / "0.png"), frames(1)[0])
    (tmp_path / "seq" / "1.png").write_bytes(b"\x89PNG broken")
    cv2.imwrite(str(tmp_path / "seq" / "2.png"), frames(1)[0])
    reader = FrameReader(tmp_path / "seq")
    with pytest.warns(VideoWarning, match=r"frame 1: .*1\.png: not an image OpenCV can decode"):
        assert [k for k, _ in reader] == [0, 2]
    assert [k for k, _ in reader.failed] == [1]


def test_atomic_video_and_folder_leave_nothing_on_error(tmp_path):
    with atomic_video(tmp_path / "out.mp4", 10) as video, atomic_folder(tmp_path / "dets") as folder:
        for frame in frames(4):
            video.write(frame)
        (folder / "0.txt").write_text("x")
    with FrameReader(tmp_path / "out.mp4") as reader:
        assert reader.count == 4 and len(list(reader)) == 4
    assert [p.name for p in (tmp_path / "dets").iterdir()] == ["0.txt"]
    with pytest.raises(VideoError, match="frame of size"):
        with atomic_video(tmp_path / "bad.mp4", 10) as video, atomic_folder(tmp_path / "bad") as folder:
            video.write(frames(1)[0])
            video.write(np.zeros((8, 8, 3), np.uint8))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dets", "out.mp4"]


def test_cli_video_writes_annotated_video_and_per_frame_detections(random_checkpoint, tmp_path):
    net, pth = random_checkpoint
    clip = write_avi(tmp_path / "clip.avi", 5)
    out = tmp_path / "out"
    assert main(["--video", str(clip), "--model", str(pth), "--batch-size", "2", "--out", str(out),
                 "--thresh", "0.05", "--device", "cpu", "--set", "TEST.ORIG_SIZE", "True"]) == 0
    with FrameReader(out / "clip_ssh.mp4") as reader:
        assert reader.count == 5 and next(iter(reader))[1].shape == (*HW, 3)
    texts = sorted((out / "clip_ssh").iterdir())
    assert [p.name for p in texts] == [f"{k:06d}.txt" for k in range(5)]
    cfg = get_config()
    cfg.TEST.ORIG_SIZE = True
    det = Detector.from_config(net, cfg)
    for text, (_, frame) in zip(texts, FrameReader(clip)):  # the same frames, detected one at a time
        ref = det.detect(frame)
        got = np.loadtxt(text, ndmin=2)
        assert len(ref) > 10 and got.shape == ref.shape
        np.testing.assert_allclose(got, np.loadtxt(format_detections(ref).splitlines(), ndmin=2), rtol=0, atol=0.11)


def test_cli_bad_video_exits_2_and_leaves_nothing(random_checkpoint, tmp_path, capsys):
    _, pth = random_checkpoint
    out = tmp_path / "out"
    common = ["--model", str(pth), "--out", str(out), "--device", "cpu", "--set", "TEST.ORIG_SIZE", "True"]
    (tmp_path / "text.avi").write_text("not a video")
    assert main(["--video", str(tmp_path / "text.avi")] + common) == 2
    assert "not a video OpenCV can read" in capsys.readouterr().err
    assert not out.exists() or list(out.iterdir()) == []


def test_cli_truncated_video_keeps_the_decoded_frames_and_exits_1(random_checkpoint, tmp_path, capsys):
    _, pth = random_checkpoint
    out = tmp_path / "out"
    data = write_avi(tmp_path / "clip.avi", 8).read_bytes()
    (tmp_path / "cut.avi").write_bytes(data[:len(data) * 6 // 10])
    with pytest.warns(VideoWarning):
        code = main(["--video", str(tmp_path / "cut.avi"), "--model", str(pth), "--out", str(out), "--device", "cpu",
                     "--set", "TEST.ORIG_SIZE", "True"])
    assert code == 1
    err = capsys.readouterr().err
    kept = len(list((out / "cut_ssh").iterdir()))
    assert 0 < kept < 8 and f"error: {kept} of 8 frames done, these failed:" in err
    assert f"frames {kept} to 7 failed to decode (the file announces 8 frames)" in err
    with FrameReader(out / "cut_ssh.mp4") as video:
        assert sum(1 for _ in video) == kept


def test_a_video_cut_before_its_index_says_so(tmp_path, capfd):
    writer = cv2.VideoWriter(str(tmp_path / "full.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 25, (64, 48))
    for k in range(10):
        writer.write(np.full((48, 64, 3), 20 * k, np.uint8))
    writer.release()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes((tmp_path / "full.mp4").read_bytes()[:200])  # the recording stopped before its index
    with pytest.raises(VideoError) as e:
        FrameReader(cut)
    assert str(e.value) == (f"{cut}: not a video OpenCV can read (FFmpeg: moov atom not found: an MP4 cut short "
                            "before its index (moov atom) was written: the recording did not finish)")
    assert capfd.readouterr().err == ""  # FFmpeg's own line is in the message, not printed beside it


def test_sources_and_their_names(tmp_path):
    assert parse_source("0") == 0 and parse_source("12") == 12
    assert parse_source("rtsp://cam.local:554/live/stream1") == "rtsp://cam.local:554/live/stream1"
    assert parse_source("clip.mp4") == Path("clip.mp4") and parse_source("frames/") == Path("frames")
    assert public_url("rtsp://admin:pw@10.0.0.2:554/h264") == "rtsp://10.0.0.2:554/h264"
    assert public_url("http://example.org/a.mjpg?x=1") == "http://example.org/a.mjpg?x=1"
    assert [source_name(s) for s in (0, "rtsp://u:p@cam:554/live/front door.sdp", "http://10.0.0.2/",
                                     Path("x/clip.mp4"), Path("frames"))] == [
        "camera0", "front_door", "10_0_0_2", "clip", "frames"]


def test_image_tree_walks_subfolders_but_not_hidden_ones_or_skip(tmp_path):
    for name in ("b.png", "a/c.JPG", "a/d.txt", ".hidden/e.png", "out/f.png", "a/.g.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    assert [p.relative_to(tmp_path).as_posix() for p in image_tree(tmp_path, skip=tmp_path / "out")] == [
        "a/c.JPG", "b.png"]
    assert len(image_tree(tmp_path)) == 3
