"""Train SSH on WIDER FACE (official SSH/train.py + main_train.py; SSH_SPEC.md section 4).

    python3 train.py                                      # the official run (21k iterations, VGG16 init)
    python3 train.py --cfg configs/wider.yml --device cuda --amp
    python3 train.py --resume output/SSH/wider_train/SSH_iter_1000.pth
    python3 train.py --init none --iters 200 --set TRAIN.SCALES [600] --set TRAIN.MAX_SIZE 800

Snapshots `<out>/SSH[_<SNAPSHOT_INFIX>]_iter_<N>.pth` every TRAIN.SNAPSHOT iterations, at the end
and on Ctrl-C; metrics in `<out>/metrics.jsonl`, loss curve in `<out>/loss_curve.png`.
"""
import argparse
import json
import sys
from pathlib import Path

import torch

from lib.config import add_config_args, config_from_args
from lib.datasets import EpochSampler, TrainDataset, make_loader, training_roidb
from lib.solver import CaffeSGD, StepLR
from lib.train_log import TrainLog
from lib.training import NonFiniteLoss, StopOnSigint, amp_dtype, image_losses, seed_everything, train_loop
from lib.utils.checkpoint import load_snapshot, save_snapshot, set_rng_state, snapshot_name
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
    train_cfg = cfg.TRAIN
    device = torch.device(args.device)
    max_iters = train_cfg.MAX_ITERS if args.iters is None else args.iters
    out = args.out or Path("output") / cfg.EXP_DIR / "wider_train"
    prefix = "SSH" + (f"_{train_cfg.SNAPSHOT_INFIX}" if train_cfg.SNAPSHOT_INFIX else "")

    seed_everything(cfg.RNG_SEED)
    try:
        net = build_network("none" if args.resume else args.init)
        roidb = training_roidb(args.data, "train", train_cfg.USE_FLIPPED)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    net.to(device).train()
    optimizer = CaffeSGD(net.param_groups(train_cfg.BASE_LR, train_cfg.WEIGHT_DECAY), lr=train_cfg.BASE_LR,
                         momentum=train_cfg.MOMENTUM)
    schedule = StepLR(train_cfg.BASE_LR, train_cfg.GAMMA, train_cfg.STEPSIZE)
    autocast_dtype = amp_dtype(device) if args.amp else None
    scaler = torch.amp.GradScaler(device.type, enabled=autocast_dtype == torch.float16)

    start_iter, consumed, resumed = 0, 0, None
    if args.resume is not None:
        resumed = load_snapshot(args.resume, model=net, optimizer=optimizer, scaler=scaler, restore_rng=False)
        start_iter, consumed = resumed["iteration"], resumed["extra"]["consumed"]
        if resumed["schedule"] != schedule._asdict():
            print(f"note: lr schedule {schedule._asdict()} differs from the snapshot's {resumed['schedule']}")

    dataset = TrainDataset(roidb, train_cfg.SCALES[0], train_cfg.MAX_SIZE, cfg.PIXEL_MEANS, train_cfg.ORIG_SIZE)
    sampler = EpochSampler(len(dataset), cfg.RNG_SEED, start=consumed)
    loader = make_loader(dataset, sampler, args.workers, pin_memory=device.type == "cuda")
    log = TrainLog(out, start_iter, max_iters, train_cfg.ITER_SIZE, train_cfg.DISPLAY)
    plain_cfg = json.loads(json.dumps(cfg))
    last = {"path": args.resume}

    def snapshot(iteration):
        extra = {"consumed": consumed + (iteration - start_iter) * train_cfg.ITER_SIZE, "config": plain_cfg}
        last["path"] = save_snapshot(out / snapshot_name(prefix, iteration), model=net, optimizer=optimizer,
                                     iteration=iteration, schedule=schedule._asdict(), scaler=scaler, extra=extra)
        log.plot()
        log.message(f"Wrote snapshot to {last['path']}")

    log.message(f"Training {len(dataset)} images from iteration {start_iter} to {max_iters} on {device}, "
                f"{train_cfg.ITER_SIZE} images per step, output in {out}")
    with StopOnSigint() as stop:
        items = iter(loader)
        if resumed is not None:
            set_rng_state(resumed["rng"])
        try:
            iteration, reason = train_loop(
                optimizer, items, lambda item: image_losses(net, item, train_cfg, device, autocast_dtype), schedule,
                start_iter=start_iter, max_iters=max_iters, iter_size=train_cfg.ITER_SIZE,
                snapshot_every=train_cfg.SNAPSHOT, snapshot=snapshot, log=log.log, scaler=scaler,
                should_stop=stop)
        except NonFiniteLoss as e:
            kept = f"the last good snapshot is {last['path']}" if last["path"] else "no snapshot was written"
            log.message(f"error: non-finite loss at {e}; training stopped, {kept}", file=sys.stderr)
            return 3
        finally:
            log.close()
    if reason == "stopped":
        print(f"Stopped at iteration {iteration}; continue with --resume {last['path']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
