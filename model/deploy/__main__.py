"""`python3 -m model.deploy quantize|compare`: an int8 model of SSH weights, and how far reduced-precision
detection is from fp32 (docs/inference.md §5.5).

    python3 -m model.deploy quantize        # data/SSH_models/SSH.caffemodel -> data/SSH_models/SSH_int8.onnx
    python3 -m model.deploy quantize --model out/ssh_iter_21000.pth --calib-dir photos/ --check-dir val/
    python3 -m model.deploy compare --int8 data/SSH_models/SSH_int8.onnx --check-dir val/
"""
import argparse
import sys
import time
from pathlib import Path

from lib.config import add_config_args, config_from_args, data_layout
from lib.utils.cli import first_line, one_line_warnings
from lib.utils.download import sha256_file
from lib.utils.integrity import write_record
from model.detector import Detector
from model.precision import PRECISIONS
from model.weights.loading import load_network

from .agreement import HEAD_NAMES, IOU, SCORE, detection_agreement, head_errors
from .calibration import DEFAULT_COUNT, CalibrationBlobs, pick_images, read_images
from .onnx_runtime import OnnxSSH
from .quantize import DEFAULT_METHOD, KEEP_FLOAT, METHODS, quantize_network

ONNX_PACKAGES = "onnx onnxruntime onnxscript"


def int8_path(model):
    """Where the int8 model of the weights at `model` goes by default: beside them, <stem>_int8.onnx."""
    model = Path(model)
    return model.with_name(f"{model.stem}_int8.onnx")


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python3 -m model.deploy", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    quantize = commands.add_parser("quantize", help="calibrate and write an int8 ONNX model")
    compare = commands.add_parser("compare", help="head error and detection agreement against fp32")
    for sub in (quantize, compare):
        sub.add_argument("--model", type=Path, help=".caffemodel or .pth weights "
                         "(default: <DATA_DIR>/SSH_models/SSH.caffemodel)")
        sub.add_argument("--check-dir", type=Path, help="compare against fp32 on images of this folder")
        sub.add_argument("--check-images", type=int, default=DEFAULT_COUNT, help="at most this many check images")
        sub.add_argument("--score", type=float, default=SCORE,
                         help="detections at or above this score are matched (default: the demo's 0.5)")
        sub.add_argument("--precisions", nargs="+", choices=[p for p in PRECISIONS if p != "fp32"],
                         default=["bf16", "int8"],
                         help="reduced precisions to compare with fp32 (fp16 is for CUDA: on CPUs without fp16 "
                              "units it runs slower than fp32)")
        add_config_args(sub)
    quantize.add_argument("--calib-dir", type=Path, help="calibration images, searched recursively "
                          "(default: <DATA_DIR>/datasets/wider/WIDER_train/images)")
    quantize.add_argument("--images", type=int, default=DEFAULT_COUNT, help="calibration images to use")
    quantize.add_argument("--method", choices=METHODS, default=DEFAULT_METHOD, help="activation-range estimator")
    quantize.add_argument("--keep-float", nargs="*", default=list(KEEP_FLOAT), metavar="MODULE",
                          help="SSH convolutions left in float32, e.g. m1.cls_score")
    quantize.add_argument("--out", type=Path, help="int8 model to write (default: <model stem>_int8.onnx beside it)")
    compare.add_argument("--int8", type=Path, help="int8 model of --model to compare too")
    args = parser.parse_args(argv)
    for name in ("check_images", "images"):
        if getattr(args, name, 1) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def quantize(args, cfg, net, reference):
    """Calibrate on --calib-dir and write the int8 model; returns its path."""
    out = args.out or int8_path(args.model)
    calib_dir = args.calib_dir or data_layout(cfg.DATA_DIR).wider / "WIDER_train" / "images"
    if args.calib_dir is None and not calib_dir.is_dir():
        raise FileNotFoundError(f"calibration folder {calib_dir} (WIDER train) not found; pass --calib-dir "
                                "with a few dozen images like those you will detect on")
    images = read_images(pick_images(calib_dir, args.images))
    blobs = CalibrationBlobs(images, reference)
    start = time.perf_counter()
    quantize_network(net, out, blobs, args.method, args.keep_float,
                     metadata={"ssh.source": f"{args.model.name} sha256:{sha256_file(args.model)}"})
    write_record(out, verified_by="ONNX checker after quantization (python3 -m model.deploy quantize)",
                 remake=f"python3 -m model.deploy quantize --model {args.model} --calib-dir {calib_dir} --out {out}")
    print(f"{args.model} -> {out} (int8, {out.stat().st_size / 2**20:.1f} MB; {args.method} ranges of "
          f"{len(blobs)} blobs of {len(images)} images of {calib_dir}, {time.perf_counter() - start:.0f} s)")
    return out


def compare(args, cfg, net, reference, int8):
    """Print the head errors and detection agreement of each reduced precision against fp32."""
    images = read_images(pick_images(args.check_dir, args.check_images, "check"), "check")
    blobs = CalibrationBlobs(images, reference)
    print(f"check: {len(images)} images of {args.check_dir} ({len(blobs)} blobs, TEST.SCALES {list(cfg.TEST.SCALES)}, "
          f"MAX_SIZE {cfg.TEST.MAX_SIZE}); detections at score >= {args.score} matched at IoU >= {IOU}")
    print(f"{'precision':<9} " + " ".join(f"{h:>8}" for h in HEAD_NAMES)
          + f" {'fp32 dets':>9} {'dets':>6} {'precision':>9} {'recall':>7}")
    for precision in args.precisions:
        if precision == "int8" and int8 is None:
            continue
        other_net = OnnxSSH.from_file(int8) if precision == "int8" else net
        other = Detector.from_config(other_net, cfg, "cpu", precision)
        errors = head_errors(reference, other, blobs)
        agree = detection_agreement(reference, other, images, args.score)
        print(f"{precision:<9} " + " ".join(f"{errors[h]:>8.2e}" for h in HEAD_NAMES)
              + f" {agree.reference:>9} {agree.detections:>6} {agree.precision:>9.4f} {agree.recall:>7.4f}")


def main(argv=None):
    one_line_warnings()
    args = parse_args(argv)
    official = args.model is None
    try:
        cfg = config_from_args(args)
        args.model = args.model or data_layout(cfg.DATA_DIR).ssh_model
        net = load_network(args.model, "pytorch")
        reference = Detector.from_config(net, cfg, "cpu")
        int8 = quantize(args, cfg, net, reference) if args.command == "quantize" else args.int8
        if args.check_dir is not None:
            compare(args, cfg, net, reference, int8)
        return 0
    except FileNotFoundError as e:
        hint = " Fetch it with `make fetch-models`." if official and not args.model.is_file() else ""
        print(f"error: {e}.{hint}", file=sys.stderr)
    except ImportError as e:
        print(f"error: {e.name or e} is missing; int8 quantization needs `pip install {ONNX_PACKAGES}`.",
              file=sys.stderr)
    except ValueError as e:
        print(f"error: {first_line(e)}", file=sys.stderr)
    except OSError as e:
        print(f"error: cannot write {e.filename}: {e.strerror}.", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
