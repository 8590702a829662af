"""Training progress: a tqdm bar, a log line every DISPLAY iterations, JSONL metrics and a loss-curve PNG.

One JSON object per completed SGD step is appended to `metrics.jsonl`:
{"iteration": N (steps completed), "lr": ..., "loss": sum of the six losses, "<module>@ssh_*_loss": ...,
"images_per_s": ..., "time": unix seconds}. The PNG is drawn with matplotlib's Agg canvas (no pyplot,
no global backend change).
"""
import json
import time
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from tqdm import tqdm

from lib.utils.atomic import atomic_path, atomic_write_text


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
    fig = Figure(figsize=(9, 5), dpi=100)
    FigureCanvasAgg(fig)
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
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")


def format_eta(seconds):
    """'H:MM:SS' of a duration in seconds."""
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class TrainLog:
    """Progress of one training run from `start_iter` to `max_iters` SGD steps, written under `out_dir`.

    Records of a previous run beyond `start_iter` (iterations lost since its last snapshot) are
    dropped from metrics.jsonl when resuming, so the file describes one consistent history.
    """

    def __init__(self, out_dir, start_iter, max_iters, images_per_iter, display, window=20):
        self.metrics_path = Path(out_dir) / "metrics.jsonl"
        self.plot_path = Path(out_dir) / "loss_curve.png"
        self.max_iters = max_iters
        self.images_per_iter = images_per_iter
        self.display = display
        self.window = window
        kept = [r for r in read_metrics(self.metrics_path) if r["iteration"] <= start_iter]
        atomic_write_text(self.metrics_path, "".join(json.dumps(r) + "\n" for r in kept))
        self._file = self.metrics_path.open("a")
        self._bar = tqdm(total=max_iters, initial=start_iter, unit="it", dynamic_ncols=True)
        self._mark = (start_iter, time.perf_counter())
        self._last = self._mark

    def log(self, iteration, lr, losses):
        """Record step `iteration` (steps completed) with its lr and {name: float} losses."""
        now = time.perf_counter()
        images_per_s = self.images_per_iter * (iteration - self._last[0]) / max(now - self._last[1], 1e-9)
        self._last = (iteration, now)
        record = {"iteration": iteration, "lr": lr, "loss": sum(losses.values()), **losses,
                  "images_per_s": images_per_s, "time": time.time()}
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        self._bar.update(iteration - self._bar.n)
        self._bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{lr:g}")
        if iteration % self.display == 0 or iteration == self.max_iters:
            self._bar.write(self.line(record, now))

    def line(self, record, now):
        """Log line: iteration, lr, images/s and ETA over the iterations since the previous line, losses."""
        start_iter, start = self._mark
        per_iter = (now - start) / max(record["iteration"] - start_iter, 1)
        self._mark = (record["iteration"], now)
        losses = "  ".join(f"{k} {v:.4f}" for k, v in record.items() if k.endswith("_loss"))
        eta = format_eta(per_iter * (self.max_iters - record["iteration"]))
        return (f"iter {record['iteration']}/{self.max_iters}  lr {record['lr']:g}  loss {record['loss']:.4f}  "
                f"{self.images_per_iter / per_iter:.2f} img/s  ETA {eta}  |  {losses}")

    def plot(self):
        """Redraw the loss-curve PNG from metrics.jsonl."""
        plot_losses(read_metrics(self.metrics_path), self.plot_path, self.window)

    def message(self, text, file=None):
        """Print `text` to `file` (default stdout) without breaking the progress bar."""
        self._bar.write(text, file=file)

    def close(self):
        self._bar.close()
        self._file.close()
