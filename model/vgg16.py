"""VGG-16 convolutional trunk, conv1_1 .. conv5_3 (test_ssh.prototxt, layers conv1_1 .. relu5_3).

3x3 convolutions (pad 1, bias) each followed by ReLU; 2x2 stride-2 max pools between stages
with Caffe's ceil rounding (out = ceil(n / 2)). No fc layers, no batch norm.
"""
import torch.nn.functional as F
from torch import nn

# Output channels of each stage's convolutions.
STAGES = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
LAYER_NAMES = tuple(f"conv{s + 1}_{i + 1}" for s, stage in enumerate(STAGES) for i in range(len(stage)))


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

    def forward(self, x):
        for s, stage in enumerate(STAGES):
            if s > 0:
                x = F.max_pool2d(x, 2, 2, ceil_mode=True)
            for i in range(len(stage)):
                x = F.relu(getattr(self, f"conv{s + 1}_{i + 1}")(x), inplace=True)
            if s == 3:
                conv4_3 = x
        return conv4_3, x
