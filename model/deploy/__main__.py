"""`python3 -m model.deploy quantize|compare`: an int8 model of SSH weights, and how far reduced-precision
detection is from fp32 (docs/inference.md §5.5).

    python3 -m model.deploy quantize        # data/SSH_models/SSH.caffemodel -> data/SSH_models/SSH_int8.onnx
    python3 -m model.deploy quantize --model out/ssh_iter_21000.pth --calib-dir photos/ --check-dir val/
    python3 -m model.deploy compare --int8 data/SSH_models/SSH_int8.onnx --check-dir val/
"""
import argparse
import errno
import shlex
import sys
import tempfile
import time
from pathlib import Path

from tqdm import tqdm

from lib.config import add_config_args, config_from_args, data_layout
from lib.utils.cli import ArgumentParser, first_line, one_line_warnings
from lib.utils.exit_codes import ExitCode
from lib.utils.integrity import write_record
from model.detector import Detector
from model.options import ONNX_PACKAGES
from model.precision import PRECISIONS
from model.weights.loading import load_network

from .agreement import HEAD_NAMES, IOU, SCORE, detection_agreement, head_errors
from .calibration import DEFAULT_COUNT, CalibrationBlobs, load_images
from .quantize import DEFAULT_METHOD, KEEP_FLOAT, METHODS, SOURCE_KEY, int8_path, quantize_network, source_entry

