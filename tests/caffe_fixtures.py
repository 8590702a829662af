"""Test helpers: the official prototxts, a small protobuf text-format parser, and Caffe weight sets.

Blob shapes are derived from the prototxt itself (num_output, kernel_size, group, bias_term and the
channels flowing along bottom/top), independently of the PyTorch model.
"""
import math
import re
from pathlib import Path

import numpy as np

from shared import REFERENCE  # noqa: F401  (the tests import it from here)
_TOKEN = re.compile(r"""\s+|#[^\n]*|(?P<tok>"[^"]*"|'[^']*'|[{}:]|[^\s{}:#]+)""")


def _tokens(text):
    return [m.group("tok") for m in _TOKEN.finditer(text) if m.group("tok")]


def _scalar(token):
    if token[0] in "\"'":
        return token[1:-1]
    for cast in (int, float):
        try:
            return cast(token)
        except ValueError:
            pass
    return token


def _message(tokens, i):
    fields = []
    while i < len(tokens) and tokens[i] != "}":
        key = tokens[i]
        i += 1
        if tokens[i] == ":":
            i += 1
        if tokens[i] == "{":
            value, i = _message(tokens, i + 1)
            i += 1
        else:
            value, i = _scalar(tokens[i]), i + 1
        fields.append((key, value))
    return fields, i


def parse_prototxt(text):
    """[(key, value)] of a protobuf text-format message; nested messages are such lists."""
    return _message(_tokens(text), 0)[0]


def _get(fields, key, default=None):
    return next((v for k, v in fields if k == key), default)


def _all(fields, key):
    return [v for k, v in fields if k == key]


def prototxt_layers(path):
    """[dict(name, type, bottom, top, params, conv)] of the `layer` blocks of a prototxt file.

    params: [(lr_mult, decay_mult)] with Caffe's defaults of 1, or None where the ParamSpec only
    names a shared blob; conv: convolution_param as a dict.
    """
    net = parse_prototxt(Path(path).read_text())
    layers = []
    for fields in _all(net, "layer"):
        params = [None if _get(p, "lr_mult") is None and _get(p, "name") else
                  (_get(p, "lr_mult", 1), _get(p, "decay_mult", 1)) for p in _all(fields, "param")]
        layers.append(dict(name=_get(fields, "name"), type=_get(fields, "type"), bottom=_all(fields, "bottom"),
                           top=_all(fields, "top"), params=params,
                           conv=dict(_get(fields, "convolution_param", []))))
    return layers


def blob_shapes(path):
    """{layer name: [blob shapes]} of the Convolution / Deconvolution layers of a prototxt, file order."""
    net = parse_prototxt(Path(path).read_text())
    channels = {_get(net, "input", "data"): _all(_get(net, "input_shape", [("dim", 1), ("dim", 3)]), "dim")[1]}
    shapes = {}
    for layer in prototxt_layers(path):
        bottoms = [channels.get(b) for b in layer["bottom"]]
        conv = layer["conv"]
        if layer["type"] in ("Convolution", "Deconvolution"):
            out, k, group = conv["num_output"], conv["kernel_size"], conv.get("group", 1)
            weight = (out, bottoms[0] // group, k, k) if layer["type"] == "Convolution" else \
                (bottoms[0], out // group, k, k)
            shapes.setdefault(layer["name"], [weight] + ([(out,)] if conv.get("bias_term", "true") == "true" else []))
            out_channels = out
        elif layer["type"] == "Concat":
            out_channels = sum(bottoms)
        else:
            out_channels = bottoms[0] if bottoms else None
        for top in layer["top"]:
            channels[top] = out_channels
    return shapes


def bilinear(shape):
    """Caffe BilinearFiller values for a (C, 1, k, k) deconvolution weight (filler.hpp)."""
    k = shape[-1]
    f = math.ceil(k / 2)
    c = (k - 1) / (2 * f)
    taps = 1 - np.abs(np.arange(k) / f - c)
    return np.broadcast_to(np.outer(taps, taps), shape).astype(np.float32)


def random_weights(shapes, seed=0):
    """{name: [weight, bias]} He-scaled Gaussian weights and N(0, 0.1) biases; bilinear for group deconv."""
    rng = np.random.default_rng(seed)
    weights = {}
    for name, layer_shapes in shapes.items():
        w_shape = layer_shapes[0]
        if name == "conv5_128_up":
            w = bilinear(w_shape)
        else:
            w = rng.normal(0.0, math.sqrt(2.0 / math.prod(w_shape[1:])), w_shape).astype(np.float32)
        weights[name] = [w] + [rng.normal(0.0, 0.1, s).astype(np.float32) for s in layer_shapes[1:]]
    return weights
