"""FDDB ROC figures: true positive rate against false positives, 0 to 2000, on a linear and on a
log x axis, our curve beside other methods' published ROC files (the DiscROC.txt / ContROC.txt the
FDDB results page offers, plotted there by gnuplot `using 2:1`). The legend gives each curve's TPR at
1000 and 2000 false positives (fddb.tpr_at); curves are listed by decreasing TPR at 2000.
"""
import re
from pathlib import Path

import numpy as np

from lib.utils.figures import new_figure, save_png

from .fddb import tpr_at
from .fddb_io import read_roc

KINDS = {"discrete": "DiscROC", "continuous": "ContROC"}
MAX_FP = 2000
LEGEND_FP = (1000, 2000)


def method_name(path):
    """A published ROC file's method name: its file name without .txt and without DiscROC / ContROC
    (e.g. 'DDFD_DiscROC.txt' -> 'DDFD')."""
    stem = Path(path).name
    stem = stem[:-4] if stem.lower().endswith(".txt") else stem
    name = re.sub(r"(?i)[-_ ]*(discroc|controc)[-_ ]*", "-", stem).strip("-_ ")
    return name or stem


def is_kind(path, kind):
    """Whether a ROC file's name marks a `kind` curve: DiscROC / ContROC in any case, or else
    disc / cont (as in BAIDU-IDL-disc-v2.txt)."""
    name = Path(path).name.lower()
    if "discroc" in name or "controc" in name:
        return KINDS[kind].lower() in name
    return ("disc" if kind == "discrete" else "cont") in name


def find_baselines(folder, kind):
    """The .txt files of `folder` that hold `kind` curves (is_kind), sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"baselines folder not found: {folder}")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() == ".txt" and p.is_file() and is_kind(p, kind))


def legend_label(name, roc):
    """'<name> (0.xxx @1000, 0.xxx @2000 FP)': the TPR at 1000 and 2000 false positives."""
    values = ", ".join(f"{tpr_at(roc, n):.3f} @{n}" for n in LEGEND_FP)
    return f"{name} ({values} FP)"


def plot_fddb_roc(result, out_path, kind="discrete", name="SSH", baselines=()):
    """Write a PNG of the `kind` ROC of `result` (fddb.evaluate_fddb; or a (K, 2+) TPR, FP array)
    with the published ROC files `baselines` to `out_path`; returns the path."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {tuple(KINDS)}, not {kind!r}")
    ours = np.asarray(result[kind] if isinstance(result, dict) else result)
    curves = [(name, ours)] + [(method_name(p), read_roc(p)) for p in baselines]
    order = sorted(range(len(curves)), key=lambda k: -tpr_at(curves[k][1], MAX_FP))
    fig = new_figure(13, 5.5)
    for panel, scale in enumerate(("linear", "log")):
        ax = fig.add_subplot(1, 2, panel + 1)
        for k in order:
            method, roc = curves[k]
            ax.plot(roc[:, 1], roc[:, 0], linewidth=2.5 if k == 0 else 1.2, label=legend_label(method, roc))
        if scale == "log":
            ax.set_xscale("log", nonpositive="mask")
        ax.set(xlim=(1 if scale == "log" else 0, MAX_FP), ylim=(0, 1), xlabel="False positives",
               ylabel="True positive rate", title=f"FDDB {kind} ROC ({scale} x)")
        ax.grid(True, which="both", alpha=0.4)
        ax.legend(loc="lower right", fontsize=7)
    return save_png(fig, out_path)
