"""Train SSH on WIDER FACE (official SSH/train.py + main_train.py; docs/training.md §4).

    python3 train.py                                      # the official run (21k iterations, VGG16 init)
    python3 train.py --cfg configs/wider.yml --device cuda --amp
    python3 train.py --resume output/SSH/wider_train/SSH_iter_1000.pth
    python3 train.py --resume auto --latest_every 100     # restartable: the same command after any failure
    python3 train.py --init none --iters 200 --set TRAIN.SCALES [600] --set TRAIN.MAX_SIZE 800

Snapshots `<out>/SSH[_<SNAPSHOT_INFIX>]_iter_<N>.pth` every TRAIN.SNAPSHOT iterations, at the end,
on Ctrl-C, SIGTERM / SIGUSR1 and when an image turns out unreadable; between them
`<out>/SSH[_<SNAPSHOT_INFIX>]_latest.pth` is overwritten every --latest_every steps or
--latest_minutes minutes. Metrics in `<out>/metrics.jsonl`, loss curve in `<out>/loss_curve.png`. A
run holds `<out>/train.lock` while it lasts. With --resume the config is the snapshot's; --cfg / --set
may change only the keys of lib.config.RESUME_OVERRIDABLE; --resume auto takes the newest snapshot
in --out that loads, or starts a new run when there is none.
Errors end with one `error:` line and exit code 2 (3: non-finite loss); SIGTERM or SIGUSR1 (a
preemption) ends with a snapshot and exit code 5, for a supervisor to restart with --resume auto.
"""
import argparse
import sys
from pathlib import Path

from lib.config import add_config_args, config_from_args, data_layout, resume_config
from lib.datasets import training_roidb
from lib.training import LatestCadence, NonFiniteLoss, TrainSettings, fit, seed_everything, snapshot_prefix
from lib.utils.checkpoint import newest_snapshot, snapshot_config
from lib.utils.cli import one_line_warnings
from lib.utils.device import parse_device
from lib.utils.lock import FolderLocked
from model import SSH
from model.weights.loading import load_imagenet_init

# Exit code of a run stopped by SIGTERM or SIGUSR1 after saving its snapshot: restart me (--resume auto).
PREEMPTED_EXIT = 5
AUTO = "auto"


def int_at_least(minimum):
    """argparse type: an int >= `minimum` (a wrong value is a usage error, exit code 2)."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value
    return parse


def minutes(text):
    """argparse type: a number of minutes >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of minutes, got {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of minutes >= 0, got {text}")
    return value


def resume_arg(text):
    """argparse type: 'auto' or the path of a snapshot."""
    return AUTO if text == AUTO else Path(text)


def parse_args(argv):
    parser = argparse.ArgumentParser(description="Train SSH on WIDER FACE.")
    parser.add_argument("--data", type=Path,
                        help="WIDER root holding WIDER_train/ and wider_face_split/ (default: <DATA_DIR>/datasets/wider, "
                             "DATA_DIR being data/)")
    parser.add_argument("--init",
                        help="ImageNet VGG16 .caffemodel, or 'none' for Kaiming-initialised trunk "
                             "(experiments only; default: <DATA_DIR>/imagenet_models/VGG16.caffemodel)")
    parser.add_argument("--iters", type=int_at_least(1), help="number of SGD steps (default: TRAIN.MAX_ITERS)")
    parser.add_argument("--out", type=Path,
                        help="output folder (default: the --resume snapshot's folder, else output/<EXP_DIR>/wider_train)")
    parser.add_argument("--resume", type=resume_arg,
                        help="continue from this snapshot, with its config (--cfg / --set may change only "
                             "settings that do not alter training, e.g. TRAIN.DISPLAY, TEST.*); 'auto': from the "
                             "newest snapshot in --out that loads, else start a new run (./auto for a file so named)")
    parser.add_argument("--latest_every", type=int_at_least(0), default=0, metavar="STEPS",
                        help="also overwrite <out>/SSH_latest.pth every STEPS steps between the TRAIN.SNAPSHOT "
                             "snapshots, so that a failure loses fewer steps (default 0: off)")
    parser.add_argument("--latest_minutes", type=minutes, default=10.0, metavar="MINUTES",
                        help="also overwrite it whenever MINUTES have passed since the last snapshot "
                             "(default 10; 0: off)")
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when available, else cpu)")
    parser.add_argument("--workers", type=int_at_least(0), default=2,
                        help="data-loader processes (0: load in this process)")
    parser.add_argument("--amp", action="store_true",
                        help="mixed precision: autocast in bf16 where supported, else fp16 with GradScaler")
    add_config_args(parser)
    return parser.parse_args(argv)


