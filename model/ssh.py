"""The SSH network up to its raw heads (SSH/models/test_ssh.prototxt; docs/network.md §1).

VGG-16 conv1_1 .. conv5_3, then three detection modules: M1 on the conv4/conv5 fusion (stride 8),
M2 on conv5_3 (stride 16), M3 on pool6 (stride 32). Layer names, learning-rate and weight-decay
multipliers are those of the official prototxts and live in one table, CAFFE_LAYERS.
"""
import pickle
import warnings
import zipfile
from collections import namedtuple

import torch
import torch.nn.functional as F
from torch import nn

from lib.utils.cli import first_line

from .weights.caffemodel import read_caffemodel, select_blobs
from .modules import DetectionModule, Fusion, bilinear_kernel
from .vgg16 import LAYER_NAMES as VGG_LAYERS
from .vgg16 import VGG16

# One learnable Caffe layer: its official name, the attribute path of the PyTorch module,
# lr_mult and decay_mult per blob (weight, bias) from train_ssh.prototxt, and its initialisation
# ("vgg": ImageNet weights / Kaiming for --init none, "gaussian": N(0, 0.01) and zero bias,
# "bilinear": the fixed upsampling kernel).
LayerSpec = namedtuple("LayerSpec", "caffe_name attr lr_mult decay_mult init")

_FROZEN = ((0, 0), (0, 0))
_TRUNK = ((1, 2), (1, 1))  # VGG conv3_1..conv5_3 and the fusion convs: bias decayed too
_MODULE = ((1, 2), (1, 0))  # SSH detection modules: no decay on biases
_MODULE_LAYERS = (
    ("ssh_3x3", "conv3x3"),
    ("ssh_dimred", "context.dimred"),
    ("ssh_5x5", "context.conv5x5"),
    ("ssh_7x7-1", "context.conv7x7_1"),
    ("ssh_7x7", "context.conv7x7"),
    ("ssh_cls_score", "cls_score"),
    ("ssh_bbox_pred", "bbox_pred"),
)
CAFFE_LAYERS = (
    *(LayerSpec(n, f"vgg.{n}", *(_FROZEN if n.startswith(("conv1", "conv2")) else _TRUNK), "vgg") for n in VGG_LAYERS),
    LayerSpec("conv5_128", "fusion.conv5_128", *_TRUNK, "gaussian"),
    LayerSpec("conv5_128_up", "fusion.conv5_128_up", (0,), (0,), "bilinear"),
    LayerSpec("conv4_128", "fusion.conv4_128", *_TRUNK, "gaussian"),
    LayerSpec("conv4_fuse_final", "fusion.conv4_fuse_final", *_TRUNK, "gaussian"),
    *(LayerSpec(f"{m}@{caffe}", f"{m}.{attr}", *_MODULE, "gaussian")
      for m in ("m3", "m2", "m1") for caffe, attr in _MODULE_LAYERS),
)


def pickle_protocol(path):
    """The pickle protocol of a zip-format .pth file (the byte after its pickle's PROTO opcode), or None."""
    try:
        with zipfile.ZipFile(path) as z:
            name = next((n for n in z.namelist() if n.endswith("/data.pkl") or n == "data.pkl"), None)
            head = z.open(name).read(2) if name else b""
    except (OSError, zipfile.BadZipFile):
        return None
    return head[1] if len(head) == 2 and head[0] == pickle.PROTO[0] else None


