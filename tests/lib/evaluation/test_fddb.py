"""The FDDB evaluation (Matching, Results, evaluate.cpp): each threshold step worked out by hand, and a
straightforward loop-based reading of the tool's C++ (full-image masks drawn with its OpenCV calls,
its runHungarian and Results::merge written out) against the vectorised evaluator on generated and
real annotations. Point-for-point equality with the tool's own DiscROC/ContROC files was checked
with the C++ tool built from its source (docs/evaluation.md §6.10)."""
import cv2
import numpy as np
import pytest
from fddb_fixtures import DBL_MAX, generated, reference_lines

from lib.evaluation.fddb import (evaluate_fddb, evaluate_fddb_files, fddb_summary, image_results, match_pairs,
                                 merge_results, tpr_at)
from lib.evaluation.fddb_io import format_roc, read_annotations, read_image_list, roc_paths, write_detections
from shared import DATA, require

FDDB = DATA / "fddb"


def check(result, thresholds, disc, cont, fp):
    got_t, got_disc, got_cont, got_fp = result
    assert got_t.tolist() == thresholds
    assert got_disc.tolist() == disc
    assert got_cont.tolist() == cont
    assert got_fp.tolist() == fp


def test_threshold_steps_by_hand():
    overlaps = np.array([[0.75, 0.5, 0, 0],
                         [0, 0.25, 0, 0]])
    scores = np.array([0.9, 0.6, 0.6, 0.3])  # d1 and d2 tie: one threshold
    # t = 0.3: all 4 valid; d0, d1 overlap: [[0.75, 0.5], [0, 0.25]] -> a0-d0 0.75 + a1-d1 0.25 (1.0 beats
    #          0.5): discrete TP 1 (0.75 > 0.5), continuous 1.0, FP 4 - 1 = 3
    # t = 0.6: d0, d1, d2 valid: the same pairs, FP 3 - 1 = 2
    # t = 0.9: d0 alone: a0-d0 0.75: TP 1, continuous 0.75, FP 0
    check(image_results(overlaps, scores), [0.3, 0.6, 0.9], [1, 1, 1], [1.0, 1.0, 0.75], [3, 2, 0])


def test_overlap_of_one_half_is_not_a_discrete_true_positive():
    # Results: TPDisc counts pairs with overlap > 0.5; 0.5 adds to the continuous score only
    check(image_results(np.array([[0.5, 0.0]]), np.array([0.7, 0.2])), [0.2, 0.7], [0, 0], [0.5, 0.5], [2, 1])
    check(image_results(np.array([[np.nextafter(0.5, 1)]]), np.array([0.7])), [0.7], [1], [np.nextafter(0.5, 1)], [0])


def test_duplicates_images_without_faces_or_detections():
    # two equal detections of one face, equal scores: the first matches, the other is a false positive
    check(image_results(np.array([[0.8, 0.8]]), np.array([0.9, 0.9])), [0.9], [1], [0.8], [1])
    # no faces: every valid detection is a false positive
    check(image_results(np.zeros((0, 2)), np.array([0.5, 0.7])), [0.5, 0.7], [0, 0], [0.0, 0.0], [2, 1])
    # no detections: one result at DBL_MAX
    check(image_results(np.zeros((2, 0)), np.zeros(0)), [DBL_MAX], [0], [0.0], [0])


def test_the_tools_matching_can_miss_a_discrete_true_positive():
    # More overlapping detections than faces: the tool's Hungarian stops at a0-d0 0.125 + a1-d2 0.25
    # (test_hungarian.py), so no pair is above 0.5, although a0-d1 0.625 + a1-d2 0.25 is possible.
    overlaps = np.array([[0.125, 0.625, 0.0625], [0.0, 0.5, 0.25]])
    assert match_pairs(overlaps) == [(0, 0, 0.125), (1, 2, 0.25)]
    check(image_results(overlaps, np.array([0.5, 0.5, 0.5])), [0.5], [0], [0.375], [3])


def test_more_faces_than_detections_is_solved_transposed():
    # 3 faces, 2 overlapping detections: the matrix is transposed (detections as rows) and the pairs
    # come in detection order
    overlaps = np.array([[0.0, 0.625], [0.25, 0.0], [0.125, 0.0]])
    assert match_pairs(overlaps) == [(1, 0, 0.25), (0, 1, 0.625)]


