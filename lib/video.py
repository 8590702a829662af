"""Frames from a video file, an image sequence, a camera or a network stream, and video files
written atomically (OpenCV)."""
import os
import re
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import cv2

from .image_io import DEFAULT_MAX_PIXELS, ImageError, read_image
from .sources import IMAGE_SUFFIXES
from .utils.atomic import atomic_path
from .utils.native_stderr import captured_stderr
from .utils.redact import Redactor, public_url

# Frame rate given to image sequences, and to videos whose container does not state one.
DEFAULT_FPS = 25.0
# Codec of written videos by file extension; others fall back to MJPG.
FOURCC = {".mp4": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}


class VideoError(ValueError):
    """A video or image sequence cannot be opened or decoded at all, or a video cannot be written."""


class VideoWarning(UserWarning):
    """A frame of a video or image sequence could not be decoded and was skipped."""


def parse_source(text):
    """What `--video TEXT` names: a camera index (int) for digits, a stream URL (str) for
    `scheme://...` (rtsp, http, ...: whatever OpenCV's FFmpeg opens), else a file or folder Path."""
    if text.isdigit():
        return int(text)
    if re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*://", text):
        return text
    return Path(text)


def native_cause(chatter):
    """FFmpeg's last line in what native code printed, without its `[tcp @ 0x...]` prefix (else the last line
    of OpenCV's own log); '' when they printed nothing."""
    lines = [line.strip() for line in chatter.splitlines() if line.strip()]
    ffmpeg = [m.group(1) for m in map(re.compile(r"\[[^\]@]+ @ 0x[0-9a-f]+\]\s*(.+)").match, lines) if m]
    opencv = [re.sub(r"^\[[^\]]*\]\s*", "", line) for line in lines if line.startswith("[ ")]
    return (ffmpeg or opencv or [""])[-1]


# What FFmpeg says when an MP4's index (the moov atom) is not where it reads: at the end of a file served
# without range requests (python3 -m http.server), or missing from a recording cut short.
_NO_INDEX = ("moov atom not found", "partial file", "Stream ends prematurely")


def failure_hint(chatter, live):
    """A parenthesis on why a video or stream gave no frame, from what FFmpeg printed (`chatter`)."""
    cause = native_cause(chatter)
    if any(text in chatter for text in _NO_INDEX):
        fix = ("an MP4 whose index (moov atom) is at its end cannot be streamed from a server without range "
               "requests (such as python3 -m http.server): remux it with `ffmpeg -i in.mp4 -c copy -movflags "
               "+faststart out.mp4`, or serve MJPG/MPEG-TS" if live else
               "an MP4 cut short before its index (moov atom) was written: the recording did not finish")
        return f" (FFmpeg: {cause}: {fix})"
    return f" (FFmpeg: {cause})" if cause else ""


def open_capture(source, redactor=None):
    """(cv2.VideoCapture, what native code printed while opening it, credentials removed). URLs open
    with FFmpeg alone, so OpenCV does not also try them as image-sequence patterns."""
    with captured_stderr() as chatter:
        capture = cv2.VideoCapture(source, cv2.CAP_FFMPEG) if isinstance(source, str) else cv2.VideoCapture(source)
    text = chatter[0]
    return capture, redactor.clean(text) if redactor is not None else text


def source_name(source):
    """Output name stem of a source: the file or folder name without extension, camera<N>, or the
    last path segment of a stream URL (its host when the path is empty), made file-name safe."""
    if isinstance(source, int):
        return f"camera{source}"
    if isinstance(source, str):
        parts = urlsplit(source)
        segment = next((Path(s).stem for s in reversed(parts.path.split("/")) if s), "") or parts.hostname or ""
        return re.sub(r"[^A-Za-z0-9_-]+", "_", segment).strip("_") or "stream"
    return Path(source).stem


