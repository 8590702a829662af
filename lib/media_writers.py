"""What test.py writes for the frames of a video, frame folder, camera or stream (docs/inference.md §5.6).

Per video or stream `<name>`: `<name>_ssh.mp4` (boxes drawn), `<name>_anonymized.mp4`, `<name>_ssh/<frame>.txt`,
crops and JSON entries of the frames detected on. Images have their sinks in lib.sinks. Every file is
written atomically; an input file is never overwritten.
"""
import sys
from contextlib import ExitStack

import cv2
import numpy as np

from .anonymize import MaskHold, anonymize
from .outputs import save_crops
from .sinks import Inputs
from .utils.atomic import atomic_folder
from .video import atomic_video
from .visualize import draw_detections, format_detections


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
