"""Detect faces in images, folders, videos, cameras or streams with SSH; save pictures, texts, JSON,
crops, WIDER prediction files or anonymised media.

    python3 test.py                                   # the demo photo, official weights
    python3 test.py --image a.jpg --image b.png --out output/faces
    python3 test.py --dir photos/ --batch-size 4 --cfg configs/wider_pyramid.yml --device cuda
    python3 test.py --dir photos/ --save-json --save-crops --crop-margin 0.2 --save-wider
    python3 test.py --dir photos/ --anonymize blur    # <name>_anonymized.<ext>, originals untouched
    python3 test.py --video clip.mp4 --anonymize pixelate --hold 5
    python3 test.py --video 0 --every 3 --max-frames 300 --show      # a webcam; rtsp:// or http:// URLs too
    python3 test.py --export-onnx ssh.onnx            # ONNX graph with dynamic batch, height, width
    python3 test.py --export-onnx-detector det.onnx   # ONNX graph: blob and scale -> detections
    python3 test.py --model ssh.onnx --dir photos/     # an ONNX graph run by ONNX Runtime
    python3 test.py --precision int8                  # data/SSH_models/SSH_int8.onnx (python3 -m model.deploy quantize)

Options are hyphenated; their underscore spellings (--batch_size) still work. Errors end with one `error:`
line and exit code 2; exit code 1 when some images or frames failed and the others were done, 4 when
another process of a torchrun job failed, 130 when Ctrl-C or SIGTERM stopped a run over files
(lib/utils/exit_codes.py).
"""
import sys
from contextlib import nullcontext
from pathlib import Path

import torch

from lib.anonymize import DEFAULT_HOLD, DEFAULT_SCALE, DEFAULT_SHAPE, METHODS, SHAPES
from lib.config import add_config_args, config_from_args, data_layout
from lib.detection_job import DetectionJob
from lib import sources
from lib.detection_run import PrintedLines, default_workers, run_items, run_video
from lib.image_io import DEFAULT_MAX_PIXELS, ImageError, image_size
from lib.outputs import DetectionsJson
from lib.run_settings import check_settings
from lib.sinks import OutputOptions, image_sinks
from lib.utils.atomic import check_writable
from lib.utils.cli import (ArgumentParser, error_text, int_at_least, number_at_least, one_line_warnings,
                           positive_number, positive_seconds, probability, sigterm_as_ctrl_c)
from lib.utils.distributed import PeerFailure
from lib.utils.exit_codes import ExitCode
from lib.video import VideoError, check_display, parse_source
from model.detector import build_detector
from model.options import add_model_args, check_model_args, model_error_text
from model.precision import resolve_precision, warn_if_emulated
from model.weights.loading import load_network


def demo_image():
    """The photo the demo runs on: matplotlib's sample portrait of Grace Hopper (one face)."""
    from matplotlib import cbook

    return Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


