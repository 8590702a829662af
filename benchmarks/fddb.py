"""Time the FDDB evaluator on a synthetic set the size of the ten folds: reading, overlaps and matching, ROC files.

    python3 -m benchmarks fddb [--images 2845] [--faces 5171] [--detections 38] [--smoke]

The set: --images images of 250..450 px a side holding --faces upright face ellipses in all;
each face is found by one to three jittered boxes and false positives fill --detections boxes per
image (scores with four decimals, so some are equal). Annotations and detections are written to a
temporary folder in the official formats and evaluated from there (image sizes given, not read).
"""
import tempfile
from pathlib import Path

import numpy as np

from lib.evaluation.fddb import evaluate_fddb, evaluate_fddb_files, tpr_at
from lib.evaluation.fddb_io import fddb_regions, write_detections, write_roc

from .utils import Stopwatch, benchmark_parser, parse_args

SMOKE = {"images": 30, "faces": 55}


def synthetic_fddb(images, faces, detections, seed=0):
    """(names, sizes {name: (width, height)}, annotations [(N, 5)], boxes {name: (M, 5) x1 y1 x2 y2 score})."""
    rng = np.random.default_rng(seed)
    counts = 1 + rng.multinomial(faces - images, np.full(images, 1 / images)) if faces >= images else \
        rng.multinomial(faces, np.full(images, 1 / images))
    names, sizes, annotations, boxes = [], {}, [], {}
    for k, n in enumerate(counts):
        name = f"2002/07/{k % 28 + 1:02d}/big/img_{k}"
        width, height = (int(v) for v in rng.integers(250, 451, 2))
        major = rng.uniform(12, 0.3 * min(width, height), n)
        minor = major * rng.uniform(0.6, 0.8, n)
        angle = rng.choice([-1, 1], n) * (np.pi / 2 - rng.uniform(0, 0.3, n))
        centre = rng.uniform([0, 0], [width, height], (n, 2))
        annotations.append(np.column_stack([major, minor, angle, centre]))
        hits = []
        for (cx, cy), a, b in zip(centre, major, minor):
            for _ in range(int(rng.integers(1, 4))):
                half = np.array([b, a]) * rng.uniform(0.8, 1.25, 2)
                c = np.array([cx, cy]) + rng.normal(0, 0.1, 2) * half
                hits.append([*(c - half), *(c + half), rng.uniform(0.3, 1)])
        fp = max(detections - len(hits), 0)
        xy = rng.uniform([0, 0], [width, height], (fp, 2))
        misses = np.column_stack([xy, xy + rng.uniform(10, 120, (fp, 2)), rng.uniform(0.05, 0.8, fp)])
        dets = np.concatenate([np.array(hits).reshape(-1, 5), misses])
        dets[:, 4] = np.round(dets[:, 4], 4)
        names.append(name)
        sizes[name] = (width, height)
        boxes[name] = dets
    return names, sizes, annotations, boxes


def _write_annotations(path, names, annotations):
    lines = []
    for name, ellipses in zip(names, annotations):
        lines += [name, str(len(ellipses))] + [" ".join(f"{v:.6f}" for v in e) + "  1" for e in ellipses]
    Path(path).write_text("\n".join(lines) + "\n")


def main(argv=None):
    parser = benchmark_parser(__name__, __doc__)
    parser.add_argument("--images", type=int, default=2845, help="images (FDDB: 2,845 in ten folds)")
    parser.add_argument("--faces", type=int, default=5171, help="faces (FDDB: 5,171)")
    parser.add_argument("--detections", type=int, default=38, help="detections per image (at least one per face)")
    args = parse_args(parser, argv, SMOKE)
    names, sizes, annotations, boxes = synthetic_fddb(args.images, args.faces, args.detections)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        _write_annotations(tmp / "ellipseList.txt", names, annotations)
        write_detections(tmp / "dets.txt", names, boxes)
        (tmp / "list.txt").write_text("\n".join(names) + "\n")
        clock = Stopwatch()
        result = evaluate_fddb_files(tmp / "ellipseList.txt", tmp / "dets.txt", sizes, tmp / "list.txt")
        files_s = clock.lap()
        write_roc(tmp / "bench", result)
        roc_s = clock.lap()
        regions = [fddb_regions(boxes[n]) for n in names]
        clock.lap()
        evaluate_fddb(annotations, regions, [sizes[n] for n in names])
        memory_s = clock.lap()
    n_dets = sum(len(b) for b in boxes.values())
    print(f"images {len(names)}, faces {result['faces']}, detections {n_dets}, ROC points {len(result['discrete'])}")
    print(f"read + evaluate {files_s:.2f} s, ROC files {roc_s:.2f} s, evaluate in memory {memory_s:.2f} s")
    disc, cont = result["discrete"], result["continuous"]
    print(f"TPR at 1000 / 2000 FP: discrete {tpr_at(disc, 1000):.4f} / {tpr_at(disc, 2000):.4f}, "
          f"continuous {tpr_at(cont, 1000):.4f} / {tpr_at(cont, 2000):.4f}")
