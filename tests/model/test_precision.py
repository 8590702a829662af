"""model/precision.py: `--precision auto` on each faked CPU (and CUDA), int8 only when the int8
graph's record names the same weights, and the one-line warning for formats a CPU only emulates."""
import re
import warnings

import pytest
import torch

from cpus import CASCADE_LAKE, GRAVITON2, GRAVITON3, SAPPHIRE_RAPIDS, ZEN3, ZEN4, ZEN4_AS_AVX2, ZEN4_ATEN_AVX2
from lib.config import data_layout
from lib.utils.cpu_capabilities import CpuCapabilities
from lib.utils.download import sha256_file
from model.precision import (PRECISION_CHOICES, PRECISIONS, PrecisionWarning, auto_precision, check_precision,
                             emulation_warning, resolve_precision, warn_if_emulated)

onnx = pytest.importorskip("onnx")

from model.deploy.quantize import SOURCE_KEY, int8_model_of, int8_path, source_entry  # noqa: E402


def write_graph(path, **metadata):
    """A tiny ONNX file with `metadata` (only its metadata is read when choosing)."""
    node = onnx.helper.make_node("Identity", ["images"], ["out"])
    tensor = onnx.helper.make_tensor_value_info
    graph = onnx.helper.make_graph([node], "g", [tensor("images", onnx.TensorProto.FLOAT, [1])],
                                   [tensor("out", onnx.TensorProto.FLOAT, [1])])
    model = onnx.helper.make_model(graph)
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))
    return path


@pytest.fixture
def weights(tmp_path):
    path = tmp_path / "SSH_models" / "SSH.caffemodel"
    path.parent.mkdir()
    path.write_bytes(b"weights " * 1000)
    return path


def int8_of(weights, source=None):
    """The int8 graph beside `weights`, its record naming `source` (default: `weights` themselves)."""
    return write_graph(int8_path(weights), **{"ssh.precision": "int8", SOURCE_KEY: source or source_entry(weights)})


def test_auto_is_a_choice_not_a_format():
    assert PRECISIONS == ("fp32", "bf16", "fp16", "int8")
    assert PRECISION_CHOICES == PRECISIONS + ("auto",)
    with pytest.raises(ValueError, match=re.escape("precision auto names no format: resolve it first")):
        check_precision("auto", torch.nn.Identity(), "cpu")


@pytest.mark.parametrize("cpu, device, int8, expected", [
    (ZEN3, "cpu", None, "fp32"),
    (ZEN3, "cpu", "m_int8.onnx", "int8"),
    (CASCADE_LAKE, "cpu", None, "fp32"),
    (ZEN4, "cpu", None, "bf16"),
    (ZEN4, "cpu", "m_int8.onnx", "int8"),
    (SAPPHIRE_RAPIDS, "cpu", None, "bf16"),
    (SAPPHIRE_RAPIDS, "cpu", "m_int8.onnx", "int8"),
    (GRAVITON3, "cpu", None, "bf16"),
    (GRAVITON2, "cpu", None, "fp32"),
    (GRAVITON2, "cpu", "m_int8.onnx", "int8"),
    (ZEN4_AS_AVX2, "cpu", None, "fp32"),
    (ZEN3, "cuda", "m_int8.onnx", "fp16"),
    (SAPPHIRE_RAPIDS, "cuda", None, "fp16"),
])
def test_auto_picks_the_fastest_native_format(cpu, device, int8, expected):
    precision, reason = auto_precision(cpu, device, int8)
    assert precision == expected
    assert "\n" not in reason
    assert precision in cpu.native(device)


def test_auto_reasons_say_why():
    assert auto_precision(ZEN3, "cpu", "m_int8.onnx") == ("int8", "m_int8.onnx is the int8 model of these weights "
                                                                  "(AVX2 int8 here)")
    assert auto_precision(SAPPHIRE_RAPIDS, "cpu", "m_int8.onnx")[1].endswith("(AMX int8 here)")
    assert auto_precision(ZEN4, "cpu") == ("bf16", "this CPU computes bf16 natively (avx512_bf16); "
                                                   "no int8 model of these weights")
    assert auto_precision(ZEN4_AS_AVX2, "cpu", None, "no int8 model x_int8.onnx") == (
        "fp32", "bf16 is not native on this CPU (torch AVX2, oneDNN limited to avx2: avx512_bf16 unused); "
                "no int8 model x_int8.onnx")
    assert auto_precision(GRAVITON2, "cpu")[1].startswith("bf16 is not native on this CPU (torch DEFAULT, no ARM bf16)")
    assert auto_precision(ZEN4, "cuda") == ("fp16", "CUDA computes fp16 natively (autocast)")


def test_auto_without_onnxruntime_does_not_pick_int8():
    cpu = CpuCapabilities("x86_64", "AVX2", frozenset({"avx2"}))
    assert auto_precision(cpu, "cpu", "m_int8.onnx") == (
        "fp32", "bf16 is not native on this CPU (torch AVX2, no avx512_bf16 or amx_bf16); "
                "m_int8.onnx needs onnxruntime, which is not installed")


