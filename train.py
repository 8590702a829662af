"""Train SSH on WIDER FACE (official SSH/train.py + main_train.py; docs/training.md §4).

    python3 train.py                                      # the official run (21k iterations, VGG16 init)
    python3 train.py --cfg configs/wider.yml --device cuda --amp
    python3 train.py --resume output/SSH/wider_train/SSH_iter_1000.pth
    python3 train.py --resume auto --latest-every 100     # restartable: the same command after any failure
    python3 train.py --init none --iters 200 --set TRAIN.SCALES [600] --set TRAIN.MAX_SIZE 800
    tensorboard --logdir output/                          # the curves, while it trains

Snapshots `<out>/SSH[_<SNAPSHOT_INFIX>]_iter_<N>.pth` every TRAIN.SNAPSHOT iterations, at the end,
on Ctrl-C, SIGTERM / SIGUSR1 and when an image turns out unreadable; between them
`<out>/SSH[_<SNAPSHOT_INFIX>]_latest.pth` is overwritten every --latest-every steps or
--latest-minutes minutes. Metrics in `<out>/metrics.jsonl`, loss curve in `<out>/loss_curve.png`,
TensorBoard event files in `<out>/tb` (--no-tensorboard: none). A run holds `<out>/train.lock` while
it lasts. With --resume the config is the snapshot's; --cfg / --set may change only the keys of
lib.config.RESUME_OVERRIDABLE; --resume auto takes the newest snapshot in --out that loads, or starts
a new run when there is none. Options are hyphenated; their underscore spellings (--latest_every)
still work.
Errors end with one `error:` line and exit code 2 (3: non-finite loss); SIGTERM or SIGUSR1 (a
preemption) ends with a snapshot and exit code 5, for a supervisor to restart with --resume auto
(lib/utils/exit_codes.py).
"""
import sys

from lib.datasets import training_roidb
from lib.training import NonFiniteLoss, TrainSettings, fit, seed_everything
from lib.training.cli import (add_train_args, build_network, detection_preview, latest_cadence, load_config,
                              output_dir, validation_hook)
from lib.utils.cli import ArgumentParser, error_text, one_line_warnings
from lib.utils.device import parse_device
from lib.utils.exit_codes import ExitCode
from lib.utils.lock import FolderLocked


def parse_args(argv):
    parser = ArgumentParser(description="Train SSH on WIDER FACE.")
    add_train_args(parser)
    return parser.parse_args(argv)


def main(argv=None):
    one_line_warnings()
    args = parse_args(argv)
    cfg = load_config(args)
    seed_everything(cfg.RNG_SEED)
    try:
        device = parse_device(args.device)
        net = build_network("none" if args.resume else args.init)
        roidb = training_roidb(args.data, "train", cfg.TRAIN.USE_FLIPPED)
        out = output_dir(args, cfg)
        _, reason = fit(net, TrainSettings.from_config(cfg), roidb, out, config=cfg, device=device,
                        max_iters=cfg.TRAIN.MAX_ITERS if args.iters is None else args.iters, workers=args.workers,
                        amp=args.amp, resume=args.resume, latest=latest_cadence(args),
                        tensorboard=not args.no_tensorboard, preview=detection_preview(args, cfg),
                        validation=validation_hook(args, cfg, net, device, out))
    except NonFiniteLoss as e:
        print(f"error: {e}", file=sys.stderr)
        return ExitCode.NON_FINITE
    except ImportError as e:
        print(f"error: {e}: install the requirements (pip install -r requirements.txt), or train without "
              "TensorBoard (--no-tensorboard)", file=sys.stderr)
        return ExitCode.BAD_INPUT
    except (OSError, ValueError, FolderLocked) as e:
        print(f"error: {error_text(e)}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    return ExitCode.PREEMPTED if reason == "preempted" else ExitCode.OK


if __name__ == "__main__":
    sys.exit(main())
