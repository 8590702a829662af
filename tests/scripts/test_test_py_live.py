"""test.py on videos, cameras and streams: --anonymize with --hold, --every, --max-frames, Ctrl-C,
--show, an http stream served on 127.0.0.1 and a fake camera (cv2.VideoCapture of an index)."""
import functools
import http.server
import threading

import cv2
import numpy as np
import pytest

import lib.video
import test as test_script
from lib.outputs import read_detections_json
from lib.utils.atomic import TEMP_MARKER
from lib.utils.exit_codes import ExitCode
from lib.video import FrameReader
from test import main

HW = (120, 160)
FACE = (40, 30, 80, 70)  # x1, y1, x2, y2 (inclusive) of the bright square every frame shows


def camera_frame(index):
    frame = np.full((*HW, 3), 90, np.uint8)
    x1, y1, x2, y2 = FACE
    frame[y1:y2 + 1, x1:x2 + 1] = 250
    frame[0, 0] = index  # lets the fake detector know the frame
    return frame


class FakeCamera:
    """cv2.VideoCapture of a camera index: `frames` frames (None: endless), Ctrl-C at `interrupt_at`."""
    frames, interrupt_at, opens = None, None, True

    def __init__(self, source):
        self.index = 0

    def isOpened(self):
        return self.opens

    def get(self, prop):
        return 20.0 if prop == cv2.CAP_PROP_FPS else 0.0

    def grab(self):
        if self.index == self.interrupt_at:
            raise KeyboardInterrupt
        if self.frames is not None and self.index >= self.frames:
            return False
        self.index += 1
        return True

    def retrieve(self):
        return True, camera_frame(self.index - 1)

    def release(self):
        pass


class ScriptedDetector:
    """Finds the bright square in each frame, except in the frames of `missed`; records its calls."""

    def __init__(self, missed=()):
        self.missed, self.calls = set(missed), []

    def detect(self, images):
        self.calls.append([int(image[0, 0, 0]) for image in images])
        return [np.zeros((0, 5), np.float32) if int(image[0, 0, 0]) in self.missed
                else np.array([[*FACE, 0.9]], np.float32) for image in images]


@pytest.fixture
def camera(monkeypatch):
    """Camera indices open FakeCamera; files and URLs still open with OpenCV."""
    real = cv2.VideoCapture
    monkeypatch.setattr(lib.video.cv2, "VideoCapture",
                        lambda source, *api: FakeCamera(source) if isinstance(source, int) else real(source, *api))
    monkeypatch.setattr(FakeCamera, "frames", None)
    return FakeCamera


def scripted(monkeypatch, detector):
    monkeypatch.setattr(test_script, "build_detector", lambda *args, **kwargs: detector)
    return detector


def face_brightness(video):
    """Mean brightness of the face square in each frame of `video`."""
    x1, y1, x2, y2 = FACE
    with FrameReader(video) as reader:
        return [frame[y1 + 4:y2 - 3, x1 + 4:x2 - 3].mean() for _, frame in reader]


def no_temps(folder):
    return not any(TEMP_MARKER in p.name for p in folder.rglob("*"))


