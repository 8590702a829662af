"""app.py's command line: test.py's model options and messages, the warning for a non-local --host."""
import pytest

import app
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
    assert stopped.value.code == 2 and "error:" in capsys.readouterr().err
