"""lib/losses.py against hand-computed SoftmaxWithLoss / caffe-ssh SmoothL1Loss values (docs/training.md §3.7)."""
import math

import pytest
import torch

from lib.config import default_config
from lib.losses import LossSettings, module_losses, smooth_l1, ssh_losses

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def zeros_targets(n):
    return torch.zeros(n, 4), torch.zeros(n, 4), torch.zeros(n, 4)


def test_smooth_l1_below_and_above_one_ninth():
    pred = torch.tensor([[0.1, -0.5, 2.0, 0.0]])
    target = torch.zeros(1, 4)
    ones = torch.ones(1, 4)
    # |d| = 0.1 < 1/9: 4.5 * 0.01; |d| = 0.5: 0.5 - 1/18; |d| = 2: 2 - 1/18.
    expect = 4.5 * 0.01 + (0.5 - 1 / 18) + (2 - 1 / 18)
    assert math.isclose(smooth_l1(pred, target, ones, ones).item(), expect, rel_tol=1e-6)
    # Inside weights scale d before f; outside weights scale f.
    w_in = torch.tensor([[1.0, 0.1, 0.0, 1.0]])
    w_out = torch.full((1, 4), 0.25)
    expect = 0.25 * (4.5 * 0.01 + 4.5 * 0.05 ** 2)
    assert math.isclose(smooth_l1(pred, target, w_in, w_out).item(), expect, rel_tol=1e-6)
    # sigma 1: threshold 1, f = 0.5 d^2 or |d| - 0.5.
    assert math.isclose(smooth_l1(pred, target, ones, ones, sigma=1.0).item(),
                        0.5 * 0.01 + 0.5 * 0.25 + 1.5, rel_tol=1e-6)


def test_smooth_l1_transition_at_one_over_sigma_squared():
    """sigma 3 (train_ssh.prototxt smooth_l1_loss_param): quadratic 4.5 d^2 below |d| = 1/9, |d| - 1/18 from
    there on, with gradients 9 d and sign(d); values between 1/9 and 1 tell 1/sigma^2 from 1/sigma or 1."""
    d = torch.tensor([[0.1, -0.12, 0.2, -0.5]], requires_grad=True)
    ones = torch.ones(1, 4)
    loss = smooth_l1(d, torch.zeros(1, 4), ones, ones)
    assert math.isclose(loss.item(), 4.5 * 0.01 + (0.12 - 1 / 18) + (0.2 - 1 / 18) + (0.5 - 1 / 18), rel_tol=1e-6)
    loss.backward()
    torch.testing.assert_close(d.grad, torch.tensor([[0.9, -1.0, 1.0, -1.0]]))


def test_cross_entropy_by_hand_and_caffe_channel_layout():
    # H = 1, W = 2, A = 2: anchor k = x * 2 + a; background logit in channel a, face in channel 2 + a.
    cls = torch.zeros(1, 4, 1, 2)
    cls[0, 2, 0, 0] = math.log(3)  # k=0: p(face) = 3/4, label 1
    cls[0, 1, 0, 0] = 1.0  # k=1: logits (1, 1), label 0
    cls[0, 3, 0, 0] = 1.0
    cls[0, 0, 0, 1] = 50.0  # k=2: ignored
    cls[0, 2, 0, 1] = -50.0
    cls[0, 1, 0, 1] = 2.0  # k=3: logits (2, 0), label 0
    labels = torch.tensor([1, 0, -1, 0])
    cls_loss, reg_loss = module_losses(cls, torch.zeros(1, 8, 1, 2), labels, *zeros_targets(4))
    expect = (-math.log(0.75) + math.log(2) + math.log(1 + math.exp(-2))) / 3
    assert math.isclose(cls_loss.item(), expect, rel_tol=1e-6)
    assert reg_loss.item() == 0


