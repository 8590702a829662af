"""CaffeSGD and the step policy against hand-computed Caffe updates, and the SSH multipliers they apply."""
import pytest
import torch

from lib.solver import CaffeSGD, StepLR
from model import SSH


def _param(values):
    return torch.nn.Parameter(torch.tensor(values, dtype=torch.float64))


def test_two_steps_match_hand_computed_caffe_update():
    # Caffe: v <- m*v + lr*(g + wd*theta); theta <- theta - v. lr drops from 0.1 to 0.01 between steps.
    p = _param([1.0, -2.0])
    opt = CaffeSGD([p], lr=0.1, momentum=0.9, weight_decay=0.1)
    p.grad = torch.tensor([0.5, 0.25], dtype=torch.float64)
    opt.step()
    # g' = [0.5 + 0.1*1, 0.25 + 0.1*(-2)] = [0.6, 0.05]; v = 0.1*g' = [0.06, 0.005]
    torch.testing.assert_close(p.detach(), torch.tensor([0.94, -2.005], dtype=torch.float64), rtol=0, atol=1e-15)
    opt.set_base_lr(0.01)
    p.grad = torch.tensor([-1.0, 0.5], dtype=torch.float64)
    opt.step()
    # g' = [-1 + 0.094, 0.5 - 0.2005] = [-0.906, 0.2995]; v = 0.9*[0.06, 0.005] + 0.01*g' = [0.04494, 0.007495]
    torch.testing.assert_close(p.detach(), torch.tensor([0.89506, -2.012495], dtype=torch.float64),
                               rtol=0, atol=1e-15)
    torch.testing.assert_close(opt.state[p]["history"], torch.tensor([0.04494, 0.007495], dtype=torch.float64),
                               rtol=0, atol=1e-15)


def test_equals_torch_sgd_at_constant_lr_and_differs_after_a_step_change():
    grads = [torch.tensor([0.5, 0.25]), torch.tensor([-1.0, 0.5]), torch.tensor([0.3, -0.7])]
    ours, ref = _param([1.0, -2.0]), _param([1.0, -2.0])
    caffe = CaffeSGD([ours], lr=0.1, momentum=0.9, weight_decay=0.1)
    torch_sgd = torch.optim.SGD([ref], lr=0.1, momentum=0.9, weight_decay=0.1)
    for g in grads:
        for p, opt in ((ours, caffe), (ref, torch_sgd)):
            p.grad = g.double()
            opt.step()
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-14)
    caffe.set_base_lr(0.01)
    torch_sgd.param_groups[0]["lr"] = 0.01
    for p, opt in ((ours, caffe), (ref, torch_sgd)):
        p.grad = grads[0].double()
        opt.step()
    # Caffe keeps the old lr inside the history: v = 0.9 * v_caffe + 0.01 * g', not 0.01 * (0.9 * v_torch + g').
    assert (ours - ref).abs().max() > 1e-3


def test_group_multipliers_and_parameters_without_gradient():
    w, b, untouched = _param([1.0]), _param([1.0]), _param([1.0])
    opt = CaffeSGD([{"params": [w], "lr_mult": 1, "weight_decay": 0.5},
                    {"params": [b], "lr_mult": 2, "weight_decay": 0.0},
                    {"params": [untouched], "lr_mult": 1}], lr=1.0, momentum=0.9)
    opt.set_base_lr(0.1)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.2, 0.1]
    w.grad, b.grad = torch.ones(1, dtype=torch.float64), torch.ones(1, dtype=torch.float64)
    opt.step()
    assert w.item() == pytest.approx(1.0 - 0.1 * (1.0 + 0.5))
    assert b.item() == pytest.approx(1.0 - 0.2)
    assert untouched.item() == 1.0 and not opt.state[untouched]


def test_official_step_schedule():
    lr = StepLR(base_lr=0.004, gamma=0.1, stepsize=18000)
    assert lr(0) == lr(17999) == 0.004
    assert lr(18000) == pytest.approx(0.0004, rel=1e-12)
    assert lr(20999) == pytest.approx(0.0004, rel=1e-12)
    assert lr(36000) == pytest.approx(0.00004, rel=1e-12)


def test_ssh_multipliers_in_one_step():
    """One step on SSH.param_groups with unit gradients: train_ssh.prototxt lr/decay multipliers."""
    net = SSH()
    base_lr, wd = 0.01, 0.0005
    opt = CaffeSGD(net.param_groups(base_lr, wd), lr=base_lr, momentum=0.9)
    trained = [p for g in opt.param_groups for p in g["params"]]
    assert sum(p.numel() for p in trained) == 19_506_212  # SSH_SPEC.md section 1.8
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(1.0)  # non-zero everywhere, so that weight decay shows on biases too
    for p in trained:
        p.grad = torch.ones_like(p)
    opt.step()
    params = dict(net.named_parameters())

    def update(name):
        return (1.0 - params[name].detach()).unique().tolist()

    for frozen in ("vgg.conv1_1.weight", "vgg.conv2_2.bias", "fusion.conv5_128_up.weight"):
        assert update(frozen) == [0.0]
    # conv3_1 .. conv5_3 and the fusion convs: lr_mult 1 / 2, decay_mult 1 / 1.
    for name, lr_mult in (("vgg.conv3_1.weight", 1), ("vgg.conv5_3.bias", 2), ("fusion.conv4_128.bias", 2),
                          ("fusion.conv4_fuse_final.weight", 1)):
        assert update(name) == [pytest.approx(base_lr * lr_mult * (1 + wd), rel=1e-6)], name
    # SSH detection modules: lr_mult 1 / 2, decay_mult 1 / 0.
    for name, expected in (("m1.cls_score.weight", base_lr * (1 + wd)), ("m2.conv3x3.weight", base_lr * (1 + wd)),
                           ("m3.context.conv7x7.bias", 2 * base_lr), ("m1.bbox_pred.bias", 2 * base_lr)):
        assert update(name) == [pytest.approx(expected, rel=1e-6)], name
