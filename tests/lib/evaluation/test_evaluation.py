"""Hand-built cases for each quirk of the official WIDER evaluation (docs/evaluation.md §6)."""
import warnings

import numpy as np
import pytest

from lib.evaluation import matlab_int as mi
from lib.evaluation.boxoverlap import boxoverlap
from lib.evaluation.evaluation import (dataset_pr_info, evaluation, image_evaluation, image_pr_info,
                                       thresholds)
from lib.evaluation.ground_truth import GroundTruth
from lib.evaluation.norm_score import norm_score
from lib.evaluation.voc_ap import voc_ap


def test_int32_conversion_rounds_half_away_saturates_and_zeroes_nan():
    x = [2.5, -2.5, 0.49999999999999994, 1e12, -1e12, np.nan, np.inf, 3.4]
    assert mi.to_int32(x).tolist() == [3, -3, 0, 2 ** 31 - 1, -(2 ** 31), 0, 2 ** 31 - 1, 3]


def test_int32_division_rounds_to_nearest_and_saturates_on_zero():
    a = np.array([5, -5, 3, 1, -1, 5, -5, 0])
    b = np.array([2, 2, 2, 3, 2, 0, 0, 0])
    assert mi.div(a, b).tolist() == [3, -3, 2, 0, -1, 2 ** 31 - 1, -(2 ** 31), 0]


def test_boxoverlap_is_an_integer_ratio():
    gt = [[0, 0, 9, 9]]  # corners, +1 area 100
    pred = np.array([[0, 0, 9, 9], [5, 0, 14, 9], [0, 0, 9, 19], [20, 20, 29, 29]], dtype=float)
    # identical: 100/100; half: 50/150 -> 0; 100/200 = 0.5 rounds away from zero -> 1; disjoint -> 0
    assert boxoverlap(gt, pred).tolist() == [[1], [0], [1], [0]]


def test_boxoverlap_rounds_prediction_corners_in_the_intersection():
    # Float IoU: inter 6.6 x 10 = 66, union 100 + 100 - 66 = 134 -> 0.4925 (no match).
    # MATLAB: x1 = max(0, int32(3.4) = 3) -> inter 7 x 10 = 70, union 130, 70/130 -> 1.
    assert boxoverlap([[0, 0, 9, 9]], [[3.4, 0, 12.4, 9]]).tolist() == [[1]]


def test_boxoverlap_rounds_the_area_sum_half_away_from_zero():
    # gt area 8 x 12 = 96; prediction area 8 x 24.0625 = 192.5 (its own, unrounded corners);
    # inter 96; int32(96 + 192.5) = 289 (not 288), union 193, 96/193 = 0.497 -> 0.
    assert boxoverlap([[0, 0, 7, 11]], [[0, 0, 7, 23.0625]]).tolist() == [[0]]


def test_boxoverlap_ignores_nan_in_max_and_min():
    # max/min ignore NaN, so the gt corners are used: inter = 100; the area sum is NaN -> int32 0,
    # union = 0 - 100, overlap 100 / -100 = -1.
    assert boxoverlap([[0, 0, 9, 9]], [[np.nan, 0, np.nan, 9]]).tolist() == [[-1]]


def _pred(*rows):
    """x, y, w, h, score rows."""
    return np.array(rows, dtype=np.float64).reshape(-1, 5)


GT3 = np.array([[0, 0, 9, 9], [0, 0, 10, 10], [100, 100, 9, 9]])  # x, y, w, h


def test_image_evaluation_takes_the_first_overlapping_gt_not_the_best():
    # The prediction equals gt 2 exactly, but gt 1 (overlap 100/121 -> 1) comes first.
    pred = _pred([0, 0, 10, 10, 1.0])
    recall, proposals = image_evaluation(pred, GT3, ignore=[1, 1, 0])
    assert recall.tolist() == [1] and proposals.tolist() == [1]
    # gt 1 outside the setting: the prediction is removed, gt 2 is not recalled.
    recall, proposals = image_evaluation(pred, GT3, ignore=[0, 1, 0])
    assert recall.tolist() == [0] and proposals.tolist() == [-1]


