"""Calibration data for int8 quantization: images chosen from a folder and prepared exactly as the
detector prepares them (resize to each test level, BGR minus the pixel means), one blob at a time.
"""
import itertools
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lib.blob import prep_image
from lib.image_io import ImageError, read_image
from lib.sources import IMAGE_SUFFIXES, image_tree

# Images used by default: enough for stable activation ranges (docs/inference.md §5.5).
DEFAULT_COUNT = 32


class CalibrationError(ValueError):
    """The calibration folder cannot give any calibration image."""


class CalibrationWarning(UserWarning):
    """A calibration image was skipped."""


def image_files(folder, role="calibration"):
    """The image files under `folder` and its subfolders, found as test.py --dir finds them
    (lib.sources.image_tree: by extension, hidden ones left out, sorted); CalibrationError naming the
    folder (`role`: what it is for) when there are none."""
    folder = Path(folder)
    if not folder.exists():
        raise CalibrationError(f"{role} folder {folder} does not exist")
    if not folder.is_dir():
        raise CalibrationError(f"{role} folder {folder} is not a folder")
    try:
        files = image_tree(folder)
    except OSError as e:
        raise CalibrationError(f"{role} folder {folder} cannot be read ({e.strerror})") from None
    if not files:
        raise CalibrationError(f"{role} folder {folder} holds no images ({' '.join(sorted(IMAGE_SUFFIXES))})")
    return files


def spread(total, count):
    """`count` indices spread evenly over range(total), first and last included; all if fewer."""
    if total <= count:
        return list(range(total))
    return [int(i) for i in np.linspace(0, total - 1, count).round().astype(int)]


def load_images(folder, count=DEFAULT_COUNT, role="calibration"):
    """`count` decoded images spread evenly over the sorted files under `folder` and its subfolders
    (WIDER_train/images/<event>/ gives images of every event); all of them if fewer.

    An unreadable file is skipped with a CalibrationWarning naming it and replaced by the next file
    after it, before the next picked one, or else by any file not yet tried, so the folder gives
    `count` images whenever it holds that many readable ones. CalibrationError when none can be read.
    """
    files = image_files(folder, role)
    picks = spread(len(files), count)
    images, spare = [], []
    for start, stop in zip(picks, picks[1:] + [len(files)]):
        candidates = iter(range(start, stop))
        for index in candidates:
            if _read(files[index], role, images):
                break
        spare.append(candidates)  # what is left of this stretch
    for index in itertools.chain.from_iterable(spare):
        if len(images) >= count:
            break
        _read(files[index], role, images)
    if not images:
        raise CalibrationError(f"none of the {len(files)} {role} images could be read (first: {files[0]})")
    return images


def _read(path, role, images):
    """Append the image at `path` to `images`; False (with a CalibrationWarning) when it cannot be read."""
    try:
        images.append(read_image(path))
    except ImageError as e:
        warnings.warn(f"{e}; not used as a {role} image", CalibrationWarning, stacklevel=3)
        return False
    return True


class CalibrationBlobs(Sequence):
    """The 1 x 3 x H x W float32 network inputs of `images` at every test level of `detector`
    (model.detector.Detector: its `scales` and pixel means), made when indexed."""

    def __init__(self, images, detector):
        self.images = images
        self.pixel_means = detector.pixel_means
        self.items = [(i, scale) for i, image in enumerate(images) for scale, _ in detector.scales(*image.shape[:2])]

    def __len__(self):
        return len(self.items)

    def images_done(self, blobs_done):
        """How many images have all their blobs among the first `blobs_done` (blobs go image by image)."""
        return len(self.images) if blobs_done >= len(self) else self.items[blobs_done][0]

    def __getitem__(self, index):
        i, scale = self.items[index]
        return np.ascontiguousarray(prep_image(self.images[i], self.pixel_means, scale).transpose(2, 0, 1)[None])
