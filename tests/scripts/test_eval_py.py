"""eval.py's report: the official MATLAB tool's command names a folder that holds wider_eval.m."""
import numpy as np

from eval import report

RESULTS = {s: {"ap": 0.5, "precision": np.array([1.0]), "recall": np.array([0.5])} for s in ("easy", "medium", "hard")}


def test_matlab_command_runs_in_the_tool_folder(tmp_path, capsys):
    tool = tmp_path / "eval_tools"
    (tool / "ground_truth").mkdir(parents=True)
    (tool / "wider_eval.m").write_text("% the official tool\n")
    report(RESULTS, tmp_path / "pred", tool / "ground_truth", "SSH", "matlab", None, None, None)
    out = capsys.readouterr().out
    assert f"  cd {tool} && matlab -nodisplay -nodesktop -r \"wider_eval('{tmp_path / 'pred'}','SSH'," in out
    assert "EVAL_TOOLS" not in out


def test_a_ground_truth_folder_outside_the_tool_says_where_to_run_it(tmp_path, capsys):
    (tmp_path / "gt").mkdir()
    report(RESULTS, tmp_path / "pred", tmp_path / "gt", "SSH", "matlab", None, None, None)
    out = capsys.readouterr().out
    assert f"no wider_eval.m beside {tmp_path / 'gt'}: EVAL_TOOLS below is the official tool's folder" in out
    assert "  cd EVAL_TOOLS && matlab -nodisplay" in out and f"cd {tmp_path}" not in out
