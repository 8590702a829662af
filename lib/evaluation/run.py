"""Detection over a WIDER split with a per-image cache, resumable (official SSH/test.py test_net).

Each image's detections are cached as `<cache_dir>/<event>/<image>.npy` (float32 (N, 5), read
with allow_pickle=False) the moment they are computed, so an interrupted run resumes at the
first image without a cache file. `cache_dir/meta.json` records what produced the cache (model,
test config); a different key discards the old cache files. Prediction files are (re)written
for every image from the detections.
"""
import json
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from lib.datasets.wider import annotation_file, image_dir, read_annotations
from lib.image_io import read_image
from lib.utils.atomic import atomic_path, atomic_write_text
from lib.utils.prefetch import prefetched

from .wider_txt import write_image_detections

_META = "meta.json"


def val_images(data_dir):
    """Image names `<event>/<image>.jpg` of WIDER val in split-file order, and their root folder."""
    path = annotation_file(data_dir, "val")
    if not path.is_file():
        raise FileNotFoundError(f"WIDER val annotations not found: {path}")
    return [im.name for im in read_annotations(path)], image_dir(data_dir, "val")


def _save_npy(path, array):
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, array, allow_pickle=False)


def _load_npy(path):
    """Cached (N, 5) float32 detections, or None when absent or unreadable."""
    try:
        dets = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    return dets if dets.ndim == 2 and dets.shape[1] == 5 and dets.dtype == np.float32 else None


def open_cache(cache_dir, key):
    """Make `cache_dir` hold the cache of `key`, deleting cache files made under another key."""
    meta = cache_dir / _META
    text = json.dumps(key, sort_keys=True)
    if meta.is_file() and meta.read_text() == text:
        return
    for old in cache_dir.rglob("*.npy"):
        old.unlink()
    atomic_write_text(meta, text)


def _check_detections(dets, name):
    dets = np.asarray(dets)
    if dets.ndim != 2 or dets.shape[1] != 5:
        raise ValueError(f"{name}: detect() returned shape {dets.shape}, expected (N, 5)")
    return dets.astype(np.float32, copy=False)


def run_detection(detector, image_names, image_root, pred_dir, cache_dir=None, cache_key=None,
                  progress=True, workers=0, job=None, job_total=None):
    """Detect every image and write its prediction file under `pred_dir`; returns the count computed.

    detector: model.detector.Detector or alike (`prepare(image)` -> blobs, `detect_prepared(list of
    blobs)` -> list of (N, 5) x1, y1, x2, y2, score); images are read and prepared on `workers`
    threads ahead of the network (lib.utils.prefetch; 0: in turn). image_names: `<event>/<image>.jpg`
    relative to `image_root`. cache_dir: None disables the cache (everything is recomputed).
    cache_key: JSON-serialisable description of the detector; a changed key invalidates the cache.
    A missing image raises FileNotFoundError before any detection runs; an undecodable one raises
    ImageError naming it (the images before it stay cached). Under a lib.detection_job.DetectionJob
    `job` of several ranks, `image_names` is this rank's share of the `job_total` images: each image
    counts on the job, and rank 0's progress bar shows the whole job's.
    """
    image_root = Path(image_root)
    missing = [n for n in image_names if not (image_root / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} of {len(image_names)} images are missing under "
                                f"{image_root}, e.g. {missing[0]}")
    if cache_dir is not None:
        cache_dir = Path(cache_dir)
        open_cache(cache_dir, cache_key)
    cached = {name: _load_npy(cache_dir / Path(name).with_suffix(".npy")) if cache_dir is not None else None
              for name in image_names}

    def load(name):
        image = read_image(image_root / name)
        return detector.prepare(image)

    computed = prefetched(load, [name for name in image_names if cached[name] is None], workers, errors=())
    count = 0
    shared = job is not None and job.distributed
    bar = tqdm(total=job_total if shared else len(image_names), desc="detect", unit="img", disable=not progress)
    for name in image_names:
        dets = cached.pop(name)
        if dets is None:
            _, blobs, _ = next(computed)
            dets = _check_detections(detector.detect_prepared([blobs])[0], name)
            count += 1
            if cache_dir is not None:
                _save_npy(cache_dir / Path(name).with_suffix(".npy"), dets)
        write_image_detections(pred_dir, name, dets)
        bar.update(job.advance() - bar.n if shared else 1)
        if shared:
            job.check_peers()
    while shared and progress and bar.n < job_total:  # rank 0's bar follows the others to the end
        job.check_peers()
        time.sleep(0.1)
        bar.update(job.advance(0) - bar.n)
    bar.close()
    return count
