"""The Video tab's job: test.py's video run (lib.detection_run.run_video) over an uploaded video, then its
browser copy with the source's sound (lib.webapp.browser_video).

For the same file and options the run is test.py's

    python3 test.py --video <name> --out out --save-json --thresh T [--anonymize M --mask-shape S
                    --mask-scale K --hold H] --every N

run in the request's input folder (anonymize None: the drawn video, boxes and scores), with its JSON file
named by the upload's name; videos longer than the limit are refused before any frame is detected.
"""
import math
from dataclasses import dataclass, field
from pathlib import Path

from ..anonymize import DEFAULT_HOLD, DEFAULT_SCALE, DEFAULT_SHAPE
from ..detection_run import run_video
from ..outputs import DetectionsJson
from ..sinks import OutputOptions
from ..video import FrameReader, VideoError
from .browser_video import browser_mp4
from .named_json import NamedEntries
from .photos import plain


@dataclass(frozen=True)
class VideoOptions:
    """The Video tab's settings; `anonymize` None draws boxes instead of masking."""
    thresh: float = 0.5
    anonymize: str | None = "blur"
    mask_shape: str = DEFAULT_SHAPE
    mask_scale: float = DEFAULT_SCALE
    hold: int = DEFAULT_HOLD
    every: int = 1


@dataclass
class VideoResults:
    """What a video request gives: the browser copy, the frames written and detected on, whether it has
    sound, the files to download and a sentence per problem."""
    video: Path
    frames: int
    detected: int
    sound: bool
    downloads: list = field(default_factory=list)
    problems: list = field(default_factory=list)

    def summary(self):
        sound = "with the source's sound" if self.sound else "no sound (the source has none)"
        return f"**{self.frames} frames** written, {self.detected} detected on; {sound}"


def check_length(path, max_seconds):
    """(frames, fps) the video at `path` announces; VideoError when it cannot be read or lasts longer than
    `max_seconds`."""
    with FrameReader(Path(path)) as reader:
        count, fps = reader.count, reader.fps
    if count / fps > max_seconds:
        raise VideoError(f"{Path(path).name}: {count / fps:.1f} s is longer than the limit of {max_seconds:g} s")
    return count, fps


def anonymize_video(detector, source, folder, options, model, precision, max_seconds, max_pixels, report=None):
    """Run test.py's video outputs for the video file `source` (under `folder`/in) into `folder`/out and make
    its browser copy in `folder`/web; a VideoResults. Frames past `max_seconds` are not read (a container
    that announces no frame count). `report(done, total, what)` follows the encoding (run_video reports
    the detection with tqdm)."""
    folder, source = Path(folder), Path(source)
    inputs, out, web = folder / "in", folder / "out", folder / "web"
    _, fps = check_length(source, max_seconds)
    json = DetectionsJson(out / f"{source.stem}.json", model, precision, options.thresh, flush_every=None)
    opts = OutputOptions(out=out, thresh=options.thresh, draw=options.anonymize is None, anonymize=options.anonymize,
                         mask_scale=options.mask_scale, mask_shape=options.mask_shape, hold=options.hold,
                         json=NamedEntries(json, inputs))
    failed, unmasked = [], []
    with json:
        frames, _, _ = run_video(detector, source, opts, every=options.every, max_frames=math.ceil(max_seconds * fps),
                                 failed=failed, unmasked=unmasked, max_pixels=max_pixels)
    written = out / f"{source.stem}_{'anonymized' if options.anonymize else 'ssh'}.mp4"
    web.mkdir(parents=True, exist_ok=True)
    copy = web / written.name
    encoded, sound = browser_mp4(written, source, copy,
                                 report and (lambda done, total: report(done, total, "encoding for the browser")))
    if encoded != frames:
        raise VideoError(f"{source.name}: {frames} frames written but {encoded} re-encoded for the browser")
    problems = [plain(str(m), inputs) for _, m in failed + unmasked]
    return VideoResults(copy, frames, len(json.entries), sound, [copy, json.path], problems)
