"""Static int8 quantization of the SSH network with ONNX Runtime (docs/inference.md §5.5).

The network is exported as ONNX (onnx_export), its activation ranges are calibrated on real
images, and ONNX Runtime's quantize_static writes a QDQ graph: per-channel symmetric int8 weights,
per-tensor uint8 activations. The graph keeps the contract of the float export (any batch, height
and width, no re-quantization per size), so `OnnxSSH` runs it for `Detector`. Convolutions named
in `keep_float` stay float32. The graph's metadata records its precision, the calibration and the
source weights (SOURCE_KEY: "<file name> sha256:<hex>"); OnnxSSH reads the precision, and a float
model cannot be taken for int8. `int8_model_of` finds the int8 graph of given weights by that record
(`--precision auto`).
"""
import io
import logging
import tempfile
from contextlib import contextmanager, redirect_stdout
from pathlib import Path

from lib.utils.atomic import atomic_path
from lib.utils.download import sha256_file

from .onnx_export import INPUT_NAME, check_onnx, export_onnx
from .onnx_runtime import PRECISION_KEY

# Activation-range estimators of ONNX Runtime, by name (chosen by measured drift: docs/decisions.md).
CALIBRATORS = {"minmax": lambda c: c.MinMax, "percentile": lambda c: c.Percentile, "entropy": lambda c: c.Entropy}
METHODS = tuple(CALIBRATORS)
DEFAULT_METHOD = "minmax"
# Convolutions (module paths of SSH) left in float32 by default: the six 1x1 heads, whose int8 outputs
# would round the score logits to 1/255 of their range (measured: docs/decisions.md §8.5).
KEEP_FLOAT = tuple(f"{m}.{head}" for m in ("m1", "m2", "m3") for head in ("cls_score", "bbox_pred"))
# Metadata key of the weights a graph was quantized from: "<file name> sha256:<64 hex digits>".
SOURCE_KEY = "ssh.source"


def int8_path(weights):
    """Where the int8 model of the weights at `weights` goes by default: beside them, <stem>_int8.onnx
    (data/SSH_models/SSH.caffemodel -> SSH_int8.onnx, lib.config.data_layout's ssh_int8_model)."""
    weights = Path(weights)
    return weights.with_name(f"{weights.stem}_int8.onnx")


def source_entry(weights):
    """The SOURCE_KEY value that names the weights file at `weights`: its name and SHA-256."""
    weights = Path(weights)
    return f"{weights.name} sha256:{sha256_file(weights)}"


def graph_metadata(path):
    """{key: value} of the metadata of the ONNX graph at `path`; ValueError when it is not an ONNX file."""
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, OSError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(f"{path}: not an ONNX model ({reason})") from None
    return {entry.key: entry.value for entry in model.metadata_props}


def int8_model_of(weights):
    """(path, reason): the int8 graph beside the weights at `weights` (`int8_path`) when its SOURCE_KEY
    record names the same file content (SHA-256), else None; `reason` says in a few words why it is
    or is not theirs. A graph without the record (made by another tool) is never taken for them."""
    weights = Path(weights)
    path = int8_path(weights)
    if not path.is_file():
        return None, f"no int8 model {path}"
    if not weights.is_file():
        return None, f"{path} cannot be matched to {weights}, which is missing"
    try:
        meta = graph_metadata(path)
    except ImportError:
        return None, "onnx is not installed"
    except ValueError as e:
        return None, str(e)
    if meta.get(PRECISION_KEY) != "int8":
        return None, f"{path} is not an int8 graph"
    source = meta.get(SOURCE_KEY)
    if source is None:
        return None, f"{path} records no source weights"
    if source.rpartition("sha256:")[2].strip() != sha256_file(weights):
        return None, f"{path} was quantized from other weights ({source}), not from {weights}"
    return path, f"{path} is the int8 model of {weights.name} (its record names them)"


