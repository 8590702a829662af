"""PR-curve figure of wider_eval_tools/plot/wider_plot.m: one panel per setting, AP in the legend.

Baselines are the tool's `plot/baselines/Val/setting_int/<method>/wider_pr_info_<method>_<setting>_val.mat`
files (`pr_cruve`: columns precision, recall); each method is named after its folder and its AP
recomputed with VOCap, as the tool does. Curves are listed by decreasing AP.
"""
import math
from pathlib import Path

import numpy as np
import scipy.io

from lib.utils.figures import new_figure, save_png

from .voc_ap import voc_ap


def num2str(x):
    """MATLAB `num2str` of a real scalar: integers as such, else max(floor(log10|x|) + 5, 5) significant digits."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Inf" if x > 0 else "-Inf"
    if x == int(x):
        return str(int(x))
    digits = max(math.floor(math.log10(abs(x))) + 5, 5)
    return f"{x:.{digits}g}"


def legend_label(name, ap):
    """`<name>-<AP>` with `num2str(ap)` cut to 5 characters, as the tool's legend."""
    return f"{name}-{num2str(ap)[:5]}"


def _read_pr_cruve(path):
    """(1000, 2) precision, recall of a baseline .mat file (MATLAB v5/v7, or v7.3 with h5py)."""
    try:
        return np.asarray(scipy.io.loadmat(path, variable_names=["pr_cruve"])["pr_cruve"], dtype=np.float64)
    except NotImplementedError:  # a v7.3 file is HDF5, stored transposed
        try:
            import h5py
        except ImportError:
            raise ValueError(f"{path}: MATLAB v7.3 (HDF5) file; install h5py or re-save it with "
                             "save(..., '-v7')") from None
        with h5py.File(path, "r") as f:
            return np.asarray(f["pr_cruve"], dtype=np.float64).T
    except (KeyError, ValueError) as e:
        raise ValueError(f"{path}: not a pr_info .mat file with a pr_cruve variable ({e})") from None


def load_baselines(baseline_dir, setting):
    """[(method, precision, recall)] of the baseline folder for `setting` ('easy', 'medium', 'hard')."""
    baseline_dir = Path(baseline_dir)
    if not baseline_dir.is_dir():
        raise FileNotFoundError(f"baselines folder not found: {baseline_dir}")
    curves = []
    for method in sorted(p for p in baseline_dir.iterdir() if p.is_dir()):
        path = method / f"wider_pr_info_{method.name}_{setting}_val.mat"
        if path.is_file():
            pr = _read_pr_cruve(path)
            curves.append((method.name, pr[:, 0], pr[:, 1]))
    return curves


def plot_pr_curves(results, out_path, name="SSH", baseline_dir=None):
    """Write a PNG of the PR curves in `results` ({setting: {"precision", "recall"}}) to `out_path`."""
    fig = new_figure(6 * len(results), 5)
    for k, (setting, r) in enumerate(results.items()):
        ax = fig.add_subplot(1, len(results), k + 1)
        curves = [(name, r["precision"], r["recall"])]
        if baseline_dir is not None:
            curves += load_baselines(baseline_dir, setting)
        aps = [voc_ap(rec, prec) for _, prec, rec in curves]
        for i in np.argsort(-np.asarray(aps), kind="stable"):
            method, prec, rec = curves[i]
            ax.plot(rec, prec, linewidth=3 if i == 0 else 1.5, label=legend_label(method, aps[i]))
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="Recall", ylabel="Precision", title=f"WIDER val {setting}")
        ax.grid(True)
        ax.legend(loc="lower left", fontsize=8)
    return save_png(fig, out_path)
