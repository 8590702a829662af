"""Snapshots of a training run (a hook): the kept `<prefix>_iter_<N>.pth` every TRAIN.SNAPSHOT steps
(official SSH/train.py: Caffe's `<prefix>_iter_<N>.caffemodel`), `<prefix>_latest.pth` between them,
and the last completed step when the run stops or fails.
"""
import time
from dataclasses import dataclass

from lib.image_io import ImageError
from lib.training.progress import say
from lib.training.trainer import HookBase
from lib.utils.checkpoint import latest_name, snapshot_name
from lib.utils.distributed import PeerFailure

# Failures after which the last completed step is saved before the error ends the run: the steps done
# are sound (a peer died, an image cannot be read). Other errors leave the snapshots as they are (a NaN
# loss: the last one written is the last good one).
SAVED_ON = (PeerFailure, ImageError)


def snapshot_prefix(infix):
    """Official snapshot prefix: solver `snapshot_prefix` "SSH", then "_<TRAIN.SNAPSHOT_INFIX>" if set."""
    return "SSH" + (f"_{infix}" if infix else "")


@dataclass(frozen=True)
class LatestCadence:
    """When to overwrite `<prefix>_latest.pth` between kept snapshots: every `every` steps, and once
    `minutes` have passed since the last snapshot of either kind (0: not on that count)."""

    every: int = 0
    minutes: float = 0.0

    def due(self, iteration, seconds):
        """True when step `iteration`, `seconds` after the last snapshot was written, should write one."""
        return (self.every > 0 and iteration % self.every == 0) or (self.minutes > 0 and seconds >= 60 * self.minutes)


class Checkpointer(HookBase):
    """Hook of the process that writes the outputs (rank 0): snapshots into `out_dir`.

    After every `every`-th step a kept snapshot `<prefix>_iter_<N>.pth`, which removes
    `<prefix>_latest.pth`; after each other step before the last, `<prefix>_latest.pth` when `latest`
    (LatestCadence) says so. At the end (done, stopped, preempted) and after a failure of SAVED_ON,
    the last completed step unless it is saved already, then what to run next. save(path, iteration)
    writes the complete snapshot of step `iteration` to `path` atomically and returns the path
    (lib/utils/checkpoint.save_snapshot). Sets trainer.last_snapshot and trainer.saved_iter.
    """

    def __init__(self, out_dir, prefix, every, save, latest=LatestCadence()):
        self.out_dir = out_dir
        self.prefix = prefix
        self.every = every
        self.save = save
        self.latest = latest
        self._written = time.monotonic()

    def before_train(self):
        self._written = time.monotonic()

    def after_step(self):
        iteration = self.trainer.iter
        if iteration % self.every == 0:
            self._keep(iteration)
        elif iteration < self.trainer.max_iters and self.latest.due(iteration, time.monotonic() - self._written):
            self._write(self.out_dir / latest_name(self.prefix), iteration)

    def after_train(self):
        trainer = self.trainer
        if trainer.error is None:
            if trainer.iter != trainer.saved_iter:
                self._keep(trainer.iter)
            if trainer.stop_reason == "stopped":
                say(f"Stopped at iteration {trainer.iter}; continue with --resume {trainer.last_snapshot}")
            elif trainer.stop_reason == "preempted":
                say(f"Preempted at iteration {trainer.iter}, saved to {trainer.last_snapshot}; the same command "
                    "with --resume auto continues")
        elif isinstance(trainer.error, SAVED_ON):
            if trainer.iter != trainer.saved_iter:
                self._keep(trainer.iter)
            if trainer.last_snapshot:
                say(f"Continue with --resume {trainer.last_snapshot}")

    def _keep(self, iteration):
        """Write the kept snapshot of step `iteration` and remove the latest one (older than it)."""
        self._write(self.out_dir / snapshot_name(self.prefix, iteration), iteration)
        (self.out_dir / latest_name(self.prefix)).unlink(missing_ok=True)
        self.trainer.saved_iter = iteration
        say(f"Wrote snapshot to {self.trainer.last_snapshot}")

    def _write(self, path, iteration):
        self.trainer.last_snapshot = self.save(path, iteration)
        self._written = time.monotonic()