def build_network(init):
    """SSH with the ImageNet trunk of `init` (a VGG16 .caffemodel) or, for 'none', the Kaiming init."""
    net = SSH()
    if init != "none":
        print(f"{init}: {load_imagenet_init(net, init)}")
    return net


def error_text(e):
    """One line for an expected error: 'file: reason' for OS errors, else the exception's message."""
    if isinstance(e, OSError) and e.filename is not None and e.strerror:
        return f"{e.filename}: {e.strerror}"
    return str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)


def load_config(args, announce=True):
    """The run's config: --cfg and --set over the defaults, or with --resume over the snapshot's config.

    --resume auto is replaced by the newest snapshot in the output folder that loads, or by None
    (a new run); `announce` prints the choice and each damaged snapshot skipped. Prints each allowed
    override of a snapshot's setting, and fills --data and --init left out with the paths of the
    official layout under DATA_DIR. A bad file, key or value, or a refused change, ends the process
    like an argparse error: one `error:` line, exit code 2. Shared by train.py and train_dist.py.
    """
    notes = []
    try:
        cfg = config_from_args(args) if args.resume in (None, AUTO) else None
        if args.resume == AUTO:
            args.resume = resume_point(output_dir(args, cfg), snapshot_prefix(cfg.TRAIN.SNAPSHOT_INFIX), announce)
        if args.resume is not None:
            cfg, notes = resume_config(snapshot_config(args.resume), args.cfg, [tuple(p) for p in args.set])
    except (OSError, KeyError, ValueError) as e:
        print(f"error: {error_text(e)}", file=sys.stderr)
        raise SystemExit(2) from None
    for note in notes:
        print(f"note: overriding the config of {args.resume}: {note}")
    layout = data_layout(cfg.DATA_DIR)
    args.data, args.init = args.data or layout.wider, args.init or str(layout.imagenet_model)
    return cfg


def resume_point(out, prefix, announce):
    """The snapshot --resume auto continues from: the newest in `out` that loads, or None (a new run)."""
    path, skipped = newest_snapshot(out, prefix, move_damaged=announce)
    if announce:
        for reason in skipped:
            print(f"warning: skipping a snapshot that cannot be resumed: {reason}", file=sys.stderr)
        print(f"--resume auto: continuing from {path}, the newest snapshot in {out} that loads" if path else
              f"--resume auto: no snapshot in {out} loads, so this is a new run", flush=True)
    return path


def output_dir(args, cfg):
    """--out, else the folder of the --resume snapshot (the run goes on where it was), else
    output/<EXP_DIR>/wider_train. Shared by train.py and train_dist.py."""
    if args.out is not None:
        return args.out
    return args.resume.parent if args.resume not in (None, AUTO) else Path("output") / cfg.EXP_DIR / "wider_train"


def latest_cadence(args):
    """The LatestCadence of --latest_every and --latest_minutes. Shared by train.py and train_dist.py."""
    return LatestCadence(args.latest_every, args.latest_minutes)


def main(argv=None):
    one_line_warnings()
    args = parse_args(argv)
    cfg = load_config(args)
    seed_everything(cfg.RNG_SEED)
    try:
        device = parse_device(args.device)
        net = build_network("none" if args.resume else args.init)
        roidb = training_roidb(args.data, "train", cfg.TRAIN.USE_FLIPPED)
        _, reason = fit(net, TrainSettings.from_config(cfg), roidb, output_dir(args, cfg), config=cfg, device=device,
                        max_iters=cfg.TRAIN.MAX_ITERS if args.iters is None else args.iters, workers=args.workers,
                        amp=args.amp, resume=args.resume, latest=latest_cadence(args))
    except NonFiniteLoss as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    except (OSError, ValueError, FolderLocked) as e:
        print(f"error: {error_text(e)}", file=sys.stderr)
        return 2
    return PREEMPTED_EXIT if reason == "preempted" else 0


if __name__ == "__main__":
    sys.exit(main())
