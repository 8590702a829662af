"""Every error path of test.py and eval.py: one `error:` sentence and exit code 2, never a traceback.

(train.py's and train_dist.py's error paths are in tests/scripts/test_train_py.py and
tests/scripts/test_train_dist_py.py.)
"""
import subprocess
import sys

import numpy as np
import pytest
import torch

import eval as eval_script
import test as test_script
from shared import ROOT



@pytest.fixture(scope="module")
def files(tmp_path_factory, random_checkpoint):
    """Model files good and bad, a photo, a folder and a config, in one temporary folder."""
    folder = tmp_path_factory.mktemp("cli")
    _, pth = random_checkpoint
    (folder / "junk.pth").write_bytes(np.random.default_rng(0).bytes(1000))
    (folder / "junk.caffemodel").write_bytes(np.random.default_rng(1).bytes(1000))
    torch.save({"a": torch.zeros(2)}, folder / "other.pth")
    torch.save([1, 2], folder / "list.pth")
    (folder / "model.txt").write_text("weights?")
    (folder / "bad.yml").write_text("TEST: [unclosed\n")
    (folder / "list.yml").write_text("- 1\n- 2\n")
    (folder / "a_file").write_text("not a folder")
    (folder / "clip.avi").write_text("not a video")
    return {"good": str(pth), "dir": folder}


def case(files, *args):
    return [a.format(**files) for a in args]


TEST_CASES = {
    "device gpu": ("--model", "{good}", "--device", "gpu"),
    "device cuda": ("--model", "{good}", "--device", "cuda:7"),
    "missing model": ("--model", "{dir}/absent.pth"),
    "unknown model type": ("--model", "{dir}/model.txt"),
    "garbage pth": ("--model", "{dir}/junk.pth"),
    "garbage caffemodel": ("--model", "{dir}/junk.caffemodel"),
    "foreign state_dict": ("--model", "{dir}/other.pth"),
    "pth of a list": ("--model", "{dir}/list.pth"),
    "onnxruntime on a pth": ("--model", "{good}", "--backend", "onnxruntime"),
    "missing config": ("--model", "{good}", "--cfg", "{dir}/absent.yml"),
    "broken yaml": ("--model", "{good}", "--cfg", "{dir}/bad.yml"),
    "yaml not a mapping": ("--model", "{good}", "--cfg", "{dir}/list.yml"),
    "unknown key": ("--model", "{good}", "--set", "TEST.NOPE", "1"),
    "wrong type": ("--model", "{good}", "--set", "TEST.SCALES", "abc"),
    "dir not a folder": ("--model", "{good}", "--dir", "{dir}/a_file"),
    "video not a video": ("--model", "{good}", "--video", "{dir}/clip.avi"),
    "missing video": ("--model", "{good}", "--video", "{dir}/absent.mp4"),
    "out is a file": ("--model", "{good}", "--out", "{dir}/a_file"),
    "export to a file's child": ("--model", "{good}", "--export-onnx", "{dir}/a_file/x.onnx"),
}

EVAL_CASES = {
    "device gpu": ("--model", "{good}", "--device", "gpu", "--gt", "{dir}"),
    "missing predictions": ("--predictions", "{dir}/absent", "--gt", "{dir}"),
    "missing ground truth": ("--predictions", "{dir}", "--gt", "{dir}/absent"),
    "missing config": ("--predictions", "{dir}", "--cfg", "{dir}/absent.yml"),
    "unknown key": ("--predictions", "{dir}", "--set", "TEST.NOPE", "1"),
    "missing baselines": ("--predictions", "{dir}", "--gt", "{dir}", "--baselines", "{dir}/absent"),
    "no ground truth at the default place": ("--predictions", "{dir}", "--data", "{dir}/absent"),
    "json is a folder": ("--model", "{good}", "--gt", "{dir}", "--json", "{dir}"),
    "plot under a file": ("--model", "{good}", "--gt", "{dir}", "--plot", "{dir}/a_file/pr.png"),
}
# Cases that get past the ground truth (a stand-in) and must fail before detection.
EVAL_NEEDS_GT = {"device gpu", "json is a folder", "plot under a file"}


def assert_one_error(capsys, code):
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "error: " in lines[0], err
    return lines[0]


@pytest.mark.parametrize("name", sorted(TEST_CASES))
def test_test_py_error_paths(files, capsys, name):
    line = assert_one_error(capsys, test_script.main(case(files, *TEST_CASES[name])))
    assert "make demo" not in line  # the download hint is for the default model only


@pytest.mark.parametrize("name", sorted(EVAL_CASES))
def test_eval_py_error_paths(files, capsys, monkeypatch, name):
    if name in EVAL_NEEDS_GT:
        monkeypatch.setattr(eval_script, "load_ground_truth", lambda path: None)
    if name != "device gpu":  # output places are checked before detection starts
        monkeypatch.setattr(eval_script, "detect", lambda *args: pytest.fail("detection before the checks"))
    line = assert_one_error(capsys, eval_script.main(case(files, *EVAL_CASES[name])))
    if name == "no ground truth at the default place":
        assert f"no ground truth at {files['dir']}/absent/eval_tools/ground_truth (the default): give --gt DIR" in line


def test_messages_name_the_value(files, capsys):
    cases = {("--device", "gpu"): "'gpu'", ("--model", "{dir}/other.pth"): "other.pth",
             ("--cfg", "{dir}/absent.yml"): "absent.yml", ("--set", "TEST.NOPE", "1"): "TEST.NOPE"}
    for args, named in cases.items():
        args = case(files, *args)
        model = [] if "--model" in args else ["--model", files["good"]]
        test_script.main(model + args)
        assert named in capsys.readouterr().err


@pytest.mark.parametrize("script, args", [
    ("test.py", ["--device", "gpu"]),
    ("test.py", ["--model", "{dir}/junk.pth"]),
    ("eval.py", ["--predictions", "{dir}/absent"]),
])
def test_scripts_print_no_traceback_as_processes(files, script, args):
    """The same through the real command line (an uncaught error would print a traceback)."""
    run = subprocess.run([sys.executable, script, *case(files, *args)], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 2 and "Traceback" not in run.stderr and run.stderr.count("error: ") == 1, run.stderr
