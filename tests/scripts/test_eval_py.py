"""eval.py's command line (hyphenated options, underscore aliases, one-line errors) and its report: the
official MATLAB tool's command names a folder that holds wider_eval.m."""
import numpy as np
import pytest

from eval import main, parse_args, report
from lib.utils.exit_codes import ExitCode

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


def test_underscore_spellings_are_hidden_aliases_of_the_hyphenated_options(capsys):
    assert parse_args(["--net_name", "X", "--no_cache"]) == parse_args(["--net-name", "X", "--no-cache"])
    assert parse_args(["--net-name", "X"]).net_name == "X"
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    usage = capsys.readouterr().out
    assert "--net-name NAME" in usage and "--no-cache" in usage
    assert "--net_name NAME" not in usage and "[--no_cache]" not in usage


@pytest.mark.parametrize("argv, message", [
    (["--workers", "-1"], "error: argument --workers: must be at least 0, got -1"),
    (["--timeout", "0"], "error: argument --timeout: must be a positive number of seconds, got 0"),
    (["--net_name"], "error: argument --net-name: expected one argument"),
    (["--images", "pics"], "error: --images is an FDDB option: give --dataset fddb"),
])
def test_option_errors_are_one_error_line_and_exit_code_2(argv, message, capsys):
    with pytest.raises(SystemExit) as stopped:
        parse_args(argv)
    assert stopped.value.code == ExitCode.BAD_INPUT == 2
    assert capsys.readouterr().err == message + "\n"


def test_run_errors_are_one_error_line_without_the_script_name(tmp_path, capsys):
    assert main(["--predictions", str(tmp_path / "absent"), "--gt", str(tmp_path)]) == ExitCode.BAD_INPUT
    assert capsys.readouterr().err == f"error: ground-truth file not found: {tmp_path / 'wider_face_val.mat'}\n"