def parse_args(argv):
    parser = ArgumentParser(description="Detect faces with SSH.")
    inputs = parser.add_argument_group("inputs")
    inputs.add_argument("--image", action="append", default=[], type=Path, help="image file (repeatable)")
    inputs.add_argument("--dir", type=Path, help="detect in every image of this folder and its subfolders")
    inputs.add_argument("--video", type=parse_source, metavar="SOURCE",
                        help="video file, folder of frames, camera index (0, 1, ...) or stream URL (rtsp://, http://)")
    inputs.add_argument("--every", type=int_at_least(1), default=1, metavar="N",
                        help="video: detect on every Nth frame, the frames between reuse its boxes and masks")
    inputs.add_argument("--max-frames", type=int_at_least(1), metavar="N", help="video: stop after N frames")
    inputs.add_argument("--max-pixels", type=int_at_least(0), default=DEFAULT_MAX_PIXELS, metavar="N",
                        help=f"refuse images of more than N pixels from their header, before decoding (a guard "
                             f"against decompression bombs; default {DEFAULT_MAX_PIXELS:,}; 0: no limit)")
    inputs.add_argument("--show", action="store_true",
                        help="video: show the frames in a window as they are written (q or Esc stops)")
    model = add_model_args(parser)
    model.add_argument("--batch-size", type=int_at_least(1), default=1,
                       help="images per network pass (images of equal blob size are batched)")
    model.add_argument("--workers", type=int_at_least(0), metavar="K",
                       help="threads reading and preparing the next images while the network runs (default: "
                            "1 on a machine of 2 cores or more, else 0: in turn)")
    model.add_argument("--timeout", type=positive_seconds, default=30.0, metavar="S",
                       help="under torchrun: a process silent this long (dead, frozen, its machine gone) stops the "
                            "others, which name it (default 30)")
    model.add_argument("--export-onnx", type=Path, metavar="PATH",
                       help="write the network of --model as ONNX (dynamic batch, height, width) and exit")
    model.add_argument("--export-onnx-detector", type=Path, metavar="PATH",
                       help="write the network of --model with the TEST decoding and NMS as one ONNX graph "
                            "(blob and scale -> detections) and exit")
    outputs = parser.add_argument_group("outputs")
    outputs.add_argument("--out", type=Path, default=Path("output/detections"), help="output folder")
    outputs.add_argument("--resume", action="store_true",
                         help="images and folders: record this run's settings in --out, and skip the images an "
                              "earlier run with the same settings finished there (its JSON entries are kept)")
    outputs.add_argument("--thresh", type=probability, default=0.5,
                         help="score threshold of the faces drawn, masked, cropped and listed")
    outputs.add_argument("--save-json", nargs="?", type=Path, const=True, metavar="PATH",
                         help="one JSON file of every image's detections (default PATH: <out>/detections.json)")
    outputs.add_argument("--save-crops", action="store_true", help="write each face as <out>/crops/<name>_<k>_<box>.jpg")
    outputs.add_argument("--crop-margin", type=number_at_least(0), default=0.0, metavar="M",
                         help="grow each crop by M times the box width / height on every side (default 0)")
    outputs.add_argument("--save-wider", nargs="?", type=Path, const=True, metavar="DIR",
                         help="official WIDER prediction files, <DIR>/<image path under --dir>.txt, every "
                              "detection with score > 0.05 (default DIR: <out>/wider)")
    outputs.add_argument("--anonymize", choices=METHODS,
                         help="write <name>_anonymized.<ext> (videos: .mp4) with the faces masked, instead of the "
                              "drawn pictures")
    outputs.add_argument("--mask-scale", type=positive_number(), default=DEFAULT_SCALE, metavar="S",
                         help=f"masks are the boxes scaled by S about their centres (default {DEFAULT_SCALE})")
    outputs.add_argument("--mask-shape", choices=SHAPES, default=DEFAULT_SHAPE, help=f"default {DEFAULT_SHAPE}")
    outputs.add_argument("--hold", type=int_at_least(0), metavar="K",
                         help=f"video: keep a face masked for K frames after it was last detected (default "
                              f"{DEFAULT_HOLD}), so masks do not flicker")
    outputs.add_argument("--draw", action="store_true",
                         help="with --anonymize: also write the drawn pictures / video")
    add_config_args(parser)
    args = parser.parse_args(argv)
    exporting = args.export_onnx or args.export_onnx_detector
    if exporting and (args.backend == "onnxruntime" or args.precision != "fp32"):
        parser.error("--export-onnx and --export-onnx-detector write fp32 graphs of pytorch weights "
                     "(int8 graphs: python3 -m model.deploy quantize)")
    check_model_args(parser, args)
    if args.video is not None and (args.image or args.dir):
        parser.error("--video cannot be combined with --image or --dir")
    if args.video is None and (args.every != 1 or args.max_frames or args.show or args.hold is not None):
        parser.error("--every, --max-frames, --show and --hold apply to --video")
    if args.video is not None and args.save_wider:
        parser.error("--save-wider writes one file per image: use --image or --dir")
    if args.video is not None and args.resume:
        parser.error("--resume skips finished images of --image and --dir runs; a video is written whole")
    if args.hold is not None and not args.anonymize:
        parser.error("--hold keeps masks of --anonymize: give --anonymize too")
    return args