def test_image_evaluation_second_hit_is_a_false_positive_without_searching_further():
    pred = _pred([0, 0, 9, 9, 0.9], [0, 0, 10, 10, 0.8], [100, 100, 9, 9, 0.7], [500, 500, 5, 5, 0.6])
    recall, proposals = image_evaluation(pred, GT3, ignore=[1, 1, 0])
    # P1 -> gt1 (TP); P2 -> gt1 again (FP, gt2 stays unrecalled); P3 -> gt3 outside: removed; P4 FP.
    assert recall.tolist() == [1, 1, 1, 1]
    assert proposals.tolist() == [1, 1, -1, 1]


def test_image_pr_info_uses_the_last_prediction_above_each_threshold():
    pred = _pred([0, 0, 1, 1, 0.75], [0, 0, 1, 1, 0.5], [0, 0, 1, 1, 0.25])
    info = image_pr_info(1000, pred, np.array([1, -1, 1]), np.array([1, 1, 2]))
    t = thresholds()
    assert t[249] == 0.75 and t[499] == 0.5 and t[749] == 0.25
    assert info[:249].tolist() == [[0, 0]] * 249
    assert info[249:499].tolist() == [[1, 1]] * 250
    assert info[499:749].tolist() == [[1, 1]] * 250  # the removed prediction adds no proposal
    assert info[749:].tolist() == [[2, 2]] * 251


def test_image_pr_info_with_nan_scores_first():
    # MATLAB sorts NaN first; they never pass a threshold but they count once a later one does.
    pred = _pred([0, 0, 1, 1, np.nan], [0, 0, 1, 1, 0.5])
    info = image_pr_info(1000, pred, np.array([1, 1]), np.array([1, 1]))
    assert info[498].tolist() == [0, 0] and info[499].tolist() == [2, 1]


def _gt(boxes, keep):
    n = len(boxes)
    return GroundTruth(["e"] * n, [f"i{j}" for j in range(n)],
                       [np.asarray(b, dtype=np.int64).reshape(-1, 4) for b in boxes], {"s": keep})


def test_dataset_curve_and_ap_by_hand():
    # Image A: gt1, gt3 in the setting, gt2 outside. Image B: one setting face, no predictions.
    # Image C: its only face is outside the setting.
    gt = _gt([[[0, 0, 9, 9], [100, 100, 9, 9], [200, 200, 9, 9]], [[0, 0, 19, 19]], [[0, 0, 9, 9]]],
             [np.array([0, 2]), np.array([0]), np.array([], dtype=np.int64)])
    preds = [_pred([0, 0, 9, 9, 0.875],        # gt1: TP
                   [100, 100, 9, 9, 0.75],     # gt2 outside: removed
                   [0, 0, 9, 9, 0.5],          # gt1 again: FP
                   [200, 200, 9, 9, 0.25]),    # gt3: TP
             _pred(),
             _pred([50, 50, 9, 9, 0.5],        # FP
                   [0, 0, 9, 9, 0.25])]        # outside: removed
    curve = evaluation(preds, gt, ["s"])["s"]
    precision, recall = curve[:, 0], curve[:, 1]
    # t > 0.875 (k < 125): nothing -> 0/0; t in (0.5, 0.875]: 1 proposal, 1 TP;
    # t in (0.25, 0.5]: A has 2 proposals, C 1 -> 1/3; t <= 0.25: 4 proposals, 2 TP of 3 faces.
    assert np.isnan(precision[:124]).all() and (recall[:124] == 0).all()
    assert (precision[124:499] == 1).all() and (recall[124:499] == 1 / 3).all()
    assert (precision[499:749] == 1 / 3).all() and (recall[499:749] == 1 / 3).all()
    assert (precision[749:] == 0.5).all() and (recall[749:] == 2 / 3).all()
    # AP: 1/3 * 1 (precision max to the right) + 1/3 * 1/2.
    assert voc_ap(recall, precision) == pytest.approx(0.5, abs=1e-15)


def test_dataset_pr_info_divides_by_all_setting_faces():
    org = np.array([[0.0, 0.0], [4.0, 2.0]])
    out = dataset_pr_info(org, count_face=8)
    assert np.isnan(out[0, 0]) and out[0, 1] == 0 and out[1].tolist() == [0.5, 0.25]


def test_voc_ap_ignores_nan_precision_like_matlab_max():
    # mpre = [0, 1, NaN, .5, 0] -> right-to-left max ignoring NaN [1, 1, .5, .5, 0];
    # recall steps 0 -> .5 (x1) and .5 -> 1 (x.5).
    assert voc_ap([0.5, 0.5, 1.0], [1.0, np.nan, 0.5]) == 0.75


