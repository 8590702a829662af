"""What test.py writes for each image or video frame it detects on (docs/inference.md §5.6).

Per image `<name>`: the picture with boxes drawn `<name>_ssh.jpg`, the anonymised picture
`<name>_anonymized.<ext>` (with --anonymize; it replaces the drawn one unless --draw), the text
file `<name>_ssh.txt` (`x1 y1 x2 y2 score` per detection with score >= --thresh), face crops under
`crops/`, the official WIDER prediction file under the --save-wider folder (every detection, as the
official evaluation reads them), and an entry of the run's --save-json file. Per video or stream
`<name>`: `<name>_ssh.mp4`, `<name>_anonymized.mp4`, `<name>_ssh/<frame>.txt`, crops and JSON entries
of the frames detected on. Every file is written atomically; an input file is never overwritten.
"""
import sys
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .anonymize import DEFAULT_HOLD, DEFAULT_SCALE, DEFAULT_SHAPE, MaskHold, anonymize
from .evaluation.wider_txt import prediction_path, write_image_detections
from .image_io import write_image
from .outputs import save_crops
from .utils.atomic import atomic_folder, atomic_write_text
from .video import atomic_video
from .visualize import draw_detections, format_detections

# Extensions an anonymised picture keeps (others are written as .jpg).
KEEP_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})


@dataclass(frozen=True)
class OutputOptions:
    """The outputs asked for on the command line; `json` is the open lib.outputs.DetectionsJson or None."""
    out: Path
    thresh: float = 0.5
    draw: bool = True
    anonymize: str | None = None
    mask_scale: float = DEFAULT_SCALE
    mask_shape: str = DEFAULT_SHAPE
    hold: int = DEFAULT_HOLD
    crops: bool = False
    crop_margin: float = 0.0
    wider: Path | None = None
    json: object = None


class Inputs:
    """The input files of a run: `check(path)` refuses to write over any of them."""

    def __init__(self, paths):
        self._resolved = {Path(p).resolve() for p in paths}

    def check(self, path):
        path = Path(path)
        if path.resolve() in self._resolved:
            raise ValueError(f"{path} is an input of this run: refusing to overwrite it (choose another --out)")
        return path


class ImageOutputs:
    """Writes the outputs of `opts` for one image at a time."""

    def __init__(self, opts, inputs):
        self.opts, self.inputs = opts, Inputs(inputs)

    def files(self, path, name, rel):
        """The files `write` makes for one image, but crops; the text file, written last, comes last."""
        o = self.opts
        suffix = path.suffix.lower() if path.suffix.lower() in KEEP_SUFFIXES else ".jpg"
        return ([o.out / f"{name}_ssh.jpg"] * o.draw + [o.out / f"{name}_anonymized{suffix}"] * bool(o.anonymize)
                + ([prediction_path(o.wider, rel)] if o.wider is not None else []) + [o.out / f"{name}_ssh.txt"])

    def done(self, path, name, rel):
        """True when an earlier run wrote every output of the image (its text file, written after the
        others and the crops, exists with them); its JSON entry is kept by the caller."""
        return all(p.is_file() for p in self.files(path, name, rel))

    def write(self, path, name, rel, image, dets):
        """Outputs of the image read from `path`: `name` its output stem, `rel` its name in WIDER files,
        `dets` all its detections (those >= thresh are drawn, masked, cropped and listed)."""
        o = self.opts
        kept = dets[dets[:, 4] >= o.thresh]
        *pictures, text = self.files(path, name, rel)
        if o.draw:
            write_image(self.inputs.check(pictures.pop(0)), draw_detections(image, kept, o.thresh))
        if o.anonymize:
            write_image(self.inputs.check(pictures.pop(0)), anonymize(image, kept, o.anonymize, o.mask_scale,
                                                                      o.mask_shape))
        if o.wider is not None:
            write_image_detections(o.wider, rel, dets)
        crops = save_crops(o.out / "crops", name, image, kept, o.crop_margin) if o.crops else None
        atomic_write_text(self.inputs.check(text), format_detections(kept))  # last: marks the image done
        if o.json is not None:
            o.json.add(str(path), image.shape[:2], kept, crops=crops)
        return kept


def fit_frame(frame, boxes, size):
    """`frame` and `boxes` (N, 4 or 5) resized to the video's (height, width) `size` (frames of a
    folder may differ in size; a video has one), so drawn boxes and masks stay on the faces."""
    if size is None or frame.shape[:2] == size:
        return frame, boxes
    scale = np.array([size[1] / frame.shape[1], size[0] / frame.shape[0]] * 2 + [1], np.float32)
    return cv2.resize(frame, size[::-1], interpolation=cv2.INTER_AREA), boxes * scale[:boxes.shape[1]]


class VideoOutputs:
    """Writes the outputs of `opts` for the frames of one video or stream named `name`; a context
    manager whose files appear when it closes, also after Ctrl-C (an error removes them)."""

    def __init__(self, opts, name, source, fps, inputs):
        self.opts, self.name, self.source, self.fps = opts, name, source, fps
        self.inputs = Inputs(inputs)
        self.hold = MaskHold(opts.hold)
        self._masks = np.zeros((0, 5), np.float32)
        self.masked_frames = 0  # frames written with at least one face masked
        self._stack = ExitStack()

    def __enter__(self):
        o, stack = self.opts, self._stack
        self.texts = stack.enter_context(atomic_folder(self.inputs.check(o.out / f"{self.name}_ssh")))
        self.drawn = (stack.enter_context(atomic_video(self.inputs.check(o.out / f"{self.name}_ssh.mp4"), self.fps))
                      if o.draw else None)
        self.masked = (stack.enter_context(atomic_video(self.inputs.check(o.out / f"{self.name}_anonymized.mp4"),
                                                        self.fps)) if o.anonymize else None)
        return self

    def __exit__(self, *exc):
        return self._stack.__exit__(*exc)

    @property
    def size(self):
        """(height, width) of the videos written, None before the first frame."""
        video = self.drawn or self.masked
        return video.size if video is not None else None

    def write(self, index, frame, dets, detected):
        """Outputs of frame `index`: `dets` its detections when `detected`, else those reused from the
        last frame detected on (no text, crops or JSON for it). Returns the frame to show."""
        o = self.opts
        kept = dets[dets[:, 4] >= o.thresh]
        if detected:
            (self.texts / f"{index:06d}.txt").write_text(format_detections(kept))
            crops = (save_crops(o.out / "crops", f"{self.name}_{index:06d}", frame, kept, o.crop_margin)
                     if o.crops else None)
            if o.json is not None:
                o.json.add(str(self.source), frame.shape[:2], kept, frame=index, crops=crops)
            if o.anonymize:
                self._masks = self.hold.update(kept, index)
        if self.size is not None and frame.shape[:2] != self.size:
            print(f"warning: frame {index} is {frame.shape[1]} x {frame.shape[0]}, the video {self.size[1]} x "
                  f"{self.size[0]}: resized for the video (its detections are in its own pixels)", file=sys.stderr)
        shown = None
        if self.drawn is not None:
            fitted, boxes = fit_frame(frame, kept, self.size)
            shown = draw_detections(fitted, boxes, o.thresh)
            self.drawn.write(shown)
        if self.masked is not None:
            fitted, masks = fit_frame(frame, self._masks, self.size)
            shown = anonymize(fitted, masks, o.anonymize, o.mask_scale, o.mask_shape)
            self.masked.write(shown)
            self.masked_frames += bool(len(masks))
        return shown
