"""Evaluate SSH on WIDER FACE val, or score any predictions folder, with the official tool's numbers.

  python3 eval.py [--model PATH] [--precision P] [--cfg FILE] [--set KEY VALUE] [--data DIR]
                  [--net-name NAME] [--no-cache] [--device DEV]
      detect every val image, write output/<EXP_DIR>/wider_val/<net_name>/detections/<event>/<image>.txt,
      then evaluate them (results.json and pr_curves.png beside the detections).
  python3 eval.py --predictions DIR [--gt DIR] [--json FILE] [--plot FILE]
      evaluate an existing predictions folder only.
  python3 eval.py --dataset fddb --images originalPics/ --folds FDDB-folds/ [--fddb-box rect|ellipse] [model options]
      detect every FDDB image, write output/<EXP_DIR>/fddb/<net_name>/detections.txt (the official detection
      file, folds in order), then evaluate it (DiscROC.txt, ContROC.txt, results.json, roc_*.png beside it).
  python3 eval.py --dataset fddb --annotations ELLIPSES --predictions DETS --images DIR [--list LIST] [--roc PREFIX]
      the official FDDB tool's evaluation of a detection file: PREFIXDiscROC.txt and PREFIXContROC.txt.

Options are hyphenated; their underscore spellings (--net_name, --no_cache) still work. Errors end with one
`error:` line and exit code 2 (4: another process of a torchrun job failed); Ctrl-C or SIGTERM stops the
detection with exit code 130, the cache keeping what was done (lib/utils/exit_codes.py).
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
from lib.evaluation.fddb import evaluate_fddb_files, fddb_summary
from lib.evaluation.fddb_io import BOXES, read_annotations, read_image_list, roc_paths, write_detections
from lib.evaluation.fddb_plot import find_baselines, plot_fddb_roc
from lib.evaluation.plot import plot_pr_curves
from lib.utils.atomic import atomic_write_text, check_writable
from lib.utils.cli import (ArgumentParser, error_text, int_at_least, one_line_warnings, positive_seconds,
                           sigterm_as_ctrl_c)
from lib.utils.exit_codes import ExitCode
from lib.utils.lock import FolderLocked, folder_lock
from model.precision import PRECISION_CHOICES

# Lock file of a detection run folder: two eval.py runs never write the same predictions at once.
EVAL_LOCK = "eval.lock"


class JobFailure(RuntimeError):
    """Another process of a torchrun job died, froze or never joined (lib.utils.distributed.PeerFailure)."""


def parse_args(argv=None):
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=("wider", "fddb"), default="wider", help="the benchmark (default wider)")
    parser.add_argument("--predictions", metavar="PATH", help="evaluate these predictions, skip detection: WIDER's "
                        "folder of per-image files; FDDB's detection file, or a folder of its fold-NN-out.txt files")
    parser.add_argument("--model", help=".caffemodel or .pth weights, or an .onnx graph "
                        "(default: <DATA_DIR>/SSH_models/SSH.caffemodel, SSH_int8.onnx with --precision int8)")
    parser.add_argument("--precision", choices=PRECISION_CHOICES, default="fp32",
                        help="number format of the network (model/precision.py); int8 runs an int8 .onnx model "
                             "on the CPU: the AP difference to fp32 is its accuracy cost; auto picks the fastest "
                             "that runs natively here (default fp32: the official numbers)")
    parser.add_argument("--data", help="WIDER root with WIDER_val/ and wider_face_split/ "
                        "(default: <DATA_DIR>/datasets/wider, DATA_DIR being data/)")
    parser.add_argument("--gt", metavar="DIR", help="official ground_truth/ folder with wider_face_val.mat and "
                        "wider_{easy,medium,hard}_val.mat (default: <data>/eval_tools/ground_truth)")
    parser.add_argument("--net-name", default="SSH", help="name of the detection run (folder and legend)")
    parser.add_argument("--no-cache", action="store_true", help="neither reuse nor write cached detections")
    parser.add_argument("--device", help="torch device, e.g. cpu or cuda:0 (default: cuda when available; cpu for int8)")
    parser.add_argument("--workers", type=int_at_least(0), metavar="K", help="threads reading and "
                        "preparing the next images while the network runs (default: 1 on 2 cores or more, else 0)")
    parser.add_argument("--timeout", type=positive_seconds, default=30.0, metavar="S", help="under torchrun: a process "
                        "silent this long (dead, frozen, its machine gone) stops the others, which name it")
    parser.add_argument("--json", metavar="FILE", help="write the APs and PR curves as JSON")
    parser.add_argument("--plot", metavar="FILE", help="write the PR curves as a PNG")
    parser.add_argument("--baselines", metavar="DIR", help="drawn as baseline curves: WIDER, the tool's "
                        "plot/baselines/Val/setting_int folder; FDDB, a folder of published *DiscROC.txt / *ContROC.txt")
    fddb = parser.add_argument_group("FDDB (--dataset fddb)")
    fddb.add_argument("--images", metavar="DIR", help="FDDB's originalPics/ folder (<name>.jpg; for evaluation only "
                      "the image sizes are read, from the headers)")
    fddb.add_argument("--folds", metavar="DIR", help="FDDB-folds/: the ten FDDB-fold-NN.txt image lists and "
                      "FDDB-fold-NN-ellipseList.txt annotations (stands for --list and --annotations)")
    fddb.add_argument("--annotations", metavar="PATH", help="an ellipse annotation file, or a folder of the ten")
    fddb.add_argument("--list", metavar="PATH", help="an image list file, or a folder of the ten (default: the "
                      "annotation file's images)")
    fddb.add_argument("--roc", metavar="PREFIX", help="write PREFIXDiscROC.txt and PREFIXContROC.txt, as the "
                      "official tool's -r (default in detection mode: <run folder>/)")
    fddb.add_argument("--fddb-box", choices=BOXES, default="rect", help="how detections are written and evaluated: "
                      "rect, the box as detected; ellipse, the ellipse inscribed in it (default rect)")
    add_config_args(parser)
    args = parser.parse_args(argv)
    given = [f"--{name.replace('_', '-')}" for name in ("images", "folds", "annotations", "list", "roc")
             if getattr(args, name) is not None]
    if args.dataset == "wider" and (given or args.fddb_box != "rect"):
        parser.error(f"{(given or ['--fddb-box'])[0]} is an FDDB option: give --dataset fddb")
    if args.dataset == "fddb":
        wider = [f"--{name}" for name in ("gt", "data") if getattr(args, name) is not None]
        if wider:
            parser.error(f"{wider[0]} is a WIDER option, not one of --dataset fddb")
        if args.images is None:
            parser.error("--dataset fddb needs --images DIR, FDDB's originalPics/ folder")
        if args.annotations is None and args.folds is None:
            parser.error("--dataset fddb needs --folds DIR (FDDB-folds/) or --annotations PATH")
    return args


def detect(args, cfg, run_dir):
    """Write the prediction files of every val image (under torchrun: this rank's balanced share of them);
    returns their folder on rank 0, once every rank is done, and None on the others."""
    from lib.detection_job import DetectionJob  # torch and the model: detection mode only
    from lib.utils.distributed import PeerFailure

    try:
        return _detect(args, cfg, run_dir, DetectionJob.from_environment(args.timeout))
    except PeerFailure as e:
        raise JobFailure(str(e)) from None


def predictions_or_detect(args, cfg, run_dir, given_name):
    """(predictions, name in the legends): --predictions and `given_name` when it was given, else this rank's
    detection into `run_dir` (None on ranks other than 0) and --net-name."""
    if args.predictions:
        return Path(args.predictions), given_name
    return detect(args, cfg, run_dir), args.net_name


def fddb_names(args):
    """The FDDB images of the run, in list order (repeats kept): --list (or --folds), else the annotations'."""
    image_list = args.list or args.folds
    if image_list is not None:
        return read_image_list(image_list)
    return [entry.name for entry in read_annotations(args.annotations)]


def _detect(args, cfg, run_dir, job):
    import numpy as np
    import torch

    from lib.detection_run import default_workers
    from lib.evaluation.run import detect_fddb, open_cache, run_detection, val_images  # torch and the model
    from lib.image_io import image_size
    from lib.utils.atomic import remove_stale_temps
    from model.detector import build_detector
    from model.precision import resolve_precision, warn_if_emulated

    choice = resolve_precision(args.precision, args.device, args.model)
    args.precision, device = choice.precision, choice.device
    args.model = choice.model
    if choice.message and job.rank == 0:
        print(choice.message, file=sys.stderr)
    warn_if_emulated(args.precision, device)
    if device.type == "cuda" and device.index is None and job.local_rank is not None:
        device = torch.device("cuda", job.local_rank)  # one GPU per local rank
    if args.dataset == "wider":
        names, image_root = val_images(args.data)
        suffix = ""
    else:
        names, image_root, suffix = list(dict.fromkeys(fddb_names(args))), Path(args.images), ".jpg"
    model = Path(args.model)
    if not model.is_file():
        raise FileNotFoundError(f"model file not found: {model}")
    detector = build_detector(model, cfg, device, args.precision)
    stat = model.stat()
    key = {"model": str(model.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
           "precision": args.precision, "TEST": cfg.TEST, "PIXEL_MEANS": cfg.PIXEL_MEANS}
    cache_dir = None if args.no_cache else run_dir / "cache"
    total = len(names)
    if job.distributed:
        sizes = [image_size(image_root / f"{name}{suffix}") for name in names]
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
        run = dict(progress=job.rank == 0, workers=workers, job=job, job_total=total)
        if args.dataset == "wider":
            dets, computed = {}, run_detection(detector, names, image_root, run_dir / "detections", cache_dir, key,
                                               **run)
        else:
            dets, computed = detect_fddb(detector, names, image_root, cache_dir, key, **run)
        counts = job.gather([computed, len(names), {name: d.tolist() for name, d in dets.items()}])
    if counts is None:
        return None
    computed, total = (sum(c[k] for c in counts) for k in range(2))
    print(f"{computed} images detected, {total - computed} taken from the cache")
    if args.dataset == "wider":
        print(f"predictions in {run_dir / 'detections'}")
        return run_dir / "detections"
    dets = {name: np.asarray(d, np.float32).reshape(-1, 5) for c in counts for name, d in c[2].items()}
    path = write_detections(run_dir / "detections.txt", fddb_names(args), dets, args.fddb_box)
    print(f"FDDB detection file ({args.fddb_box}): {path}")
    return path


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


def run_fddb(args, cfg):
    """--dataset fddb: detect (unless --predictions), evaluate as the official tool, report; the exit code."""
    json_path, plot_path, roc = args.json, args.plot, args.roc
    run_dir = None if args.predictions else Path("output") / cfg.EXP_DIR / "fddb" / args.net_name
    if run_dir is not None:
        json_path, plot_path = json_path or run_dir / "results.json", plot_path or run_dir / "roc.png"
        roc = roc if roc is not None else f"{run_dir}/"
        check_writable(run_dir, folder=True)
    outputs = [json_path, *(roc_paths(roc) if roc is not None else ()),
               *((plot_path, continuous_plot(plot_path)) if plot_path else ())]
    for path in filter(None, outputs):
        check_writable(path)  # before hours of detection, not after
    fddb_names(args)  # a bad list or annotation file fails before the model loads
    predictions, name = predictions_or_detect(args, cfg, run_dir, Path(args.predictions or ".").stem)
    if predictions is None:  # another rank than 0: rank 0 scores the job's file
        return ExitCode.OK
    result = evaluate_fddb_files(args.annotations or args.folds, predictions, args.images, args.list or args.folds,
                                 box=args.fddb_box, roc_prefix=roc)
    report_fddb(result, name, roc, json_path, plot_path, args.baselines)
    return ExitCode.OK


def continuous_plot(path):
    """Where the continuous ROC plot goes beside the discrete one at `path`."""
    path = Path(path)
    return path.with_name(f"{path.stem}_continuous{path.suffix}")


def report_fddb(result, name, roc, json_path, plot_path, baselines):
    """Print the TPRs at 1000 and 2000 false positives; write the JSON and the discrete and continuous ROC plots."""
    summary = fddb_summary(result)
    print(f"FDDB: {summary['faces']} faces in {summary['images']} images, {summary['points']} ROC points")
    for kind in ("discrete", "continuous"):
        values = ", ".join(f"{v:.4f} at {k.split('_')[2]} FP" for k, v in summary[kind].items())
        print(f"{kind:<11}TPR {values}")
    if roc is not None:
        print("ROC files: " + ", ".join(map(str, roc_paths(roc))))
    if json_path:
        data = {**summary, "roc": {"discrete": result["discrete"].tolist(), "continuous": result["continuous"].tolist()}}
        atomic_write_text(json_path, json.dumps(data, indent=1) + "\n")
        print(f"results: {json_path}")
    if plot_path:
        for kind, path in (("discrete", plot_path), ("continuous", continuous_plot(plot_path))):
            found = find_baselines(baselines, kind) if baselines else ()
            print(f"{kind} ROC: {plot_fddb_roc(result, path, kind, name, found)}")


def run(args):
    """eval.py for parsed `args`; the exit code."""
    try:
        cfg = config_from_args(args)
        layout = data_layout(cfg.DATA_DIR)
        args.model = args.model or (layout.ssh_int8_model if args.precision == "int8" else layout.ssh_model)
        if args.baselines and not Path(args.baselines).is_dir():
            raise FileNotFoundError(f"baselines folder not found: {args.baselines}")
        if args.dataset == "fddb":
            return run_fddb(args, cfg)
        args.data = args.data or layout.wider
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
        pred_dir, name = predictions_or_detect(args, cfg, run_dir, Path(args.predictions or ".").name)
        if pred_dir is None:  # another rank than 0: rank 0 scores the job's files
            return ExitCode.OK
        results = wider_eval(pred_dir, gt, SETTINGS)
        report(results, pred_dir, gt_dir, name, cfg.MATLAB, json_path, plot_path, args.baselines)
    except KeyboardInterrupt:
        print("stopped; the detections cached so far are kept: the same command goes on from them", file=sys.stderr)
        return ExitCode.INTERRUPTED
    except JobFailure as e:
        print(f"error: {e}", file=sys.stderr)
        return ExitCode.PEER_FAILURE
    except (FileNotFoundError, ValueError, KeyError, FolderLocked) as e:
        print(f"error: {error_text(e)}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    except OSError as e:
        print(f"error: cannot write {e.filename}: {e.strerror}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    return ExitCode.OK


if __name__ == "__main__":
    sys.exit(main())
