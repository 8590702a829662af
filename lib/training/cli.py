"""The command line train.py and train_dist.py share: the training options, the run's config (--cfg /
--set, or with --resume the snapshot's), --resume auto, the network, the output folder, the TensorBoard
preview and the validation hook."""
import sys
import warnings
from pathlib import Path

from lib.config import add_config_args, config_from_args, data_layout, resume_config
from lib.image_io import ImageError, read_image
from lib.training.checkpointer import LatestCadence, snapshot_prefix
from lib.utils.checkpoint import newest_snapshot, snapshot_config
from lib.utils.cli import error_text, int_at_least, minutes
from lib.utils.exit_codes import ExitCode
from model import SSH
from model.weights.loading import load_imagenet_init

AUTO = "auto"


def resume_arg(text):
    """argparse type: 'auto' or the path of a snapshot."""
    return AUTO if text == AUTO else Path(text)


def add_train_args(parser):
    """The options of train.py (also train_dist.py's) on a lib.utils.cli.ArgumentParser."""
    parser.add_argument("--data", type=Path,
                        help="WIDER root holding WIDER_train/ and wider_face_split/ (default: "
                             "<DATA_DIR>/datasets/wider, DATA_DIR being data/)")
    parser.add_argument("--init",
                        help="ImageNet VGG16 .caffemodel, or 'none' for Kaiming-initialised trunk "
                             "(experiments only; default: <DATA_DIR>/imagenet_models/VGG16.caffemodel)")
    parser.add_argument("--iters", type=int_at_least(1), help="number of SGD steps (default: TRAIN.MAX_ITERS)")
    parser.add_argument("--out", type=Path,
                        help="output folder (default: the --resume snapshot's folder, else "
                             "output/<EXP_DIR>/wider_train)")
    parser.add_argument("--resume", type=resume_arg,
                        help="continue from this snapshot, with its config (--cfg / --set may change only "
                             "settings that do not alter training, e.g. TRAIN.DISPLAY, TEST.*); 'auto': from the "
                             "newest snapshot in --out that loads, else start a new run (./auto for a file so named)")
    parser.add_argument("--latest-every", type=int_at_least(0), default=0, metavar="STEPS",
                        help="also overwrite <out>/SSH_latest.pth every STEPS steps between the TRAIN.SNAPSHOT "
                             "snapshots, so that a failure loses fewer steps (default 0: off)")
    parser.add_argument("--latest-minutes", type=minutes, default=10.0, metavar="MINUTES",
                        help="also overwrite it whenever MINUTES have passed since the last snapshot "
                             "(default 10; 0: off)")
    parser.add_argument("--no-tensorboard", action="store_true",
                        help="do not write TensorBoard event files (default: <out>/tb, see `tensorboard --logdir "
                             "<out>`: losses, lr, gradient norm, speed, and detections on the first WIDER val "
                             "photos of --data every TRAIN.SNAPSHOT steps)")
    parser.add_argument("--val-every", type=int_at_least(0), default=0, metavar="STEPS",
                        help="every STEPS steps and after the last one, detect on WIDER val images of --data with "
                             "the TEST config and log their easy / medium / hard AP (eval.py's numbers for those "
                             "images) to metrics.jsonl and TensorBoard; training is unchanged (default 0: off)")
    parser.add_argument("--val-images", type=int_at_least(0), default=500, metavar="K",
                        help="validate on K val images spread evenly over the split, the same ones every time "
                             "(default 500; 0: all 3,226)")
    parser.add_argument("--val-gt", type=Path, metavar="DIR",
                        help="the official ground_truth/ folder for --val-every (default: "
                             "<data>/eval_tools/ground_truth, as eval.py's --gt)")
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when available, else cpu)")
    parser.add_argument("--workers", type=int_at_least(0), default=2,
                        help="data-loader processes (0: load in this process)")
    parser.add_argument("--amp", action="store_true",
                        help="mixed precision: autocast in bf16 where supported, else fp16 with GradScaler")
    add_config_args(parser)


def load_config(args, announce=True):
    """The run's config: --cfg and --set over the defaults, or with --resume over the snapshot's config.

    --resume auto is replaced by the newest snapshot in the output folder that loads, or by None
    (a new run); `announce` prints the choice and each damaged snapshot skipped. Prints each allowed
    override of a snapshot's setting, and fills --data and --init left out with the paths of the
    official layout under DATA_DIR. A bad file, key or value, or a refused change, ends the process
    like an argparse error: one `error:` line, exit code 2.
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
        raise SystemExit(ExitCode.BAD_INPUT) from None
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


def build_network(init):
    """SSH with the ImageNet trunk of `init` (a VGG16 .caffemodel) or, for 'none', the Kaiming init."""
    net = SSH()
    if init != "none":
        print(f"{init}: {load_imagenet_init(net, init)}")
    return net


def output_dir(args, cfg):
    """--out, else the folder of the --resume snapshot (the run goes on where it was), else
    output/<EXP_DIR>/wider_train."""
    if args.out is not None:
        return args.out
    return args.resume.parent if args.resume not in (None, AUTO) else Path("output") / cfg.EXP_DIR / "wider_train"


def latest_cadence(args):
    """The LatestCadence of --latest-every and --latest-minutes."""
    return LatestCadence(args.latest_every, args.latest_minutes)


def detection_preview(args, cfg):
    """The DetectionPreview of TensorBoard: the first WIDER val photos of --data with the TEST settings;
    None with --no-tensorboard or when --data holds no val split. A photo that cannot be read is left
    out with a warning."""
    if args.no_tensorboard:
        return None
    from lib.training.preview import DetectionPreview, preview_photos  # not needed by runs that end earlier

    photos = []
    for path in preview_photos(args.data):
        try:
            photos.append(read_image(path))
        except ImageError as e:
            warnings.warn(f"TensorBoard preview: {e}", stacklevel=2)
    return DetectionPreview.from_config(cfg, photos) if photos else None


def validation_hook(args, cfg, net, device, out_dir, rank=0, world_size=1):
    """The Validation hook of --val-every, --val-images and --val-gt for this rank (None without
    --val-every): its share of the images and, on rank 0, their scoring in `<out_dir>/val` (ValidationScore).
    FileNotFoundError when --data holds no val split or the ground truth is missing, ValueError when an
    image is not in it: before training starts."""
    if not args.val_every:
        return None
    from lib.evaluation import load_ground_truth
    from lib.evaluation.run import val_images
    from lib.training.validation import Validation, ValidationScore, image_shares, val_subset
    from model.detector import Detector

    names, image_root = val_images(args.data)
    names = val_subset(names, args.val_images)
    score = None
    if rank == 0:
        gt = load_ground_truth(args.val_gt or Path(args.data) / "eval_tools" / "ground_truth").subset(names)
        score = ValidationScore(gt, Path(out_dir) / "val")
    share = image_shares(names, image_root, world_size)[rank]
    return Validation(net, lambda copy: Detector.from_config(copy, cfg, device), share, image_root, args.val_every,
                      score)