def test_merge_by_hand():
    one = (np.array([0.3, 0.6, 0.9]), np.array([1, 1, 1]), np.array([1.0, 1.0, 0.75]), np.array([3, 2, 0]))
    no_faces = (np.array([0.5, 0.7]), np.array([0, 0]), np.array([0.0, 0.0]), np.array([2, 1]))
    no_dets = (np.array([DBL_MAX]), np.array([0]), np.array([0.0]), np.array([0]))
    # at each threshold t every image counts its result at its first threshold >= t, none beyond its last:
    # 0.3: (1, 1.0, 3) + (0, 0, 2) + (0, 0, 0)     0.5: one@0.6 (1, 1.0, 2) + no_faces@0.5 (0, 0, 2)
    # 0.6: one@0.6 + no_faces@0.7 (0, 0, 1)          0.7: one@0.9 (1, 0.75, 0) + no_faces@0.7
    # 0.9: one@0.9, no_faces has nothing >= 0.9     DBL_MAX: only no_dets
    check(merge_results([one, no_faces, no_dets]), [0.3, 0.5, 0.6, 0.7, 0.9, DBL_MAX],
          [1, 1, 1, 1, 1, 0], [1.0, 1.0, 1.0, 0.75, 0.75, 0.0], [5, 4, 3, 1, 0, 0])


def test_an_image_by_hand():
    # 20 x 20 image, faces a0, a1: 13-pixel diamonds around (5, 5) and (14, 14) (axes 2 x 2)
    ann = np.array([[2.0, 2.0, 0.0, 5.0, 5.0], [2.0, 2.0, 0.0, 14.0, 14.0]])
    dets = np.array([[4.0, 4.0, 2.0, 2.0, 0.9],      # d0: 4..6 x 4..6, all 9 px in a0: 9/13
                     [5.0, 5.0, 3.0, 3.0, 0.6],      # d1: 16 px, 6 in a0: 6/23
                     [13.0, 13.0, 2.0, 2.0, 0.6],    # d2: 9/13 with a1 (score tied with d1)
                     [13.0, 13.0, 2.0, 2.0, 0.3],    # d3: a duplicate of d2
                     [-3.0, -3.0, 4.0, 4.0, 0.6]])   # d4: partly outside, 0..1 x 0..1: overlaps nothing
    # t = 0.3: a0 (9/13, 6/23, 0, 0), a1 (0, 0, 9/13, 9/13) -> a0-d0, a1-d2: TP 2, FP 5 - 2 = 3
    # t = 0.6: d0, d1, d2, d4 valid: the same pairs, FP 4 - 2 = 2
    # t = 0.9: d0 alone: a0-d0, TP 1, FP 0
    result = evaluate_fddb([ann], [dets], [(20, 20)])
    cont = (0.0 + 9 / 13) + 9 / 13
    np.testing.assert_array_equal(result["discrete"], [[1.0, 3, 0.3], [1.0, 2, 0.6], [0.5, 0, 0.9]])
    np.testing.assert_array_equal(result["continuous"], [[cont / 2, 3], [cont / 2, 2], [9 / 13 / 2, 0]])
    assert format_roc(result) == ("1 3 0.3\n1 2 0.6\n0.5 0 0.9\n", "0.692308 3\n0.692308 2\n0.346154 0\n")
    assert fddb_summary(result) == {"faces": 2, "images": 1, "points": 3,
                                    "discrete": {"tpr_at_1000_fp": 1.0, "tpr_at_2000_fp": 1.0},
                                    "continuous": {"tpr_at_1000_fp": cont / 2, "tpr_at_2000_fp": cont / 2}}


def test_tpr_at_reads_the_curve_as_a_step():
    roc = np.array([[0.9, 2500], [0.8, 1500], [0.7, 1000], [0.5, 10]])
    assert [tpr_at(roc, n) for n in (5, 10, 999, 1000, 2000, 3000)] == [0.0, 0.5, 0.5, 0.7, 0.8, 0.9]


def test_no_faces_at_all_writes_zeros():
    result = evaluate_fddb([np.zeros((0, 5))], [np.array([[1.0, 1.0, 3.0, 3.0, 0.5]])], [(10, 10)])
    assert format_roc(result) == ("0 0 0.5\n", "0 0\n")