def image_items(args):
    """The items (lib.sources.Item) of the images named by --image and --dir (each file once; the folder's
    subfolders too, not --out), or of the demo photo."""
    inside = args.dir is not None and args.out.resolve() != args.dir.resolve()  # earlier outputs are no inputs
    return sources.image_items(args.image, args.dir, skip=args.out if inside else None) or \
        sources.image_items([demo_image()])


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


def summarize_unmasked(unmasked, outputs):
    """Name the anonymised outputs (of `outputs` written) in which no face was masked."""
    if unmasked:
        print(f"warning: {len(unmasked)} of {outputs} anonymised outputs mask no face (nothing scored >= --thresh); "
              "check them before publishing:", file=sys.stderr)
        for _, message in unmasked:
            print(f"  {message}", file=sys.stderr)


def summarize(failed, done, total, what):
    """Print what failed; the exit code: OK, or SOME_FAILED when anything did."""
    if not failed:
        return ExitCode.OK
    print(f"error: {done} of {total} {what} done, these failed:", file=sys.stderr)
    for _, message in failed:
        print(f"  {message}", file=sys.stderr)
    return ExitCode.SOME_FAILED


def output_options(args, json):
    """The outputs the options ask for."""
    return OutputOptions(out=args.out, thresh=args.thresh, draw=args.draw or not args.anonymize,
                         anonymize=args.anonymize, mask_scale=args.mask_scale, mask_shape=args.mask_shape,
                         hold=DEFAULT_HOLD if args.hold is None else args.hold, crops=args.save_crops,
                         crop_margin=args.crop_margin,
                         wider=args.out / "wider" if args.save_wider is True else args.save_wider, json=json)


def json_path(args):
    """The --save-json file (relative names are relative to the working folder, as every path option), or None."""
    return args.out / "detections.json" if args.save_json is True else args.save_json


def check_outputs(args):
    """Refuse (OSError naming the path) output places that cannot be written, before the model loads."""
    check_writable(args.out, folder=True)
    if json_path(args):
        check_writable(json_path(args))
    opts = output_options(args, None)
    if opts.wider is not None:
        check_writable(opts.wider, folder=True)


def run_settings(args, cfg):
    """What makes the outputs of an image run what they are (compared by --resume)."""
    model = Path(args.model)
    stat = model.stat() if model.is_file() else None
    opts = output_options(args, None)
    return {"model": str(model.resolve()), "model_size": stat and stat.st_size, "model_mtime_ns": stat and stat.st_mtime_ns,
            "precision": args.precision, "backend": args.backend, "batch_size": args.batch_size, "TEST": cfg.TEST,
            "PIXEL_MEANS": cfg.PIXEL_MEANS, "thresh": opts.thresh, "draw": opts.draw, "anonymize": opts.anonymize,
            "mask_scale": opts.mask_scale, "mask_shape": opts.mask_shape, "crops": opts.crops,
            "crop_margin": opts.crop_margin, "wider": opts.wider and str(Path(opts.wider).resolve()),
            "json": json_path(args) and str(Path(json_path(args)).resolve())}


def blob_pixels(detector, path):
    """The network's work on the image at `path`: the pixels of its blobs, from its header (0 if unreadable)."""
    try:
        width, height = image_size(path)
    except ImageError:
        return 0
    return sum(round(height * scale) * round(width * scale) for scale, _ in detector.scales(height, width))


