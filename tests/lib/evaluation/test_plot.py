"""PR-curve plot: the tool's legend text and its baseline .mat files."""
import numpy as np
import pytest
import scipy.io

from lib.evaluation.plot import legend_label, load_baselines, num2str, plot_pr_curves


@pytest.mark.parametrize("x, text", [(0.93243941106335027, "0.93244"), (1.0, "1"), (0.5, "0.5"),
                                     (12.3456789, "12.3457"), (float("nan"), "NaN")])
def test_num2str(x, text):
    assert num2str(x) == text


def test_legend_cuts_the_ap_to_five_characters():
    assert legend_label("SSH", 0.8297385224210827) == "SSH-0.829"
    assert legend_label("HR", 1.0) == "HR-1"


def _curve(top):
    recall = np.linspace(0, top, 1000)
    return np.stack([np.linspace(1, 0.5, 1000), recall], axis=1)  # pr_cruve: precision, recall


def test_baselines_are_read_from_the_tool_layout_and_plotted(tmp_path):
    for method, top in [("HR", 0.8), ("SSH", 0.9)]:
        folder = tmp_path / "setting_int" / method
        folder.mkdir(parents=True)
        for setting in ("easy", "hard"):
            scipy.io.savemat(folder / f"wider_pr_info_{method}_{setting}_val.mat",
                             {"pr_cruve": _curve(top), "legend_name": method})
    curves = load_baselines(tmp_path / "setting_int", "easy")
    assert [c[0] for c in curves] == ["HR", "SSH"]
    np.testing.assert_array_equal(curves[1][1], _curve(0.9)[:, 0])
    np.testing.assert_array_equal(curves[1][2], _curve(0.9)[:, 1])
    assert load_baselines(tmp_path / "setting_int", "medium") == []
    results = {s: {"precision": _curve(0.7)[:, 0], "recall": _curve(0.7)[:, 1]} for s in ("easy", "hard")}
    out = plot_pr_curves(results, tmp_path / "plots" / "pr.png", "mine", tmp_path / "setting_int")
    assert out.read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in out.parent.iterdir()) == ["pr.png"]


def test_missing_baselines_folder_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="baselines folder not found"):
        load_baselines(tmp_path / "none", "easy")
