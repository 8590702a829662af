"""The official evaluation pipeline of wider_eval_tools/wider_eval.m: read, normalise, evaluate."""
from .evaluation import evaluation
from .ground_truth import SETTINGS, GroundTruth, load_ground_truth
from .norm_score import norm_score
from .read_pred import read_pred
from .voc_ap import voc_ap


def wider_eval(pred_dir, gt, settings=SETTINGS):
    """AP and PR curve per setting for the predictions folder `pred_dir`.

    gt: a GroundTruth or the folder of the official .mat files. Returns
    {setting: {"ap": float, "precision": (1000,) array, "recall": (1000,) array}}, the curve
    ordered by decreasing score threshold (0.999 .. 0).
    """
    if not isinstance(gt, GroundTruth):
        gt = load_ground_truth(gt)
    curves = evaluation(norm_score(read_pred(pred_dir, gt)), gt, settings)
    return {s: {"ap": voc_ap(c[:, 1], c[:, 0]), "precision": c[:, 0], "recall": c[:, 1]}
            for s, c in curves.items()}
