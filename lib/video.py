"""Frames from a video file or an image sequence, and video files written atomically (OpenCV)."""
import warnings
from contextlib import contextmanager
from pathlib import Path

import cv2

from .image_io import ImageError, read_image
from .utils.atomic import atomic_path

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})
# Frame rate given to image sequences, and to videos whose container does not state one.
DEFAULT_FPS = 25.0
# Codec of written videos by file extension; others fall back to MJPG.
FOURCC = {".mp4": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}


class VideoError(ValueError):
    """A video or image sequence cannot be opened or decoded at all, or a video cannot be written."""


class VideoWarning(UserWarning):
    """A frame of a video or image sequence could not be decoded and was skipped."""


def image_files(folder):
    """Image files of `folder` (by extension), sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise VideoError(f"{folder} is not a folder")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


class FrameReader:
    """Frames of a video file (cv2.VideoCapture) or of a folder of images (sorted by name).

    Iterating yields (index, frame): the frame's position in the video or the folder, and the
    uint8 BGR frame (images are read as `lib.image_io.read_image` reads them). `count` is the
    number of frames announced (0 when the container does not say), `fps` the frame rate.
    Frames that cannot be decoded are skipped: each one (or, for a video that ends before its
    announced count, the missing range) is added to `failed` as (index, message) and warned
    about with a VideoWarning, so one bad frame does not lose the rest.
    """

    def __init__(self, path):
        self.path = Path(path)
        self._capture = None
        self.failed = []
        if self.path.is_dir():
            self._files = image_files(self.path)
            if not self._files:
                raise VideoError(f"{self.path}: no image files in this folder")
            self.count, self.fps = len(self._files), DEFAULT_FPS
            return
        if not self.path.is_file():
            raise VideoError(f"video not found: {self.path}")
        self._capture = cv2.VideoCapture(str(self.path))
        if not self._capture.isOpened():
            raise VideoError(f"{self.path}: not a video OpenCV can read")
        self.count = max(0, int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT)))
        self.fps = self._capture.get(cv2.CAP_PROP_FPS) or DEFAULT_FPS

    def _fail(self, index, message):
        self.failed.append((index, message))
        warnings.warn(f"{message}; skipped", VideoWarning, stacklevel=3)

    def __iter__(self):
        if self._capture is None:
            for index, path in enumerate(self._files):
                try:
                    yield index, read_image(path)
                except ImageError as e:
                    self._fail(index, f"frame {index}: {e}")
            return
        index = 0
        while self._capture.grab():
            ok, frame = self._capture.retrieve()
            if ok:
                yield index, frame
            else:
                self._fail(index, f"{self.path}: frame {index} failed to decode")
            index += 1
        if index == 0:
            raise VideoError(f"{self.path}: no frame could be decoded")
        if index < self.count:
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
