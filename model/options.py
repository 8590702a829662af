"""The model options that test.py and app.py share (--model, --backend, --device, --precision) and
the combinations of them that cannot run."""
from pathlib import Path

from .precision import PRECISION_CHOICES
from .weights.loading import BACKENDS


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
