"""The detection run loops: over images (`run_items`, test.py's and eval.py's one loop: prefetch,
batches, sinks written behind the network, resume, torchrun shares) and over the frames of a video file,
frame folder, camera or stream (`run_video`: detection on every Nth frame, a frame limit, a live window),
each with a clean stop on Ctrl-C.

`detector` is model.detector.Detector or alike (`prepare`, `detect_prepared`; `detect` for frames); the
outputs are lib.sinks' sinks and lib.media_writers' video writers. Failures of single images or frames
are reported, collected as (key, message) and skipped, so the others still get their results.
"""
import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .image_io import DEFAULT_MAX_PIXELS, ImageError, read_image
from .utils.iteration import batched
from .utils.prefetch import prefetched
from .utils.redact import public_url
from .utils.write_behind import WriteBehind
from .media_writers import VideoOutputs
from .sinks import AnonymisedPicture, Result, as_detections
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
                report_failure(failed, key, f"{getattr(key, 'path', key)}: detection failed: "
                                            f"{str(e).strip().splitlines()[0]}")
            continue
        for (key, (image, _)), dets in zip(batch, results):
            yield key, image, dets


def default_workers():
    """Preparation threads of a run when not told: one beside the network where there are two cores or more."""
    return 1 if (os.cpu_count() or 1) > 1 else 0


@dataclass
class RunReport:
    """What `run_items` did: items written (`detected` of them by the network, the others recalled from
    a cache), skipped as done by an earlier run, failed and anonymised without a mask, as (key, message);
    whether Ctrl-C stopped it; its wall time and the network's busy time in seconds."""
    done: int = 0
    detected: int = 0
    earlier: int = 0
    failed: list = field(default_factory=list)
    unmasked: list = field(default_factory=list)
    interrupted: bool = False
    seconds: float = 0.0
    busy: float = 0.0


class PrintedLines:
    """test.py's progress: one line per image (rank 0's only under torchrun) naming its faces and outputs."""

    def __init__(self, out, thresh, batch_size, loud=True):
        self.out, self.thresh, self.batch_size, self.loud = out, thresh, batch_size, loud
        self._last = time.perf_counter()

    def start(self, total, earlier):
        if earlier and self.loud:
            print(f"--resume: {earlier} of {total} images were done by an earlier run in {self.out}; "
                  "they are skipped")

    def item(self, item, kept, job_done):
        now = time.perf_counter()
        timing = f" in {now - self._last:.2f} s" if self.batch_size == 1 else ""
        total = f" [{job_done} done by the job]" if job_done is not None else ""
        if self.loud:
            print(f"{item.path}: {len(kept)} faces (score >= {self.thresh}){timing} -> "
                  f"{self.out / item.stem}_ssh.*{total}")
        self._last = now

    def close(self, job):
        pass

    def summary(self, text):
        print(text)


class ProgressBar:
    """eval.py's progress: one bar of the whole job's images (rank 0's only under torchrun), which
    follows the other ranks to the end, and the line of the run's speed; `quiet`: neither (validation
    during training)."""

    def __init__(self, total, enabled=True, quiet=False):
        self.bar = tqdm(total=total, desc="detect", unit="img", disable=not enabled or quiet)
        self.quiet = quiet

    def start(self, total, earlier):
        pass

    def item(self, item, kept, job_done):
        self.bar.update(1 if job_done is None else job_done - self.bar.n)

    def close(self, job):
        while job is not None and job.distributed and not self.bar.disable and self.bar.n < self.bar.total:
            job.check_peers()
            time.sleep(0.1)
            self.bar.update(job.advance(0) - self.bar.n)
        self.bar.close()

    def summary(self, text):
        if not self.quiet:
            print(text)


