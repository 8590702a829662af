"""Face masks and per-frame outputs: milliseconds per frame for each --anonymize method and shape.

    python3 -m benchmarks anonymize [--size 1080x1920] [--faces 10] [--face 100] [--repeats 10] [--smoke]

A noise frame with `--faces` faces of `--face` px (default mask scale) is masked by each method and
shape; then the outputs of one video frame are timed: drawn + anonymised frames written to .mp4, the
text file and the JSON entry (the detector excluded), so the cost of test.py's outputs per frame can
be set against detection's.
"""
import tempfile
from pathlib import Path

import numpy as np

from lib.anonymize import METHODS, SHAPES, anonymize
from lib.media_writers import VideoOutputs
from lib.outputs import DetectionsJson
from lib.sinks import OutputOptions

from .utils import Timing, benchmark_parser, hw, parse_args, seconds

SMOKE = {"size": "120x160", "faces": 2, "face": 20, "repeats": 2}


def faces(count, size, image_hw, rng):
    """(count, 5) detections of `size` px squares spread over the image, score 0.9."""
    height, width = image_hw
    xy = rng.uniform(0, 1, (count, 2)) * [max(1, width - size), max(1, height - size)]
    return np.concatenate([xy, xy + size - 1, np.full((count, 1), 0.9)], axis=1).astype(np.float32)


def main(argv=None):
    parser = benchmark_parser(__name__, __doc__)
    parser.add_argument("--size", default="1080x1920", help="frame size HxW")
    parser.add_argument("--faces", type=int, default=10)
    parser.add_argument("--face", type=int, default=100, help="face size in pixels")
    parser.add_argument("--repeats", type=int, default=10)
    args = parse_args(parser, argv, SMOKE)
    image_hw = hw(args.size)
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (*image_hw, 3), dtype=np.uint8)
    dets = faces(args.faces, args.face, image_hw, rng)
    print(f"{args.size}, {args.faces} faces of {args.face} px, median of {args.repeats}")
    print(f"{'method':<9} {'shape':<8} {'ms':>7}")
    for method in METHODS:
        for shape in SHAPES:
            times = [seconds(lambda: anonymize(frame, dets, method, shape=shape)) for _ in range(args.repeats)]
            print(f"{method:<9} {shape:<8} {Timing.of(times).median * 1e3:>7.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        with DetectionsJson(out / "detections.json", "model", "fp32", 0.5, flush_every=None) as json:
            opts = OutputOptions(out=out, anonymize="blur", json=json)
            with VideoOutputs(opts, "clip", "clip.mp4", 25.0, []) as writer:
                times = [seconds(lambda: writer.write(k, frame, dets, True)) for k in range(args.repeats)]
    print(f"outputs of one frame (drawn + blurred .mp4, text, JSON): {Timing.of(times).median * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
