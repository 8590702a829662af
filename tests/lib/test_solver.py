"""CaffeSGD and the step policy against hand-computed Caffe updates, and the SSH multipliers they apply."""
import pytest
import torch
from caffe_fixtures import prototxt_layers

from lib.solver import CaffeSGD, StepLR
from model import SSH
from model.ssh import CAFFE_LAYERS
from shared import REFERENCE, needs_shared

TRAIN_PROTOTXT = REFERENCE / "train_ssh.prototxt"


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
    # (torch.optim.SGD's form, v = 0.9*[0.6, 0.05] + g'; theta -= 0.01*v, would give [0.94366, -2.008445].)
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


def test_multiplied_group_across_an_lr_change_keeps_lr_inside_the_history():
    """A bias group (lr_mult 2, decay_mult 0) through set_base_lr, as the training loop drives it."""
    b = _param([1.0])
    opt = CaffeSGD([{"params": [b], "lr_mult": 2, "weight_decay": 0.0}], lr=1.0, momentum=0.9)
    opt.set_base_lr(0.1)
    b.grad = torch.tensor([1.0], dtype=torch.float64)
    opt.step()  # v = 0.2 * 1 = 0.2; theta = 0.8
    opt.set_base_lr(0.01)
    b.grad = torch.tensor([1.0], dtype=torch.float64)
    opt.step()  # v = 0.9 * 0.2 + 0.02 * 1 = 0.2; theta = 0.6 (torch form: v = 0.9 + 1, theta = 0.8 - 0.038 = 0.762)
    assert b.item() == pytest.approx(0.6, rel=0, abs=1e-15)


def test_official_step_schedule():
    lr = StepLR(base_lr=0.004, gamma=0.1, stepsize=18000)
    assert lr(0) == lr(1) == lr(17999) == 0.004
    assert lr(18000) == pytest.approx(0.0004, rel=1e-12)
    assert lr(20999) == pytest.approx(0.0004, rel=1e-12)
    assert lr(36000) == pytest.approx(0.00004, rel=1e-12)


def test_ssh_multipliers_in_one_step():
    """One step on SSH.param_groups with unit gradients: train_ssh.prototxt lr/decay multipliers."""
    net = SSH()
    base_lr, wd = 0.01, 0.0005
    opt = CaffeSGD(net.param_groups(base_lr, wd), lr=base_lr, momentum=0.9)
    trained = [p for g in opt.param_groups for p in g["params"]]
    assert sum(p.numel() for p in trained) == 19_506_212  # docs/network.md §1.8
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


def prototxt_multipliers():
    """{layer name: [(lr_mult, decay_mult) per blob]} of the learnable layers of train_ssh.prototxt.

    The _ohem copies (and the OHEM copy of mi@ssh_7x7, which has no suffix and comes first) only name
    shared blobs; Caffe then takes the multipliers of the main-branch layer that sets them.
    """
    found = {}
    for layer in prototxt_layers(TRAIN_PROTOTXT):
        if layer["type"] in ("Convolution", "Deconvolution") and not all(p is None for p in layer["params"]):
            assert layer["name"] not in found and None not in layer["params"]
            found[layer["name"]] = layer["params"]
    return found


@needs_shared(TRAIN_PROTOTXT)
def test_every_layer_steps_with_the_train_prototxt_multipliers():
    """Unit weights and unit gradients on every parameter (frozen ones too), one step through
    SSH.param_groups and set_base_lr: each update is base_lr * lr_mult * (1 + wd * decay_mult) with the
    (lr_mult, decay_mult) of that blob's `param { }` in train_ssh.prototxt, and 0 where lr_mult is 0."""
    official = prototxt_multipliers()
    assert set(official) == {spec.caffe_name for spec in CAFFE_LAYERS}
    net = SSH().double()
    wd = 0.1  # large, so that decay on a bias shows: 2 * lr * 1.1 vs 2 * lr
    opt = CaffeSGD(net.param_groups(1.0, wd), lr=1.0, momentum=0.9)
    base_lr = 0.01
    opt.set_base_lr(base_lr)
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(1.0)
    for p in net.parameters():
        p.grad = torch.ones_like(p)
    opt.step()
    checked = 0
    for spec, layer in net.caffe_layers():
        params = list(layer.named_parameters())
        assert len(params) == len(official[spec.caffe_name]), spec.caffe_name
        for (blob, p), (lr_mult, decay_mult) in zip(params, official[spec.caffe_name]):
            update = (1.0 - p.detach()).unique().tolist()
            expected = base_lr * lr_mult * (1 + wd * decay_mult)
            assert update == [pytest.approx(expected, rel=1e-12, abs=0)], f"{spec.caffe_name} {blob}: {update}"
            # Frozen blobs get no gradient at all (conv1_x, conv2_x, the bilinear deconvolution).
            assert p.requires_grad == (lr_mult != 0), f"{spec.caffe_name} {blob}"
            checked += 1
    assert checked == 2 * 37 + 1  # 13 VGG, 3 fusion and 3 x 7 module convolutions, the bias-free deconvolution
    frozen = [spec.caffe_name for spec in CAFFE_LAYERS if official[spec.caffe_name][0][0] == 0]
    assert frozen == ["conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv5_128_up"]
