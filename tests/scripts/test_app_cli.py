"""app.py's command line: test.py's model options and messages, the warning for a non-local --host."""
import pytest

import app
import test as test_script
from lib.utils.exit_codes import ExitCode
from test import main as run_test_py


def test_missing_official_model_gets_test_py_message(tmp_path, capsys):
    missing = ["--set", "DATA_DIR", str(tmp_path)]
    assert app.main(missing) == 2
    said = capsys.readouterr().err
    assert run_test_py(missing) == 2
    assert said == capsys.readouterr().err
    assert said.endswith("SSH.caffemodel. Run `make demo` to download the official model.\n")


@pytest.mark.parametrize("host, warned", [("127.0.0.1", False), ("0.0.0.0", True)])
def test_only_a_non_local_host_is_warned_about(random_checkpoint, monkeypatch, capsys, host, warned):
    served = []
    monkeypatch.setattr(app, "serve", lambda args, detector: served.append((args, detector)))
    _, pth = random_checkpoint
    assert app.main(["--model", str(pth), "--host", host, "--device", "cpu"]) == 0
    (args, detector), = served
    assert str(args.model) == str(pth) and detector.device.type == "cpu" and args.host == host
    err = capsys.readouterr().err
    assert ("warning: --host 0.0.0.0 serves the app to other machines" in err) is warned


@pytest.mark.parametrize("argv", [["--backend", "pytorch", "--precision", "int8"], ["--auth", "nopassword"],
                                  ["--port", "0"], ["--max-upload-mb", "-1"]])
def test_bad_options_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as stopped:
        app.parse_args(argv)
    err = capsys.readouterr().err
    assert stopped.value.code == ExitCode.BAD_INPUT == 2 and err.startswith("error: ") and err.count("\n") == 1


def test_a_missing_onnx_package_gets_test_py_message(random_checkpoint, tmp_path, monkeypatch, capsys):
    def missing(*args, **kwargs):
        raise ImportError("No module named 'onnxruntime'", name="onnxruntime")

    monkeypatch.setattr(app, "build_detector", missing)
    monkeypatch.setattr(test_script, "build_detector", missing)
    _, pth = random_checkpoint
    argv = ["--model", str(pth), "--device", "cpu"]
    assert app.main(argv) == ExitCode.BAD_INPUT
    said = capsys.readouterr().err
    assert run_test_py(argv + ["--out", str(tmp_path)]) == ExitCode.BAD_INPUT
    assert said == capsys.readouterr().err == (
        "error: onnxruntime is missing; ONNX export and inference need `pip install onnx onnxruntime onnxscript`.\n")


def test_underscore_spellings_are_hidden_aliases():
    assert app.parse_args(["--max_upload_mb", "2", "--queue_size", "3"]) == \
        app.parse_args(["--max-upload-mb", "2", "--queue-size", "3"])