def test_label_and_target_at_yxa_match_caffe_channels():
    gen = torch.Generator().manual_seed(0)
    h, w, a_num = 3, 5, 2
    cls = torch.randn(1, 2 * a_num, h, w, generator=gen)
    bbox = torch.randn(1, 4 * a_num, h, w, generator=gen)
    y, x, a = 2, 3, 1
    kk = (y * w + x) * a_num + a
    labels = torch.full((h * w * a_num,), -1)
    labels[kk] = 1
    targets, w_in, w_out = zeros_targets(h * w * a_num)
    w_in[kk] = 1
    w_out[kk] = 1
    cls_loss, reg_loss = module_losses(cls, bbox, labels, targets, w_in, w_out, sigma=1.0)
    bg, face = cls[0, a, y, x].item(), cls[0, a_num + a, y, x].item()
    assert math.isclose(cls_loss.item(), math.log(1 + math.exp(bg - face)), rel_tol=1e-5)
    deltas = [bbox[0, 4 * a + j, y, x].item() for j in range(4)]
    expect = sum(0.5 * d * d if abs(d) < 1 else abs(d) - 0.5 for d in deltas)
    assert math.isclose(reg_loss.item(), expect, rel_tol=1e-5)


def test_nothing_labelled_gives_zero_not_nan_and_zero_grads():
    cls = torch.randn(1, 4, 2, 2, requires_grad=True)
    bbox = torch.randn(1, 8, 2, 2, requires_grad=True)
    cls_loss, reg_loss = module_losses(cls, bbox, torch.full((8,), -1), *zeros_targets(8))
    assert cls_loss.item() == 0 and reg_loss.item() == 0
    (cls_loss + reg_loss).backward()
    assert cls.grad.abs().sum() == 0 and bbox.grad.abs().sum() == 0


def test_gradient_is_softmax_minus_onehot_over_labelled():
    cls = torch.randn(1, 4, 1, 2, requires_grad=True)
    labels = torch.tensor([1, -1, 0, 0])
    cls_loss, _ = module_losses(cls, torch.zeros(1, 8, 1, 2), labels, *zeros_targets(4))
    cls_loss.backward()
    logits = cls.detach()[0, :, 0, :].reshape(2, 2, 2).permute(2, 1, 0).reshape(4, 2)  # (x, a) x (bg, face)
    expect = (torch.softmax(logits, dim=1) - torch.eye(2)[labels.clamp(min=0)]) / 3
    expect[1] = 0
    grad = cls.grad[0, :, 0, :].reshape(2, 2, 2).permute(2, 1, 0).reshape(4, 2)
    assert torch.allclose(grad, expect, atol=1e-6)


def tiny_image_heads(device, requires_grad=True):
    """Zero heads of a 128 x 160 blob: M1 16 x 20, M2 8 x 10, M3 4 x 5."""
    heads = {}
    for name, (h, w) in {"m1": (16, 20), "m2": (8, 10), "m3": (4, 5)}.items():
        heads[name] = (torch.zeros(1, 4, h, w, device=device, requires_grad=requires_grad),
                       torch.full((1, 8, h, w), 0.05, device=device, requires_grad=requires_grad))
    return heads


@pytest.mark.parametrize("device", DEVICES)
def test_ssh_losses_names_values_and_gradients(device):
    heads = tiny_image_heads(device)
    # The M1 a=0 anchor of cell (y=2, x=3) exactly (IoU 1, zero targets), plus a 6 x 6 face no anchor fits.
    gt = torch.tensor([[24.0, 16, 39, 31], [100, 100, 105, 105]], device=device, requires_grad=True)
    losses = ssh_losses(heads, gt, (128, 160), LossSettings.from_config(default_config()))
    assert list(losses) == ["m1@ssh_cls_loss", "m1@ssh_reg_loss", "m2@ssh_cls_loss",
                            "m2@ssh_reg_loss", "m3@ssh_cls_loss", "m3@ssh_reg_loss"]
    for name, value in losses.items():
        assert value.dtype == torch.float32 and value.shape == () and value.device.type == device
        if name.endswith("cls_loss"):
            assert math.isclose(value.item(), math.log(2), rel_tol=1e-6)  # zero logits
    # M1: one positive among 256 labelled anchors, d = 0.05 on 4 coordinates.
    assert math.isclose(losses["m1@ssh_reg_loss"].item(), 4 * 4.5 * 0.05 ** 2 / 256, rel_tol=1e-5)
    # M2 / M3 have no positive: regression loss exactly 0 although every delta is 0.05.
    assert losses["m2@ssh_reg_loss"].item() == 0 and losses["m3@ssh_reg_loss"].item() == 0
    sum(losses.values()).backward()
    assert gt.grad is None
    for cls_score, bbox_pred in heads.values():
        assert cls_score.grad is not None and bbox_pred.grad is not None
    assert heads["m1"][1].grad.abs().sum() > 0 and heads["m2"][1].grad.abs().sum() == 0


