"""The exported SSH network run by ONNX Runtime, with the forward contract of `SSH`.

`OnnxSSH(path)` is a parameter-free nn.Module, so `Detector` uses it unchanged: forward(images
N x 3 x H x W) -> {"m1": (cls_score, bbox_pred), "m2": ..., "m3": ...} as float32 tensors on the
device of `images`. ONNX Runtime computes on the CPU unless a CUDA-enabled onnxruntime build is
installed and the input lives on a CUDA device. `precision` is the graph's number format: "int8"
for a graph written by model.deploy.quantize (its metadata says so), else "fp32".

A large input (STRIP_MIN_PIXELS) to an int8 graph runs in two parts, as `VGG16` does at inference:
VGG's first stage (conv1_1, conv1_2, pool1) over strips of STRIP_ROWS input rows with a 2-row halo,
then the rest of the graph on the joined uint8 pool1 map. Integer convolutions give the same values in strips as whole, so the heads are
bit-identical to one run of the graph, while the full-resolution maps of stage 1 (and ONNX Runtime's
buffers for them) exist only one strip at a time.
"""
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lib.anchors import MODULE_NAMES

from ..vgg16 import STRIP_ROWS
from .onnx_export import INPUT_NAME, OUTPUT_NAMES

# int8 graphs run in strips from this many input pixels on. Below it the whole graph needs less
# memory than the fp32 PyTorch network and is faster (the split graph costs 10-20% at 480 x 640);
# at 1200 x 1600 strips cost about 6% and save 490 MB (docs/decisions.md §8.5).
STRIP_MIN_PIXELS = 512 * 768

# Metadata key of the graph's number format (written by model.deploy.quantize).
PRECISION_KEY = "ssh.precision"


def providers_for(device):
    """ONNX Runtime execution providers for a torch device: CUDA first when asked for and available."""
    import onnxruntime as ort

    if torch.device(device).type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def session_options(threads):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    return options


def load_session(path, device="cpu", threads=0):
    """onnxruntime.InferenceSession for an SSH graph written by model.deploy.onnx_export.

    threads: intra-op threads (0 = ONNX Runtime's default). Raises FileNotFoundError for a missing
    file and ValueError for a file that is not an ONNX model or does not have the SSH inputs/outputs.
    """
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    errors = ort.capi.onnxruntime_pybind11_state
    try:
        session = ort.InferenceSession(str(path), session_options(threads), providers=providers_for(device))
    except (errors.InvalidProtobuf, errors.InvalidGraph, errors.Fail, errors.NotImplemented) as e:
        raise ValueError(f"{path}: not an ONNX model ONNX Runtime can load ({str(e).splitlines()[0]})") from None
    inputs = [i.name for i in session.get_inputs()]
    outputs = tuple(o.name for o in session.get_outputs())
    if inputs != [INPUT_NAME] or outputs != OUTPUT_NAMES:
        raise ValueError(f"{path}: not an SSH graph (inputs {inputs}, outputs {list(outputs)}; "
                         f"expected [{INPUT_NAME}] and {list(OUTPUT_NAMES)})")
    return session


def stage1_cut(model):
    """Name of the uint8 tensor that quantizes pool1 (VGG's first stage: conv1_1, conv1_2, pool1)
    in a QDQ graph (onnx.ModelProto): Conv(conv1_2) -> Q -> DQ -> MaxPool -> Q."""
    nodes = model.graph.node
    producers = {out: node for node in nodes for out in node.output}

    def consumer(tensor, op_type):
        return next(node for node in nodes if node.op_type == op_type and tensor in node.input)

    conv = next(node for node in nodes if node.op_type == "Conv"
                and producers[node.input[1]].input[0] == "net.vgg.conv1_2.weight_quantized")
    quantized = consumer(conv.output[0], "QuantizeLinear").output[0]
    pool = consumer(consumer(quantized, "DequantizeLinear").output[0], "MaxPool")
    return consumer(pool.output[0], "QuantizeLinear").output[0]


class StripRunner:
    """An int8 SSH graph split at pool1's quantized output: `stage1` (images -> uint8 pool1 map)
    runs over row strips, `rest` (that map and the images' shape -> heads) once."""

    def __init__(self, model, device="cpu", threads=0):
        import onnx
        import onnxruntime as ort

        self.cut = stage1_cut(model)
        extractor = onnx.utils.Extractor(onnx.shape_inference.infer_shapes(model))
        parts = (extractor.extract_model([INPUT_NAME], [self.cut]),
                 extractor.extract_model([self.cut, INPUT_NAME], list(OUTPUT_NAMES)))
        self.stage1, self.rest = (ort.InferenceSession(part.SerializeToString(), session_options(threads),
                                                       providers=providers_for(device)) for part in parts)

    def pool1(self, images):
        """pool1's uint8 map of N x 3 x H x W `images`, computed strip by strip.

        Strips start at even rows and read 2 halo rows on each side (the two 3x3 convolutions), which
        are exactly one pooled row each: the pooled halo rows are dropped, the kept ones see their
        full-image neighbourhood; pooling rounds up (ceil) only at the image's last row.
        """
        height = images.shape[2]
        step = STRIP_ROWS if height > 2 * STRIP_ROWS else height  # as VGG16: strips only for tall inputs
        out = None
        for r0 in range(0, height, step):
            r1 = min(height, r0 + step)
            a0, a1 = max(0, r0 - 2), min(height, r1 + 2)
            strip = self.stage1.run([self.cut], {INPUT_NAME: np.ascontiguousarray(images[:, :, a0:a1])})[0]
            if out is None:
                out = np.empty((*strip.shape[:2], (height + 1) // 2, strip.shape[3]), strip.dtype)
            keep = (r0 - a0) // 2
            rows = (r1 + 1) // 2 - r0 // 2
            out[:, :, r0 // 2:r0 // 2 + rows] = strip[:, :, keep:keep + rows]
        return out

    def run(self, images):
        # The rest also reads `images`, for its shape only (the conv5 crop's size).
        return self.rest.run(list(OUTPUT_NAMES), {self.cut: self.pool1(images), INPUT_NAME: images})


class OnnxSSH(nn.Module):
    """SSH heads computed by an ONNX Runtime session (see `load_session`).

    An int8 graph switches to a `StripRunner` (`strips`) at its first input of STRIP_MIN_PIXELS or
    more and keeps it: the whole-graph session is released first, so the two never hold the weights
    at the same time.
    """

    def __init__(self, session, source="ONNX graph", device="cpu", threads=0):
        super().__init__()
        self.session = session
        self.source = source
        self.precision = session.get_modelmeta().custom_metadata_map.get(PRECISION_KEY, "fp32")
        self.strips = None
        self._strip_args = (device, threads)

    @classmethod
    def from_file(cls, path, device="cpu", threads=0):
        return cls(load_session(path, device, threads), str(path), device, threads)

    def _runner(self, array):
        """The strip runner for `array` when it is an int8 graph's large input or one is running."""
        if self.strips is None and self.precision == "int8" and array.shape[2] * array.shape[3] >= STRIP_MIN_PIXELS:
            import onnx

            self.session = None
            self.strips = StripRunner(onnx.load(self.source), *self._strip_args)
        return self.strips

    def forward(self, images):
        array = np.ascontiguousarray(images.detach().to("cpu", torch.float32).numpy())
        runner = self._runner(array)
        if runner is not None:
            outputs = runner.run(array)
        else:
            outputs = self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: array})
        tensors = [torch.from_numpy(o).to(images.device) for o in outputs]
        return {m: (tensors[2 * i], tensors[2 * i + 1]) for i, m in enumerate(MODULE_NAMES)}
