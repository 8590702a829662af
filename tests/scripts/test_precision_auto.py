"""--precision auto in test.py and eval.py, on faked CPUs: the format chosen, the line saying why, and
the warning for a format this CPU only emulates."""
import json

import pytest

import eval as eval_script
import test as test_script
from cpus import ZEN3, ZEN4
from model.precision import PrecisionWarning
from shared import DATA, require

SMALL = ["--set", "TEST.SCALES", "[64]", "--set", "TEST.MAX_SIZE", "96", "--device", "cpu"]


@pytest.fixture
def cpu(monkeypatch):
    """Fake this machine's CPU: cpu(ZEN3) and precision's auto and warning see that processor."""
    import lib.utils.cpu_capabilities

    def fake(capabilities):
        monkeypatch.setattr(lib.utils.cpu_capabilities, "read_capabilities", lambda: capabilities)
    return fake


@pytest.mark.parametrize("processor, chosen, why", [
    (ZEN3, "fp32", "bf16 is not native on this CPU"),
    (ZEN4, "bf16", "this CPU computes bf16 natively (avx512_bf16)"),
])
def test_test_py_auto_says_what_it_chose_and_runs_it(processor, chosen, why, cpu, random_checkpoint, tmp_path, capsys):
    _, pth = random_checkpoint
    cpu(processor)
    from matplotlib import cbook

    photo = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    assert test_script.main(["--image", str(photo), "--model", str(pth), "--precision", "auto", "--save-json",
                             "--out", str(tmp_path)] + SMALL) == 0
    err = capsys.readouterr().err
    assert f"precision auto: {chosen} ({why}" in err and f"`python3 -m model.deploy quantize --model {pth}` makes one" in err
    assert json.loads((tmp_path / "detections.json").read_text())["precision"] == chosen


def test_bf16_on_a_cpu_without_bf16_warns_in_one_line(cpu, random_checkpoint, tmp_path, capsys):
    _, pth = random_checkpoint
    cpu(ZEN3)
    from matplotlib import cbook

    photo = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    with pytest.warns(PrecisionWarning) as caught:
        assert test_script.main(["--image", str(photo), "--model", str(pth), "--precision", "bf16",
                                 "--out", str(tmp_path)] + SMALL) == 0
    assert [str(w.message) for w in caught] == [
        "bf16 is emulated on this CPU (torch AVX2, no avx512_bf16 or amx_bf16): about 5-10x slower than fp32; "
        "use fp32, or auto (int8 when there is an int8 model)"]


def test_eval_py_auto_reaches_the_detector(cpu, monkeypatch, tmp_path, capsys):
    import model.detector

    require(DATA / "mini_wider", DATA / "wider_eval_gt")
    cpu(ZEN4)
    built = []

    class Refusing:
        def prepare(self, image):
            raise ValueError("not a real detector")

    monkeypatch.setattr(model.detector, "build_detector",
                        lambda path, cfg, device, precision: built.append(precision) or Refusing())
    monkeypatch.chdir(tmp_path)
    (tmp_path / "w.pth").write_bytes(b"")
    argv = ["--model", "w.pth", "--data", str(DATA / "mini_wider"), "--gt", str(DATA / "wider_eval_gt"),
            "--precision", "auto", "--device", "cpu"]
    assert eval_script.main(argv) == 2  # the fake detector refuses every image
    assert built == ["bf16"] and "precision auto: bf16" in capsys.readouterr().err
