"""FDDB ROC figure: published ROC files as baselines, their names, the legend's TPR at 1000 / 2000 FP."""
import numpy as np
import pytest

from lib.evaluation.fddb_plot import find_baselines, is_kind, legend_label, method_name, plot_fddb_roc


@pytest.mark.parametrize("name, method, disc", [("DDFD_DiscROC.txt", "DDFD", True),
                                                ("360-NUS-ContROC.txt", "360-NUS", False),
                                                ("CW-DNA-v1ContROC.txt", "CW-DNA-v1", False),
                                                ("BAIDU-IDL-disc-v2.txt", "BAIDU-IDL-disc-v2", True),
                                                ("Continental-DiscROC.txt", "Continental", True)])
def test_published_file_names(name, method, disc):
    assert method_name(name) == method
    assert is_kind(name, "discrete") == disc and is_kind(name, "continuous") == (not disc)


def test_legend_gives_tpr_at_1000_and_2000():
    roc = np.array([[0.95, 2500, 0.1], [0.9, 1800, 0.2], [0.85, 900, 0.5], [0.5, 0, 0.9]])
    assert legend_label("SSH", roc) == "SSH (0.850 @1000, 0.900 @2000 FP)"


def test_plot_with_baselines(tmp_path):
    base = tmp_path / "rocCurves"
    base.mkdir()
    fp = np.arange(0, 3000, 50.0)
    for method, top in [("DDFD", 0.84), ("CasCNN", 0.86)]:
        for kind in ("Disc", "Cont"):
            tpr = top * (1 - np.exp(-fp / 300))
            (base / f"{method}_{kind}ROC.txt").write_text("".join(f"{t:g} {f:g} 0.5\n" for t, f in zip(tpr, fp)))
    (base / "notes.md").write_text("not a curve\n")
    discrete = find_baselines(base, "discrete")
    assert [p.name for p in discrete] == ["CasCNN_DiscROC.txt", "DDFD_DiscROC.txt"]
    ours = {"discrete": np.column_stack([0.9 * (1 - np.exp(-fp / 200)), fp, np.linspace(1, 0, len(fp))]),
            "continuous": np.column_stack([0.7 * (1 - np.exp(-fp / 200)), fp])}
    for kind in ("discrete", "continuous"):
        out = plot_fddb_roc(ours, tmp_path / "plots" / f"{kind}.png", kind, "SSH", find_baselines(base, kind))
        assert out.read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["continuous.png", "discrete.png"]
    with pytest.raises(ValueError, match="kind must be one of"):
        plot_fddb_roc(ours, tmp_path / "x.png", "both")
    with pytest.raises(FileNotFoundError, match="baselines folder not found"):
        find_baselines(tmp_path / "none", "discrete")