def test_resolve_picks_the_int8_graph_whose_record_names_these_weights(weights):
    int8 = int8_of(weights)
    for cpu in (ZEN3, ZEN4):
        choice = resolve_precision("auto", "cpu", weights, capabilities=cpu)
        assert (choice.precision, choice.model, choice.device) == ("int8", int8, torch.device("cpu"))
        assert choice.message == f"precision auto: int8 ({int8} is the int8 model of these weights (" \
                                 f"{cpu.int8_isa} int8 here))"
    official = resolve_precision("auto", "cpu", layout=data_layout(weights.parents[1]), capabilities=ZEN3)
    assert official.model == data_layout(weights.parents[1]).ssh_int8_model == int8
    assert resolve_precision("auto", "cpu", weights, backend="pytorch", capabilities=ZEN3).precision == "fp32"


@pytest.mark.parametrize("record, why", [
    ({"ssh.precision": "int8", SOURCE_KEY: "SSH.caffemodel sha256:" + "0" * 64}, "was quantized from other weights"),
    ({"ssh.precision": "int8"}, "records no source weights"),
    ({SOURCE_KEY: "same"}, "is not an int8 graph"),
])
def test_resolve_refuses_an_int8_graph_of_other_weights(weights, record, why):
    record = {k: (source_entry(weights) if v == "same" else v) for k, v in record.items()}
    write_graph(int8_path(weights), **record)
    choice = resolve_precision("auto", "cpu", weights, capabilities=ZEN3)
    assert (choice.precision, choice.model) == ("fp32", weights)
    assert why in choice.message and "\n" not in choice.message
    assert resolve_precision("auto", "cpu", weights, capabilities=ZEN4).precision == "bf16"


def test_a_damaged_int8_graph_is_not_picked(weights):
    int8_path(weights).write_bytes(b"\xff\xff not a protobuf")
    choice = resolve_precision("auto", "cpu", weights, capabilities=ZEN3)
    assert choice.precision == "fp32" and f"{int8_path(weights)}: not an ONNX model (" in choice.message


def test_changed_weights_lose_their_int8_graph(weights):
    int8_of(weights)
    assert int8_model_of(weights)[0] == int8_path(weights)
    weights.write_bytes(b"retrained " * 1000)
    path, why = int8_model_of(weights)
    assert path is None and f"was quantized from other weights (SSH.caffemodel sha256:" in why


def test_resolve_without_int8_graph_says_how_to_make_one(weights):
    choice = resolve_precision("auto", "cpu", weights, capabilities=ZEN3)
    assert choice.message == (f"precision auto: fp32 (bf16 is not native on this CPU (torch AVX2, no avx512_bf16 or "
                              f"amx_bf16); no int8 model {int8_path(weights)} (`python3 -m model.deploy quantize "
                              f"--model {weights}` makes one))")


def test_resolve_runs_an_onnx_graph_in_its_own_format(weights):
    int8 = int8_of(weights)
    fp32 = write_graph(weights.with_name("float.onnx"))
    assert resolve_precision("auto", None, int8, capabilities=ZEN4)[:3] == ("int8", int8, torch.device("cpu"))
    assert resolve_precision("auto", "cpu", fp32, capabilities=ZEN4)[:2] == ("fp32", fp32)


def test_resolve_keeps_a_given_precision_with_its_defaults(tmp_path):
    layout = data_layout(tmp_path)
    assert resolve_precision("int8", layout=layout) == ("int8", layout.ssh_int8_model, torch.device("cpu"), None)
    assert resolve_precision("bf16", "cpu", layout=layout) == ("bf16", layout.ssh_model, torch.device("cpu"), None)
    assert resolve_precision("auto", "cpu", capabilities=ZEN3)[:3] == ("fp32", None, torch.device("cpu"))
    with pytest.raises(ValueError, match=re.escape("unknown precision 'fp64' (expected one of fp32, bf16, fp16, "
                                                   "int8, auto)")):
        resolve_precision("fp64")


def test_bf16_on_a_cpu_without_bf16_warns_with_the_slowdown():
    assert emulation_warning("bf16", "cpu", ZEN3) == (
        "bf16 is emulated on this CPU (torch AVX2, no avx512_bf16 or amx_bf16): about 5-10x slower than fp32; "
        "use fp32, or auto (int8 when there is an int8 model)")
    assert emulation_warning("bf16", "cpu", ZEN4_AS_AVX2) == (
        "bf16 is emulated on this CPU (torch AVX2, oneDNN limited to avx2: avx512_bf16 unused): about 5-10x slower "
        "than fp32; use fp32, or auto (int8 when there is an int8 model)")
    assert emulation_warning("fp16", "cpu", ZEN4) == (
        "fp16 is emulated on this CPU (no fp16 convolution kernels: fp16 is for CUDA): about 5-10x slower than fp32; "
        "use bf16 (native here), fp32, or auto (int8 when there is an int8 model)")


@pytest.mark.parametrize("precision, device, cpu", [
    ("bf16", "cpu", ZEN4), ("bf16", "cpu", SAPPHIRE_RAPIDS), ("bf16", "cpu", GRAVITON3),
    ("bf16", "cpu", ZEN4_ATEN_AVX2), ("fp32", "cpu", ZEN3),
    ("int8", "cpu", ZEN3), ("fp16", "cuda", ZEN3), ("bf16", "cuda", ZEN3),
])
def test_native_formats_do_not_warn(precision, device, cpu):
    assert emulation_warning(precision, device, cpu) is None


def test_warn_if_emulated_issues_one_precision_warning():
    with pytest.warns(PrecisionWarning, match=r"^bf16 is emulated on this CPU .* about 5-10x slower than fp32;"):
        assert warn_if_emulated("bf16", "cpu", ZEN3).startswith("bf16 is emulated")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert warn_if_emulated("bf16", "cpu", ZEN4) is None
