"""Detect faces in images or a video with SSH and save each picture with its detections.

    python3 test.py                                   # the demo photo, official weights
    python3 test.py --image a.jpg --image b.png --out output/faces
    python3 test.py --dir photos/ --batch-size 4 --cfg configs/wider_pyramid.yml --device cuda
    python3 test.py --video clip.mp4 --batch-size 4   # annotated video + one detections file per frame
    python3 test.py --export-onnx ssh.onnx            # ONNX graph with dynamic batch, height, width
    python3 test.py --export-onnx-detector det.onnx   # ONNX graph: blob and scale -> detections
    python3 test.py --model ssh.onnx --dir photos/     # an ONNX graph run by ONNX Runtime
    python3 test.py --precision int8                  # data/SSH_models/SSH_int8.onnx (python3 -m model.deploy quantize)
"""
import argparse
import sys
import time
from collections import Counter
from pathlib import Path

import cv2
from tqdm import tqdm

from lib.config import add_config_args, config_from_args, data_layout
from lib.image_io import ImageError, read_image, write_image
from lib.utils.atomic import atomic_folder, atomic_write_text
from lib.utils.cli import first_line, one_line_warnings
from lib.utils.device import parse_device
from lib.video import FrameReader, VideoError, atomic_video, image_files
from lib.visualize import draw_detections, format_detections
from model.detector import batched, build_detector
from model.precision import PRECISIONS
from model.weights.loading import BACKENDS, load_network

ONNX_PACKAGES = "onnx onnxruntime onnxscript"
# Exit code when some images or frames failed and the others were done.
SOME_FAILED = 1


def demo_image():
    """The photo the demo runs on: matplotlib's sample portrait of Grace Hopper (one face)."""
    from matplotlib import cbook

    return Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


def parse_args(argv):
    parser = argparse.ArgumentParser(description="Detect faces with SSH.")
    parser.add_argument("--image", action="append", default=[], type=Path, help="image file (repeatable)")
    parser.add_argument("--dir", type=Path, help="detect in every image of this folder")
    parser.add_argument("--video", type=Path,
                        help="video file or folder of frames: write an annotated video and per-frame detections")
    parser.add_argument("--model", type=Path,
                        help=".caffemodel or .pth weights, or an .onnx graph (default: <DATA_DIR>/SSH_models/"
                             "SSH.caffemodel, SSH_int8.onnx with --precision int8; DATA_DIR being data/)")
    parser.add_argument("--backend", choices=BACKENDS,
                        help="network runtime (default: onnxruntime for .onnx models, else pytorch)")
    parser.add_argument("--export-onnx", type=Path, metavar="PATH",
                        help="write the network of --model as ONNX (dynamic batch, height, width) and exit")
    parser.add_argument("--export-onnx-detector", type=Path, metavar="PATH",
                        help="write the network of --model with the TEST decoding and NMS as one ONNX graph "
                             "(blob and scale -> detections) and exit")
    parser.add_argument("--batch-size", type=int, default=1,
                        help="images per network pass (images of equal blob size are batched)")
    parser.add_argument("--thresh", type=float, default=0.5, help="score threshold to draw and save")
    parser.add_argument("--out", type=Path, default=Path("output/detections"), help="output folder")
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when available, else cpu; cpu for int8)")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="number format of the network: bf16 (fast on CPUs with AVX-512 bf16) and fp16 "
                             "(fast on CUDA) run the PyTorch network; int8 runs an int8 .onnx model on the CPU")
    add_config_args(parser)
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error("--batch-size must be at least 1")
    exporting = args.export_onnx or args.export_onnx_detector
    if exporting and (args.backend == "onnxruntime" or args.precision != "fp32"):
        parser.error("--export-onnx and --export-onnx-detector write fp32 graphs of pytorch weights "
                     "(int8 graphs: python3 -m model.deploy quantize)")
    if args.backend == "pytorch" and args.precision == "int8":
        parser.error("int8 runs an int8 .onnx model with the onnxruntime backend")
    if args.backend == "onnxruntime" and args.precision in ("bf16", "fp16"):
        parser.error(f"{args.precision} runs the pytorch backend; ONNX graphs run in their own precision")
    if args.video is not None and (args.image or args.dir):
        parser.error("--video cannot be combined with --image or --dir")
    return args


