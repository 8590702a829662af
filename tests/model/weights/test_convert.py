"""model/weights/convert.py and `python3 -m model.weights convert`: the .pth holds the caffemodel's
tensors bit for bit, is recorded, and test.py / load_network accept it with the same detections."""
import pickle
import warnings
import zipfile

import pytest
import torch
from matplotlib import cbook

import test as test_script
from lib.utils.integrity import IntegrityError, record_path
from model.weights import convert as convert_module
from model.weights.cli import main
from model.weights.convert import convert, same_bits
from model.weights.loading import load_network
from weights_fixtures import write_ssh_caffemodel


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A DATA_DIR holding the fixture SSH_models/SSH.caffemodel."""
    root = tmp_path_factory.mktemp("data")
    write_ssh_caffemodel(root / "SSH_models" / "SSH.caffemodel")
    return root


def test_cli_default_paths_write_a_bit_identical_recorded_state_dict(data, capsys):
    assert main(["convert", "--data", str(data)]) == 0
    pth = data / "SSH_models" / "SSH.pth"
    assert f"-> {pth}" in capsys.readouterr().out
    state = torch.load(pth, map_location="cpu", weights_only=True)
    reference = load_network(data / "SSH_models" / "SSH.caffemodel").state_dict()
    assert list(state) == list(reference)
    assert all(same_bits(state[k], v) for k, v in reference.items())
    assert record_path(pth).is_file()
    assert all(same_bits(a, b) for a, b in zip(load_network(pth).state_dict().values(), reference.values()))


def test_pth_is_pickle_protocol_2_which_loads_without_warnings(data, tmp_path):
    """torch.load(weights_only=True) warns about, and for 4 and 5 cannot read, other pickle protocols;
    the files written here use 2, torch.save's default, so no tool shows that warning for them."""
    pth = convert(data / "SSH_models" / "SSH.caffemodel", tmp_path / "ssh.pth", "remake")
    with zipfile.ZipFile(pth) as archive:
        (pickle_name,) = [n for n in archive.namelist() if n.endswith("/data.pkl")]
        assert archive.read(pickle_name)[:2] == bytes([pickle.PROTO[0], 2])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_network(pth)


def test_same_bits_tells_negative_zero():
    assert torch.equal(torch.tensor([0.0]), torch.tensor([-0.0]))
    assert not same_bits(torch.tensor([0.0]), torch.tensor([-0.0]))
    assert same_bits(torch.tensor([1.5]), torch.tensor([1.5]))


def test_a_pth_that_does_not_reload_identically_is_not_kept(data, tmp_path, monkeypatch):
    save = torch.save

    def save_damaged(state, path):
        state = dict(state)
        key = next(iter(state))
        state[key] = state[key].clone()
        state[key].view(-1)[0] += 1
        save(state, path)

    monkeypatch.setattr(convert_module.torch, "save", save_damaged)
    out = tmp_path / "x.pth"
    with pytest.raises(ValueError, match="re-loaded tensors differ from .*SSH.caffemodel \\(vgg"):
        convert(data / "SSH_models" / "SSH.caffemodel", out, "remake")
    assert list(tmp_path.iterdir()) == []


def test_test_py_accepts_the_pth_with_the_caffemodel_detections(data, tmp_path):
    model = data / "SSH_models" / "SSH.caffemodel"
    pth = convert(model, tmp_path / "ssh.pth", "remake")
    image = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    quick = ["--image", str(image), "--device", "cpu", "--thresh", "0.0",
             "--set", "TEST.SCALES", "[128]", "--set", "TEST.MAX_SIZE", "200"]
    for name, weights in (("caffe", model), ("pth", pth)):
        assert test_script.main(quick + ["--model", str(weights), "--out", str(tmp_path / name)]) == 0
    caffe = (tmp_path / "caffe" / "grace_hopper_ssh.txt").read_text()
    assert caffe.strip() and (tmp_path / "pth" / "grace_hopper_ssh.txt").read_text() == caffe


def test_damaged_pth_is_refused_by_test_py(data, tmp_path, capsys):
    pth = convert(data / "SSH_models" / "SSH.caffemodel", tmp_path / "ssh.pth", "python3 -m model.weights convert")
    raw = bytearray(pth.read_bytes())
    raw[-100] ^= 1
    pth.write_bytes(raw)
    with pytest.raises(IntegrityError, match="integrity record"):
        load_network(pth)
    assert test_script.main(["--model", str(pth), "--device", "cpu", "--out", str(tmp_path / "o")]) == 2
    assert "run `python3 -m model.weights convert` to get it again" in capsys.readouterr().err
