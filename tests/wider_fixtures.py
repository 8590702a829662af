"""Tiny WIDER-layout training sets written by the tests themselves."""
import shutil
from pathlib import Path

import cv2
import numpy as np


def tiny_wider(root, count, seed, x0, dx, y0):
    """`root` with `count` random 64x80 images under WIDER_train/images/0--Test and one face box
    `x0 + dx * i, y0, 24, 28` each in wider_face_split/wider_face_train_bbx_gt.txt; returns root."""
    images = root / "WIDER_train" / "images" / "0--Test"
    images.mkdir(parents=True)
    (root / "wider_face_split").mkdir()
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(count):
        cv2.imwrite(str(images / f"img{i}.jpg"), rng.integers(0, 256, (64, 80, 3), dtype=np.uint8))
        lines += [f"0--Test/img{i}.jpg", "1", f"{x0 + dx * i} {y0} 24 28 0 0 0 0 0 0 "]
    (root / "wider_face_split" / "wider_face_train_bbx_gt.txt").write_text("\n".join(lines) + "\n")
    return root


def add_val_split(root):
    """Give the tiny set `root` a val split, its train images and boxes, and their official ground truth
    (every face in every setting) in `root/eval_tools/ground_truth`, where eval.py and train.py look by
    default; returns root."""
    from lib.datasets.wider import annotation_file, read_annotations
    from lib.evaluation.ground_truth import SETTINGS, GroundTruth, save_ground_truth

    shutil.copytree(root / "WIDER_train", root / "WIDER_val")
    shutil.copy(annotation_file(root, "train"), annotation_file(root, "val"))
    images = read_annotations(annotation_file(root, "val"))
    gt = GroundTruth([Path(im.name).parent.name for im in images], [Path(im.name).stem for im in images],
                     [im.boxes.astype(np.int64) for im in images],
                     {s: [np.arange(len(im.boxes)) for im in images] for s in SETTINGS})
    save_ground_truth(gt, root / "eval_tools" / "ground_truth")
    return root