def image_list(args):
    """Images named by --image and --dir (each file once), or the demo photo."""
    images = list(args.image)
    if args.dir is not None:
        if not args.dir.is_dir():
            raise ImageError(f"--dir {args.dir} is not a folder")
        images += image_files(args.dir)
    return list(dict.fromkeys(images)) or [demo_image()]


def output_stems(paths):
    """Output name stem of each input path, unique in the run (case-insensitively).

    An image keeps its stem unless another input has the same one (a.jpg and a.png give a_jpg and
    a_png); names that still collide (one name in two folders) get _2, _3, ... in input order.
    """
    shared = Counter(p.stem.casefold() for p in paths)
    stems = [f"{p.stem}_{p.suffix.lstrip('.')}" if shared[p.stem.casefold()] > 1 else p.stem for p in paths]
    seen = Counter()
    unique = []
    for stem in stems:
        seen[stem.casefold()] += 1
        unique.append(stem if seen[stem.casefold()] == 1 else f"{stem}_{seen[stem.casefold()]}")
    return unique


def export(args):
    """Write the network of --model to --export-onnx."""
    from model.deploy.onnx_export import export_onnx

    path = export_onnx(load_network(args.model), args.export_onnx)
    print(f"{args.model} -> {path} (ONNX, dynamic batch x 3 x height x width)")


def export_detector(args, cfg):
    """Write the network of --model with the TEST decoding and NMS of `cfg` to --export-onnx-detector."""
    from model.deploy.onnx_detector import export_onnx_detector

    path = export_onnx_detector(load_network(args.model), args.export_onnx_detector, cfg.TEST)
    print(f"{args.model} -> {path} (ONNX, 1 x 3 x height x width blob and scale -> N x 5 detections)")


def detect_each(detector, items, batch_size, failed):
    """(key, image, detections) for each (key, image) of `items`, `batch_size` images per network pass.

    A batch whose detection fails (e.g. out of GPU memory on a huge image) is reported, added to
    `failed` as (key, message) and skipped, so the other items still get their results.
    """
    for batch in batched(items, batch_size):
        try:
            results = detector.detect([image for _, image in batch])
        except (RuntimeError, ValueError) as e:
            for key, _ in batch:
                report_failure(failed, key, f"detection failed: {first_line(e)}")
            continue
        for (key, image), dets in zip(batch, results):
            yield key, image, dets


def report_failure(failed, key, message):
    """Warn about `key` now and keep it for the summary."""
    print(f"warning: {message}; skipped", file=sys.stderr)
    failed.append((key, message))


def summarize(failed, done, total, what):
    """Print what failed; the exit code: 0, or SOME_FAILED when anything did."""
    if not failed:
        return 0
    print(f"error: {done} of {total} {what} done, these failed:", file=sys.stderr)
    for _, message in failed:
        print(f"  {message}", file=sys.stderr)
    return SOME_FAILED