class SSH(nn.Module):
    """Single Stage Headless face detector network.

    forward(images: N x 3 x H x W float, BGR minus the pixel means, 0..255 scale) ->
    {"m1": (cls_score, bbox_pred), "m2": ..., "m3": ...}: the raw outputs of m?@ssh_cls_score
    (N x 4 x h x w) and m?@ssh_bbox_pred (N x 8 x h x w) at strides 8, 16, 32.

    The constructor initialises the weights (init_weights) and freezes the layers with lr_mult 0
    (conv1_x, conv2_x, the bilinear deconvolution) by setting requires_grad False; weights are
    loaded only by the explicit load_caffemodel / load_checkpoint calls.
    """

    def __init__(self):
        super().__init__()
        self.vgg = VGG16()
        self.fusion = Fusion(512, 128)
        self.m1 = DetectionModule(128, 128)
        self.m2 = DetectionModule(512, 256)
        self.m3 = DetectionModule(512, 256)
        for spec, layer in self.caffe_layers():
            for param, lr_mult in zip(layer.parameters(), spec.lr_mult):
                param.requires_grad_(lr_mult != 0)
        self.init_weights()

    def forward(self, images):
        conv4_3, conv5_3 = self.vgg(images)
        pool6 = F.max_pool2d(conv5_3, 2, 2, ceil_mode=True)
        return {"m1": self.m1(self.fusion(conv4_3, conv5_3)), "m2": self.m2(conv5_3), "m3": self.m3(pool6)}

    def caffe_layers(self):
        """[(LayerSpec, module)] for every learnable layer, in the order of CAFFE_LAYERS."""
        return [(spec, self.get_submodule(spec.attr)) for spec in CAFFE_LAYERS]

    @torch.no_grad()
    def init_weights(self, generator=None):
        """Official initialisation: N(0, 0.01) weights and zero biases for new layers, the fixed
        bilinear kernel for conv5_128_up; VGG layers get Kaiming-normal weights (fan_out, ReLU)
        and zero biases, a stand-in for when no ImageNet model is loaded. `generator` (a
        torch.Generator on the parameters' device) makes the draw reproducible."""
        for spec, layer in self.caffe_layers():
            if spec.init == "bilinear":
                layer.weight.copy_(bilinear_kernel(layer.weight.shape[0], layer.weight.shape[-1]))
                continue
            if spec.init == "vgg":
                nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu", generator=generator)
            else:
                nn.init.normal_(layer.weight, 0.0, 0.01, generator=generator)
            nn.init.zeros_(layer.bias)

    def param_groups(self, base_lr, weight_decay):
        """torch.optim parameter groups with the per-blob lr_mult / decay_mult of train_ssh.prototxt.

        One group per (lr_mult, decay_mult); each carries "lr_mult" and "decay_mult" so a scheduler
        can set lr = base_lr * gamma ** k * lr_mult. Frozen parameters (lr_mult 0) are left out.
        """
        groups = {}
        for spec, layer in self.caffe_layers():
            for param, lr_mult, decay_mult in zip(layer.parameters(), spec.lr_mult, spec.decay_mult):
                if lr_mult:
                    groups.setdefault((lr_mult, decay_mult), []).append(param)
        return [{"params": params, "lr": base_lr * lr_mult, "weight_decay": weight_decay * decay_mult,
                 "lr_mult": lr_mult, "decay_mult": decay_mult}
                for (lr_mult, decay_mult), params in sorted(groups.items())]

    @torch.no_grad()
    def load_caffemodel(self, path, strict=True):
        """Copy weights from a Caffe model file by official layer name; returns a caffemodel.LoadReport.

        strict=True (SSH.caffemodel, a snapshot of the training net): every layer of CAFFE_LAYERS
        must be present; the `_ohem` copies are skipped and the duplicated mi@ssh_7x7 is checked
        equal. strict=False (VGG16.caffemodel for ImageNet init): load the layers present, report
        the rest (fc6..fc8 in `skipped`). Shape mismatches always raise ValueError; a loaded
        conv5_128_up must be the fixed bilinear kernel.
        """
        layers = {spec.caffe_name: layer for spec, layer in self.caffe_layers()}
        expected = {name: [tuple(p.shape) for p in layer.parameters()] for name, layer in layers.items()}
        blobs, report = select_blobs(read_caffemodel(path, wanted=expected), expected, strict, source=str(path))
        deconv = blobs.get("conv5_128_up")
        if deconv is not None and not torch.equal(torch.from_numpy(deconv[0]), bilinear_kernel(128)):
            raise ValueError(f"{path}: layer 'conv5_128_up' is not the fixed bilinear kernel")
        for name, arrays in blobs.items():
            for param, array in zip(layers[name].parameters(), arrays):
                param.copy_(torch.from_numpy(array))
        return report

    def load_checkpoint(self, path):
        """Load a .pth state_dict, plain or under the "model" key of a training snapshot (strict).

        A missing file raises FileNotFoundError; one that torch cannot read, or whose tensors are not
        SSH's, ValueError naming it and the first differing tensors.
        """
        protocol = pickle_protocol(path)
        try:
            with warnings.catch_warnings():  # torch warns of every protocol but its default 2; we say what matters
                warnings.filterwarnings("ignore", "Detected pickle protocol")
                state = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise
        except pickle.UnpicklingError:
            if protocol is not None and protocol > 2:
                raise ValueError(f"{path}: saved with pickle protocol {protocol}, which torch.load(weights_only=True) "
                                 "cannot read safely; save it again with torch.save(state_dict, path) (protocol 2, "
                                 "the default)") from None
            raise ValueError(f"{path}: not a PyTorch checkpoint of tensors and plain values") from None
        except (RuntimeError, EOFError, OSError) as e:
            raise ValueError(f"{path}: not a readable PyTorch checkpoint ({first_line(e)})") from None
        if isinstance(state, dict) and isinstance(state.get("model"), dict):
            state = state["model"]
        if not isinstance(state, dict):
            raise ValueError(f"{path}: holds a {type(state).__name__}, not a state_dict of SSH")
        own = self.state_dict()
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        wrong = [k for k in own if k in state and getattr(state[k], "shape", None) != own[k].shape]
        if missing or unexpected or wrong:
            found = [f"{len(keys)} {what} (e.g. {keys[0]})" for keys, what in
                     ((missing, "missing"), (unexpected, "unexpected"), (wrong, "of another shape")) if keys]
            raise ValueError(f"{path}: not a checkpoint of this SSH network: tensors {', '.join(found)}")
        return self.load_state_dict(state)
