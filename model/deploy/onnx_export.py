"""ONNX export of the SSH network (images -> six raw heads) with dynamic batch, height and width.

Uses torch.onnx.export's torch.export-based exporter (dynamo=True, needs onnxscript) at ONNX opset
18. Caffe's ceil-rounded pooling becomes MaxPool(ceil_mode=1) and the conv5_128_crop slice is
traced from the runtime shapes, so one file serves every input size; the output shapes carry the
symbolic sizes, e.g. m1 rows = (height - 1) // 8 + 1 = ceil(height / 8).

Graph contract: input "images" (batch x 3 x height x width float32, BGR minus the pixel means),
outputs OUTPUT_NAMES in that order, each the matching tensor of `SSH.forward`.
"""
import copy
from pathlib import Path

import torch
from torch import nn

from lib.anchors import MODULE_NAMES
from lib.utils.atomic import atomic_path

OPSET = 18
INPUT_NAME = "images"
OUTPUT_NAMES = tuple(f"{m}_{head}" for m in MODULE_NAMES for head in ("cls_score", "bbox_pred"))
DYNAMIC_AXES = ("batch", "height", "width")
# Input size traced at export; any other size runs the same graph.
EXPORT_HW = (64, 96)


class FlatHeads(nn.Module):
    """`net` with its {module: (cls_score, bbox_pred)} output flattened to a tuple in OUTPUT_NAMES order."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, images):
        heads = self.net(images)
        return tuple(t for m in MODULE_NAMES for t in heads[m])


def contiguous_copy(net):
    """A copy of `net` in the default memory format: a channels_last network (as `Detector` leaves
    it) does not export with dynamic sizes."""
    return copy.deepcopy(net).to(memory_format=torch.contiguous_format)


def export_onnx(net, path, example_hw=EXPORT_HW):
    """Write `net` (an `SSH`) as an ONNX file at `path`, atomically, and check it; returns `path`.

    The graph is traced on a 1 x 3 x example_hw zero blob on the network's device. Raises OSError
    when `path` cannot be written (nothing is left behind).
    """
    path = Path(path)
    device = next(net.parameters()).device
    example = torch.zeros(1, 3, *example_hw, device=device)
    batch, height, width = (torch.export.Dim(name) for name in DYNAMIC_AXES)
    with atomic_path(path) as tmp:
        torch.onnx.export(FlatHeads(contiguous_copy(net)).eval(), (example,), str(tmp), dynamo=True, opset_version=OPSET,
                          input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
                          dynamic_shapes={"images": {0: batch, 2: height, 3: width}},
                          external_data=False, verbose=False)
        check_onnx(tmp)
    return path


def check_onnx(path):
    """Validate the ONNX file at `path` with onnx's full checker (with shape inference) and the graph
    contract above; raises ValueError naming the first problem."""
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
        model = onnx.load(str(path), load_external_data=False)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise ValueError(f"{path}: not a valid ONNX model ({str(e).splitlines()[0]})") from None
    inputs = [(i.name, [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]) for i in model.graph.input]
    if inputs != [(INPUT_NAME, ["batch", 3, "height", "width"])]:
        raise ValueError(f"{path}: expected one input {INPUT_NAME} of shape batch x 3 x height x width, got {inputs}")
    outputs = tuple(o.name for o in model.graph.output)
    if outputs != OUTPUT_NAMES:
        raise ValueError(f"{path}: expected outputs {', '.join(OUTPUT_NAMES)}, got {', '.join(outputs)}")
