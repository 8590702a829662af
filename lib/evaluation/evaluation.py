"""WIDER PR curves of wider_eval_tools/evaluation.m, function by function, vectorised per image.

Predictions are (N, 5) x, y, w, h, normalised score, sorted by score; ground truth (M, 4)
int32 x, y, w, h. `in_setting` is the official `ignore` vector, misleadingly named there:
1 marks a face that counts in the setting (easy, medium or hard).
"""
import numpy as np

from . import matlab_int as mi
from .boxoverlap import boxoverlap

IOU_THRESH = 0.5
THRESH_NUM = 1000


def match_predictions(pred_info, gt_bbx):
    """First half of `image_evaluation`: the gt each prediction is assigned to.

    Corners are x2 = x + w (double for predictions, saturating int32 for the gt). MATLAB's
    `[max_overlap, idx] = max(overlap_list)` takes the first gt holding the largest overlap, and the
    prediction is assigned when that overlap >= 0.5, i.e. >= 1 for integer overlaps.
    Returns (idx (N,) int64, assigned (N,) bool). Inf, NaN and overflowing corners or areas (read_pred
    leaves such rows out; other callers may not) follow the int32 rules silently, without
    RuntimeWarnings.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        p = pred_info[:, :4].copy()
        p[:, 2:] += p[:, :2]
        g = np.asarray(gt_bbx, dtype=np.int64).copy()
        g[:, 2:] = mi.add(g[:, 2:], g[:, :2])
        overlap = boxoverlap(g, p)
    idx = overlap.argmax(axis=1)
    return idx, overlap[np.arange(len(idx)), idx] >= IOU_THRESH


def recall_and_proposals(idx, assigned, in_setting):
    """Second half of `image_evaluation`, given the assignments of `match_predictions`.

    In score order: a prediction assigned to a face outside the setting marks that face and is
    removed from the proposals (-1); one assigned to a setting face not yet recalled recalls it;
    any other prediction is a false positive. Returns (pred_recall (N,) faces recalled after each
    prediction, proposal_list (N,) 1 or -1).
    """
    hit = assigned & in_setting[idx].astype(bool)
    new = np.zeros(len(idx), dtype=bool)
    hits = np.flatnonzero(hit)
    new[hits[np.unique(idx[hits], return_index=True)[1]]] = True
    proposal_list = np.where(assigned & ~in_setting[idx].astype(bool), -1, 1)
    return np.cumsum(new), proposal_list


def image_evaluation(pred_info, gt_bbx, ignore):
    """MATLAB `image_evaluation(pred_info, gt_bbx, ignore, 0.5)` -> (pred_recall, proposal_list)."""
    idx, assigned = match_predictions(pred_info, gt_bbx)
    return recall_and_proposals(idx, assigned, np.asarray(ignore))


def thresholds(thresh_num=THRESH_NUM):
    """The official score thresholds 1 - t/thresh_num, t = 1..thresh_num (double)."""
    return 1 - np.arange(1, thresh_num + 1) / thresh_num


def image_pr_info(thresh_num, pred_info, proposal_list, pred_recall):
    """MATLAB `image_pr_info`: per threshold (proposals, recalled faces), shape (thresh_num, 2).

    For threshold t the official code takes r = the last prediction with score >= t (not a count:
    the order may hold NaN scores first) and reports the proposals among predictions 1..r and
    pred_recall(r). The last index with score >= t is the count of suffix maxima >= t.
    """
    score = pred_info[:, 4].copy()
    score[np.isnan(score)] = -np.inf
    suffix_max = np.maximum.accumulate(score[::-1])  # ascending
    r = len(score) - np.searchsorted(suffix_max, thresholds(thresh_num), side="left")
    proposals = np.concatenate([[0], np.cumsum(proposal_list == 1)])
    recalled = np.concatenate([[0], pred_recall])
    return np.stack([proposals[r], recalled[r]], axis=1).astype(np.float64)


def dataset_pr_info(org_pr_curve, count_face):
    """MATLAB `dataset_pr_info`: columns precision = recalled / proposals, recall = recalled / faces."""
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = org_pr_curve[:, 1] / org_pr_curve[:, 0]
        recall = org_pr_curve[:, 1] / np.float64(count_face)
    return np.stack([precision, recall], axis=1)


def evaluation(norm_pred_list, gt, settings, thresh_num=THRESH_NUM):
    """MATLAB `evaluation` for each setting name in `settings` -> {setting: pr_curve (thresh_num, 2)}.

    Images without gt or without predictions add nothing to the curve, but their setting faces
    count in the recall denominator. The box matching is shared by the settings.
    """
    org = {s: np.zeros((thresh_num, 2)) for s in settings}
    for j, (pred_info, gt_bbx) in enumerate(zip(norm_pred_list, gt.boxes)):
        if len(gt_bbx) == 0 or len(pred_info) == 0:
            continue
        idx, assigned = match_predictions(pred_info, gt_bbx)
        for s in settings:
            in_setting = np.zeros(len(gt_bbx), dtype=bool)
            in_setting[gt.keep[s][j][gt.keep[s][j] < len(gt_bbx)]] = True
            pred_recall, proposal_list = recall_and_proposals(idx, assigned, in_setting)
            org[s] += image_pr_info(thresh_num, pred_info, proposal_list, pred_recall)
    return {s: dataset_pr_info(org[s], gt.count_face(s)) for s in settings}
