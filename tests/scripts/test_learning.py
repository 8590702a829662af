"""Proof that training learns: train.py from scratch on one real photo, then Detector finds the face.

The photo is matplotlib's grace_hopper.jpg (600 x 512, one face), installed with matplotlib; its
face box is annotated below (the same box as ../shared/data/package_faces/annotations.txt). The
official recipe runs unchanged (OHEM, Caffe SGD at base lr 0.004, momentum 0.9, flipped copies)
except for the scale (shorter side 160 px: the face is ~56 x 64, an M2 face), one image per SGD
step, and the Kaiming-initialised trunk (--init none). About 30 s on an idle 2-core CPU.
Run alone: .venv/bin/python -m pytest -q tests/scripts/test_learning.py
"""
import hashlib
import re
import shutil

import cv2
import numpy as np
import pytest
import torch
from matplotlib import cbook

import train
from lib.config import get_config
from model import SSH
from model.detector import Detector
from shared import DATA, needs_shared

# WIDER-format x, y, w, h of the face in grace_hopper.jpg (checked by eye; test_face_box_is_the_shared_annotation).
FACE_XYWH = (177, 130, 179, 206)
PACKAGE_FACES = DATA / "package_faces"
SCALE = 160
ITERS = 80


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    """A one-image WIDER-layout training set holding grace_hopper.jpg and its face box."""
    root = tmp_path_factory.mktemp("hopper")
    images = root / "WIDER_train" / "images" / "0--Portrait"
    images.mkdir(parents=True)
    (root / "wider_face_split").mkdir()
    shutil.copy(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False), images / "grace_hopper.jpg")
    x, y, w, h = FACE_XYWH
    (root / "wider_face_split" / "wider_face_train_bbx_gt.txt").write_text(
        f"0--Portrait/grace_hopper.jpg\n1\n{x} {y} {w} {h} 0 0 0 0 0 0 \n")
    return root


def iou_plus_one(a, b):
    """(len(a), len(b)) IoU of (x1, y1, x2, y2) boxes with inclusive corners (+1 widths), in float64."""
    a, b = np.asarray(a, np.float64)[:, None], np.asarray(b, np.float64)[None]
    w = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + 1, 0, None)
    h = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + 1, 0, None)
    area = lambda x: (x[..., 2] - x[..., 0] + 1) * (x[..., 3] - x[..., 1] + 1)  # noqa: E731
    return w * h / (area(a) + area(b) - w * h)


@needs_shared(PACKAGE_FACES / "annotations.txt", PACKAGE_FACES / "README.md")
def test_face_box_is_the_shared_annotation():
    """FACE_XYWH is the hand-checked box of ../shared/data/package_faces, for the very photo it was drawn on."""
    lines = (PACKAGE_FACES / "annotations.txt").read_text().splitlines()
    at = lines.index("matplotlib/grace_hopper.jpg")
    assert lines[at + 1] == "1" and tuple(int(v) for v in lines[at + 2].split()[:4]) == FACE_XYWH
    row = next(r for r in (PACKAGE_FACES / "README.md").read_text().splitlines()
               if r.startswith("| matplotlib/grace_hopper.jpg"))
    md5 = re.search(r"\b[0-9a-f]{32}\b", row).group()
    path = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    with open(path, "rb") as f:
        assert hashlib.md5(f.read()).hexdigest() == md5


def evaluate(detector, image, faces, score=0.5, iou=0.5):
    """(recall, top_hit): the fraction of `faces` (F, 4) matched by a detection with score >= `score`
    at IoU >= `iou`, and whether the highest-scoring detection is such a match.

    Recall alone cannot tell a detector from noise: a random SSH fires hundreds of boxes above 0.5.
    """
    dets = detector.detect(image)
    dets = dets[dets[:, 4] >= score]
    if len(dets) == 0:
        return 0.0, False
    overlaps = iou_plus_one(faces, dets[:, :4])
    return float((overlaps.max(axis=1) >= iou).mean()), bool(overlaps[:, 0].max() >= iou)


def test_training_from_scratch_finds_the_face(photo, tmp_path, device):
    x, y, w, h = FACE_XYWH
    image = cv2.imread(str(photo / "WIDER_train" / "images" / "0--Portrait" / "grace_hopper.jpg"))
    width = image.shape[1]
    # Official box rule (x2 = x + w) and flip rule (x1' = W - x2 - 1).
    views = [(image, [[x, y, x + w, y + h]]),
             (np.ascontiguousarray(image[:, ::-1]), [[width - (x + w) - 1, y, width - x - 1, y + h]])]
    cfg = get_config(set_pairs=[("TEST.SCALES", f"[{SCALE}]")])

    torch.manual_seed(cfg.RNG_SEED)  # the network train.py starts from
    untrained = Detector.from_config(SSH(), cfg, device=device)
    assert not any(evaluate(untrained, im, face)[1] for im, face in views)

    rc = train.main(["--data", str(photo), "--init", "none", "--device", device.type, "--workers", "0",
                     "--out", str(tmp_path), "--iters", str(ITERS),
                     "--set", "TRAIN.SCALES", f"[{SCALE}]", "--set", "TRAIN.ITER_SIZE", "1",
                     "--set", "TRAIN.SNAPSHOT", str(ITERS), "--set", "TRAIN.DISPLAY", "20"])
    assert rc == 0
    net = SSH()
    net.load_checkpoint(tmp_path / f"SSH_iter_{ITERS}.pth")
    detector = Detector.from_config(net, cfg, device=device)
    results = [evaluate(detector, im, face) for im, face in views]
    assert sum(r for r, _ in results) / len(results) >= 0.8
    assert all(top for _, top in results)
