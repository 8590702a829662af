"""lib/utils/cpu_capabilities.py: flags read from /proc/cpuinfo text, and which precisions each kind
of CPU runs natively (faked CPUs: AVX2 Zen 3, AVX-512 VNNI without and with bf16, AMX Sapphire
Rapids, ARM with and without bf16, and an AVX-512 bf16 CPU held to AVX2 by the environment)."""
import platform

import pytest
import torch

from cpus import (CASCADE_LAKE, GRAVITON2, GRAVITON3, ORT, SAPPHIRE_RAPIDS, ZEN3, ZEN4, ZEN4_AS_AVX2, ZEN4_ATEN_AVX2,
                  ZEN4_ONEDNN_AVX2)
from lib.utils.cpu_capabilities import CpuCapabilities, cpu_flags, read_capabilities


def test_flags_are_read_from_x86_and_arm_cpuinfo_lines():
    x86 = "processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_vnni avx512_bf16 amx_tile\nbugs\t\t: spectre\n"
    arm = "processor\t: 0\nFeatures\t: fp asimd asimddp i8mm bf16 sve\nCPU part\t: 0xd40\n"
    assert cpu_flags(x86) == {"avx2", "avx512f", "avx512_vnni", "avx512_bf16"}
    assert cpu_flags(arm) == {"asimddp", "i8mm", "bf16"}
    assert cpu_flags("model name\t: avx2 in a name is not a flag\n") == frozenset()


@pytest.mark.parametrize("cpu, bf16, int8_isa, native", [
    (ZEN3, False, "AVX2", ("fp32", "int8")),
    (CASCADE_LAKE, False, "VNNI", ("fp32", "int8")),
    (ZEN4, True, "VNNI", ("fp32", "bf16", "int8")),
    (SAPPHIRE_RAPIDS, True, "AMX", ("fp32", "bf16", "int8")),
    (GRAVITON3, True, "dot product", ("fp32", "bf16", "int8")),
    (GRAVITON2, False, "dot product", ("fp32", "int8")),
    (ZEN4_AS_AVX2, False, "VNNI", ("fp32", "int8")),
    (ZEN4_ONEDNN_AVX2, False, "VNNI", ("fp32", "int8")),
    (ZEN4_ATEN_AVX2, True, "VNNI", ("fp32", "bf16", "int8")),
])
def test_native_precisions_of_each_kind_of_cpu(cpu, bf16, int8_isa, native):
    """bf16 speed is oneDNN's: a lowered ATEN_CPU_CAPABILITY alone keeps it native. int8 runs in ONNX
    Runtime's own kernels, chosen from the CPU's flags: the environment's limits on torch do not
    take VNNI from it."""
    assert cpu.bf16_native is bf16
    assert cpu.int8_isa == int8_isa
    assert cpu.native("cpu") == native
    assert cpu.native("cuda") == ("fp32", "fp16")


def test_no_onnxruntime_no_int8_and_no_onednn_no_bf16():
    assert CpuCapabilities("x86_64", "AVX512", ZEN4.flags).native() == ("fp32", "bf16")
    assert CpuCapabilities("x86_64", "AVX512", ZEN4.flags, onednn=False, onnxruntime=ORT).native() == ("fp32", "int8")


def test_limits_above_bf16_keep_it_native():
    assert CpuCapabilities("x86_64", "AVX512", SAPPHIRE_RAPIDS.flags, onednn_limit="avx512_core_bf16").bf16_native
    assert not CpuCapabilities("x86_64", "AVX512", SAPPHIRE_RAPIDS.flags, onednn_limit="avx512_core_vnni").bf16_native


def test_describe_names_capability_flags_limit_and_onnxruntime():
    assert ZEN4_AS_AVX2.describe() == ("x86_64, torch capability AVX2, oneDNN limited to avx2; flags: avx2 avx512f "
                                       "avx512_vnni avx_vnni avx512_bf16; native: fp32 int8; onnxruntime 1.32.0")
    assert CpuCapabilities("x86_64", "DEFAULT").describe() == (
        "x86_64, torch capability DEFAULT; flags: none of avx2 avx512f avx512_vnni avx_vnni avx512_bf16 amx_bf16 "
        "amx_int8; native: fp32; no onnxruntime")


def test_this_machine_is_read_as_torch_and_the_kernel_see_it():
    cpu = read_capabilities()
    assert cpu.torch_capability == torch.backends.cpu.get_cpu_capability()
    assert cpu.machine == platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            assert cpu.flags == cpu_flags(f.read())
    except FileNotFoundError:
        pass
    assert read_capabilities() is cpu  # read once
