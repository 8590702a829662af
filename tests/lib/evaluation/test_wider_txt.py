"""The per-image prediction files, byte for byte as the official tester writes them."""
import numpy as np
import pytest

from lib.evaluation.read_pred import read_pred_file
from lib.evaluation.wider_txt import format_detections, write_image_detections


def test_format_is_the_official_one():
    dets = np.array([[10.7, -3.2, 50.9, 60.1, 0.98765432],
                     [0.0, 0.0, 99.99, 5.5, 0.5],
                     [1, 2, 3, 4, 0.0001234]], dtype=np.float32)
    # int() truncates toward zero: -3.2 -> -3; w = int(50.9) - int(10.7) = 40; %g keeps 6 digits.
    assert format_detections("0--Parade/0_Parade_x_1.jpg", dets) == (
        "0--Parade/0_Parade_x_1.jpg\n2\n10 -3 40 63 0.987654 \n0 0 99 5 0.5 \n")


def test_only_scores_above_0_05_are_written():
    dets = np.array([[0, 0, 1, 1, 0.05], [0, 0, 1, 1, 0.050001], [0, 0, 1, 1, 0.01]])
    assert format_detections("e/i.jpg", dets) == "e/i.jpg\n1\n0 0 1 1 0.050001 \n"


def test_no_detections():
    assert format_detections("e/i.jpg", np.zeros((0, 5))) == "e/i.jpg\n0\n"


def test_non_finite_detections_raise():
    with pytest.raises(ValueError, match="e/i.jpg: detections hold NaN or Inf"):
        format_detections("e/i.jpg", np.array([[0, 0, np.nan, 1, 0.9]]))


def test_write_places_the_file_atomically_and_the_reader_reads_it_back(tmp_path):
    dets = np.array([[5.9, 6.1, 20.5, 30.2, 0.7], [1, 1, 9, 9, 0.9]], dtype=np.float32)
    path = write_image_detections(tmp_path, "7--Cheering/7_Cheering_3.jpg", dets)
    assert path == tmp_path / "7--Cheering" / "7_Cheering_3.txt"
    assert sorted(p.name for p in path.parent.iterdir()) == ["7_Cheering_3.txt"]  # no temp file left
    boxes, problem, dropped = read_pred_file(path)
    assert problem is None and dropped == []
    np.testing.assert_allclose(boxes, [[1, 1, 8, 8, 0.9], [5, 6, 15, 24, 0.7]], rtol=1e-6)
