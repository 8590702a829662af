"""Anchor targets and ssh_losses at the training size 1200 x 1600: median milliseconds per call.

    python3 -m benchmarks targets [--device cuda] [--repeat 11] [--threads N] [--smoke]

Synthetic images: 10 faces of 30-600 px and a crowd of 1000 faces of 6-60 px; random heads.
Prints the median wall time over --repeat runs (after a warm-up run) per module and for the six
losses together.
"""

import torch

from lib.anchors import MODULES, module_anchors
from lib.config import default_config
from lib.heads import NUM_ANCHORS, face_probs
from lib.losses import LossSettings, ssh_losses
from lib.targets import anchor_targets
from lib.utils.device import device_arg

from .utils import benchmark_parser, parse_args, random_faces, time_calls

IMAGE_HW = (1200, 1600)
FEATURE_HW = {"m1": (150, 200), "m2": (75, 100), "m3": (38, 50)}
SMOKE = {"repeat": 1}


def main(argv=None):
    parser = benchmark_parser(__name__, __doc__)
    parser.add_argument("--device", type=device_arg, default="cpu")
    parser.add_argument("--repeat", type=int, default=11)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="intra-op CPU threads (1 avoids OpenMP stalls on a busy machine)")
    args = parse_args(parser, argv, SMOKE)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    settings = LossSettings.from_config(default_config())
    gen = torch.Generator().manual_seed(0)
    heads = {name: (torch.randn(1, 2 * NUM_ANCHORS, h, w, generator=gen).to(device),
                    torch.randn(1, 4 * NUM_ANCHORS, h, w, generator=gen).to(device))
             for name, (h, w) in FEATURE_HW.items()}
    print(f"device {device}, {torch.get_num_threads()} threads, image {IMAGE_HW}, median of {args.repeat}")
    for label, (n, lo, hi) in {"10 faces": (10, 30, 600), "1000 faces": (1000, 6, 60)}.items():
        gt = random_faces(n, *IMAGE_HW, gen, lo, hi).to(device)
        total = 0.0
        for name, (h, w) in FEATURE_HW.items():
            anchors = module_anchors(name, h, w, str(device))
            prob = face_probs(heads[name][0])[0]
            ms = 1e3 * time_calls(lambda: anchor_targets(
                anchors, gt, IMAGE_HW, MODULES[name].allowed_border, prob,
                positive_overlap=settings.positive_overlap, negative_overlap=settings.negative_overlap,
                batch_size=settings.batch_size, fg_fraction=settings.fg_fraction), device, args.repeat).median
            total += ms
            print(f"{label:>10}  anchor_targets {name} ({anchors.shape[0]} anchors): {ms:7.2f} ms")
        print(f"{label:>10}  anchor_targets m1+m2+m3: {total:7.2f} ms")
        ms = 1e3 * time_calls(lambda: ssh_losses(heads, gt, IMAGE_HW, settings), device, args.repeat).median
        print(f"{label:>10}  ssh_losses (targets + 6 losses): {ms:7.2f} ms")