def run_items(detector, items, sinks, thresh, *, batch_size=1, workers=0, max_pixels=DEFAULT_MAX_PIXELS,
              resume=False, progress=None, job=None):
    """Detect on `items` (lib.sinks.Item, in output order) and hand each result to `sinks` (lib.sinks.Sinks):
    the one run loop of test.py and eval.py. Returns a RunReport.

    Images are read and prepared (`detector.prepare`) on `workers` threads ahead of the network
    (lib.utils.prefetch), `batch_size` of them per network pass, and the sinks write on one more thread
    behind it (lib.utils.write_behind); 0 workers: all in turn. Unreadable images, and those of more than
    `max_pixels` pixels (lib.image_io.read_image), and failed batches are reported and skipped; with an
    anonymising sink, images in which no face was masked are reported. With `resume`, items every sink
    wrote in an earlier run are skipped (`keep` carries their JSON entries over, in place); items whose
    detections a sink recalls (eval's cache) skip the network when no sink needs the pixels. Ctrl-C stops
    the run between two items: every item handed to the sinks is written whole. Under a
    lib.detection_job.DetectionJob `job` of several ranks, `items` is this rank's share: each item
    written counts on the job, a lost peer stops the run (PeerFailure), and only rank 0 prints the
    progress of `progress` (PrintedLines, ProgressBar).
    """
    report = RunReport()
    shared = job is not None and job.distributed
    progress = progress or PrintedLines(Path("."), thresh, batch_size, loud=False)
    masking = any(isinstance(s, AnonymisedPicture) for s in sinks)
    earlier = {item for item in items if resume and sinks.done(item)}
    recalled = {} if sinks.needs_image else {item: dets for item in items if item not in earlier
                                              and (dets := sinks.recall(item)) is not None}
    report.earlier = len(earlier)
    progress.start(len(items), len(earlier))

    def load(item):
        image = read_image(item.path, max_pixels)
        return image, detector.prepare(image)

    def written(item, image, dets, writer, recall=False):
        dets = as_detections(dets, item)
        kept = dets[dets[:, 4] >= thresh]
        with uninterrupted():
            writer.submit(sinks.write, Result(item, image, dets, kept, recalled=recall))
            report.done += 1
        if masking and not len(kept):
            report_unmasked(report.unmasked, item.path, "the image", thresh)
        progress.item(item, kept, job.advance() if shared else None)
        if shared:
            job.check_peers()

    waiting = iter(items)  # in order: what needs no network is written where a fresh run writes it

    def catch_up(writer, until=None, write=True):
        for item in waiting:
            if item == until:
                return
            if item in earlier:
                writer.submit(sinks.keep, item)
            elif item in recalled and write:
                written(item, None, recalled.pop(item), writer, recall=True)

    pending = [item for item in items if item not in earlier and item not in recalled]
    prepared = prefetched(load, pending, workers, errors=(ImageError, ValueError))
    busy = BusyClock()
    start = time.perf_counter()
    with WriteBehind(enabled=workers > 0) as writer:
        try:
            for item, image, dets in detect_prepared_each(detector, prepared, batch_size, report.failed, busy):
                catch_up(writer, until=item)
                written(item, image, dets, writer)
                report.detected += 1
            catch_up(writer)
        except KeyboardInterrupt:
            report.interrupted = True
            print(f"\nstopped by Ctrl-C after {report.done} images; everything written so far is kept",
                  file=sys.stderr)
            catch_up(writer, write=False)  # the entries of later images done before stay in the JSON file
    report.seconds, report.busy = time.perf_counter() - start, busy.seconds
    progress.close(job)
    skipped = f" (and {report.earlier} done before)" if report.earlier else ""
    rank = f"rank {job.rank}: " if shared else ""
    progress.summary(f"{rank}{report.done} of {len(items)} images{skipped} in {report.seconds:.2f} s "
                     f"({report.done / max(report.seconds, 1e-9):.2f} images/s, batch size {batch_size}, "
                     f"{workers} preparing thread(s); the network busy "
                     f"{100 * report.busy / max(report.seconds, 1e-9):.0f}% of the time)")
    return report


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
