"""Training roidb: image sizes, official boxes, flipped copies, face-less images removed (docs/training.md §4.2-§4.3)."""
import csv
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from lib.datasets.roidb import append_flipped, filter_empty, flip_boxes, gt_roidb, training_roidb
from lib.image_io import ImageError
from shared import DATA, needs_shared

MINI = DATA / "mini_wider"
ZEROS = "0 0 0 0 0 0 0 0 0 0 \n"


def make_wider(root, split="train"):
    """A WIDER-layout folder with one 100x80 image with faces and two face-less ones."""
    images = root / f"WIDER_{split}" / "images" / "0--Parade"
    images.mkdir(parents=True)
    for name, (h, w) in {"a.jpg": (80, 100), "empty.jpg": (50, 60), "val_style.jpg": (40, 30)}.items():
        cv2.imwrite(str(images / name), np.zeros((h, w, 3), np.uint8))
    split_dir = root / "wider_face_split"
    split_dir.mkdir()
    (split_dir / f"wider_face_{split}_bbx_gt.txt").write_text(
        "0--Parade/a.jpg\n3\n10 20 30 40 0 0 0 0 0 0 \n90 70 30 30 0 0 0 0 0 0 \n5 5 0 9 0 0 0 0 0 0 \n"
        "0--Parade/empty.jpg\n0\n" + ZEROS + "0--Parade/val_style.jpg\n1\n" + ZEROS)
    return images


def test_flip_boxes_hand_computed():
    boxes = np.array([[10, 20, 40, 60], [90, 70, 100, 80]], np.float32)
    np.testing.assert_array_equal(flip_boxes(boxes, 100), [[59, 20, 89, 60], [-1, 70, 9, 80]])
    np.testing.assert_array_equal(boxes, [[10, 20, 40, 60], [90, 70, 100, 80]])


def test_gt_roidb_sizes_boxes_and_paths(tmp_path):
    images = make_wider(tmp_path)
    roidb = gt_roidb(tmp_path, "train")
    assert [(Path(e.image), e.width, e.height, e.flipped) for e in roidb] == [
        (images / "a.jpg", 100, 80, False), (images / "empty.jpg", 60, 50, False),
        (images / "val_style.jpg", 30, 40, False)]
    assert roidb[0].boxes.dtype == np.float32
    np.testing.assert_array_equal(roidb[0].boxes, [[10, 20, 40, 60], [90, 70, 100, 80]])
    assert roidb[1].boxes.shape == roidb[2].boxes.shape == (0, 4)
    assert filter_empty(roidb) == roidb[:1]


def test_training_roidb_drops_faceless_and_appends_flips(tmp_path):
    make_wider(tmp_path)
    roidb = training_roidb(tmp_path, "train")
    assert [e.flipped for e in roidb] == [False, True]
    assert roidb[1].image == roidb[0].image and (roidb[1].width, roidb[1].height) == (100, 80)
    np.testing.assert_array_equal(roidb[1].boxes, [[59, 20, 89, 60], [-1, 70, 9, 80]])
    assert len(training_roidb(tmp_path, "train", use_flipped=False)) == 1


def test_flipping_twice_restores_entries(tmp_path):
    make_wider(tmp_path)
    roidb = training_roidb(tmp_path, use_flipped=False)
    twice = append_flipped(append_flipped(roidb))
    assert [e.flipped for e in twice] == [False, True, True, False]
    np.testing.assert_array_equal(twice[3].boxes, roidb[0].boxes)


def test_missing_image_names_its_path(tmp_path):
    images = make_wider(tmp_path)
    (images / "empty.jpg").unlink()
    with pytest.raises(ImageError, match=r"image not found: .*0--Parade/empty\.jpg"):
        gt_roidb(tmp_path, "train")


@pytest.mark.parametrize("damage", ["zero-byte", "text", "folder", "no permission"])
def test_unreadable_image_header_names_its_path(tmp_path, damage):
    """ImageError (a ValueError: train.py prints it as one line) instead of PIL's OSError."""
    if damage == "no permission" and os.geteuid() == 0:
        pytest.skip("root reads files of any permission")
    image = make_wider(tmp_path) / "a.jpg"
    if damage == "zero-byte":
        image.write_bytes(b"")
    elif damage == "text":
        image.write_text("not an image\n")
    elif damage == "folder":
        image.unlink()
        image.mkdir()
    else:
        image.chmod(0)
    with pytest.raises(ImageError, match=r"0--Parade/a\.jpg: cannot read the image header"):
        gt_roidb(tmp_path, "train")


@needs_shared(MINI)
def test_mini_wider_roidb():
    roidb = training_roidb(MINI, "train")
    assert len(roidb) == 32
    assert [e.flipped for e in roidb] == [False] * 16 + [True] * 16
    with open(MINI / "SOURCES.tsv") as f:
        sizes = {r["image"]: (int(r["width"]), int(r["height"]), int(r["faces"]))
                 for r in csv.DictReader(f, delimiter="\t") if r["split"] == "train"}
    for e in roidb[:16]:
        key = str(Path(e.image).relative_to(MINI))
        assert (e.width, e.height, len(e.boxes)) == sizes[key]
    assert sum(len(e.boxes) for e in roidb) == 2 * 501
    first = roidb[0]
    assert first.image.endswith("1--Handshaking/1_Handshaking_Handshaking_1_71.jpg")
    np.testing.assert_array_equal(first.boxes[0], [140, 30, 218, 226])
    np.testing.assert_array_equal(roidb[16].boxes[0], [805, 30, 883, 226])
