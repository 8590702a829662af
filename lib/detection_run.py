"""A detector run over images, or over the frames of a video file, frame folder, camera or stream:
batching, detection on every Nth frame, a frame limit, a live window and a clean stop on Ctrl-C.

`detector` is anything with `detect(list of images) -> list of (N, 5) detections` (model.detector.
Detector); the outputs are lib.media_writers' writers. Failures of single images or frames are
reported, collected as (key, message) and skipped, so the others still get their results.
"""
import os
import signal
import sys
import threading
import time
from collections import Counter
from contextlib import contextmanager

import numpy as np
from tqdm import tqdm

from .image_io import DEFAULT_MAX_PIXELS, ImageError, read_image
from .utils.iteration import batched
from .utils.prefetch import prefetched
from .utils.redact import public_url
from .media_writers import ImageOutputs, VideoOutputs
from .video import FrameReader, LiveWindow, VideoError

NO_DETECTIONS = np.zeros((0, 5), np.float32)


def report_failure(failed, key, message):
    """Warn about `key` now and keep it for the summary."""
    print(f"warning: {message}; skipped", file=sys.stderr)
    failed.append((key, message))


def report_unmasked(unmasked, key, what, thresh):
    """Warn that the anonymised output of `key` masks nothing, and keep it for the summary: a file named
    'anonymized' that shows every face the detector missed must not be published unseen."""
    message = f"{key}: no face with score >= {thresh} in {what}: its anonymised output masks nothing"
    print(f"warning: {message}", file=sys.stderr)
    unmasked.append((key, message))


