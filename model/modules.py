"""SSH building blocks with weights (test_ssh.prototxt): conv4/conv5 fusion, context and detection modules."""
import torch
import torch.nn.functional as F
from torch import nn


def bilinear_kernel(channels, size=4):
    """(channels, 1, size, size) Caffe BilinearFiller kernel; size 4 -> outer product of [.25 .75 .75 .25]."""
    f = (size + 1) // 2
    c = (size - 1) / (2.0 * f)
    taps = 1 - (torch.arange(size, dtype=torch.float64) / f - c).abs()
    return torch.outer(taps, taps).float().expand(channels, 1, size, size).clone()


class Fusion(nn.Module):
    """Input of M1: conv5_3 reduced and upsampled x2, added to reduced conv4_3, then a 3x3 conv.

    forward(conv4_3: N x 512 x H8 x W8, conv5_3: N x 512 x H16 x W16) -> N x 128 x H8 x W8.
    conv5_128_up is Caffe's Deconvolution (k 4, s 2, p 1, group 128, no bias) with a fixed bilinear
    kernel, giving 2*H16 x 2*W16; conv5_128_crop keeps its top-left H8 x W8 (Crop axis 2, offset 0).
    The sum conv4_fuse has no ReLU. The crop is an index_select rather than a slice so that
    torch.export / ONNX graphs stay valid for both parities of H8 (a slice specialises on
    whether 2*H16 == H8).
    """

    def __init__(self, in_channels=512, channels=128):
        super().__init__()
        self.conv5_128 = nn.Conv2d(in_channels, channels, 1)
        self.conv5_128_up = nn.ConvTranspose2d(channels, channels, 4, stride=2, padding=1,
                                               groups=channels, bias=False)
        self.conv4_128 = nn.Conv2d(in_channels, channels, 1)
        self.conv4_fuse_final = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, conv4_3, conv5_3):
        up = self.conv5_128_up(F.relu(self.conv5_128(conv5_3), inplace=True))
        conv4 = F.relu(self.conv4_128(conv4_3), inplace=True)
        rows = torch.arange(conv4.shape[2], device=up.device)
        cols = torch.arange(conv4.shape[3], device=up.device)
        fused = up.index_select(2, rows).index_select(3, cols) + conv4
        return F.relu(self.conv4_fuse_final(fused), inplace=True)


class ContextModule(nn.Module):
    """SSH context module: shared dimension reduction, then a "5x5" (one 3x3) and a "7x7" (two 3x3) branch.

    forward(x: N x C x H x W) -> N x channels x H x W, the [5x5, 7x7] outputs concatenated,
    without a ReLU (it follows the detection module's concat).
    """

    def __init__(self, in_channels, channels):
        super().__init__()
        half = channels // 2
        self.dimred = nn.Conv2d(in_channels, half, 3, padding=1)
        self.conv5x5 = nn.Conv2d(half, half, 3, padding=1)
        self.conv7x7_1 = nn.Conv2d(half, half, 3, padding=1)
        self.conv7x7 = nn.Conv2d(half, half, 3, padding=1)

    def forward(self, x):
        x = F.relu(self.dimred(x), inplace=True)
        return torch.cat([self.conv5x5(x), self.conv7x7(F.relu(self.conv7x7_1(x), inplace=True))], dim=1)


class DetectionModule(nn.Module):
    """SSH detection module Mi: ReLU(concat[3x3 conv, context]) -> 1x1 classification and regression.

    forward(x: N x C x H x W) -> (cls_score N x 2A x H x W, bbox_pred N x 4A x H x W), A = 2 anchors,
    in Caffe's channel layout (lib/heads.py). `channels` is X of the paper: the 3x3 branch has X,
    the context module X/2 + X/2 outputs.
    """

    def __init__(self, in_channels, channels, num_anchors=2):
        super().__init__()
        self.conv3x3 = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.context = ContextModule(in_channels, channels)
        self.cls_score = nn.Conv2d(2 * channels, 2 * num_anchors, 1)
        self.bbox_pred = nn.Conv2d(2 * channels, 4 * num_anchors, 1)

    def forward(self, x):
        x = F.relu(torch.cat([self.conv3x3(x), self.context(x)], dim=1), inplace=True)
        return self.cls_score(x), self.bbox_pred(x)
