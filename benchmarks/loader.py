"""Training data-loader throughput in images/s per worker at the configured scale (default 1200/1600).

    python3 -m benchmarks loader [--data WIDER_ROOT] [--workers N] [--images N] [--set KEY VALUE] [--smoke]

Uses the train split of `--data` (default: ../shared/data/mini_wider next to the repository when
present, else generated 1024-px-wide JPEGs). With 0 workers the items are built in this process,
with OpenCV single-threaded as in a loader worker, and the time is split into decoding and the
rest (flip, mean, resize, tensor); with N workers the loader's total rate is divided by N.
"""
import tempfile
from pathlib import Path

import cv2

from lib.config import add_config_args, config_from_args
from lib.datasets import TrainDataset, append_flipped, training_roidb
from lib.image_io import read_image

from .utils import MINI_WIDER, Stopwatch, benchmark_parser, parse_args, synthetic_roidb, time_loader

SMOKE = {"data": None, "images": 2}


def time_in_process(dataset, order):
    """(seconds to build the items of `order` in this process, seconds a separate decode takes),
    OpenCV single-threaded as in a loader worker."""
    item = decode = 0.0
    threads = cv2.getNumThreads()
    cv2.setNumThreads(0)
    try:
        for i in order:
            clock = Stopwatch()
            read_image(dataset.roidb[i].image)
            decode += clock.lap()
            dataset[i]
            item += clock.lap()
    finally:
        cv2.setNumThreads(threads)
    return item, decode


def main(argv=None):
    parser = benchmark_parser(__name__, __doc__)
    parser.add_argument("--data", type=Path, default=MINI_WIDER if MINI_WIDER.is_dir() else None,
                        help="WIDER root holding wider_face_split/ and WIDER_train/images/")
    parser.add_argument("--workers", type=int, default=0, help="loader processes (0: in this process)")
    parser.add_argument("--images", type=int, default=32, help="images to time")
    add_config_args(parser)
    args = parse_args(parser, argv, SMOKE)
    cfg = config_from_args(args)
    with tempfile.TemporaryDirectory() as tmp:
        if args.data is None:
            roidb, source = append_flipped(synthetic_roidb(tmp)), "generated JPEGs"
        else:
            roidb, source = training_roidb(args.data, "train"), str(args.data)
        dataset = TrainDataset(roidb, cfg.TRAIN.SCALES[0], cfg.TRAIN.MAX_SIZE, cfg.PIXEL_MEANS,
                               cfg.TRAIN.ORIG_SIZE)
        print(f"{source}: {len(roidb)} entries, scale {cfg.TRAIN.SCALES[0]}, max size {cfg.TRAIN.MAX_SIZE}")
        if args.workers == 0:
            order = [i % len(dataset) for i in range(args.images)]
            total, decode = time_in_process(dataset, order)
            per_image = total / args.images
            print(f"0 workers: {1 / per_image:.2f} images/s per worker ({1000 * per_image:.1f} ms/image: "
                  f"decode {1000 * decode / args.images:.1f} ms, flip/mean/resize/tensor "
                  f"{1000 * (total - decode) / args.images:.1f} ms)")
        else:
            seconds = time_loader(dataset, args.workers, args.images)
            rate = args.images / seconds
            print(f"{args.workers} workers: {rate:.2f} images/s in total, "
                  f"{rate / args.workers:.2f} images/s per worker")