def test_bad_inputs():
    with pytest.raises(ValueError, match="one of each per image"):
        evaluate_fddb([np.zeros((0, 5))], [], [(10, 10)])
    with pytest.raises(ValueError, match="box must be one of"):
        evaluate_fddb([np.zeros((0, 5))], [np.zeros((0, 5))], [(10, 10)], box="pixels")
    with pytest.raises(ValueError, match=r"image 1: annotations must be an \(N, 5\) array, not \(1, 6\)"):
        evaluate_fddb([np.ones((1, 6))], [np.zeros((0, 5))], [(10, 10)])
    with pytest.raises(ValueError, match=r"image 1: ellipse detections must be an \(N, 6\) array"):
        evaluate_fddb([np.ones((1, 5))], [np.ones((2, 5))], [(10, 10)], box="ellipse")
    with pytest.raises(ValueError, match="image 1: annotation 1 and detection 1 both lie outside"):
        evaluate_fddb([np.array([[2.0, 2.0, 0, -9, -9]])], [np.array([[30.0, 30, 2, 2, 0.5]])], [(10, 10)])


@pytest.mark.parametrize("box", ["rect", "ellipse"])
def test_equals_the_tools_code_read_straightforwardly(box):
    for seed in range(6):
        annotations, detections, sizes = generated(seed, 25, box)
        assert format_roc(evaluate_fddb(annotations, detections, sizes, box)) == \
            reference_lines(annotations, detections, sizes, box)


def test_files_through_the_official_formats(tmp_path):
    annotations, detections, sizes = generated(7, 12, "rect")
    names = [f"2002/08/{k:02d}/big/img_{k}" for k in range(len(sizes))]
    (tmp_path / "list.txt").write_text("\n".join(names) + "\n")
    lines = []
    for name, faces in zip(names, annotations):
        lines += [name, str(len(faces))] + [" ".join(map(repr, map(float, f))) + "  1" for f in faces]
    (tmp_path / "ellipseList.txt").write_text("\n".join(lines) + "\n")
    boxes = {n: np.column_stack([d[:, 0], d[:, 1], d[:, 0] + d[:, 2], d[:, 1] + d[:, 3], d[:, 4]])
             for n, d in zip(names, detections)}
    write_detections(tmp_path / "dets.txt", names, boxes)
    for name, (w, h) in zip(names, sizes):  # blank pictures: only their size is read, from the header
        (tmp_path / "pics" / name).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(tmp_path / "pics" / f"{name}.jpg"), np.zeros((h, w, 3), np.uint8))
    result = evaluate_fddb_files(tmp_path / "ellipseList.txt", tmp_path / "dets.txt", tmp_path / "pics",
                                 tmp_path / "list.txt", roc_prefix=tmp_path / "out/ssh-")
    regions = [np.column_stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1], b[:, 4]])
               for b in boxes.values()]
    disc, cont = reference_lines(annotations, regions, sizes)
    assert [p.read_text() for p in roc_paths(tmp_path / "out/ssh-")] == [disc, cont]
    assert format_roc(result) == (disc, cont)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["ssh-ContROC.txt", "ssh-DiscROC.txt"]


def test_real_fold_1():
    require(FDDB / "FDDB-fold-01-ellipseList.txt", FDDB / "FDDB-fold-01.txt")
    entries = read_annotations(FDDB / "FDDB-fold-01-ellipseList.txt")
    assert len(entries) == 288 and sum(len(e.regions) for e in entries) == 512
    assert len(read_image_list(FDDB / "FDDB-fold-01.txt")) == 290
    annotations = [e.regions for e in entries]
    # FDDB's pictures are at most 450 px a side; some face centres lie on the border
    sizes = [(451, 451)] * len(entries)
    # the annotations themselves as ellipse detections: every face found with overlap 1
    perfect = [np.column_stack([a, np.ones(len(a))]) for a in annotations]
    result = evaluate_fddb(annotations, perfect, sizes, box="ellipse")
    assert result["discrete"].tolist() == [[1.0, 0.0, 1.0]] and result["continuous"].tolist() == [[1.0, 0.0]]
    # the ellipses' bounding boxes and a false positive per image, on the first 40 images
    rng = np.random.default_rng(0)
    dets = []
    for a in annotations[:40]:
        half = np.abs(np.column_stack([a[:, 0] * np.cos(a[:, 2]), a[:, 0] * np.sin(a[:, 2])])) + a[:, [1]] * 0.5
        boxes = np.column_stack([a[:, 3:5] - half, 2 * half, np.round(rng.uniform(0.3, 1, len(a)), 2)])
        dets.append(np.vstack([boxes, [*rng.uniform(0, 400, 2), 60, 60, 0.4]]))
    assert format_roc(evaluate_fddb(annotations[:40], dets, sizes[:40])) == \
        reference_lines(annotations[:40], dets, sizes[:40])
