"""What this CPU offers the network's number formats, and which of them it runs natively.

Read from four places: torch's ATen CPU capability (torch.backends.cpu.get_cpu_capability():
"AVX2", "AVX512", "DEFAULT", ...; ATEN_CPU_CAPABILITY lowers it), the instruction-set flags of
/proc/cpuinfo (macOS: sysctl hw.optional.arm.FEAT_*), the oneDNN ISA limit of the environment
(DNNL_MAX_CPU_ISA / ONEDNN_MAX_CPU_ISA: PyTorch's convolutions never use more) and the installed
ONNX Runtime, which runs int8 with its own MLAS kernels, chosen from the CPU's flags alone (the
two variables above do not apply to it; it reports no ISA of its own).

`read_capabilities()` reads this machine; `CpuCapabilities(...)` takes the same facts as values, so
a test fakes any CPU. model.precision decides with it (`--precision auto`, the emulation warning).
"""
import functools
import os
import platform
import subprocess
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

# The flags that matter here, by /proc/cpuinfo name. x86: AVX2 and AVX-512 (int8 through vpmaddubsw),
# VNNI (int8 dot products: avx512_vnni, avx_vnni), bf16 dot products (avx512_bf16) and AMX tiles
# (amx_bf16, amx_int8). ARM: dot product (asimddp), int8 matrix multiply (i8mm), bf16.
X86_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
ARM_FLAGS = ("asimddp", "i8mm", "bf16")
# macOS on Apple silicon names the ARM features in sysctl.
MACOS_FEATURES = {"asimddp": "FEAT_DotProd", "i8mm": "FEAT_I8MM", "bf16": "FEAT_BF16"}
# oneDNN ISA limits below which it has no bf16 instructions (oneDNN's cpu_isa names, lowercase).
ONEDNN_BELOW_BF16 = ("sse41", "avx", "avx2", "avx2_vnni", "avx2_vnni_2", "avx512_core", "avx512_core_vnni")


@dataclass(frozen=True)
class CpuCapabilities:
    """The facts about one CPU that decide its number formats.

    machine: platform.machine() ("x86_64", "aarch64", "arm64"); torch_capability: torch's ATen CPU
    capability; flags: those of X86_FLAGS + ARM_FLAGS the CPU has; onednn_limit: the oneDNN ISA limit
    set in the environment, lowercase ("" when none); onednn: whether torch has oneDNN (mkldnn);
    onnxruntime: ONNX Runtime's version ("" when not installed).
    """

    machine: str
    torch_capability: str
    flags: frozenset = frozenset()
    onednn_limit: str = ""
    onednn: bool = True
    onnxruntime: str = ""

    @property
    def arm(self):
        return self.machine.lower() in ("aarch64", "arm64")

    @property
    def limited(self):
        """Whether the environment's oneDNN ISA limit keeps PyTorch's convolutions below bf16. (A
        lowered ATEN_CPU_CAPABILITY alone does not: measured, bf16 stays 1.5x fp32 with it.)"""
        return self.onednn_limit in ONEDNN_BELOW_BF16

    @property
    def bf16_native(self):
        """Whether PyTorch's bf16 convolutions run on bf16 instructions here: AVX-512 bf16 or AMX
        (x86, unless oneDNN is `limited`), or ARM bf16, through oneDNN. Elsewhere bf16 is emulated
        (measured on AVX2: about 9x slower than fp32; README "Precision and speed")."""
        if not self.onednn:
            return False
        if self.arm:
            return "bf16" in self.flags
        return bool({"avx512_bf16", "amx_bf16"} & self.flags) and not self.limited

    @property
    def int8_isa(self):
        """The int8 instructions ONNX Runtime's kernels use here: "AMX", "VNNI", "AVX2", "dot product"
        (ARM), or "" (none of those: int8 still runs, on older SIMD)."""
        if self.arm:
            return "dot product" if {"asimddp", "i8mm"} & self.flags else ""
        if "amx_int8" in self.flags:
            return "AMX"
        if {"avx512_vnni", "avx_vnni"} & self.flags:
            return "VNNI"
        return "AVX2" if "avx2" in self.flags else ""

    def native(self, device_type="cpu"):
        """The precisions (model/precision.py names) that run at full speed on `device_type`: fp16 and
        fp32 on CUDA; on the CPU fp32, bf16 where `bf16_native`, and int8 when ONNX Runtime is installed.
        fp16 on a CPU is emulated (README: 0.10x fp32 on an AVX-512 bf16 CPU)."""
        if device_type == "cuda":
            return ("fp32", "fp16")
        return ("fp32",) + (("bf16",) if self.bf16_native else ()) + (("int8",) if self.onnxruntime else ())

    def describe(self):
        """One line: the CPU's torch capability, flags, limits and ONNX Runtime."""
        flags = " ".join(f for f in X86_FLAGS + ARM_FLAGS if f in self.flags) or "none of " + " ".join(
            ARM_FLAGS if self.arm else X86_FLAGS)
        limit = f", oneDNN limited to {self.onednn_limit}" if self.onednn_limit else ""
        ort = f"onnxruntime {self.onnxruntime}" if self.onnxruntime else "no onnxruntime"
        return (f"{self.machine}, torch capability {self.torch_capability}{limit}; flags: {flags}; "
                f"native: {' '.join(self.native())}; {ort}")


def cpu_flags(cpuinfo_text):
    """The X86_FLAGS and ARM_FLAGS named in /proc/cpuinfo text (its "flags" or, on ARM, "Features" lines)."""
    found = set()
    for line in cpuinfo_text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            found.update(value.split())
    return frozenset(found & set(X86_FLAGS + ARM_FLAGS))


def _macos_flags():
    flags = set()
    for flag, feature in MACOS_FEATURES.items():
        try:
            out = subprocess.run(["sysctl", "-n", f"hw.optional.arm.{feature}"], capture_output=True, text=True,
                                 timeout=5).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            continue
        if out == "1":
            flags.add(flag)
    return frozenset(flags)


def _read_flags():
    try:
        return cpu_flags(Path("/proc/cpuinfo").read_text())
    except OSError:
        return _macos_flags() if platform.system() == "Darwin" else frozenset()


def _onnxruntime_version():
    for name in ("onnxruntime", "onnxruntime-gpu"):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return ""


@functools.cache
def read_capabilities():
    """This machine's `CpuCapabilities` (read once per process)."""
    import torch

    limit = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or ""
    return CpuCapabilities(machine=platform.machine(), torch_capability=torch.backends.cpu.get_cpu_capability(),
                           flags=_read_flags(), onednn_limit=limit.strip().lower(),
                           onednn=torch.backends.mkldnn.is_available(), onnxruntime=_onnxruntime_version())
