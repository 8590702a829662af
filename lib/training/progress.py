"""Training progress on the console (a hook): a tqdm bar and a log line every TRAIN.DISPLAY steps
(official SSH/train.py prints Caffe's `display` lines)."""
import time

from tqdm import tqdm

from lib.training.trainer import HookBase


def say(text, file=None):
    """Print `text` to `file` (default stdout) without breaking a progress bar."""
    tqdm.write(text, file=file)


def format_eta(seconds):
    """'H:MM:SS' of a duration in seconds."""
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class ProgressBar(HookBase):
    """Hook of the process that writes the outputs: the bar from start_iter to max_iters (on stderr),
    the lines of `header` once it is up, and every `display` steps and at the last one the line
    `iter N/M  lr ...  loss ...  X img/s  ETA H:MM:SS  |  <the six losses>` (speed and ETA over the
    steps since the line before), and after a validation (trainer.val_ap) the line
    `iter N/M  val AP  easy ...  medium ...  hard ...  (S s)`."""

    def __init__(self, display, header=()):
        self.display = display
        self.header = tuple(header)
        self._bar = None
        self._mark = None

    def before_train(self):
        trainer = self.trainer
        self._bar = tqdm(total=trainer.max_iters, initial=trainer.start_iter, unit="it", dynamic_ncols=True)
        self._mark = (trainer.start_iter, time.perf_counter())
        for line in self.header:
            say(line)

    def after_step(self):
        trainer = self.trainer
        loss = sum(trainer.losses.values())
        self._bar.update(trainer.iter - self._bar.n)
        self._bar.set_postfix(loss=f"{loss:.4f}", lr=f"{trainer.lr:g}")
        if trainer.iter % self.display == 0 or trainer.iter == trainer.max_iters:
            say(self.line(loss, time.perf_counter()))
        if trainer.val_ap is not None:
            aps = "  ".join(f"{setting} {ap:.4f}" for setting, ap in trainer.val_ap.items())
            say(f"iter {trainer.iter}/{trainer.max_iters}  val AP  {aps}  ({trainer.val_seconds:.1f} s)")

    def line(self, loss, now):
        """The log line of the step just done, `loss` the sum of its losses."""
        trainer = self.trainer
        start_iter, start = self._mark
        per_iter = (now - start) / max(trainer.iter - start_iter, 1)
        self._mark = (trainer.iter, now)
        losses = "  ".join(f"{k} {v:.4f}" for k, v in trainer.losses.items() if k.endswith("_loss"))
        eta = format_eta(per_iter * (trainer.max_iters - trainer.iter))
        return (f"iter {trainer.iter}/{trainer.max_iters}  lr {trainer.lr:g}  loss {loss:.4f}  "
                f"{trainer.images_per_step / per_iter:.2f} img/s  ETA {eta}  |  {losses}")

    def after_train(self):
        if self._bar is not None:
            self._bar.close()
            self._bar = None