def parse_args(argv):
    parser = ArgumentParser(prog="python3 -m model.deploy", description=__doc__,
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
    if args.command == "compare" and args.check_dir is None:
        parser.error("compare needs --check-dir, the folder of images to compare on")
    return args


def check_output(path):
    """`path` when the int8 model can be written there: an .onnx name, not a folder, in a folder that
    exists or can be made and where a file can be created (tried with a temporary file, so a read-only
    disk or a missing permission shows too). Raises ValueError or OSError naming `path` otherwise."""
    path = Path(path)
    if path.suffix != ".onnx":
        raise ValueError(f"--out {path}: the int8 model is an ONNX graph, give it a name ending in .onnx")
    if path.is_dir():
        raise OSError(errno.EISDIR, "it is a folder", str(path))
    folder = path.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise OSError(errno.ENOTDIR, f"{folder} is a file, not a folder", str(path))
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise OSError(e.errno, f"{e.strerror} (in {folder})", str(path)) from None
    return path


def calibration_dir(args, cfg):
    """--calib-dir, or WIDER train of DATA_DIR (FileNotFoundError when absent)."""
    calib_dir = args.calib_dir or data_layout(cfg.DATA_DIR).wider / "WIDER_train" / "images"
    if args.calib_dir is None and not calib_dir.is_dir():
        raise FileNotFoundError(f"calibration folder {calib_dir} (WIDER train) not found; pass --calib-dir "
                                "with a few dozen images like those you will detect on")
    return calib_dir


def int8_detector(path, cfg, option="--int8"):
    """The int8 Detector of the graph at `path`, after checking that it is an .onnx file that matches
    its integrity record and that ONNX Runtime loads as an SSH graph with int8 metadata."""
    path = Path(path)
    if path.suffix != ".onnx":
        raise ValueError(f"{option} {path}: not an .onnx file; make the int8 model with `python3 -m model.deploy "
                         "quantize`")
    net = load_network(path, "onnxruntime")
    if net.precision != "int8":
        raise ValueError(f"{option} {path} is an {net.precision} graph, not an int8 one: make the int8 model with "
                         "`python3 -m model.deploy quantize`")
    return Detector.from_config(net, cfg, "cpu", "int8")


def remake_command(args, calib_dir, out):
    """The `python3 -m model.deploy quantize` command that writes the same int8 model again: every
    option that shapes it (weights, calibration images and count, method, float layers, config)."""
    words = ["python3", "-m", "model.deploy", "quantize", "--model", str(args.model), "--calib-dir", str(calib_dir),
             "--images", str(args.images), "--method", args.method, "--keep-float", *args.keep_float]
    for path in args.cfg:
        words += ["--cfg", str(path)]
    for key, value in args.set:
        words += ["--set", key, value]
    return shlex.join([*words, "--out", str(out)])


def quantize(args, net, reference, out, calib_dir, images):
    """Calibrate on `images` (of `calib_dir`) and write the int8 model at `out`, with a progress bar
    on stderr; returns `out`."""
    blobs = CalibrationBlobs(images, reference)
    start = time.perf_counter()
    with tqdm(total=len(images), desc="int8 calibration", unit="image", file=sys.stderr, dynamic_ncols=True) as bar:
        bar.set_postfix_str("exporting the network to ONNX")

        def progress(blobs_done):
            if blobs_done == 0:
                bar.reset()  # the rate and ETA count calibration only
                bar.set_postfix_str("")
            bar.update(blobs.images_done(blobs_done) - bar.n)
            if blobs_done == len(blobs):
                bar.set_postfix_str("quantizing and checking the graph")

        quantize_network(net, out, blobs, args.method, args.keep_float, progress=progress,
                         metadata={SOURCE_KEY: source_entry(args.model)})
        bar.set_postfix_str("done")
    write_record(out, verified_by="ONNX checker after quantization (python3 -m model.deploy quantize)",
                 remake=remake_command(args, calib_dir, out))
    print(f"{args.model} -> {out} (int8, {out.stat().st_size / 2**20:.1f} MB; {args.method} ranges of "
          f"{len(blobs)} blobs of {len(images)} images of {calib_dir}, {time.perf_counter() - start:.0f} s)")
    return out


def compare(args, cfg, reference, images, others):
    """Print the head errors and detection agreement of each reduced-precision Detector of `others`
    ({precision: Detector}) against fp32 on the check `images`, with progress bars on stderr."""
    blobs = CalibrationBlobs(images, reference)
    print(f"check: {len(images)} images of {args.check_dir} ({len(blobs)} blobs, TEST.SCALES {list(cfg.TEST.SCALES)}, "
          f"MAX_SIZE {cfg.TEST.MAX_SIZE}); detections at score >= {args.score} matched at IoU >= {IOU}", flush=True)
    print(f"{'precision':<9} " + " ".join(f"{h:>8}" for h in HEAD_NAMES)
          + f" {'fp32 dets':>9} {'dets':>6} {'precision':>9} {'recall':>7}", flush=True)
    bar = {"file": sys.stderr, "leave": False, "dynamic_ncols": True}
    for precision, other in others.items():
        errors = head_errors(reference, other, tqdm(blobs, desc=f"{precision} heads", unit="blob", **bar))
        agree = detection_agreement(reference, other, tqdm(images, desc=f"{precision} detections", unit="image", **bar),
                                    args.score)
        print(f"{precision:<9} " + " ".join(f"{errors[h]:>8.2e}" for h in HEAD_NAMES)
              + f" {agree.reference:>9} {agree.detections:>6} {agree.precision:>9.4f} {agree.recall:>7.4f}", flush=True)


def main(argv=None):
    one_line_warnings()
    args = parse_args(argv)
    official = args.model is None
    try:
        cfg = config_from_args(args)
        args.model = args.model or data_layout(cfg.DATA_DIR).ssh_model
        net = load_network(args.model, "pytorch")
        reference = Detector.from_config(net, cfg, "cpu")
        # Every file and folder is checked here, before calibration and detection take their minutes.
        others = {p: Detector.from_config(net, cfg, "cpu", p) for p in args.precisions if p != "int8"}
        if args.command == "quantize":
            out = check_output(args.out or int8_path(args.model))
            calib_dir = calibration_dir(args, cfg)
            calib_images = load_images(calib_dir, args.images)
        elif args.int8 is not None and "int8" in args.precisions:
            others["int8"] = int8_detector(args.int8, cfg)
        check_images = load_images(args.check_dir, args.check_images, "check") if args.check_dir else None
        if args.command == "quantize":
            int8 = quantize(args, net, reference, out, calib_dir, calib_images)
            if check_images is not None and "int8" in args.precisions:
                others["int8"] = int8_detector(int8, cfg, "--out")
        if check_images is not None:
            compare(args, cfg, reference, check_images, {p: others[p] for p in args.precisions if p in others})
        return ExitCode.OK
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
    return ExitCode.BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
