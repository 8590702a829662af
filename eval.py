"""Evaluate SSH on WIDER FACE val, or score any predictions folder, with the official tool's numbers.

  python3 eval.py [--model PATH] [--precision P] [--cfg FILE] [--set KEY VALUE] [--data DIR]
                  [--net_name NAME] [--no_cache] [--device DEV]
      detect every val image, write output/<EXP_DIR>/wider_val/<net_name>/detections/<event>/<image>.txt,
      then evaluate them (results.json and pr_curves.png beside the detections).
  python3 eval.py --predictions DIR [--gt DIR] [--json FILE] [--plot FILE]
      evaluate an existing predictions folder only.
"""
import argparse
import json
import math
import shlex
import sys
from contextlib import nullcontext
from pathlib import Path

from lib.config import add_config_args, config_from_args, data_layout
from lib.evaluation import SETTINGS, load_ground_truth, wider_eval
from lib.evaluation.plot import plot_pr_curves
from lib.utils.atomic import atomic_write_text, check_writable
from lib.utils.cli import one_line_warnings, sigterm_as_ctrl_c
from lib.utils.lock import FolderLocked, folder_lock
from model.precision import PRECISIONS

# Lock file of a detection run folder: two eval.py runs never write the same predictions at once.
EVAL_LOCK = "eval.lock"
# Exit code when another process of a torchrun job died, froze or never joined (as train_dist.py's).
PEER_FAILURE = 4
# Exit code when Ctrl-C or SIGTERM stopped the detection (as test.py's).
INTERRUPTED = 130


class JobFailure(RuntimeError):
    """Another process of a torchrun job died, froze or never joined (lib.utils.distributed.PeerFailure)."""


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--predictions", metavar="DIR", help="evaluate this predictions folder, skip detection")
    parser.add_argument("--model", help=".caffemodel or .pth weights, or an .onnx graph "
                        "(default: <DATA_DIR>/SSH_models/SSH.caffemodel, SSH_int8.onnx with --precision int8)")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="number format of the network (model/precision.py); int8 runs an int8 .onnx model "
                             "on the CPU: the AP difference to fp32 is its accuracy cost")
    parser.add_argument("--data", help="WIDER root with WIDER_val/ and wider_face_split/ "
                        "(default: <DATA_DIR>/datasets/wider, DATA_DIR being data/)")
    parser.add_argument("--gt", metavar="DIR", help="official ground_truth/ folder with wider_face_val.mat and "
                        "wider_{easy,medium,hard}_val.mat (default: <data>/eval_tools/ground_truth)")
    parser.add_argument("--net_name", default="SSH", help="name of the detection run (folder and legend)")
    parser.add_argument("--no_cache", action="store_true", help="neither reuse nor write cached detections")
    parser.add_argument("--device", help="torch device, e.g. cpu or cuda:0 (default: cuda when available; cpu for int8)")
    parser.add_argument("--workers", type=int, metavar="K", choices=range(0, 65), help="threads reading and "
                        "preparing the next images while the network runs (default: 1 on 2 cores or more, else 0)")
    parser.add_argument("--timeout", type=float, default=30.0, metavar="S", help="under torchrun: a process "
                        "silent this long (dead, frozen, its machine gone) stops the others, which name it")
    parser.add_argument("--json", metavar="FILE", help="write the APs and PR curves as JSON")
    parser.add_argument("--plot", metavar="FILE", help="write the PR curves as a PNG")
    parser.add_argument("--baselines", metavar="DIR", help="the tool's plot/baselines/Val/setting_int folder, "
                        "drawn as baseline curves")
    add_config_args(parser)
    return parser.parse_args(argv)


def detect(args, cfg, run_dir):
    """Write the prediction files of every val image (under torchrun: this rank's balanced share of them);
    returns their folder on rank 0, once every rank is done, and None on the others."""
    from lib.detection_job import DetectionJob  # torch and the model: detection mode only
    from lib.utils.distributed import PeerFailure

    try:
        return _detect(args, cfg, run_dir, DetectionJob.from_environment(args.timeout))
    except PeerFailure as e:
        raise JobFailure(str(e)) from None


