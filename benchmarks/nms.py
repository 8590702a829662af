"""NMS timing of the Cython kernel vs torchvision on this machine: mean milliseconds per call.

    python3 -m benchmarks nms [--sizes 300 1000 3000 11000] [--repeats 20] [--smoke]
"""

import torch

from lib.nms import nms_cython, nms_torchvision

from .utils import benchmark_parser, parse_args, seconds

SMOKE = {"sizes": [300, 1000], "repeats": 2}


def random_boxes(n, generator):
    """n face-like boxes (5..65 px) in a 1600 x 1200 image and uniform scores."""
    xy = torch.rand(n, 2, generator=generator) * torch.tensor([1600.0, 1200.0])
    wh = torch.rand(n, 2, generator=generator) * 60 + 5
    return torch.cat([xy, xy + wh], 1), torch.rand(n, generator=generator)


def main(argv=None):
    parser = benchmark_parser(__name__, __doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[300, 1000, 3000, 11000])
    parser.add_argument("--repeats", type=int, default=20)
    args = parse_args(parser, argv, SMOKE)
    g = torch.Generator().manual_seed(0)
    print(f"{'boxes':>6} {'cython ms':>10} {'torchvision ms':>15}")
    for n in args.sizes:
        boxes, scores = random_boxes(n, g)
        row = []
        for impl in (nms_cython, nms_torchvision):
            impl(boxes, scores, 0.3)
            total = seconds(lambda: [impl(boxes, scores, 0.3) for _ in range(args.repeats)])
            row.append(total / args.repeats * 1e3)
        print(f"{n:>6} {row[0]:>10.2f} {row[1]:>15.2f}")