@pytest.mark.parametrize("hold, masked", [(2, [True] * 8), (0, [True, True, True, False, False, True, True, True])])
def test_hold_keeps_a_missed_face_masked(camera, monkeypatch, tmp_path, hold, masked):
    camera.frames = 8
    scripted(monkeypatch, ScriptedDetector(missed={3, 4}))
    out = tmp_path / "out"
    assert main(["--video", "0", "--anonymize", "solid", "--hold", str(hold), "--out", str(out), "--save-json"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["camera0_anonymized.mp4", "camera0_ssh", "detections.json"]
    assert [b < 60 for b in face_brightness(out / "camera0_anonymized.mp4")] == masked
    entries = read_detections_json(out / "detections.json")
    assert [(e["frame"], len(e["dets"])) for e in entries] == [(k, 0 if k in (3, 4) else 1) for k in range(8)]
    assert {e["path"] for e in entries} == {"camera 0"}


def test_a_video_with_no_face_masked_is_named(camera, monkeypatch, tmp_path, capsys):
    camera.frames = 4
    scripted(monkeypatch, ScriptedDetector(missed={0, 1, 2, 3}))
    assert main(["--video", "0", "--anonymize", "solid", "--out", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert "warning: camera 0: no face with score >= 0.5 in any of its 4 frames: its anonymised output masks nothing" in err
    assert "warning: 1 of 1 anonymised outputs mask no face" in err  # counted per video, not per frame
    camera.frames = 4
    scripted(monkeypatch, ScriptedDetector(missed={0, 1, 2}))
    assert main(["--video", "0", "--anonymize", "solid", "--hold", "0", "--out", str(tmp_path / "b")]) == 0
    assert "masks nothing" not in capsys.readouterr().err  # one frame with a face masked is enough


def test_every_nth_frame_reuses_boxes_and_max_frames_stops(camera, monkeypatch, tmp_path):
    detector = scripted(monkeypatch, ScriptedDetector(missed={3}))
    out = tmp_path / "out"
    assert main(["--video", "0", "--every", "3", "--max-frames", "7", "--batch-size", "2", "--anonymize", "solid",
                 "--hold", "0", "--draw", "--out", str(out)]) == 0
    assert detector.calls == [[0, 3], [6]]  # two detected frames per pass, in order
    assert sorted(p.name for p in (out / "camera0_ssh").iterdir()) == ["000000.txt", "000003.txt", "000006.txt"]
    # frames 1-2 reuse frame 0's face, 4-5 reuse frame 3's miss
    assert [b < 60 for b in face_brightness(out / "camera0_anonymized.mp4")] == [1, 1, 1, 0, 0, 0, 1]
    with FrameReader(out / "camera0_ssh.mp4") as drawn:
        assert drawn.count == 7


def test_ctrl_c_on_a_camera_keeps_everything_written(camera, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(camera, "interrupt_at", 5)
    scripted(monkeypatch, ScriptedDetector())
    out = tmp_path / "out"
    assert main(["--video", "0", "--anonymize", "blur", "--out", str(out), "--save-json"]) == 0
    assert "stopped by Ctrl-C after 5 frames; everything written so far is kept" in capsys.readouterr().err
    assert len(face_brightness(out / "camera0_anonymized.mp4")) == 5
    assert [e["frame"] for e in read_detections_json(out / "detections.json")] == list(range(5))
    assert len(list((out / "camera0_ssh").iterdir())) == 5 and no_temps(out)


def test_ctrl_c_on_a_file_exits_130_with_valid_outputs(monkeypatch, tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    for k in range(6):
        cv2.imwrite(str(frames / f"{k:03d}.png"), camera_frame(k))

    class Interrupted(ScriptedDetector):
        def detect(self, images):
            if len(self.calls) == 3:
                raise KeyboardInterrupt
            return super().detect(images)

    scripted(monkeypatch, Interrupted())
    out = tmp_path / "out"
    assert main(["--video", str(frames), "--out", str(out), "--save-json"]) == ExitCode.INTERRUPTED
    assert len(face_brightness(out / "frames_ssh.mp4")) == 3
    assert [e["frame"] for e in read_detections_json(out / "detections.json")] == [0, 1, 2]
    assert no_temps(out)


def test_camera_that_does_not_open(camera, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(camera, "opens", False)
    scripted(monkeypatch, ScriptedDetector())
    assert main(["--video", "1", "--out", str(tmp_path / "out")]) == 2
    assert "camera 1 cannot be opened" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_show_refused_without_display_or_gui(camera, monkeypatch, tmp_path, capsys):
    scripted(monkeypatch, ScriptedDetector())
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert main(["--video", "0", "--show", "--out", str(tmp_path / "out")]) == 2
    assert "--show needs a display" in capsys.readouterr().err
    monkeypatch.undo()  # the real build_detector: the display is checked before the model loads
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert main(["--video", "0", "--show", "--model", str(tmp_path / "absent.pth")]) == 2
    assert "--show needs a display" in capsys.readouterr().err
    scripted(monkeypatch, ScriptedDetector())
    monkeypatch.setattr(lib.video.cv2, "VideoCapture", FakeCamera)

    def no_gui(*args):
        raise cv2.error("The function is not implemented")

    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setattr(lib.video.cv2, "namedWindow", no_gui)
    assert main(["--video", "0", "--show", "--out", str(tmp_path / "out")]) == 2
    assert "--show needs an OpenCV build with a GUI" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_show_stops_on_q(camera, monkeypatch, tmp_path):
    shown = []
    monkeypatch.setenv("DISPLAY", ":0")
    for name, fake in {"namedWindow": lambda *a: None, "destroyWindow": lambda *a: None,
                       "imshow": lambda title, frame: shown.append(frame),
                       "waitKey": lambda delay: ord("q") if len(shown) == 3 else -1,
                       "getWindowProperty": lambda *a: 1.0}.items():
        monkeypatch.setattr(lib.video.cv2, name, fake)
    scripted(monkeypatch, ScriptedDetector())
    out = tmp_path / "out"
    assert main(["--video", "0", "--show", "--anonymize", "solid", "--out", str(out)]) == 0
    assert len(shown) == 3 and all(frame[50, 60].max() == 0 for frame in shown)  # the masked frames
    assert len(face_brightness(out / "camera0_anonymized.mp4")) == 3


@pytest.fixture
def stream(tmp_path):
    """http://127.0.0.1:PORT/ serving a folder holding clip.avi (6 frames) and noise.mp4 (30 frames of noise,
    250 kB, its index at the end as OpenCV writes MP4s), without range requests (as python3 -m http.server)."""
    writer = cv2.VideoWriter(str(tmp_path / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, HW[::-1])
    for k in range(6):
        writer.write(camera_frame(k))
    writer.release()
    writer = cv2.VideoWriter(str(tmp_path / "noise.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 25, HW[::-1])
    for k in range(30):
        writer.write(np.random.default_rng(k).integers(0, 256, (*HW, 3), dtype=np.uint8))
    writer.release()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(tmp_path)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_http_stream_with_every_and_max_frames(stream, random_checkpoint, tmp_path, capsys):
    _, pth = random_checkpoint
    out = tmp_path / "out"
    url = f"http://viewer:secret@{stream}/clip.avi"
    assert main(["--video", url, "--every", "2", "--max-frames", "4", "--model", str(pth), "--out", str(out),
                 "--save-json", "--thresh", "0.05", "--set", "TEST.SCALES", "[64]", "--set", "TEST.MAX_SIZE", "96",
                 "--device", "cpu"]) == 0
    entries = read_detections_json(out / "detections.json")
    assert [e["frame"] for e in entries] == [0, 2] and all(len(e["dets"]) > 0 for e in entries)
    assert {e["path"] for e in entries} == {f"http://{stream}/clip.avi"}  # no password in outputs
    captured = capsys.readouterr()
    assert "secret" not in captured.out + captured.err
    with FrameReader(out / "clip_ssh.mp4") as video:
        assert video.count == 4


def test_an_mp4_that_cannot_be_streamed_says_why(stream, random_checkpoint, tmp_path, capfd):
    _, pth = random_checkpoint
    assert main(["--video", f"http://{stream}/noise.mp4", "--model", str(pth), "--out", str(tmp_path)]) == 2
    err = capfd.readouterr().err
    assert "@ 0x" not in err and "WARN" not in err  # FFmpeg's and OpenCV's own lines are not printed beside it
    [line] = [line for line in err.splitlines() if "error" in line]
    assert line.startswith(f"error: http://{stream}/noise.mp4: no frame could be decoded (FFmpeg: ")
    assert line.endswith(": an MP4 whose index (moov atom) is at its end cannot be streamed from a server without "
                         "range requests (such as python3 -m http.server): remux it with `ffmpeg -i in.mp4 -c copy "
                         "-movflags +faststart out.mp4`, or serve MJPG/MPEG-TS)")


def test_stream_that_does_not_answer(random_checkpoint, tmp_path, capsys):
    _, pth = random_checkpoint
    with socket_closed() as port:
        assert main(["--video", f"http://127.0.0.1:{port}/live", "--model", str(pth), "--device", "cpu",
                     "--out", str(tmp_path / "out")]) == 2
    assert f"http://127.0.0.1:{port}/live: cannot open the stream" in capsys.readouterr().err


def test_no_credential_of_a_stream_url_is_printed(random_checkpoint, tmp_path):
    """As a process, so that what OpenCV and FFmpeg write to file descriptor 2 is seen too."""
    import subprocess
    import sys

    _, pth = random_checkpoint
    with socket_closed() as port:
        url = f"http://alice:p%40ssW0rd@127.0.0.1:{port}/x.avi?token=SECRET&x=1"
        run = subprocess.run([sys.executable, "test.py", "--video", url, "--model", str(pth), "--device", "cpu",
                              "--out", str(tmp_path)], cwd=test_script.Path(test_script.__file__).parent,
                             capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    for secret in ("alice", "p%40ssW0rd", "p@ssW0rd", "SECRET"):
        assert secret not in run.stdout + run.stderr
    assert run.stderr == (f"error: http://127.0.0.1:{port}/x.avi?token=***&x=1: cannot open the stream (check the "
                          f"address and that the server is up) (FFmpeg: Connection to tcp://127.0.0.1:{port} failed: "
                          "Connection refused)\n")


class socket_closed:
    """A local port nobody listens on."""

    def __enter__(self):
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    def __exit__(self, *exc):
        return False


def test_real_sigint_mid_run_leaves_valid_outputs(random_checkpoint, tmp_path):
    """A real Ctrl-C (SIGINT to the process, landing wherever it is) once the video is being written."""
    import signal
    import subprocess
    import sys
    import time

    from shared import ROOT

    _, pth = random_checkpoint
    frames = tmp_path / "frames"
    frames.mkdir()
    for k in range(400):
        cv2.imwrite(str(frames / f"{k:03d}.png"), camera_frame(k % 256))
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "test.py", "--video", str(frames), "--model", str(pth), "--out", str(out),
                             "--save-json", "--device", "cpu", "--set", "TEST.SCALES", "[64]", "--set",
                             "TEST.MAX_SIZE", "96"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out.is_dir() and any(TEMP_MARKER in p.name and p.is_dir() and any(p.iterdir()) for p in out.iterdir())):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)  # until the first frame's text file is written, however slow the machine is
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == ExitCode.INTERRUPTED, err
    written = int(err.split("stopped by Ctrl-C after ")[1].split()[0])
    assert 0 < written < 400
    assert len(face_brightness(out / "frames_ssh.mp4")) == written
    assert len(list((out / "frames_ssh").iterdir())) == written
    assert [e["frame"] for e in read_detections_json(out / "detections.json")] == list(range(written))
    assert no_temps(out)
