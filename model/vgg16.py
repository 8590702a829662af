"""VGG-16 convolutional trunk, conv1_1 .. conv5_3 (test_ssh.prototxt, layers conv1_1 .. relu5_3).

3x3 convolutions (pad 1, bias) each followed by ReLU; 2x2 stride-2 max pools between stages
with Caffe's ceil rounding (out = ceil(n / 2)). No fc layers, no batch norm.
"""
import torch
import torch.nn.functional as F
from torch import nn

# Output channels of each stage's convolutions.
STAGES = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
LAYER_NAMES = tuple(f"conv{s + 1}_{i + 1}" for s, stage in enumerate(STAGES) for i in range(len(stage)))
# Inference computes stage 1 (conv1_1, conv1_2, pool1) over strips of this many input rows.
STRIP_ROWS = 128


def _exporting():
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling()


class VGG16(nn.Module):
    """conv1_1 .. conv5_3; forward(x: N x 3 x H x W) -> (conv4_3, conv5_3) after their ReLUs.

    conv4_3 is at stride 8 (ceil(ceil(ceil(H/2)/2)/2) rows), conv5_3 at stride 16.
    """

    def __init__(self):
        super().__init__()
        in_ch = 3
        for s, stage in enumerate(STAGES):
            for i, out_ch in enumerate(stage):
                setattr(self, f"conv{s + 1}_{i + 1}", nn.Conv2d(in_ch, out_ch, 3, padding=1))
                in_ch = out_ch

    def _conv1(self, x):
        return F.relu(self.conv1_2(F.relu(self.conv1_1(x), inplace=True)), inplace=True)

    def _stage1_strips(self, x):
        """pool1 computed strip by strip: the same values as in one piece, but the two full-resolution
        64-channel maps (2 x 490 MB at 1200 x 1600) never exist at once. Each strip of even height
        is read with a 2-row halo (the two 3x3 convolutions) that is dropped before pooling, so every
        kept row sees exactly its full-image neighbourhood; image borders keep the zero padding."""
        h = x.shape[2]
        pooled = []
        for r0 in range(0, h, STRIP_ROWS):
            r1 = min(h, r0 + STRIP_ROWS)
            a0, a1 = max(0, r0 - 2), min(h, r1 + 2)
            y = self._conv1(x[:, :, a0:a1])
            pooled.append(F.max_pool2d(y[:, :, r0 - a0:r1 - a0], 2, 2, ceil_mode=True))
        return torch.cat(pooled, dim=2)

    def forward(self, x):
        strips = not _exporting() and not torch.is_grad_enabled() and x.shape[2] > 2 * STRIP_ROWS
        x = self._stage1_strips(x) if strips else F.max_pool2d(self._conv1(x), 2, 2, ceil_mode=True)
        for s, stage in enumerate(STAGES[1:], start=1):
            if s > 1:
                x = F.max_pool2d(x, 2, 2, ceil_mode=True)
            for i in range(len(stage)):
                x = F.relu(getattr(self, f"conv{s + 1}_{i + 1}")(x), inplace=True)
            if s == 3:
                conv4_3 = x
        return conv4_3, x
