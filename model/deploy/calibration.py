"""Calibration data for int8 quantization: images chosen from a folder and prepared exactly as the
detector prepares them (resize to each test level, BGR minus the pixel means), one blob at a time.
"""
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lib.blob import prep_image
from lib.image_io import ImageError, read_image
from lib.video import IMAGE_SUFFIXES

# Images used by default: enough for stable activation ranges (docs/inference.md §5.5).
DEFAULT_COUNT = 32


class CalibrationError(ValueError):
    """The calibration folder cannot give any calibration image."""


class CalibrationWarning(UserWarning):
    """A calibration image was skipped."""


def pick_images(folder, count=DEFAULT_COUNT, role="calibration"):
    """`count` image files (by extension) spread evenly over the sorted files under `folder` and its
    subfolders (WIDER_train/images/<event>/ gives images of every event); all of them if fewer.
    `role` names the folder in errors."""
    folder = Path(folder)
    if not folder.exists():
        raise CalibrationError(f"{role} folder {folder} does not exist")
    if not folder.is_dir():
        raise CalibrationError(f"{role} folder {folder} is not a folder")
    try:
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    except OSError as e:
        raise CalibrationError(f"{role} folder {folder} cannot be read ({e.strerror})") from None
    if not files:
        raise CalibrationError(f"{role} folder {folder} holds no images ({' '.join(sorted(IMAGE_SUFFIXES))})")
    if len(files) <= count:
        return files
    return [files[i] for i in np.linspace(0, len(files) - 1, count).round().astype(int)]


def read_images(paths, role="calibration"):
    """The decoded images of `paths`; unreadable ones are skipped with a CalibrationWarning, and
    CalibrationError is raised when none can be read."""
    images = []
    for path in paths:
        try:
            images.append(read_image(path))
        except ImageError as e:
            warnings.warn(f"{e}; not used as a {role} image", CalibrationWarning, stacklevel=2)
    if not images:
        raise CalibrationError(f"none of the {len(paths)} {role} images could be read (first: {paths[0]})")
    return images


class CalibrationBlobs(Sequence):
    """The 1 x 3 x H x W float32 network inputs of `images` at every test level of `detector`
    (model.detector.Detector: its `scales` and pixel means), made when indexed."""

    def __init__(self, images, detector):
        self.images = images
        self.pixel_means = detector.pixel_means
        self.items = [(i, scale) for i, image in enumerate(images) for scale, _ in detector.scales(*image.shape[:2])]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        i, scale = self.items[index]
        return np.ascontiguousarray(prep_image(self.images[i], self.pixel_means, scale).transpose(2, 0, 1)[None])