def image_files(folder):
    """Image files of `folder` (by extension), sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise VideoError(f"{folder} is not a folder")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


class FrameReader:
    """Frames of a video file, a folder of images (sorted by name), a camera (an int index) or a
    network stream (a URL), read with cv2.VideoCapture.

    Iterating yields (index, frame): the frame's position in the video or the folder, and the
    uint8 BGR frame (images are read as `lib.image_io.read_image` reads them, refusing those of more
    than `max_pixels` pixels). `count` is the
    number of frames announced (0 when the container does not say), `fps` the frame rate.
    Frames that cannot be decoded are skipped: each one (or, for a video that ends before its
    announced count, the missing range) is added to `failed` as (index, message) and warned
    about with a VideoWarning, so one bad frame does not lose the rest. A camera or stream is
    `live`: it ends when OpenCV reads no further frame (disconnected, end of stream).
    """

    def __init__(self, source, max_pixels=DEFAULT_MAX_PIXELS):
        self.source, self.max_pixels = source, max_pixels
        self.name = source_name(source)
        self.live = isinstance(source, (int, str))
        self._capture = None
        self.failed = []
        self._redactor = Redactor(source) if isinstance(source, str) else None
        if self.live:
            self.path = f"camera {source}" if isinstance(source, int) else public_url(source)
            self._capture, chatter = open_capture(source, self._redactor)
            if not self._capture.isOpened():
                raise VideoError(f"camera {source} cannot be opened (no such device, busy, or no permission)"
                                 if isinstance(source, int) else
                                 f"{self.path}: cannot open the stream (check the address and that the server is "
                                 f"up){failure_hint(chatter, True)}")
            self.count = max(0, int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT)))
            self.fps = self._capture.get(cv2.CAP_PROP_FPS) or DEFAULT_FPS
            return
        self.path = Path(source)
        if self.path.is_dir():
            self._files = image_files(self.path)
            if not self._files:
                raise VideoError(f"{self.path}: no image files in this folder")
            self.count, self.fps = len(self._files), DEFAULT_FPS
            return
        if not self.path.is_file():
            raise VideoError(f"video not found: {self.path}")
        self._capture, chatter = open_capture(str(self.path))
        if not self._capture.isOpened():
            raise VideoError(f"{self.path}: not a video OpenCV can read{failure_hint(chatter, False)}")
        self.count = max(0, int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT)))
        self.fps = self._capture.get(cv2.CAP_PROP_FPS) or DEFAULT_FPS

    def _fail(self, index, message):
        self.failed.append((index, message))
        warnings.warn(f"{message}; skipped", VideoWarning, stacklevel=3)

    def __iter__(self):
        if self._capture is None:
            for index, path in enumerate(self._files):
                try:
                    yield index, read_image(path, self.max_pixels)
                except ImageError as e:
                    self._fail(index, f"frame {index}: {e}")
            return
        index = 0
        while True:
            with captured_stderr() as chatter:  # FFmpeg's decoding chatter: named when no frame comes, else dropped
                grabbed = self._capture.grab()
                ok, frame = self._capture.retrieve() if grabbed else (False, None)
            chatter = self._redactor.clean(chatter[0]) if self._redactor else chatter[0]
            if not grabbed:
                break
            if ok:
                yield index, frame
            else:
                self._fail(index, f"{self.path}: frame {index} failed to decode{failure_hint(chatter, self.live)}")
            index += 1
        if index == 0:
            raise VideoError(f"{self.path}: no frame could be decoded{failure_hint(chatter, self.live)}")
        if index < self.count and not self.live:
            self._fail(index, f"{self.path}: frames {index} to {self.count - 1} failed to decode "
                              f"(the file announces {self.count} frames)")

    def close(self):
        if self._capture is not None:
            self._capture.release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class VideoWriter:
    """Writes BGR frames of one size to an open cv2.VideoWriter; the first frame fixes the size."""

    def __init__(self, path, fps, fourcc):
        self.path, self.fps, self.fourcc = Path(path), fps, fourcc
        self.size = None
        self._writer = None

    def write(self, frame):
        height, width = frame.shape[:2]
        if self._writer is None:
            self._writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*self.fourcc),
                                           self.fps, (width, height))
            if not self._writer.isOpened():
                raise VideoError(f"{self.path}: OpenCV cannot write a {self.fourcc} video here")
            self.size = (height, width)
        elif (height, width) != self.size:
            raise VideoError(f"frame of size {height} x {width} in a video of size {self.size[0]} x {self.size[1]}")
        self._writer.write(frame)

    def release(self):
        if self._writer is not None:
            self._writer.release()


@contextmanager
def atomic_video(path, fps):
    """Yield a VideoWriter for `path` that writes a temporary file beside it; the file replaces
    `path` when the block ends without error and is removed otherwise."""
    path = Path(path)
    with atomic_path(path) as tmp:
        writer = VideoWriter(tmp, fps, FOURCC.get(path.suffix.lower(), "MJPG"))
        try:
            yield writer
        finally:
            writer.release()


def check_display():
    """Raise VideoError where no display exists to show a window on (Linux without DISPLAY or
    WAYLAND_DISPLAY), before a GUI toolkit would abort the process trying."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise VideoError("--show needs a display (neither DISPLAY nor WAYLAND_DISPLAY is set); "
                         "leave it out to run headless")


class LiveWindow:
    """An OpenCV window showing frames as they are written; `show(frame)` is False once the user
    pressed q or Esc or closed the window. Refused (VideoError) where no display or no GUI exists,
    before anything is read or written."""
    QUIT_KEYS = frozenset({ord("q"), 27})

    def __init__(self, title):
        check_display()
        try:
            cv2.namedWindow(title, cv2.WINDOW_NORMAL)
        except cv2.error:
            raise VideoError("--show needs an OpenCV build with a GUI (`pip install opencv-python`; "
                             "opencv-python-headless has none); leave it out to run headless") from None
        self.title = title

    def show(self, frame):
        cv2.imshow(self.title, frame)
        key = cv2.waitKey(1) & 0xFF
        return key not in self.QUIT_KEYS and cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) >= 1

    def close(self):
        cv2.destroyWindow(self.title)