class BlobReader:
    """onnxruntime CalibrationDataReader over a sequence of input blobs; ONNX Runtime's strided
    calibration (CalibStridedMinMax) reads it one blob at a time through `set_range`, so only one
    blob's intermediate tensors are held at once. `progress(blobs_done)`, when given, is called with 0
    at the first read and after each range has run through the network."""

    def __init__(self, blobs, progress=None):
        self.blobs = blobs
        self.progress = progress
        self.started = False
        self.set_range(0, len(blobs))

    def __len__(self):
        return len(self.blobs)

    def set_range(self, start_index, end_index):
        self.pending = iter(range(start_index, end_index))
        self.end = end_index

    def get_next(self):
        if self.progress is not None and not self.started:
            self.started = True
            self.progress(0)
        index = next(self.pending, None)
        if index is None:
            if self.progress is not None:
                self.progress(self.end)
            return None
        return {INPUT_NAME: self.blobs[index]}


class _DropPreprocessingAdvice(logging.Filter):
    def filter(self, record):
        return "pre-processing before quantization" not in record.getMessage()


@contextmanager
def quiet_quantizer():
    """ONNX Runtime's quantize_static advises its pre-processing (shape inference, graph optimisation)
    on the root logger at every call, and its histogram calibrators print their bin counts. The
    pre-processing makes no measurable difference to the int8 graph's speed for SSH (docs/decisions.md
    §8): while quantizing, the advice is dropped and the prints go nowhere."""
    advice = _DropPreprocessingAdvice()
    logging.getLogger().addFilter(advice)
    try:
        with redirect_stdout(io.StringIO()):
            yield
    finally:
        logging.getLogger().removeFilter(advice)


def conv_nodes(model, modules):
    """Names of the Conv nodes of the exported `model` (onnx.ModelProto) whose weights belong to the
    SSH module paths `modules` (e.g. "m1.cls_score"); an unknown path raises ValueError."""
    by_module = {node.input[1].removeprefix("net.").removesuffix(".weight"): node.name
                 for node in model.graph.node if node.op_type == "Conv"}
    unknown = [m for m in modules if m not in by_module]
    if unknown:
        raise ValueError(f"no convolution {', '.join(unknown)} in the SSH network")
    return [by_module[m] for m in modules]


def quantize_network(net, path, blobs, method=DEFAULT_METHOD, keep_float=KEEP_FLOAT, metadata=None, progress=None):
    """Write `net` (an `SSH`) quantized to int8 at `path`, atomically; returns `path`.

    blobs: a sequence of 1 x 3 x H x W float32 calibration inputs (calibration.CalibrationBlobs);
    method: one of METHODS; keep_float: SSH convolution paths left in float32; metadata: extra
    string entries for the graph's metadata; progress: called with the number of blobs calibrated,
    0 when calibration starts (after the export) and len(blobs) when it ends (the quantized graph is
    then written and checked). Nothing is written when any step fails.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if method not in METHODS:
        raise ValueError(f"unknown calibration method '{method}' (expected one of {', '.join(METHODS)})")
    if not len(blobs):
        raise ValueError("no calibration images")
    path = Path(path)
    with tempfile.TemporaryDirectory(prefix="ssh-quantize-") as tmp, atomic_path(path) as out:
        float_path = export_onnx(net, Path(tmp) / "float.onnx")
        excluded = conv_nodes(onnx.load(str(float_path)), keep_float)
        with quiet_quantizer():
            quantize_static(str(float_path), str(out), BlobReader(blobs, progress), quant_format=QuantFormat.QDQ,
                            per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=CALIBRATORS[method](CalibrationMethod),
                            nodes_to_exclude=excluded, extra_options={"CalibStridedMinMax": 1})
        model = onnx.load(str(out))
        entries = {PRECISION_KEY: "int8", "ssh.calibration": f"{method}, {len(blobs)} blobs",
                   "ssh.keep_float": " ".join(keep_float), **(metadata or {})}
        for key, value in entries.items():
            model.metadata_props.add(key=key, value=str(value))
        onnx.save(model, str(out))
        check_onnx(out)
    return path
