"""WIDER annotation parsing and the official box rule (docs/training.md §4.2)."""

import numpy as np
import pytest

from lib.datasets.wider import annotation_file, matlab_round, read_annotations, wider_boxes
from shared import DATA, needs_shared

ATTRS = " 0 0 0 0 0 0 "


def write(tmp_path, text, name="gt.txt"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_reads_images_boxes_and_both_zero_face_forms(tmp_path):
    path = write(tmp_path, (
        "0--Parade/a.jpg\n2\n"
        "10 20 30 40" + ATTRS + "\n"
        "2.5 3.5 10.5 0.5" + ATTRS + "\n"
        "1--Handshaking/train_style_empty.jpg\n0\n"
        "0 0 0 0 0 0 0 0 0 0 \n"
        "2--Demonstration/val_style_empty.jpg\n1\n"
        "0 0 0 0 0 0 0 0 0 0 \n"
        "3--Riot/b.jpg\n1\n"
        "-5 7 20 10\n"
    ))
    images = read_annotations(path)
    assert [im.name for im in images] == [
        "0--Parade/a.jpg", "1--Handshaking/train_style_empty.jpg",
        "2--Demonstration/val_style_empty.jpg", "3--Riot/b.jpg"]
    np.testing.assert_array_equal(images[0].boxes, [[10, 20, 30, 40], [2.5, 3.5, 10.5, 0.5]])
    assert images[1].boxes.shape == (0, 4)
    np.testing.assert_array_equal(images[2].boxes, [[0, 0, 0, 0]])
    np.testing.assert_array_equal(images[3].boxes, [[-5, 7, 20, 10]])
    assert wider_boxes(images[1].boxes, 100, 80).shape == (0, 4)
    assert wider_boxes(images[2].boxes, 100, 80).shape == (0, 4)


def test_matlab_round_is_half_away_from_zero():
    np.testing.assert_array_equal(matlab_round(np.array([0.5, 1.5, 2.5, -0.5, -2.5, 2.4, -2.6])),
                                  [1, 2, 3, -1, -3, 2, -3])


def test_official_box_rule_hand_computed():
    xywh = np.array([
        [10, 20, 30, 40],      # plain: x2 = x1 + w, not x1 + w - 1
        [2.5, 3.5, 10.5, 0.5],  # MATLAB round: 3, 4, 11, 1 (numpy would give 2, 4, 10, 0: dropped)
        [-5, 10, 20, 10],      # negative x: shifted to 0, not clipped (x2 = 20, not 15)
        [90, 70, 30, 30],      # overflow: clamped to the width/height, not width - 1
        [10, 10, 0, 5],        # zero width: dropped
        [10, 10, -26, 5],      # negative width: dropped
        [10, 10, 5, 0.4],      # height rounds to 0: dropped
        [100, 10, 10, 10],     # starts at the right border: x2 = min(100, 110) = x1, dropped
        [10, -3.5, 4, 6],      # y rounds to -4, clamped to 0
    ])
    boxes = wider_boxes(xywh, 100, 80)
    assert boxes.dtype == np.float32
    np.testing.assert_array_equal(boxes, [
        [10, 20, 40, 60],
        [3, 4, 14, 5],
        [0, 10, 20, 20],
        [90, 70, 100, 80],
        [10, 0, 14, 6],
    ])


def test_mixed_line_lengths_are_accepted(tmp_path):
    path = write(tmp_path, "a.jpg\n2\n1 2 3 4\n5 6 7 8 0 0 0 0 0 0\n")
    np.testing.assert_array_equal(read_annotations(path)[0].boxes, [[1, 2, 3, 4], [5, 6, 7, 8]])


@pytest.mark.parametrize("text, line, message", [
    ("a.jpg\nabc\n1 2 3 4\n", 2, "expected a face count, got 'abc'"),
    ("a.jpg\n-1\n1 2 3 4\n", 2, "negative face count"),
    ("a.jpg\n1.5\n1 2 3 4\n", 2, "expected a face count"),
    ("a.jpg\n2\n1 2 3 4" + ATTRS + "\n1 2 3\n", 4, "at least 4 numbers"),
    ("a.jpg\n1\n1 2 3 4\nb.jpg\n2\n1 2 3 4" + ATTRS + "\n1 2 x 4" + ATTRS + "\n", 7, "non-numeric"),
    ("a.jpg\n1\n1 2 3 4 0 0 0 junk 0 0\n", 3, "non-numeric"),
    ("a.jpg\n1\n1 2 nan 4\n", 3, "non-finite"),
    ("a.jpg\n3\n1 2 3 4\n", 4, "file ends inside the 3 box line(s) of a.jpg"),
    ("a.jpg\n1\n1 2 3 4\nb.jpg\n", 5, "file ends before the face count of b.jpg"),
    ("a.jpg\n1\n1 2 3 4\n\nb.jpg\n1\n1 2 3 4\n", 4, "empty line"),
    ("a.jpg\n0\nb.jpg\n1\n1 2 3 4\n", 3, "all-zero dummy line, got 'b.jpg'"),
    ("a.jpg\n0\n1 2 3 4 0 0 0 0 0 0\n", 3, "all-zero dummy line"),
])
def test_malformed_file_names_file_and_line(tmp_path, text, line, message):
    path = write(tmp_path, text)
    with pytest.raises(ValueError) as err:
        read_annotations(path)
    assert f"{path}:{line}:" in str(err.value)
    assert message in str(err.value)


def test_binary_file_is_named(tmp_path):
    path = tmp_path / "gt.bin"
    path.write_bytes(b"a.jpg\n1\n\xff\xfe 2 3 4\n")
    with pytest.raises(ValueError, match=r"gt\.bin: not a UTF-8 text file"):
        read_annotations(path)


def test_trailing_blank_lines_and_empty_file(tmp_path):
    assert len(read_annotations(write(tmp_path, "a.jpg\n1\n1 2 3 4\n\n\n"))) == 1
    assert read_annotations(write(tmp_path, "", "empty.txt")) == []
    only_empty = read_annotations(write(tmp_path, "a.jpg\n0\n0 0 0 0 0 0 0 0 0 0 \n", "zero.txt"))
    assert only_empty[0].boxes.shape == (0, 4)


@needs_shared(DATA / "wider_face_split")
@pytest.mark.parametrize("split, n_images, n_boxes, empty", [
    ("train", 12880, 159420, {"0--Parade/0_Parade_Parade_0_452.jpg",
                              "2--Demonstration/2_Demonstration_Political_Rally_2_444.jpg",
                              "39--Ice_Skating/39_Ice_Skating_iceskiing_39_380.jpg",
                              "46--Jockey/46_Jockey_Jockey_46_576.jpg"}),
    ("val", 3226, 39708, set()),
])
def test_official_annotation_files(split, n_images, n_boxes, empty):
    images = read_annotations(annotation_file(DATA, split))
    assert len(images) == n_images
    assert sum(len(im.boxes) for im in images) == n_boxes
    assert {im.name for im in images if len(im.boxes) == 0} == empty
    assert images[0].name == {"train": "0--Parade/0_Parade_marchingband_1_849.jpg",
                              "val": "0--Parade/0_Parade_marchingband_1_465.jpg"}[split]
    if split == "val":
        zero = {im.name for im in images if len(im.boxes) == 1 and not im.boxes.any()}
        assert zero == {"0--Parade/0_Parade_Parade_0_275.jpg", "37--Soccer/37_Soccer_soccer_ball_37_281.jpg",
                        "50--Celebration_Or_Party/50_Celebration_Or_Party_houseparty_50_715.jpg",
                        "7--Cheering/7_Cheering_Cheering_7_426.jpg"}
