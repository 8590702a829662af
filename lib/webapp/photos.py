"""The Photos tab's job: test.py's image run (lib.detection_run.run_items with lib.sinks.image_sinks and a
lib.outputs.DetectionsJson) over a request's uploads, and what the page shows and offers from its files.

For the same files and options the outputs are test.py's

    python3 test.py --image <name> ... --out out --save-json [--anonymize M --draw --mask-shape S
                    --mask-scale K] [--save-crops --crop-margin C] --thresh T

run in the request's input folder: the drawn pictures, anonymised pictures, crops and the JSON file
(named by upload names, lib.webapp.named_json); the table and the counts are read back from that file.
"""
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from ..anonymize import DEFAULT_SCALE, DEFAULT_SHAPE
from ..detection_run import default_workers, run_items
from ..outputs import DetectionsJson, read_detections_json
from ..sinks import AnonymisedPicture, DrawnPicture, OutputOptions, image_sinks
from ..sources import image_items
from .named_json import NamedEntries

JSON_NAME = "detections.json"
TABLE_HEADERS = ["image", "face", "x1", "y1", "x2", "y2", "score"]


@dataclass(frozen=True)
class PhotoOptions:
    """The Photos tab's settings; `anonymize` None draws boxes only."""
    thresh: float = 0.5
    anonymize: str | None = None
    mask_shape: str = DEFAULT_SHAPE
    mask_scale: float = DEFAULT_SCALE
    crops: bool = False
    crop_margin: float = 0.0


@dataclass
class PhotoResults:
    """What a photo request gives: (picture, caption) pairs of the drawn and anonymised pictures, the
    table rows, the counts, the files to download and a sentence per problem."""
    drawn: list = field(default_factory=list)
    anonymized: list = field(default_factory=list)
    rows: list = field(default_factory=list)
    images: int = 0
    faces: int = 0
    downloads: list = field(default_factory=list)
    problems: list = field(default_factory=list)

    def summary(self, thresh):
        faces = f"{self.faces} face{'s' * (self.faces != 1)}"
        return f"**{faces}** (score ≥ {thresh:g}) in {self.images} image{'s' * (self.images != 1)}"


class StepProgress:
    """run_items' progress hook calling `report(done, total)` after each image."""

    def __init__(self, report):
        self.report, self.total, self.done = report, 0, 0

    def start(self, total, earlier):
        self.total = total
        self.report(0, total)

    def item(self, item, kept, job_done):
        self.done += 1
        self.report(self.done, self.total)

    def close(self, job):
        pass

    def summary(self, text):
        print(text)


def zip_files(path, files, root):
    """Write the zip `path` holding `files` named by their paths under `root` (stored: pictures are compressed)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for file in files:
            archive.write(file, Path(file).relative_to(root).as_posix())
    return Path(path)


def plain(message, folder):
    """A run's message with the server's input folder left out of file names."""
    return message.replace(f"{folder}/", "")


def detect_photos(detector, inputs, folder, options, model, precision, max_pixels, report=None):
    """Detect on the image files `inputs` (under `folder`/in) writing test.py's outputs into `folder`/out;
    a PhotoResults. `model` and `precision` go into the JSON header as test.py writes them; `report(done,
    total)` follows the run."""
    folder = Path(folder)
    source, out = folder / "in", folder / "out"
    items = image_items(inputs)
    json = DetectionsJson(out / JSON_NAME, model, precision, options.thresh, flush_every=None)
    opts = OutputOptions(out=out, thresh=options.thresh, draw=True, anonymize=options.anonymize,
                         mask_scale=options.mask_scale, mask_shape=options.mask_shape, crops=options.crops,
                         crop_margin=options.crop_margin, json=NamedEntries(json, source))
    sinks = image_sinks(opts, inputs)
    with json:
        run = run_items(detector, items, sinks, options.thresh, workers=default_workers(), max_pixels=max_pixels,
                        progress=StepProgress(report) if report else None)
    results = PhotoResults(problems=[plain(m, source) for _, m in run.failed + run.unmasked])
    if not run.done:
        return results
    drawn = next(s for s in sinks if isinstance(s, DrawnPicture))
    masked = next((s for s in sinks if isinstance(s, AnonymisedPicture)), None)
    by_name = {opts.json.name(item.path): item for item in items}
    for entry in read_detections_json(json.path):
        name, dets = entry["path"], entry["dets"]
        caption = f"{name}: {len(dets)} face{'s' * (len(dets) != 1)}"
        results.drawn.append((drawn.files(by_name[name])[0], caption))
        if masked is not None:
            results.anonymized.append((masked.files(by_name[name])[0], caption))
        results.rows += [[name, k + 1, *(round(float(v), 1) for v in det[:4]), float(f"{det[4]:.6g}")]
                         for k, det in enumerate(dets)]
        results.faces += len(dets)
        results.images += 1
    pictures = [path for path, _ in results.anonymized]
    if len(pictures) > 1:
        results.downloads.append(zip_files(folder / "anonymized.zip", pictures, out))
    else:
        results.downloads += pictures
    results.downloads.append(json.path)
    crops = sorted((out / "crops").glob("*")) if options.crops else []
    if crops:
        results.downloads.append(zip_files(folder / "crops.zip", crops, out))
    return results