def test_norm_score_is_float32_and_starts_from_realmin_realmax():
    preds = norm_score([_pred([0, 0, 1, 1, -1.0], [0, 0, 1, 1, -3.0])])
    # max stays realmin('single') ~ 1.2e-38, so the top score maps to (-1 + 3) / 3 = 2/3 in float32.
    assert preds[0][:, 4].tolist() == [float(np.float32(2) / np.float32(3)), 0.0]


def test_norm_score_of_equal_scores_is_nan_and_ap_zero():
    preds = norm_score([_pred([0, 0, 9, 9, 0.7], [0, 0, 9, 9, 0.7])])
    assert np.isnan(preds[0][:, 4]).all()
    curve = evaluation(preds, _gt([[[0, 0, 9, 9]]], [np.array([0])]), ["s"])["s"]
    assert voc_ap(curve[:, 1], curve[:, 0]) == 0


def test_float32_normalisation_moves_a_score_below_its_double_threshold():
    # min 0, max 1: the normalised score is float32(0.7) = 0.69999998807... < 1 - 300/1000, so the
    # matching prediction first counts at the 301st threshold, not the 300th as in double.
    preds = norm_score([_pred([500, 500, 9, 9, 1.0], [0, 0, 9, 9, 0.7], [500, 500, 9, 9, 0.0])])
    curve = evaluation(preds, _gt([[[0, 0, 9, 9]]], [np.array([0])]), ["s"])["s"]
    assert curve[299, 1] == 0 and curve[300, 1] == 1


def test_norm_score_rounds_scores_and_extremes_to_float32():
    # Two images, scores 0.1 .. 1.0 (min 0.1 and max 1.0 are not float32 numbers: 0.1 is
    # 0.100000001490116... in float32). MATLAB: every score becomes single, max/min are single and
    # (s - min) / (max - min) is one float32 division. E.g. for 0.7:
    # (0.699999988 - 0.100000001) / (1 - 0.100000001) = 0.599999987 / 0.899999976 -> float32 0.6666666.
    preds = norm_score([_pred([0, 0, 1, 1, 0.7], [0, 0, 1, 1, 0.1]), _pred([0, 0, 1, 1, 1.0], [0, 0, 1, 1, 0.3])])
    f = np.float32
    expected = [(f(s) - f(0.1)) / (f(1.0) - f(0.1)) for s in (0.7, 0.1, 1.0, 0.3)]
    got = np.concatenate([p[:, 4] for p in preds])
    assert got.tolist() == [float(e) for e in expected] == [float(f(0.6666666)), 0.0, 1.0, float(f(0.22222225))]
    assert (got.astype(np.float32) == got).all()  # each normalised score is a float32 number
    # in double the 0.7 would map to 0.66666665342..., not float32(2/3) = 0.66666662693...
    assert got[0] != (float(f(0.7)) - 0.1) / (1.0 - 0.1)
    np.testing.assert_array_equal(preds[0][:, :4], [[0, 0, 1, 1]] * 2)  # boxes untouched


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf, 1e308, -1e308, 1e39])
@pytest.mark.parametrize("column", range(5))
def test_a_non_finite_or_huge_value_that_slips_past_read_pred_neither_hangs_nor_warns(deadline, column, value):
    # read_pred leaves such rows out; a caller building arrays itself still gets an AP, quietly.
    gt = _gt([[[0, 0, 9, 9], [20, 20, 9, 9]], [[0, 0, 9, 9]]], [np.array([0, 1]), np.array([0])])
    pred = _pred([0, 0, 9, 9, 0.875], [20, 20, 9, 9, 0.5], [40, 40, 9, 9, 0.25])
    pred[1, column] = value
    with deadline(5), warnings.catch_warnings():
        warnings.simplefilter("error")
        curve = evaluation(norm_score([pred, pred[:1]]), gt, ["s"])["s"]
        ap = voc_ap(curve[:, 1], curve[:, 0])
    assert 0 <= ap <= 1
    assert ((curve[:, 1] >= 0) & (curve[:, 1] <= 1)).all()
    if column < 4:  # the row can match nothing: gt 2 is missed, the other two boxes are as without it
        assert curve[-1, 1] == 2 / 3