def _detect(args, cfg, run_dir, job):
    import torch

    from lib.detection_run import default_workers
    from lib.evaluation.run import open_cache, run_detection, val_images  # torch and the model: detection only
    from lib.image_io import image_size
    from lib.utils.atomic import remove_stale_temps
    from lib.utils.device import parse_device
    from model.detector import build_detector

    device = parse_device(args.device or ("cpu" if args.precision == "int8" else None))
    if device.type == "cuda" and device.index is None and job.local_rank is not None:
        device = torch.device("cuda", job.local_rank)  # one GPU per local rank
    names, image_root = val_images(args.data)
    model = Path(args.model)
    if not model.is_file():
        raise FileNotFoundError(f"model file not found: {model}")
    detector = build_detector(model, cfg, device, args.precision)
    stat = model.stat()
    key = {"model": str(model.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
           "precision": args.precision, "TEST": cfg.TEST, "PIXEL_MEANS": cfg.PIXEL_MEANS}
    pred_dir = run_dir / "detections"
    cache_dir = None if args.no_cache else run_dir / "cache"
    total = len(names)
    if job.distributed:
        sizes = [image_size(image_root / name) for name in names]
        names = job.share(names, [sum(round(h * s) * round(w * s) for s, _ in detector.scales(h, w))
                                  for w, h in sizes])
    workers = default_workers() if args.workers is None else args.workers
    with folder_lock(run_dir, EVAL_LOCK) if job.rank == 0 else nullcontext():
        if job.rank == 0:
            removed = [name for folder in (run_dir, *run_dir.rglob("*")) if folder.is_dir()
                       for name in remove_stale_temps(folder)]
            if removed:
                print(f"Removed {len(removed)} temporary file(s) of an interrupted run from {run_dir}")
            if cache_dir is not None:
                open_cache(cache_dir, key)
            job.announce("eval/ready")
        job.wait_for("eval/ready")  # the other ranks write once rank 0 holds the folder and cleaned it
        computed = run_detection(detector, names, image_root, pred_dir, cache_dir, key, progress=job.rank == 0,
                                 workers=workers, job=job, job_total=total)
        counts = job.gather([computed, len(names)])
    if counts is None:
        return None
    computed, total = (sum(c) for c in zip(*counts))
    print(f"{computed} images detected, {total - computed} taken from the cache; predictions in {pred_dir}")
    return pred_dir


def _json_list(values):
    return [None if math.isnan(v) else float(v) for v in values]


def report(results, pred_dir, gt_dir, name, matlab, json_path, plot_path, baselines):
    """Print the AP table, write the JSON and PNG when asked, print the official tool's command."""
    print(f"{'setting':<8}AP")
    for s, r in results.items():
        print(f"{s:<8}{r['ap']!r}")
    if json_path:
        data = {s: r["ap"] for s, r in results.items()}
        data["pr_curves"] = {s: {"precision": _json_list(r["precision"]), "recall": _json_list(r["recall"])}
                             for s, r in results.items()}
        atomic_write_text(json_path, json.dumps(data, indent=1) + "\n")
        print(f"results: {json_path}")
    if plot_path:
        print(f"PR curves: {plot_pr_curves(results, plot_path, name, baselines)}")
    tool_dir, pred_dir = Path(gt_dir).resolve().parent, Path(pred_dir).resolve()
    call = f"wider_eval('{pred_dir}','{name}','{pred_dir.parent / 'matlab_pr_curves'}'); quit;"
    if (tool_dir / "wider_eval.m").is_file():
        where = shlex.quote(str(tool_dir))
    else:  # --gt named a ground_truth folder outside the tool: the tool reads ./ground_truth itself
        where = "EVAL_TOOLS"
        print(f"(no wider_eval.m beside {gt_dir}: EVAL_TOOLS below is the official tool's folder, eval_tools/ of "
              "eval_tools.zip, which holds wider_eval.m and ground_truth/)")
    print("Official MATLAB tool (same numbers unless box rows were left out above; minutes instead of seconds):\n"
          f'  cd {where} && {matlab} -nodisplay -nodesktop -r "{call}"')


def main(argv=None):
    one_line_warnings()
    args = parse_args(argv)
    with sigterm_as_ctrl_c():  # torchrun, SLURM and kill stop a run as Ctrl-C does: the cache keeps what was done
        return run(args)


def run(args):
    """eval.py for parsed `args`; the exit code."""
    try:
        cfg = config_from_args(args)
        layout = data_layout(cfg.DATA_DIR)
        args.model = args.model or (layout.ssh_int8_model if args.precision == "int8" else layout.ssh_model)
        args.data = args.data or layout.wider
        if args.baselines and not Path(args.baselines).is_dir():
            raise FileNotFoundError(f"baselines folder not found: {args.baselines}")
        gt_dir = Path(args.gt or Path(args.data) / "eval_tools" / "ground_truth")
        if not args.gt and not gt_dir.is_dir():
            raise FileNotFoundError(f"no ground truth at {gt_dir} (the default): give --gt DIR, the official WIDER "
                                    "evaluation tool's ground_truth/ folder (wider_face_val.mat, wider_easy_val.mat, "
                                    "wider_medium_val.mat, wider_hard_val.mat; eval_tools.zip of the WIDER FACE site)")
        gt = load_ground_truth(gt_dir)
        json_path, plot_path = args.json, args.plot
        run_dir = None if args.predictions else Path("output") / cfg.EXP_DIR / "wider_val" / args.net_name
        if run_dir is not None:
            json_path = json_path or run_dir / "results.json"
            plot_path = plot_path or run_dir / "pr_curves.png"
            check_writable(run_dir, folder=True)
        for path in (json_path, plot_path):
            if path:
                check_writable(path)  # before hours of detection, not after
        if args.predictions:
            pred_dir, name = Path(args.predictions), Path(args.predictions).name
        else:
            pred_dir, name = detect(args, cfg, run_dir), args.net_name
            if pred_dir is None:  # another rank than 0: rank 0 scores the job's files
                return 0
        results = wider_eval(pred_dir, gt, SETTINGS)
        report(results, pred_dir, gt_dir, name, cfg.MATLAB, json_path, plot_path, args.baselines)
    except KeyboardInterrupt:
        print("eval.py: stopped; the detections cached so far are kept: the same command goes on from them",
              file=sys.stderr)
        return INTERRUPTED
    except JobFailure as e:
        print(f"eval.py: error: {e}", file=sys.stderr)
        return PEER_FAILURE
    except (FileNotFoundError, ValueError, KeyError, FolderLocked) as e:
        print(f"eval.py: error: {e.args[0] if e.args else e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"eval.py: error: cannot write {e.filename}: {e.strerror}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