@contextmanager
def uninterrupted():
    """Ctrl-C (and SIGTERM where it stands for it) inside the block takes effect when it ends (as
    KeyboardInterrupt), so the outputs of an image or frame are written all or not at all. A no-op
    outside the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    # SIGTERM too where it stands for Ctrl-C (lib.utils.cli.sigterm_as_ctrl_c)
    signums = [signal.SIGINT] + [signal.SIGTERM] * (signal.getsignal(signal.SIGTERM) is signal.default_int_handler)
    previous = {signum: signal.signal(signum, lambda signum, frame: caught.append(signum)) for signum in signums}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if caught:
        raise KeyboardInterrupt


def detect_each(detector, items, batch_size, failed):
    """(key, image, detections) for each (key, image) of `items`, `batch_size` images per network pass.

    A batch whose detection fails (e.g. out of GPU memory on a huge image) is reported, added to
    `failed` and skipped.
    """
    for batch in batched(items, batch_size):
        try:
            results = detector.detect([image for _, image in batch])
        except (RuntimeError, ValueError) as e:
            for key, _ in batch:
                report_failure(failed, key, f"detection failed: {str(e).strip().splitlines()[0]}")
            continue
        for (key, image), dets in zip(batch, results):
            yield key, image, dets


def detect_frames(detector, frames, batch_size, every, failed):
    """(index, frame, detections, detected) for each (index, frame) of `frames`, in order.

    The detector runs on every `every`-th frame read (`batch_size` of those per pass); the frames
    between reuse the detections of the last frame detected on (`detected` False). A frame that is
    not detected on leaves at once unless a frame before it awaits its batch, so a live window
    lags by no more than one batch.
    """
    last = NO_DETECTIONS
    pending, due = [], 0

    def flush():
        nonlocal last
        picked = [(index, frame) for index, frame, is_due in pending if is_due]
        results = {index: dets for index, _, dets in detect_each(detector, picked, max(1, len(picked)), failed)}
        for index, frame, is_due in pending:
            if is_due and index not in results:
                continue  # its detection failed: reported, and the frame is left out
            if is_due:
                last = results[index]
            yield index, frame, last, is_due
        pending.clear()

    for position, (index, frame) in enumerate(frames):
        is_due = position % every == 0
        pending.append((index, frame, is_due))
        due += is_due
        if due == batch_size or due == 0:
            yield from flush()
            due = 0
    yield from flush()


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


class BusyClock:
    """Seconds spent inside its `with` blocks (the network's share of a run's wall time)."""
    seconds = 0.0

    def __enter__(self):
        self._start = time.perf_counter()

    def __exit__(self, *exc):
        self.seconds += time.perf_counter() - self._start


def detect_prepared_each(detector, prepared, batch_size, failed, busy=None):
    """(key, image, detections) for each (key, (image, blobs), error) of `prepared` (lib.utils.prefetch over
    `detector.prepare`), `batch_size` images per network pass (timed by the BusyClock `busy`). Items whose
    reading or preparation failed, and batches whose detection fails, are reported, added to `failed`
    and skipped."""
    busy = BusyClock() if busy is None else busy
    def ready():
        for key, result, error in prepared:
            if error is not None:
                report_failure(failed, key, str(error))
            else:
                yield key, result

    for batch in batched(ready(), batch_size):
        try:
            with busy:
                results = detector.detect_prepared([blobs for _, (_, blobs) in batch])
        except (RuntimeError, ValueError) as e:
            for key, _ in batch:
                report_failure(failed, key, f"detection failed: {str(e).strip().splitlines()[0]}")
            continue
        for (key, (image, _)), dets in zip(batch, results):
            yield key, image, dets


def default_workers():
    """Preparation threads of a run when not told: one beside the network where there are two cores or more."""
    return 1 if (os.cpu_count() or 1) > 1 else 0


def run_images(detector, images, opts, batch_size, failed, unmasked=None, max_pixels=DEFAULT_MAX_PIXELS,
               workers=0, resume=False, stems=None, job=None):
    """Detect on `images`, a list of (path, name in WIDER files), writing the outputs of `opts`.

    Images are read and prepared (`detector.prepare`) on `workers` threads ahead of the network
    (lib.utils.prefetch; 0: in turn). Unreadable images, and those of more than `max_pixels` pixels
    (lib.image_io.read_image), are reported and skipped; with opts.anonymize, images in which no face was
    masked are reported and added to `unmasked`. With `resume`, images whose outputs an earlier run
    wrote completely (and, with opts.json, recorded: its entry is carried over) are skipped. Returns
    (images done, interrupted): Ctrl-C stops the run between two writes, so every file written is
    complete. Under a lib.detection_job.DetectionJob `job` of several ranks, `images` is this rank's
    share and `stems` the output stems of the whole job's images (`output_stems`); each image counts
    on the job, a lost peer stops the run (PeerFailure), and only rank 0 prints its lines.
    """
    unmasked = [] if unmasked is None else unmasked
    paths = [path for path, _ in images]
    writer = ImageOutputs(opts, paths)

    def load(path):
        image = read_image(path, max_pixels)
        return image, detector.prepare(image)

    stems = stems or dict(zip(paths, output_stems(paths)))
    names = {path: (stems[path], rel) for path, rel in images}
    loud = job is None or job.rank == 0
    earlier = {path for path in paths if resume and writer.done(path, *names[path])
               and (opts.json is None or opts.json.has(path))}
    if earlier and loud:
        print(f"--resume: {len(earlier)} of {len(paths)} images were done by an earlier run in {opts.out}; "
              "they are skipped")
    waiting = iter(paths)  # in input order: earlier images' JSON entries go where a fresh run puts them

    def keep_earlier(until=None):
        for path in waiting:
            if path == until:
                return
            if path in earlier and opts.json is not None:
                opts.json.keep(path)

    prepared = prefetched(load, [p for p in paths if p not in earlier], workers, errors=(ImageError, ValueError))
    busy = BusyClock()

    start = last = time.perf_counter()
    done, interrupted = 0, False
    try:
        for path, image, dets in detect_prepared_each(detector, prepared, batch_size, failed, busy):
            name, rel = names[path]
            with uninterrupted():
                keep_earlier(until=path)
                kept = writer.write(path, name, rel, image, dets)
                done += 1
            if opts.anonymize and not len(kept):
                report_unmasked(unmasked, path, "the image", opts.thresh)
            now = time.perf_counter()
            timing = f" in {now - last:.2f} s" if batch_size == 1 else ""
            total = f" [{job.advance()} done by the job]" if job is not None and job.distributed else ""
            if loud:
                print(f"{path}: {len(kept)} faces (score >= {opts.thresh}){timing} -> {opts.out / name}_ssh.*{total}")
            last = now
            if job is not None:
                job.check_peers()
        keep_earlier()
    except KeyboardInterrupt:
        interrupted = True
        print(f"\nstopped by Ctrl-C after {done} images; everything written so far is kept", file=sys.stderr)
        keep_earlier()  # the entries of later images done before stay in the JSON file
    seconds = time.perf_counter() - start
    skipped = f" (and {len(earlier)} done before)" if earlier else ""
    rank = f"rank {job.rank}: " if job is not None and job.distributed else ""
    print(f"{rank}{done} of {len(images)} images{skipped} in {seconds:.2f} s ({done / max(seconds, 1e-9):.2f} "
          f"images/s, batch size {batch_size}, {workers} preparing thread(s); the network busy "
          f"{100 * busy.seconds / max(seconds, 1e-9):.0f}% of the time)")
    return done + len(earlier), interrupted


def limited(frames, max_frames):
    """The first `max_frames` items of `frames` (all of them when None)."""
    for count, item in enumerate(frames):
        if max_frames is not None and count >= max_frames:
            return
        yield item


def run_video(detector, source, opts, batch_size=1, every=1, max_frames=None, show=False, failed=None,
              unmasked=None, max_pixels=DEFAULT_MAX_PIXELS):
    """Detect on the frames of `source` (lib.video.FrameReader's sources), writing the outputs of
    `opts`. Returns (frames written, frames announced or 0, interrupted): after Ctrl-C (or the
    window's q / Esc) the outputs hold every frame written so far, complete and playable. With
    opts.anonymize, a video in which no frame had a face masked is reported and added to `unmasked`."""
    failed = [] if failed is None else failed
    unmasked = [] if unmasked is None else unmasked
    window = LiveWindow(f"SSH: {public_url(source) if isinstance(source, str) else source}") if show else None
    count, interrupted = 0, False
    try:
        with FrameReader(source, max_pixels) as reader, VideoOutputs(
                opts, reader.name, reader.path, reader.fps, [] if reader.live else [reader.path]) as writer:
            total = min(reader.count, max_frames) if reader.count and max_frames else reader.count or max_frames
            stream = detect_frames(detector, limited(reader, max_frames), batch_size, every, failed)
            try:
                for index, frame, dets, detected in tqdm(stream, total=total or None, unit="frame", desc=reader.name):
                    with uninterrupted():
                        shown = writer.write(index, frame, dets, detected)
                        count += 1
                    if window is not None and not window.show(shown if shown is not None else frame):
                        break
            except KeyboardInterrupt:
                interrupted = True
                print(f"\nstopped by Ctrl-C after {count} frames; everything written so far is kept", file=sys.stderr)
            failed += reader.failed
            if opts.anonymize and count and not writer.masked_frames:
                report_unmasked(unmasked, reader.path, f"any of its {count} frames", opts.thresh)
            if count == 0:
                raise VideoError(f"{reader.path}: stopped before any frame was written" if interrupted
                                 else f"{reader.path}: no frame could be decoded and detected")
    finally:
        if window is not None:
            window.close()
    print(f"{reader.path}: {count} frames -> {opts.out / reader.name}_*")
    return count, reader.count, interrupted
