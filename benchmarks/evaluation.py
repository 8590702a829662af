"""Time the evaluator on a predictions folder: ground truth, reading, evaluation, and the three APs.

    python3 -m benchmarks evaluation [--predictions DIR --gt GT_DIR] [--images 3226] [--smoke]

--predictions holds <event>/<image>.txt files and --gt the official ground-truth .mat files.
Without them a synthetic WIDER-val-like set of --images images is written to a temporary folder
first (utils.synthetic_val) and timed.
"""
import tempfile

from lib.evaluation.evaluation import evaluation
from lib.evaluation.ground_truth import SETTINGS, load_ground_truth
from lib.evaluation.norm_score import norm_score
from lib.evaluation.read_pred import read_pred
from lib.evaluation.voc_ap import voc_ap

from .utils import VAL_EVENTS, Stopwatch, benchmark_parser, parse_args, synthetic_val

SMOKE = {"images": 20}


def main(argv=None):
    parser = benchmark_parser(__name__, __doc__)
    parser.add_argument("--predictions", help="folder of <event>/<image>.txt files")
    parser.add_argument("--gt", help="folder of the official ground-truth .mat files")
    parser.add_argument("--images", type=int, default=3226, help="images of the synthetic set (without --gt)")
    args = parse_args(parser, argv, SMOKE)
    if (args.predictions is None) != (args.gt is None):
        parser.error("--predictions and --gt go together")
    with tempfile.TemporaryDirectory() as tmp:
        if args.gt is None:
            args.predictions, args.gt = synthetic_val(tmp, args.images)
            print(f"synthetic val-like set: {args.images} images over {min(VAL_EVENTS, args.images)} events")
        clock = Stopwatch()
        gt = load_ground_truth(args.gt)
        load_s = clock.lap()
        preds = read_pred(args.predictions, gt)
        read_s = clock.lap()
        curves = evaluation(norm_score(preds), gt, SETTINGS)
        aps = {s: voc_ap(c[:, 1], c[:, 0]) for s, c in curves.items()}
        eval_s = clock.lap()
    print(f"images {len(gt)}, detections {sum(len(p) for p in preds)}")
    print(f"ground truth {load_s:.2f} s, reading {read_s:.2f} s, evaluation {eval_s:.2f} s, "
          f"total {load_s + read_s + eval_s:.2f} s")
    print("  ".join(f"{s} {ap!r}" for s, ap in aps.items()))
