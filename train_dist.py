"""Train SSH on several processes, GPUs or machines with torch.distributed (official main_train.py --gpus).

    python3 train_dist.py --master-ip 10.0.0.1 --master-port 29500 --rank 0 --world-size 2 --gpu 0 [train.py options]
    python3 train_dist.py --master-ip 10.0.0.1 --master-port 29500 --rank 1 --world-size 2 --gpu 1 [same options]
    torchrun --nproc_per_node 4 train_dist.py [train.py options]

One process per device: nccl on CUDA, gloo on CPU. Every rank trains on a disjoint shard of each
epoch's permutation (EpochSampler rank / world_size) with the step of train.py; losses and gradients
are averaged over the ranks before each SGD step. TRAIN.ITER_SIZE stays the number of images per
SGD step (8, as the official 4 GPUs x iter_size 2); each rank accumulates ITER_SIZE / world_size
of them (rounded to the nearest count >= 1 when it does not divide). Rank 0 alone logs (TensorBoard
included) and writes snapshots; "consumed" in a snapshot counts the images of all ranks, so a
snapshot resumes exactly under any world size that divides the dataset and keeps the images per step.
Options are hyphenated; the underscore spellings of the community port (--master_ip, --world_size)
still work.
Errors end with one `error:` line and exit code 2 (bad input), 3 (non-finite loss) or 4 (a peer
failed, hung or never joined); SIGTERM or SIGUSR1 on any rank stops all of them after the step with
a snapshot and exit code 5 (lib/utils/exit_codes.py). Every non-zero exit makes torchrun restart the
group (--max-restarts), and with --resume auto the restarted ranks continue from the newest snapshot
that loads:

    torchrun --nproc_per_node 4 --max-restarts 3 train_dist.py --resume auto --out OUT [train.py options]
"""
import os
import sys

# Read by torch's C++ logger once, when torch is imported. At its default (WARNING) the c10d store
# client logs each failed send or receive with the C++ stack trace of the error, so a rank whose
# peer died printed some 20 lines of "frame #..." before its one-line error. ERROR keeps the C++
# errors; a level set by the user (e.g. INFO to debug the rendezvous) is kept too.
os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")

import torch.distributed as dist  # noqa: E402  (after TORCH_CPP_LOG_LEVEL)

from lib.datasets import training_roidb  # noqa: E402
from lib.training import NonFiniteLoss, TrainSettings, fit, seed_everything  # noqa: E402
from lib.training.cli import (add_train_args, build_network, detection_preview, latest_cadence,  # noqa: E402
                              load_config, output_dir, validation_hook)
from lib.utils.cli import (ArgumentParser, error_text, int_at_least, one_line_warnings,  # noqa: E402
                           positive_seconds, tcp_port)
from lib.utils.distributed import PeerFailure, init_distributed, launch_from, pick_device  # noqa: E402
from lib.utils.exit_codes import ExitCode  # noqa: E402
from lib.utils.lock import FolderLocked  # noqa: E402


def parse_args(argv):
    """(distributed options, train.py options) of the command line."""
    parser = ArgumentParser(
        description="Train SSH on several processes with torch.distributed.", allow_abbrev=False,
        epilog="All other options are those of train.py (see python3 train.py --help). Without --rank and "
               "--world-size the process group comes from torchrun's environment (env://).")
    parser.add_argument("--master-ip", default="127.0.0.1", help="address of rank 0 (default: 127.0.0.1)")
    parser.add_argument("--master-port", type=tcp_port, default=29500,
                        help="free TCP port on rank 0 (default: 29500)")
    parser.add_argument("--rank", type=int_at_least(0), help="rank of this process, 0 .. world_size - 1")
    parser.add_argument("--world-size", type=int_at_least(1), help="number of processes")
    parser.add_argument("--gpu", type=int_at_least(0),
                        help="CUDA device of this process, implies --device cuda (default with --device cuda: "
                             "LOCAL_RANK, else rank modulo the GPU count)")
    parser.add_argument("--timeout", type=positive_seconds, default=30.0,
                        help="seconds to wait for a peer that never starts or stops responding (default: 30)")
    dist_args, rest = parser.parse_known_args(argv)
    train_parser = ArgumentParser(prog="train_dist.py", add_help=False)
    add_train_args(train_parser)
    return dist_args, train_parser.parse_args(rest)


def main(argv=None):
    """Train as one rank; exit code 2 on bad input, 3 on a non-finite loss, 4 when a peer fails, 5 when preempted."""
    one_line_warnings()
    dist_args, args = parse_args(argv)
    try:
        launch = launch_from(dist_args.rank, dist_args.world_size, dist_args.master_ip, dist_args.master_port)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    cfg = load_config(args, announce=launch.rank == 0)
    try:
        device = pick_device(args.device, dist_args.gpu, launch)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    seed_everything(cfg.RNG_SEED)
    try:
        net = build_network("none" if args.resume else args.init)
        roidb = training_roidb(args.data, "train", cfg.TRAIN.USE_FLIPPED)
        if len(roidb) < launch.world_size:
            raise ValueError(f"{len(roidb)} training images cannot be shared by {launch.world_size} processes")
        preview = detection_preview(args, cfg) if launch.rank == 0 else None
        validation = validation_hook(args, cfg, net, device, output_dir(args, cfg), launch.rank, launch.world_size)
        store = init_distributed(launch, device, dist_args.timeout)
    except (OSError, ValueError) as e:
        print(f"error: rank {launch.rank}: {error_text(e)}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    except PeerFailure as e:
        print(f"error: {e}", file=sys.stderr)
        return ExitCode.PEER_FAILURE
    try:
        _, reason = fit(net, TrainSettings.from_config(cfg), roidb, output_dir(args, cfg), config=cfg,
                        device=device, store=store, max_iters=cfg.TRAIN.MAX_ITERS if args.iters is None else args.iters,
                        workers=args.workers, amp=args.amp, resume=args.resume, timeout=dist_args.timeout,
                        latest=latest_cadence(args), tensorboard=not args.no_tensorboard, preview=preview,
                        validation=validation)
    except NonFiniteLoss as e:
        if launch.rank == 0:
            print(f"error: {e}", file=sys.stderr)
        return ExitCode.NON_FINITE
    except PeerFailure as e:
        print(f"error: {e}", file=sys.stderr)
        return ExitCode.PEER_FAILURE
    except ImportError as e:
        print(f"error: rank {launch.rank}: {e}: install the requirements (pip install -r requirements.txt), or "
              "train without TensorBoard (--no-tensorboard)", file=sys.stderr)
        return ExitCode.BAD_INPUT
    except (OSError, ValueError, FolderLocked) as e:
        print(f"error: rank {launch.rank}: {error_text(e)}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    finally:
        dist.destroy_process_group()
    return ExitCode.PREEMPTED if reason == "preempted" else ExitCode.OK


if __name__ == "__main__":
    sys.exit(main())
