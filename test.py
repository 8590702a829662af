"""Detect faces in images or a video with SSH and save each picture with its detections.

    python3 test.py                                   # the demo photo, official weights
    python3 test.py --image a.jpg --image b.png --out output/faces
    python3 test.py --dir photos/ --batch-size 4 --cfg configs/wider_pyramid.yml --device cuda
    python3 test.py --video clip.mp4 --batch-size 4   # annotated video + one detections file per frame
    python3 test.py --export-onnx ssh.onnx            # ONNX graph with dynamic batch, height, width
    python3 test.py --export-onnx-detector det.onnx   # ONNX graph: blob and scale -> detections
    python3 test.py --backend onnxruntime --model ssh.onnx --dir photos/
"""
import argparse
import sys
import time
from pathlib import Path

from tqdm import tqdm

from lib.config import add_config_args, config_from_args
from lib.image_io import ImageError, read_image, write_image
from lib.utils.atomic import atomic_folder, atomic_write_text
from lib.video import FrameReader, VideoError, atomic_video, image_files
from lib.visualize import draw_detections, format_detections
from model.detector import BACKENDS, as_bgr, build_detector, default_device, load_network

DEFAULT_MODEL = "data/SSH_models/SSH.caffemodel"
ONNX_PACKAGES = "onnx onnxruntime onnxscript"


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
    parser.add_argument("--model", type=Path, default=Path(DEFAULT_MODEL),
                        help=f".caffemodel or .pth weights, or .onnx with --backend onnxruntime (default: {DEFAULT_MODEL})")
    parser.add_argument("--backend", choices=BACKENDS, default="pytorch", help="network runtime")
    parser.add_argument("--export-onnx", type=Path, metavar="PATH",
                        help="write the network of --model as ONNX (dynamic batch, height, width) and exit")
    parser.add_argument("--export-onnx-detector", type=Path, metavar="PATH",
                        help="write the network of --model with the TEST decoding and NMS as one ONNX graph "
                             "(blob and scale -> detections) and exit")
    parser.add_argument("--batch-size", type=int, default=1,
                        help="images per network pass (images of equal blob size are batched)")
    parser.add_argument("--thresh", type=float, default=0.5, help="score threshold to draw and save")
    parser.add_argument("--out", type=Path, default=Path("output/detections"), help="output folder")
    parser.add_argument("--device", default=default_device(), help="cpu, cuda or cuda:N")
    parser.add_argument("--fast", action="store_true",
                        help="reduced precision: bf16 on CPU, fp16 on CUDA")
    add_config_args(parser)
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error("--batch-size must be at least 1")
    if args.backend != "pytorch" and (args.fast or args.export_onnx or args.export_onnx_detector):
        parser.error("--fast, --export-onnx and --export-onnx-detector need the pytorch backend")
    if args.video is not None and (args.image or args.dir):
        parser.error("--video cannot be combined with --image or --dir")
    return args


def image_list(args):
    """Images named by --image and --dir, or the demo photo."""
    images = list(args.image)
    if args.dir is not None:
        if not args.dir.is_dir():
            raise ImageError(f"--dir {args.dir} is not a folder")
        images += image_files(args.dir)
    return images or [demo_image()]


def export(args):
    """Write the network of --model to --export-onnx."""
    from model.onnx_export import export_onnx

    path = export_onnx(load_network(args.model), args.export_onnx)
    print(f"{args.model} -> {path} (ONNX, dynamic batch x 3 x height x width)")


def export_detector(args, cfg):
    """Write the network of --model with the TEST decoding and NMS of `cfg` to --export-onnx-detector."""
    from model.onnx_detector import export_onnx_detector

    path = export_onnx_detector(load_network(args.model), args.export_onnx_detector, cfg.TEST)
    print(f"{args.model} -> {path} (ONNX, 1 x 3 x height x width blob and scale -> N x 5 detections)")


def detect_images(args, detector):
    """Pictures with boxes and detection text files for the images of --image / --dir."""
    paths = image_list(args)
    start = last = time.perf_counter()
    stream = detector.detect_stream((read_image(p) for p in paths), args.batch_size)
    for path, (image, dets) in zip(paths, stream):
        dets = dets[dets[:, 4] >= args.thresh]
        picture = args.out / f"{path.stem}_ssh.jpg"
        write_image(picture, draw_detections(as_bgr(image), dets, args.thresh))
        atomic_write_text(args.out / f"{path.stem}_ssh.txt", format_detections(dets))
        now = time.perf_counter()
        print(f"{path}: {len(dets)} faces (score >= {args.thresh}) in {now - last:.2f} s -> {picture}")
        last = now
    seconds = time.perf_counter() - start
    print(f"{len(paths)} images in {seconds:.2f} s ({len(paths) / seconds:.2f} images/s, batch size {args.batch_size})")


def detect_video(args, detector):
    """<out>/<name>_ssh.mp4 with boxes drawn and <out>/<name>_ssh/<frame>.txt detections, written
    only when every frame was read and detected."""
    name = f"{args.video.stem}_ssh"
    with FrameReader(args.video) as frames, atomic_folder(args.out / name) as texts, \
            atomic_video(args.out / f"{name}.mp4", frames.fps) as video:
        progress = tqdm(detector.detect_stream(frames, args.batch_size), total=frames.count or None,
                        unit="frame", desc=args.video.name)
        count = 0
        for frame, dets in progress:
            dets = dets[dets[:, 4] >= args.thresh]
            video.write(draw_detections(as_bgr(frame), dets, args.thresh))
            (texts / f"{count:06d}.txt").write_text(format_detections(dets))
            count += 1
    print(f"{args.video}: {count} frames -> {args.out / name}.mp4, {args.out / name}/")


def main(argv=None):
    args = parse_args(argv)
    cfg = config_from_args(args)
    try:
        if args.export_onnx:
            export(args)
            return 0
        if args.export_onnx_detector:
            export_detector(args, cfg)
            return 0
        detector = build_detector(args.model, cfg, args.device, args.fast, backend=args.backend)
        if args.video is not None:
            detect_video(args, detector)
        else:
            detect_images(args, detector)
    except FileNotFoundError as e:
        hint = " Run `make demo` to download the official model." if args.model == Path(DEFAULT_MODEL) else ""
        print(f"error: {e}.{hint}", file=sys.stderr)
        return 2
    except ImportError as e:
        print(f"error: {e.name or e} is missing; ONNX export and inference need `pip install {ONNX_PACKAGES}`.",
              file=sys.stderr)
        return 2
    except (ValueError, ImageError, VideoError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"error: cannot write {e.filename or args.out}: {e.strerror}.", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
