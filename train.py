"""Train SSH on WIDER FACE (official SSH/train.py + main_train.py; SSH_SPEC.md section 4).

    python3 train.py                                      # the official run (21k iterations, VGG16 init)
    python3 train.py --cfg configs/wider.yml --device cuda --amp
    python3 train.py --resume output/SSH/wider_train/SSH_iter_1000.pth
    python3 train.py --init none --iters 200 --set TRAIN.SCALES [600] --set TRAIN.MAX_SIZE 800

Snapshots `<out>/SSH[_<SNAPSHOT_INFIX>]_iter_<N>.pth` every TRAIN.SNAPSHOT iterations, at the end
and on Ctrl-C; metrics in `<out>/metrics.jsonl`, loss curve in `<out>/loss_curve.png`.
"""
import argparse
import sys
from pathlib import Path

import torch

from lib.config import add_config_args, config_from_args
from lib.datasets import training_roidb
from lib.training import NonFiniteLoss, fit, seed_everything
from model import SSH

IMAGENET_MODEL = "data/imagenet_models/VGG16.caffemodel"


def parse_args(argv):
    parser = argparse.ArgumentParser(description="Train SSH on WIDER FACE.")
    parser.add_argument("--data", type=Path, default=Path("data/datasets/wider"),
                        help="WIDER root holding WIDER_train/ and wider_face_split/")
    parser.add_argument("--init", default=IMAGENET_MODEL,
                        help=f"ImageNet VGG16 .caffemodel, or 'none' for Kaiming-initialised trunk "
                             f"(experiments only; default: {IMAGENET_MODEL})")
    parser.add_argument("--iters", type=int, help="number of SGD steps (default: TRAIN.MAX_ITERS)")
    parser.add_argument("--out", type=Path, help="output folder (default: output/<EXP_DIR>/wider_train)")
    parser.add_argument("--resume", type=Path, help="continue from this snapshot")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--workers", type=int, default=2, help="data-loader processes (0: load in this process)")
    parser.add_argument("--amp", action="store_true",
                        help="mixed precision: autocast in bf16 where supported, else fp16 with GradScaler")
    add_config_args(parser)
    return parser.parse_args(argv)


def build_network(init):
    """SSH with the ImageNet trunk of `init` (a VGG16 .caffemodel) or, for 'none', the Kaiming init."""
    net = SSH()
    if init != "none":
        if not Path(init).is_file():
            raise FileNotFoundError(
                f"ImageNet model {init} not found. Fetch it with `make fetch-imagenet` "
                f"(python3 -m model.weights imagenet), or pass --init none to train from a Kaiming-initialised "
                f"trunk (experiments only: far from the official results)")
        print(f"{init}: {net.load_caffemodel(init, strict=False)}")
    return net


def main(argv=None):
    args = parse_args(argv)
    cfg = config_from_args(args)
    seed_everything(cfg.RNG_SEED)
    try:
        net = build_network("none" if args.resume else args.init)
        roidb = training_roidb(args.data, "train", cfg.TRAIN.USE_FLIPPED)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        fit(net, cfg, roidb, args.out or Path("output") / cfg.EXP_DIR / "wider_train", device=args.device,
            max_iters=cfg.TRAIN.MAX_ITERS if args.iters is None else args.iters, workers=args.workers,
            amp=args.amp, resume=args.resume)
    except NonFiniteLoss as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
