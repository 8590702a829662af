"""Timings of anchor_targets and ssh_losses at the training size 1200 x 1600 (python -m lib.targets_benchmark).

Synthetic images: 10 faces of 30-600 px and a crowd of 1000 faces of 6-60 px; random heads.
Prints the median wall time over --repeat runs per module and for the six losses together.
"""
import argparse
import statistics
import time

import torch

from lib.anchors import MODULES, module_anchors
from lib.config import default_config
from lib.heads import NUM_ANCHORS, face_probs
from lib.losses import ssh_losses
from lib.targets import anchor_targets
from lib.utils.device import device_arg

IMAGE_HW = (1200, 1600)
FEATURE_HW = {"m1": (150, 200), "m2": (75, 100), "m3": (38, 50)}


def random_faces(n, lo, hi, generator):
    """(n, 4) boxes with sides in [lo, hi) inside the image."""
    side = torch.rand(n, 1, generator=generator) * (hi - lo) + lo
    xy = torch.rand(n, 2, generator=generator) * (torch.tensor(IMAGE_HW[::-1]) - side)
    return torch.cat([xy, xy + side - 1], dim=1)


def median_ms(fn, device, repeat):
    fn()
    times = []
    for _ in range(repeat):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", type=device_arg, default="cpu")
    parser.add_argument("--repeat", type=int, default=11)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="intra-op CPU threads (1 avoids OpenMP stalls on a busy machine)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    train = default_config().TRAIN
    gen = torch.Generator().manual_seed(0)
    heads = {name: (torch.randn(1, 2 * NUM_ANCHORS, h, w, generator=gen).to(device),
                    torch.randn(1, 4 * NUM_ANCHORS, h, w, generator=gen).to(device))
             for name, (h, w) in FEATURE_HW.items()}
    print(f"device {device}, {torch.get_num_threads()} threads, image {IMAGE_HW}, median of {args.repeat}")
    for label, (n, lo, hi) in {"10 faces": (10, 30, 600), "1000 faces": (1000, 6, 60)}.items():
        gt = random_faces(n, lo, hi, gen).to(device)
        total = 0.0
        for name, (h, w) in FEATURE_HW.items():
            anchors = module_anchors(name, h, w, str(device))
            prob = face_probs(heads[name][0])[0]
            ms = median_ms(lambda: anchor_targets(
                anchors, gt, IMAGE_HW, MODULES[name].allowed_border, prob,
                positive_overlap=train.ANCHOR_POSITIVE_OVERLAP, negative_overlap=train.ANCHOR_NEGATIVE_OVERLAP,
                batch_size=train.ANCHORS_PER_BATCH, fg_fraction=train.ANCHOR_FG_FRACTION), device, args.repeat)
            total += ms
            print(f"{label:>10}  anchor_targets {name} ({anchors.shape[0]} anchors): {ms:7.2f} ms")
        print(f"{label:>10}  anchor_targets m1+m2+m3: {total:7.2f} ms")
        ms = median_ms(lambda: ssh_losses(heads, gt, IMAGE_HW, train), device, args.repeat)
        print(f"{label:>10}  ssh_losses (targets + 6 losses): {ms:7.2f} ms")


if __name__ == "__main__":
    main()
