"""Detect faces in images with SSH and save each picture with its detections.

    python3 test.py                                   # the demo photo, official weights
    python3 test.py --image a.jpg --image b.png --out output/faces
    python3 test.py --dir photos/ --cfg configs/wider_pyramid.yml --device cuda
"""
import argparse
import sys
import time
from pathlib import Path

from lib.config import add_config_args, config_from_args
from lib.image_io import ImageError, read_image, write_image
from lib.utils.atomic import atomic_write_text
from lib.visualize import draw_detections, format_detections
from model.detector import as_bgr, build_detector, default_device

DEFAULT_MODEL = "data/SSH_models/SSH.caffemodel"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def demo_image():
    """The photo the demo runs on: matplotlib's sample portrait of Grace Hopper (one face)."""
    from matplotlib import cbook

    return Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


def parse_args(argv):
    parser = argparse.ArgumentParser(description="Detect faces with SSH.")
    parser.add_argument("--image", action="append", default=[], type=Path, help="image file (repeatable)")
    parser.add_argument("--dir", type=Path, help="detect in every image of this folder")
    parser.add_argument("--model", type=Path, default=Path(DEFAULT_MODEL),
                        help=f".caffemodel or .pth weights (default: {DEFAULT_MODEL})")
    parser.add_argument("--thresh", type=float, default=0.5, help="score threshold to draw and save")
    parser.add_argument("--out", type=Path, default=Path("output/detections"), help="output folder")
    parser.add_argument("--device", default=default_device(), help="cpu, cuda or cuda:N")
    parser.add_argument("--fast", action="store_true",
                        help="reduced precision (bf16 on CPU, fp16 on CUDA) with channels_last")
    add_config_args(parser)
    return parser.parse_args(argv)


def image_list(args):
    """Images named by --image and --dir, or the demo photo."""
    images = list(args.image)
    if args.dir is not None:
        if not args.dir.is_dir():
            raise ImageError(f"--dir {args.dir} is not a folder")
        images += sorted(p for p in args.dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    return images or [demo_image()]


def main(argv=None):
    args = parse_args(argv)
    cfg = config_from_args(args)
    try:
        images = image_list(args)
        detector = build_detector(args.model, cfg, args.device, args.fast)
    except FileNotFoundError as e:
        hint = " Run `make demo` to download the official model." if args.model == Path(DEFAULT_MODEL) else ""
        print(f"error: {e}.{hint}", file=sys.stderr)
        return 2
    except (ValueError, ImageError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for path in images:
        try:
            image = read_image(path)
        except ImageError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        start = time.perf_counter()
        dets = detector.detect(image)
        seconds = time.perf_counter() - start
        dets = dets[dets[:, 4] >= args.thresh]
        picture = args.out / f"{path.stem}_ssh.jpg"
        write_image(picture, draw_detections(as_bgr(image), dets, args.thresh))
        atomic_write_text(args.out / f"{path.stem}_ssh.txt", format_detections(dets))
        print(f"{path}: {len(dets)} faces (score >= {args.thresh}) in {seconds:.2f} s -> {picture}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
