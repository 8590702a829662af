"""FDDB ROC curves identical to the official evaluation tool's (evaluate.cpp, Matching.cpp,
Results.cpp of http://vis-www.cs.umass.edu/fddb/evaluation.tgz), vectorised per image.

Per image (evaluate.cpp's loop): the detections' unique scores, ascending, are the thresholds; at
threshold t the detections scoring >= t are valid. Matching::runHungarian keeps the annotations and
the valid detections that overlap anything (overlap > 0: fddb_regions), assigns them with the
tool's Hungarian routine (hungarian.py: it seeks the largest total overlap and on wide matrices
sometimes stops short; transposed when there are more annotations than detections) and keeps the
assigned pairs with overlap > 0. Results then counts, at that threshold,
    discrete TP = pairs with overlap > 0.5, continuous TP = the sum of the pairs' overlaps,
    FP = valid detections - discrete TP,
and an image without detections gives one result at threshold DBL_MAX. Results::merge adds the
images up over the union of their thresholds: at threshold t each image contributes its result at
its smallest threshold >= t (nothing beyond its largest), in image order; a ROC point is
(TP / faces, FP) per threshold, ascending.

The matching depends only on which overlapping detections are valid, so it is solved once per
distinct such set, not once per threshold. The sums keep the tool's order of additions, so the
continuous TPRs are the same doubles.
"""
import sys
from pathlib import Path

import numpy as np

from lib.image_io import image_size

from .fddb_io import BOXES, align, image_list_entries, read_annotations, read_detections, write_roc
from .fddb_regions import overlap_scores
from .hungarian import hungarian_max

DISCRETE_IOU = 0.5  # Results: a matched pair is a discrete true positive when its overlap is > 0.5
NO_DETECTIONS = sys.float_info.max  # the threshold of an image without detections (DBL_MAX)


def match_pairs(scores):
    """Matching::runHungarian on the (N, M) overlaps of the annotations and the valid detections:
    [(annotation, detection, overlap)] of the matched pairs, in the tool's order."""
    rows = np.flatnonzero((scores > 0).any(axis=1))
    cols = np.flatnonzero((scores > 0).any(axis=0))
    if len(rows) == 0:
        return []
    sub = scores[np.ix_(rows, cols)]
    transpose = len(rows) > len(cols)
    assigned = hungarian_max((sub.T if transpose else sub).tolist())
    pairs = []
    for i, j in enumerate(assigned):
        a, d = (j, i) if transpose else (i, j)
        if sub[a, d] > 0:
            pairs.append((int(rows[a]), int(cols[d]), float(sub[a, d])))
    return pairs


def pair_counts(pairs):
    """(discrete TP, continuous TP) of matched pairs, summed in order as Results does."""
    disc, cont = 0, 0.0
    for _, _, overlap in pairs:
        cont += overlap
        disc += overlap > DISCRETE_IOU
    return disc, cont


def image_results(scores, det_scores):
    """One image's results per threshold: (thresholds, discrete TP, continuous TP, FP) arrays, the
    thresholds the image's unique detection scores, ascending ([DBL_MAX] without detections).
    `scores`: (N, M) overlaps of its annotations and detections; `det_scores`: (M,)."""
    det_scores = np.asarray(det_scores, dtype=np.float64)
    if len(det_scores) == 0:
        return np.array([NO_DETECTIONS]), np.zeros(1, np.int64), np.zeros(1), np.zeros(1, np.int64)
    thresholds = np.unique(det_scores)
    valid = len(det_scores) - np.searchsorted(np.sort(det_scores), thresholds, side="left")
    overlapping = np.flatnonzero((scores > 0).any(axis=0))
    steps = np.unique(det_scores[overlapping])  # where the set of valid overlapping detections changes
    disc = np.zeros(len(steps) + 1, np.int64)
    cont = np.zeros(len(steps) + 1)
    for k, step in enumerate(steps):
        cols = overlapping[det_scores[overlapping] >= step]
        disc[k], cont[k] = pair_counts(match_pairs(scores[:, cols]))
    k = np.searchsorted(steps, thresholds, side="left")
    return thresholds, disc[k], cont[k], valid - disc[k]


def merge_results(per_image):
    """Results::merge over the images in order: (thresholds, discrete TP, continuous TP, FP) at the
    union of the images' thresholds, ascending. `per_image`: image_results tuples."""
    thresholds = np.unique(np.concatenate([r[0] for r in per_image]))
    disc_delta = np.zeros(len(thresholds) + 1, np.int64)
    fp_delta = np.zeros(len(thresholds) + 1, np.int64)
    cont = np.zeros(len(thresholds))
    for image_thresholds, disc, image_cont, fp in per_image:
        pos = np.searchsorted(thresholds, image_thresholds)
        # an image counts its value at its first threshold >= t: a step down after each of its thresholds
        np.add.at(disc_delta, pos, disc - np.append(disc[1:], 0))
        np.add.at(fp_delta, pos, fp - np.append(fp[1:], 0))
        # the continuous sums stay in image order: cumulative + this image, threshold by threshold
        cont[:pos[-1] + 1] += np.repeat(image_cont, np.diff(pos, prepend=-1))
    disc_total = np.cumsum(disc_delta[::-1])[::-1][:-1]
    fp_total = np.cumsum(fp_delta[::-1])[::-1][:-1]
    return thresholds, disc_total, cont, fp_total