def test_ssh_losses_image_without_faces_and_float32_under_autocast():
    heads = {k: (c.bfloat16(), b.bfloat16()) for k, (c, b) in tiny_image_heads("cpu", False).items()}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses = ssh_losses(heads, torch.zeros((0, 4)), (128, 160), LossSettings.from_config(default_config()))
    for name, value in losses.items():
        assert value.dtype == torch.float32 and not torch.isnan(value)
        assert math.isclose(value.item(), math.log(2) if "cls" in name else 0.0, rel_tol=1e-6)


@pytest.mark.parametrize("module,blob,cells,labelled", [
    # 32 x 32 blob, M1 4 x 4 cells: (8x, 8y, 8x+15, 8y+15) inside for x, y <= 2 (9), and
    # (8x-8, 8y-8, 8x+23, 8y+23) only at (1, 1): 10 of 32 (border 0).
    ("m1", 32, 4, 10),
    # 128 x 128 blob, M2 8 x 8 cells: (16x-24, ..., 16x+39) inside for x, y in 2..5 (16); the 128 px
    # anchors fit nowhere: 16 of 128 (border 0).
    ("m2", 128, 8, 16),
    # 320 x 320 blob, M3 10 x 10 cells: border 512 admits all 200 anchors (border 0 would keep
    # (32x-120, ..., 32x+135) for x, y in 4..5 only, 4 anchors).
    ("m3", 320, 10, 200),
])
def test_allowed_border_of_each_module_through_ssh_losses(module, blob, cells, labelled):
    """ssh_losses labels the anchors that pass each module's official border (0, 0, 512): with no face
    every inside anchor is a negative (fewer than 256), each zero-logit pair gets the gradient
    (softmax - onehot) / n = +-0.5 / n, and the others none."""
    cls_score = torch.zeros(1, 4, cells, cells, requires_grad=True)
    heads = {module: (cls_score, torch.zeros(1, 8, cells, cells))}
    losses = ssh_losses(heads, torch.zeros((0, 4)), (blob, blob), LossSettings.from_config(default_config()))
    losses[f"{module}@ssh_cls_loss"].backward()
    grad = cls_score.grad.abs()
    assert (grad > 0).sum().item() == 2 * labelled
    assert torch.allclose(grad[grad > 0], torch.full((2 * labelled,), 0.5 / labelled))


def test_ohem_through_ssh_losses_uses_the_face_probability_of_the_heads():
    """M1 on a 320 x 320 blob with 400 faces at the (y, x even, a = 0) anchors (IoU 1): only the 64
    positives of lowest face probability (face logit channel 2 + a) get a regression gradient, and 256
    anchors in all get a classification gradient."""
    gen = torch.Generator().manual_seed(0)
    face_logit = torch.randperm(40 * 40 * 2, generator=gen).float().reshape(40, 40, 2) / 400 - 4  # distinct
    cls_score = torch.zeros(1, 4, 40, 40)
    cls_score[0, 2:] = face_logit.permute(2, 0, 1)
    cls_score.requires_grad_(True)
    bbox_pred = torch.full((1, 8, 40, 40), 0.05, requires_grad=True)
    cells = [(y, x) for y in range(0, 40, 2) for x in range(0, 40, 2)]
    gt = torch.tensor([[8.0 * x, 8.0 * y, 8 * x + 15, 8 * y + 15] for y, x in cells])
    losses = ssh_losses({"m1": (cls_score, bbox_pred)}, gt, (320, 320), LossSettings.from_config(default_config()))
    (losses["m1@ssh_cls_loss"] + losses["m1@ssh_reg_loss"]).backward()
    lowest = sorted(cells, key=lambda c: face_logit[c[0], c[1], 0].item())[:64]
    regressed = bbox_pred.grad[0, :4].abs().sum(dim=0).nonzero().tolist()  # a = 0 channels 0..3
    assert sorted(map(tuple, regressed)) == sorted(lowest)
    assert bbox_pred.grad[0, 4:].abs().sum() == 0
    # Each positive coordinate: w_out * 9 * d = 0.45 / 256 (smooth L1, sigma 3, |d| = 0.05 < 1/9).
    assert torch.allclose(bbox_pred.grad[0, :4, lowest[0][0], lowest[0][1]], torch.full((4,), 0.45 / 256))
    assert (cls_score.grad[0, :2].abs() > 0).sum().item() == 256  # background channels, one per anchor
