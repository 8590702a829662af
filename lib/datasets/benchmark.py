"""Training data-loader throughput in images/s per worker at the configured scale (default 1200/1600).

    python3 -m lib.datasets.benchmark [--data WIDER_ROOT] [--workers N] [--images N] [--set KEY VALUE]

Uses the train split of `--data` (default: ../shared/data/mini_wider next to the repository when
present, else generated 1024-px-wide JPEGs). With 0 workers the items are built in this process,
with OpenCV single-threaded as in a loader worker, and the time is split into decoding and the
rest (flip, mean, resize, tensor); with N workers the loader's total rate is divided by N.
"""
import argparse
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from lib.config import add_config_args, config_from_args
from lib.datasets.loader import EpochSampler, TrainDataset, make_loader
from lib.datasets.roidb import RoidbEntry, append_flipped, training_roidb
from lib.image_io import read_image

MINI_WIDER = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "mini_wider"


def synthetic_roidb(folder, count=8, seed=0):
    """Unflipped entries of `count` smooth random 1024-px-wide JPEGs written to `folder`."""
    rng = np.random.default_rng(seed)
    roidb = []
    for i in range(count):
        height = int(rng.integers(500, 1400))
        small = rng.integers(0, 256, (height // 32, 32, 3), dtype=np.uint8)
        image = cv2.resize(small, (1024, height), interpolation=cv2.INTER_CUBIC)
        image = cv2.add(image, rng.integers(0, 16, image.shape, dtype=np.uint8))
        path = str(Path(folder) / f"{i}.jpg")
        cv2.imwrite(path, image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        roidb.append(RoidbEntry(path, 1024, height, np.array([[10, 10, 50, 50]], np.float32)))
    return roidb


def time_in_process(dataset, order):
    """(seconds to build the items of `order` in this process, seconds a separate decode takes)."""
    item = decode = 0.0
    for i in order:
        t0 = time.perf_counter()
        read_image(dataset.roidb[i].image)
        t1 = time.perf_counter()
        dataset[i]
        t2 = time.perf_counter()
        decode += t1 - t0
        item += t2 - t1
    return item, decode


def time_loader(dataset, workers, n_images):
    """Seconds for `n_images` items from a `workers`-process loader, after a warm-up of 2 per worker."""
    iterator = iter(make_loader(dataset, EpochSampler(len(dataset), seed=0), workers, pin_memory=False))
    for _ in range(2 * workers):
        next(iterator)
    start = time.perf_counter()
    for _ in range(n_images):
        next(iterator)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=MINI_WIDER if MINI_WIDER.is_dir() else None,
                        help="WIDER root holding wider_face_split/ and WIDER_train/images/")
    parser.add_argument("--workers", type=int, default=0, help="loader processes (0: in this process)")
    parser.add_argument("--images", type=int, default=32, help="images to time")
    add_config_args(parser)
    args = parser.parse_args()
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
            cv2.setNumThreads(0)
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


if __name__ == "__main__":
    main()
