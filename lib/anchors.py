"""Anchors of the three SSH detection modules (py-faster-rcnn generate_anchors.py + the shift grid).

Boxes are (x1, y1, x2, y2) with inclusive corners (+1 widths). Anchors over a feature map are
enumerated in (y, x, a) order, a fastest: k = (y * W + x) * A + a (docs/anchors.md §2.4).
"""
import functools
from collections import namedtuple

import numpy as np
import torch

ModuleGeometry = namedtuple("ModuleGeometry", "stride scales allowed_border")

# Per-module anchor layer parameters (train_ssh.prototxt param_str of m?@ssh_target_layer).
MODULES = {
    "m1": ModuleGeometry(stride=8, scales=(1, 2), allowed_border=0),
    "m2": ModuleGeometry(stride=16, scales=(4, 8), allowed_border=0),
    "m3": ModuleGeometry(stride=32, scales=(16, 32), allowed_border=512),
}
# Module names in head order: the keys of SSH.forward, the exported graph's outputs, the test merge.
MODULE_NAMES = tuple(MODULES)

BASE_SIZE = 16
RATIOS = (1.0,)


def generate_anchors(base_size=BASE_SIZE, ratios=RATIOS, scales=(1, 2)):
    """(len(ratios) * len(scales), 4) float32 anchors of the cell at (0, 0); ratios outer, scales inner."""
    ctr = 0.5 * (base_size - 1)
    rows = []
    for r in ratios:
        w = np.round(np.sqrt(base_size * base_size / r))
        h = np.round(w * r)
        for s in scales:
            ws, hs = w * s, h * s
            rows.append([ctr - 0.5 * (ws - 1), ctr - 0.5 * (hs - 1), ctr + 0.5 * (ws - 1), ctr + 0.5 * (hs - 1)])
    return torch.tensor(rows, dtype=torch.float32)


def shift_anchors(base, height, width, stride):
    """(height * width * A, 4) anchors: `base` (A, 4) shifted by (x * stride, y * stride), (y, x, a) order."""
    ys = torch.arange(height, dtype=torch.float32, device=base.device) * stride
    xs = torch.arange(width, dtype=torch.float32, device=base.device) * stride
    sy, sx = torch.meshgrid(ys, xs, indexing="ij")
    shifts = torch.stack([sx, sy, sx, sy], dim=-1).reshape(-1, 1, 4)
    return (shifts + base.reshape(1, -1, 4)).reshape(-1, 4)


@functools.lru_cache(maxsize=64)
def module_anchors(module, height, width, device="cpu"):
    """Cached anchors of module 'm1' | 'm2' | 'm3' over a height x width feature map on `device`."""
    geo = MODULES[module]
    base = generate_anchors(scales=geo.scales).to(device)
    return shift_anchors(base, height, width, geo.stride)