def _rows(regions, columns, what):
    """`regions` as a (N, columns) float64 array; an empty sequence is (0, columns)."""
    a = np.asarray(regions, dtype=np.float64)
    if a.size == 0:
        return a.reshape(0, columns)
    if a.ndim != 2 or a.shape[1] != columns:
        raise ValueError(f"{what} must be an (N, {columns}) array, not {a.shape}")
    return a


def evaluate_fddb(annotations, detections, image_sizes, box="rect"):
    """The official tool's ROC curves for images given in order.

    annotations: per image an (N, 5) array of ellipses (major radius, minor radius, angle in
    radians, centre x, centre y); detections: per image an (M, 5) array left, top, width, height,
    score (`box` 'rect', the tool's -f 0) or (M, 6) ellipses + score ('ellipse', -f 1), the rows of
    the detection file; image_sizes: per image (width, height).
    Returns {"discrete": (T, 3) TPR, FP, threshold; "continuous": (T, 2) TPR, FP; "faces": N;
    "images": K}, one row per threshold, ascending (the lines of DiscROC.txt and ContROC.txt).
    """
    if box not in BOXES:
        raise ValueError(f"box must be one of {BOXES}, not {box!r}")
    if not len(annotations) == len(detections) == len(image_sizes):
        raise ValueError(f"{len(annotations)} annotation, {len(detections)} detection and {len(image_sizes)} "
                         "size entries: one of each per image is needed")
    if len(annotations) == 0:
        raise ValueError("no images to evaluate")
    per_image, faces = [], 0
    for k, (ann, det, (width, height)) in enumerate(zip(annotations, detections, image_sizes)):
        try:
            ann = _rows(ann, 5, "annotations")
            det = _rows(det, 5 if box == "rect" else 6, f"{box} detections")
            scores = overlap_scores(ann, det, int(width), int(height), box)
        except ValueError as e:
            raise ValueError(f"image {k + 1}: {e}") from None
        per_image.append(image_results(scores, det[:, -1]))
        faces += len(ann)
    thresholds, disc, cont, fp = merge_results(per_image)
    with np.errstate(invalid="ignore", divide="ignore"):
        disc_tpr, cont_tpr = disc / np.float64(faces), cont / np.float64(faces)
    fp = fp.astype(np.float64)
    return {"discrete": np.column_stack([disc_tpr, fp, thresholds]), "continuous": np.column_stack([cont_tpr, fp]),
            "faces": faces, "images": len(per_image)}


def image_sizes_of(names, images, suffix=".jpg"):
    """(width, height) of each image: from the headers of <images>/<name><suffix> (a folder; the
    pictures are not decoded) or looked up in a mapping name -> (width, height)."""
    if hasattr(images, "keys"):
        missing = [n for n in names if n not in images]
        if missing:
            raise ValueError(f"no image size given for {missing[0]!r} ({len(missing)} image(s) without one)")
        return [tuple(images[n]) for n in names]
    return [image_size(Path(images) / f"{name}{suffix}") for name in names]


def evaluate_fddb_files(annotations, detections, images, image_list=None, box="rect", roc_prefix=None,
                        suffix=".jpg"):
    """evaluate.cpp: read the files, check that they list the same images in the same order, take
    the image sizes, evaluate, and write PREFIX + 'DiscROC.txt' / 'ContROC.txt' when `roc_prefix`.

    annotations, detections, image_list: a file, or a folder of the ten fold files; without
    `image_list` the annotation file's images are evaluated. images: the folder of the pictures
    (originalPics) or a mapping name -> (width, height). Returns evaluate_fddb's dict.
    """
    ann = read_annotations(annotations)
    det = read_detections(detections, box)
    listed = image_list_entries(image_list) if image_list is not None else [(e.where, e.name) for e in ann]
    names = [name for _, name in listed]
    ann, det = align(names, ann, det, [where for where, _ in listed])
    sizes = image_sizes_of(names, images, suffix)
    result = evaluate_fddb([e.regions for e in ann], [e.regions for e in det], sizes, box)
    if roc_prefix is not None:
        write_roc(roc_prefix, result)
    return result


def tpr_at(roc, false_positives):
    """Highest TPR of the (T, 2+) ROC points (TPR, FP, ...) with at most `false_positives` false
    positives (0 if none): the curve's value at that x, read as a step."""
    ok = roc[:, 1] <= false_positives
    return float(roc[ok, 0].max()) if ok.any() else 0.0


def fddb_summary(result, false_positives=(1000, 2000)):
    """JSON-ready numbers of a result: faces, images, ROC points, and the discrete and continuous
    TPR at each number of false positives."""
    return {"faces": result["faces"], "images": result["images"], "points": len(result["discrete"]),
            **{kind: {f"tpr_at_{n}_fp": tpr_at(result[kind], n) for n in false_positives}
               for kind in ("discrete", "continuous")}}
