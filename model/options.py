"""The model options that test.py and app.py share (--model, --backend, --device, --precision), the
combinations of them that cannot run, and the messages of a model that cannot load."""
from pathlib import Path

from lib.utils.cli import error_text

from .precision import PRECISION_CHOICES
from .weights.loading import BACKENDS

# What ONNX export and ONNX models need beyond the PyTorch requirements.
ONNX_PACKAGES = "onnx onnxruntime onnxscript"


def add_model_args(parser):
    """Add the "model" option group to `parser`; returns it, for a script's own model options."""
    model = parser.add_argument_group("model")
    model.add_argument("--model", type=Path,
                       help=".caffemodel or .pth weights, or an .onnx graph (default: <DATA_DIR>/SSH_models/"
                            "SSH.caffemodel, SSH_int8.onnx with --precision int8; DATA_DIR being data/)")
    model.add_argument("--backend", choices=BACKENDS,
                       help="network runtime (default: onnxruntime for .onnx models, else pytorch)")
    model.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when available, else cpu; cpu for int8)")
    model.add_argument("--precision", choices=PRECISION_CHOICES, default="fp32",
                       help="number format of the network: bf16 (fast on CPUs with AVX-512 bf16 or AMX) and fp16 "
                            "(fast on CUDA) run the PyTorch network; int8 runs an int8 .onnx model on the CPU; auto "
                            "picks the fastest that runs natively here and says which (default fp32: the official "
                            "numbers on every machine)")
    return model


def check_model_args(parser, args):
    """parser.error (exit 2, one line) for a backend and precision that do not go together."""
    if args.backend == "pytorch" and args.precision == "int8":
        parser.error("int8 runs an int8 .onnx model with the onnxruntime backend")
    if args.backend == "onnxruntime" and args.precision in ("bf16", "fp16"):
        parser.error(f"{args.precision} runs the pytorch backend; ONNX graphs run in their own precision")


def model_error_text(error, precision, official):
    """The `error:` line's text for `error` of loading the model: a missing package says what to install; a
    missing file of the official model (`official`: no --model given) how to get it; else lib.utils.cli.error_text."""
    if isinstance(error, ImportError):
        return f"{error.name or error} is missing; ONNX export and inference need `pip install {ONNX_PACKAGES}`."
    if not isinstance(error, FileNotFoundError):
        return error_text(error)
    hint = ("" if not official else " Write it with `python3 -m model.deploy quantize`." if precision == "int8"
            else " Run `make demo` to download the official model.")
    return f"{error_text(error)}.{hint}"
