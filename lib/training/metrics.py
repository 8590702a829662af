"""Training metrics on disk (a hook): `metrics.jsonl`, one record per SGD step, and `loss_curve.png`.

One JSON object per completed SGD step is appended to `metrics.jsonl`:
{"iteration": N (steps completed), "lr": ..., "loss": sum of the six losses, "<module>@ssh_*_loss": ...,
"images_per_s": ..., "time": unix seconds}, and at the steps validated (Validation hook)
"val_ap_easy", "val_ap_medium", "val_ap_hard". The PNG is drawn with matplotlib's Agg canvas (no pyplot,
no global backend change).
"""
import json
import time
from pathlib import Path

import numpy as np

from lib.training.progress import say
from lib.training.trainer import HookBase
from lib.utils.atomic import atomic_write_bytes, atomic_write_text
from lib.utils.figures import new_figure, save_png


def read_metrics(path):
    """Records of a metrics JSONL file, in file order ([] when the file does not exist)."""
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def running_mean(values, window):
    """(len(values),) mean of each value and up to window - 1 values before it."""
    values = np.asarray(values, dtype=np.float64)
    csum = np.concatenate([[0.0], np.cumsum(values)])
    idx = np.arange(1, len(values) + 1)
    start = np.maximum(idx - window, 0)
    return (csum[idx] - csum[start]) / (idx - start)


def plot_losses(records, path, window=20):
    """Write a PNG of each loss (running mean over `window` iterations) against the iteration."""
    fig = new_figure(9, 5)
    ax = fig.add_subplot()
    if records:
        iters = [r["iteration"] for r in records]
        keys = ["loss"] + sorted(k for k in records[0] if k.endswith("_loss"))
        for key in keys:
            ax.plot(iters, running_mean([r[key] for r in records], window), label=key,
                    linewidth=2 if key == "loss" else 1)
        ax.legend(fontsize=8)
    ax.set_xlabel("iteration")
    ax.set_ylabel(f"loss (mean of {window} iterations)")
    ax.grid(alpha=0.3)
    save_png(fig, path)


def drop_torn_line(path):
    """Cut the text file at `path` (atomically) after its last newline; True when there was more.

    A process killed while appending to metrics.jsonl can leave half a record, which the next run
    could not read.
    """
    path = Path(path)
    if not path.is_file():
        return False
    data = path.read_bytes()
    whole = data[:data.rfind(b"\n") + 1]
    if whole == data:
        return False
    atomic_write_bytes(path, whole)
    return True


class MetricsLog(HookBase):
    """Hook of the process that writes the outputs: `<out_dir>/metrics.jsonl` and `<out_dir>/loss_curve.png`.

    Before the first step, a half-written last line (its writer killed) is dropped, with a message,
    and so are the records of a previous run beyond start_iter (steps lost since its last snapshot),
    so the file describes one consistent history. Each step's record is flushed as the step ends. The
    PNG is redrawn every `plot_every` steps (TRAIN.SNAPSHOT) and at the end when the run saved its
    last step (trainer.saved_iter; the Checkpointer's after_train runs before this one's).
    """

    def __init__(self, out_dir, plot_every, window=20):
        self.metrics_path = Path(out_dir) / "metrics.jsonl"
        self.plot_path = Path(out_dir) / "loss_curve.png"
        self.plot_every = plot_every
        self.window = window
        self._file = None
        self._plotted = None

    def before_train(self):
        start_iter = self.trainer.start_iter
        self._plotted = start_iter
        if drop_torn_line(self.metrics_path):
            say(f"Dropped the unfinished last line of {self.metrics_path} (its writer was killed)")
        kept = [r for r in read_metrics(self.metrics_path) if r["iteration"] <= start_iter]
        atomic_write_text(self.metrics_path, "".join(json.dumps(r) + "\n" for r in kept))
        self._file = self.metrics_path.open("a")

    def after_step(self):
        trainer = self.trainer
        record = {"iteration": trainer.iter, "lr": trainer.lr, "loss": sum(trainer.losses.values()), **trainer.losses,
                  "images_per_s": trainer.images_per_step / max(trainer.step_seconds, 1e-9), "time": time.time()}
        if trainer.val_ap is not None:
            record.update({f"val_ap_{setting}": ap for setting, ap in trainer.val_ap.items()})
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if trainer.iter % self.plot_every == 0:
            self.plot()

    def after_train(self):
        if self._file is None:
            return
        self._file.close()
        self._file = None
        if self.trainer.saved_iter == self.trainer.iter != self._plotted:
            self.plot()

    def plot(self):
        """Redraw the loss-curve PNG from metrics.jsonl."""
        plot_losses(read_metrics(self.metrics_path), self.plot_path, self.window)
        self._plotted = self.trainer.iter
