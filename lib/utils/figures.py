"""Matplotlib figures drawn off-screen and written as PNG files: Agg canvases, no pyplot (no global backend
or figure state, safe in threads and under torchrun)."""
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from lib.utils.atomic import atomic_path


def new_figure(width, height, dpi=100):
    """A Figure of width x height inches on its own Agg canvas."""
    fig = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def save_png(fig, path):
    """Lay `fig` out tightly and write it to `path` as a PNG, atomically; returns the path."""
    path = Path(path)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path
