"""Time the evaluator on a predictions folder: python3 -m lib.evaluation.benchmark --predictions DIR --gt DIR"""
import argparse
import time

from .evaluation import evaluation
from .ground_truth import SETTINGS, load_ground_truth
from .norm_score import norm_score
from .read_pred import read_pred
from .voc_ap import voc_ap


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--predictions", required=True, help="folder of <event>/<image>.txt files")
    parser.add_argument("--gt", required=True, help="folder of the official ground-truth .mat files")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    gt = load_ground_truth(args.gt)
    t1 = time.perf_counter()
    preds = read_pred(args.predictions, gt)
    t2 = time.perf_counter()
    curves = evaluation(norm_score(preds), gt, SETTINGS)
    aps = {s: voc_ap(c[:, 1], c[:, 0]) for s, c in curves.items()}
    t3 = time.perf_counter()
    print(f"images {len(gt)}, detections {sum(len(p) for p in preds)}")
    print(f"ground truth {t1 - t0:.2f} s, reading {t2 - t1:.2f} s, evaluation {t3 - t2:.2f} s, "
          f"total {t3 - t0:.2f} s")
    print("  ".join(f"{s} {ap!r}" for s, ap in aps.items()))


if __name__ == "__main__":
    main()
