"""Faked CPUs for the precision tests: one CpuCapabilities per kind of processor users run on."""
from lib.utils.cpu_capabilities import CpuCapabilities

ORT = "1.32.0"
# AVX2 only (Zen 2/3, older Xeons)
ZEN3 = CpuCapabilities("x86_64", "AVX2", frozenset({"avx2"}), onnxruntime=ORT)
# AVX-512 VNNI, no bf16
CASCADE_LAKE = CpuCapabilities("x86_64", "AVX512", frozenset({"avx2", "avx512f", "avx512_vnni"}), onnxruntime=ORT)
# AVX-512 VNNI and bf16 (this project's EPYC)
ZEN4 = CpuCapabilities("x86_64", "AVX512", frozenset({"avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni"}),
                       onnxruntime=ORT)
# AMX
SAPPHIRE_RAPIDS = CpuCapabilities("x86_64", "AVX512", ZEN4.flags | {"amx_bf16", "amx_int8"}, onnxruntime=ORT)
# ARM with bf16 and dot product; without bf16
GRAVITON3 = CpuCapabilities("aarch64", "SVE256", frozenset({"asimddp", "i8mm", "bf16"}), onnxruntime=ORT)
GRAVITON2 = CpuCapabilities("aarch64", "DEFAULT", frozenset({"asimddp"}), onnxruntime=ORT)
# an AVX-512 bf16 CPU held to AVX2: DNNL_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2, or one of them (only
# the oneDNN limit takes bf16 away)
ZEN4_AS_AVX2 = CpuCapabilities("x86_64", "AVX2", ZEN4.flags, onednn_limit="avx2", onnxruntime=ORT)
ZEN4_ONEDNN_AVX2 = CpuCapabilities("x86_64", "AVX512", ZEN4.flags, onednn_limit="avx2", onnxruntime=ORT)
ZEN4_ATEN_AVX2 = CpuCapabilities("x86_64", "AVX2", ZEN4.flags, onnxruntime=ORT)
