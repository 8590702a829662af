"""Detection over a WIDER split with a per-image cache, resumable (official SSH/test.py test_net).

Each image's detections are cached as `<cache_dir>/<event>/<image>.npy` (float32 (N, 5), read
with allow_pickle=False; lib.sinks.DetectionCache) the moment they are computed, so an interrupted
run resumes at the first image without a cache file. `cache_dir/meta.json` records what produced
the cache (model, test config); a different key discards the old cache files. Prediction files are
(re)written for every image from the detections.
"""
import json
from pathlib import Path

from lib.datasets.wider import annotation_file, image_dir, read_annotations
from lib.detection_run import ProgressBar, run_items
from lib.image_io import ImageError
from lib.sinks import Collect, DetectionCache, Sinks, WiderFile
from lib.sources import Item, split_items
from lib.utils.atomic import atomic_write_text

from .wider_eval import wider_eval
from .wider_txt import SCORE_THRESH, write_image_detections

_META = "meta.json"


def val_images(data_dir):
    """Image names `<event>/<image>.jpg` of WIDER val in split-file order, and their root folder."""
    path = annotation_file(data_dir, "val")
    if not path.is_file():
        raise FileNotFoundError(f"WIDER val annotations not found: {path}")
    return [im.name for im in read_annotations(path)], image_dir(data_dir, "val")


def open_cache(cache_dir, key):
    """Make `cache_dir` hold the cache of `key`, deleting cache files made under another key."""
    meta = cache_dir / _META
    text = json.dumps(key, sort_keys=True)
    if meta.is_file() and meta.read_text() == text:
        return
    for old in cache_dir.rglob("*.npy"):
        old.unlink()
    atomic_write_text(meta, text)


def run_detection(detector, image_names, image_root, pred_dir, cache_dir=None, cache_key=None,
                  progress=True, workers=0, job=None, job_total=None):
    """Detect every image and write its prediction file under `pred_dir`; returns the count computed.

    detector: model.detector.Detector or alike (`prepare(image)` -> blobs, `detect_prepared(list of
    blobs)` -> list of (N, 5) x1, y1, x2, y2, score). The run is lib.detection_run.run_items, test.py's
    loop, with two sinks: the cache and the WIDER file of test.py --save-wider (lib.sinks). image_names:
    `<event>/<image>.jpg` relative to `image_root`. cache_dir: None disables the cache (everything is
    recomputed). cache_key: JSON-serialisable description of the detector; a changed key invalidates
    the cache. A missing image raises FileNotFoundError before any detection runs; undecodable ones
    raise ImageError naming them once the others are done (and cached); Ctrl-C raises KeyboardInterrupt
    once the images detected so far are written. Under a lib.detection_job.DetectionJob `job` of
    several ranks, `image_names` is this rank's share of the `job_total` images: each image counts on
    the job, and rank 0's progress bar shows the whole job's.
    """
    report = detect_items(detector, split_items(image_names, image_root), [WiderFile(pred_dir)], cache_dir,
                          cache_key, progress, workers, job, job_total)
    return report.detected


def fddb_items(names, images_dir):
    """Items of FDDB images named `2002/07/19/big/img_130` (pictures `<images_dir>/<name>.jpg`), each once."""
    return [Item(Path(images_dir) / f"{name}.jpg", name.replace("/", "_"), f"{name}.jpg") for name in dict.fromkeys(names)]


def detect_fddb(detector, names, images_dir, cache_dir=None, cache_key=None, progress=True, workers=0, job=None,
                job_total=None):
    """({name: (N, 5) float32 detections} of the FDDB images `names`, count computed): run_detection's
    loop, cache and failure handling, with the detections kept in memory for FDDB's one detection file."""
    collect = Collect()
    report = detect_items(detector, fddb_items(names, images_dir), [collect], cache_dir, cache_key, progress,
                          workers, job, job_total)
    return {item.rel[:-len(".jpg")]: dets for item, dets in collect.dets.items()}, report.detected


def detect_items(detector, items, sinks, cache_dir, cache_key, progress, workers, job, job_total, quiet=False):
    """run_items over `items` into the cache (when `cache_dir`) and `sinks`; the RunReport. `quiet`: no
    progress bar and no summary line."""
    missing = [item.path for item in items if not item.path.is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} of {len(items)} images are missing, e.g. {missing[0]}")
    if cache_dir is not None:
        open_cache(Path(cache_dir), cache_key)
    sinks = Sinks(([] if cache_dir is None else [DetectionCache(cache_dir)]) + sinks)
    shared = job is not None and job.distributed
    bar = ProgressBar(job_total if shared else len(items), enabled=progress, quiet=quiet)
    report = run_items(detector, items, sinks, SCORE_THRESH, workers=workers, progress=bar, job=job)
    if report.interrupted:
        raise KeyboardInterrupt
    if report.failed:
        raise ImageError(f"{len(report.failed)} of {len(items)} images could not be detected (the others are "
                         "written" + (" and cached" if cache_dir is not None else "") + "): "
                         + "; ".join(message for _, message in report.failed))
    return report


def detect_images(detector, image_names, image_root, workers=0):
    """{name: (N, 5) float32 x1, y1, x2, y2, score} of the WIDER images `image_names` (`<event>/<image>.jpg`
    under `image_root`), kept in memory: run_detection's loop and failure handling, without files."""
    collect = Collect()
    detect_items(detector, split_items(image_names, image_root), [collect], None, None, False, workers, None, None,
                 quiet=True)
    return {item.rel: dets for item, dets in collect.dets.items()}


def score_images(dets, gt, pred_dir):
    """{setting: AP} of the detections `dets` ({name: (N, 5)}, as detect_images) of some WIDER val images,
    by the official evaluation restricted to those images (GroundTruth.subset): their prediction files
    are written afresh under `pred_dir` (the files of other images removed) and evaluated, so the
    numbers are eval.py's for those images."""
    pred_dir = Path(pred_dir)
    for old in pred_dir.rglob("*.txt"):
        old.unlink()
    for name, image_dets in dets.items():
        write_image_detections(pred_dir, name, image_dets)
    return {s: r["ap"] for s, r in wider_eval(pred_dir, gt.subset(list(dets))).items()}