def detect_images(args, detector):
    """Pictures with boxes and detection text files for the images of --image / --dir.

    An image that cannot be read or detected is reported and skipped; the others are done.
    Returns the exit code.
    """
    paths = image_list(args)
    failed = []

    def readable():
        for path, stem in zip(paths, output_stems(paths)):
            try:
                yield (path, stem), read_image(path)
            except ImageError as e:
                report_failure(failed, (path, stem), str(e))

    start = last = time.perf_counter()
    done = 0
    for (path, stem), image, dets in detect_each(detector, readable(), args.batch_size, failed):
        dets = dets[dets[:, 4] >= args.thresh]
        picture = args.out / f"{stem}_ssh.jpg"
        write_image(picture, draw_detections(image, dets, args.thresh))
        atomic_write_text(args.out / f"{stem}_ssh.txt", format_detections(dets))
        now = time.perf_counter()
        timing = f" in {now - last:.2f} s" if args.batch_size == 1 else ""
        print(f"{path}: {len(dets)} faces (score >= {args.thresh}){timing} -> {picture}")
        last = now
        done += 1
    seconds = time.perf_counter() - start
    print(f"{done} of {len(paths)} images in {seconds:.2f} s ({done / seconds:.2f} images/s, "
          f"batch size {args.batch_size})")
    return summarize(failed, done, len(paths), "images")


def fit_frame(frame, size, index):
    """`frame` resized to the video's (height, width) `size` when it differs (frames of a folder
    may differ in size; a video has one), with a warning naming the frame."""
    if size is None or frame.shape[:2] == size:
        return frame
    print(f"warning: frame {index} is {frame.shape[1]} x {frame.shape[0]}, the video {size[1]} x {size[0]}: "
          "resized for the video (its detections are in its own pixels)", file=sys.stderr)
    return cv2.resize(frame, size[::-1], interpolation=cv2.INTER_AREA)


def detect_video(args, detector):
    """<out>/<name>_ssh.mp4 with boxes drawn and <out>/<name>_ssh/<frame index>.txt detections.

    Frames that cannot be decoded or detected are reported and skipped (no text file, not in the
    video); both outputs are written atomically when the run ends. Returns the exit code.
    """
    name = f"{args.video.stem}_ssh"
    failed = []
    with FrameReader(args.video) as frames, atomic_folder(args.out / name) as texts, \
            atomic_video(args.out / f"{name}.mp4", frames.fps) as video:
        stream = detect_each(detector, iter(frames), args.batch_size, failed)
        count = 0
        for index, frame, dets in tqdm(stream, total=frames.count or None, unit="frame", desc=args.video.name):
            dets = dets[dets[:, 4] >= args.thresh]
            video.write(draw_detections(fit_frame(frame, video.size, index), dets, args.thresh))
            (texts / f"{index:06d}.txt").write_text(format_detections(dets))
            count += 1
        failed += frames.failed
        if count == 0:
            raise VideoError(f"{args.video}: no frame could be decoded and detected")
    print(f"{args.video}: {count} frames -> {args.out / name}.mp4, {args.out / name}/")
    return summarize(failed, count, max(frames.count, count + len(failed)), "frames")


def main(argv=None):
    one_line_warnings()
    args = parse_args(argv)
    try:
        cfg = config_from_args(args)
        official = args.model is None
        layout = data_layout(cfg.DATA_DIR)
        args.model = args.model or (layout.ssh_int8_model if args.precision == "int8" else layout.ssh_model)
        device = parse_device(args.device or ("cpu" if args.precision == "int8" else None))
        if args.export_onnx:
            export(args)
            return 0
        if args.export_onnx_detector:
            export_detector(args, cfg)
            return 0
        detector = build_detector(args.model, cfg, device, args.precision, backend=args.backend)
        return detect_video(args, detector) if args.video is not None else detect_images(args, detector)
    except FileNotFoundError as e:
        hint = ("" if not official else " Write it with `python3 -m model.deploy quantize`." if args.precision == "int8"
                else " Run `make demo` to download the official model.")
        print(f"error: {e}.{hint}", file=sys.stderr)
        return 2
    except ImportError as e:
        print(f"error: {e.name or e} is missing; ONNX export and inference need `pip install {ONNX_PACKAGES}`.",
              file=sys.stderr)
        return 2
    except (ValueError, KeyError, ImageError, VideoError) as e:
        print(f"error: {e.args[0] if e.args else e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"error: cannot write {e.filename or args.out}: {e.strerror}.", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