def detect_images(args, detector, items, job):
    """Run the detector over `items` (image_items), this rank's balanced share of them under torchrun,
    writing the outputs asked for; rank 0 gathers the JSON entries and the failures. The exit code."""
    paths = [item.path for item in items]
    mine = job.share(items, [blob_pixels(detector, item.path) for item in items]) if job.distributed else items
    path = json_path(args)
    json = (DetectionsJson(path, str(args.model), args.precision, args.thresh, resume=args.resuming)
            if path else None)
    if json is not None and job.rank > 0:  # rank 0 writes the file; each other rank a part of its own
        json.path = json.part_path(job.rank)
    workers = default_workers() if args.workers is None else args.workers
    with json if json is not None else nullcontext():
        report = run_items(detector, mine, image_sinks(output_options(args, json), paths), args.thresh,
                           batch_size=args.batch_size, workers=workers, max_pixels=args.max_pixels,
                           resume=args.resuming, progress=PrintedLines(args.out, args.thresh, args.batch_size,
                                                                       loud=job.rank == 0), job=job)
    if report.interrupted and job.distributed:  # torchrun stops every rank so: each keeps what it wrote (--resume)
        return ExitCode.INTERRUPTED
    results = job.gather({"entries": json.entries if json is not None else [], "done": report.done + report.earlier,
                          "failed": [m for _, m in report.failed], "unmasked": [m for _, m in report.unmasked],
                          "interrupted": report.interrupted})
    if results is None:  # another rank than 0: rank 0 reports for the job
        return ExitCode.INTERRUPTED if report.interrupted else ExitCode.OK
    if json is not None and job.distributed:
        json.path = path
        json.replace_entries([e for r in results for e in r["entries"]], {str(p): k for k, p in enumerate(paths)})
    failed = [(None, m) for r in results for m in r["failed"]]
    done = sum(r["done"] for r in results)
    summarize_unmasked([(None, m) for r in results for m in r["unmasked"]], done)
    code = summarize(failed, done, len(items), "images")
    if json is not None:
        print(f"detections -> {path}")
    return ExitCode.INTERRUPTED if any(r["interrupted"] for r in results) else code


def detect_video(args, detector):
    """Run the detector over the frames of --video, writing the outputs asked for; the exit code."""
    path = json_path(args)
    json = DetectionsJson(path, str(args.model), args.precision, args.thresh) if path else None
    failed, unmasked = [], []
    with json if json is not None else nullcontext():
        done, announced, interrupted = run_video(detector, args.video, output_options(args, json), args.batch_size,
                                                 args.every, args.max_frames, args.show, failed, unmasked,
                                                 args.max_pixels)
        total = min(announced, args.max_frames or announced) if announced and not interrupted else 0
        summarize_unmasked(unmasked, 1)
        code = summarize(failed, done, max(total, done + len(failed)), "frames")
    if json is not None:
        print(f"detections -> {path}")
    live = isinstance(args.video, (int, str))
    return ExitCode.INTERRUPTED if interrupted and not live else code


def main(argv=None):
    one_line_warnings()
    args = parse_args(argv)
    with sigterm_as_ctrl_c():  # torchrun, SLURM and kill stop a run as Ctrl-C does: every file written is whole
        return run(args)


def run(args):
    """test.py for parsed `args`; the exit code."""
    official = args.model is None
    try:
        cfg = config_from_args(args)
        choice = resolve_precision(args.precision, args.device, args.model, data_layout(cfg.DATA_DIR), args.backend)
        args.precision, args.model, device = choice.precision, choice.model, choice.device
        job = DetectionJob.from_environment(args.timeout)
        if choice.message and job.rank == 0:
            print(choice.message, file=sys.stderr)
        warn_if_emulated(args.precision, device)
        if job.distributed and args.video is not None:
            raise ValueError("--video runs in one process: a video, camera or stream is read frame by frame "
                             "(torchrun splits --image and --dir runs)")
        if device.type == "cuda" and device.index is None and job.local_rank is not None:
            device = torch.device("cuda", job.local_rank)  # one GPU per local rank
        if args.show:
            check_display()  # before the model loads
        if args.export_onnx:
            export(args)
            return ExitCode.OK
        if args.export_onnx_detector:
            export_detector(args, cfg)
            return ExitCode.OK
        items = image_items(args) if args.video is None else None
        check_outputs(args)
        # an earlier --resume run of these settings there: go on with it (a new one is recorded now)
        args.resuming = args.resume and check_settings(args.out, run_settings(args, cfg))
        detector = build_detector(args.model, cfg, device, args.precision, backend=args.backend)
        return detect_images(args, detector, items, job) if items is not None else detect_video(args, detector)
    except PeerFailure as e:
        print(f"error: {e}", file=sys.stderr)
        return ExitCode.PEER_FAILURE
    except (FileNotFoundError, ImportError) as e:
        print(f"error: {model_error_text(e, args.precision, official)}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    except (ValueError, KeyError, ImageError, VideoError) as e:
        print(f"error: {error_text(e)}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    except OSError as e:
        print(f"error: cannot write {e.filename or args.out}: {e.strerror}.", file=sys.stderr)
        return ExitCode.BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
