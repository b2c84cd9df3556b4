"""Whether this CPU runs the INT8 feature model as it was measured.

ONNX Runtime's fast uint8 x int8 kernels on x86-64 CPUs without VNNI (AVX2, or AVX-512 before
Cascade Lake) add pairs of products in 16 bits, which saturate: the same quantized model gave
features at a mean cosine of 0.76 to FP32's on an AVX2-only CPU, against 0.98 on an AVX-512 VNNI
one (docs/performance.md). Such rows would not be the features the table's engine promises, so
INT8 is refused there. Other architectures are not checked (not measured).
"""

import platform
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
# The x86 instruction sets whose int8 dot products accumulate in 32 bits.
VNNI_FLAGS = frozenset({"avx512_vnni", "avx_vnni"})


def int8_refusal() -> str | None:
    """Why the INT8 engine is refused on this CPU, or None where it runs as measured."""
    if platform.machine().lower() not in {"x86_64", "amd64"}:
        return None
    try:
        flags = next(
            line.split(":", 1)[1].split()
            for line in CPUINFO.read_text().splitlines()
            if line.startswith("flags")
        )
    except (OSError, StopIteration):
        return f"the x86-64 CPU's instruction sets could not be read from {CPUINFO}"
    if VNNI_FLAGS.isdisjoint(flags):
        return (
            "this x86-64 CPU has no VNNI instructions (avx512_vnni or avx_vnni), on which ONNX "
            "Runtime's INT8 kernels saturate and give features far from FP32's"
        )
    return None


def require_int8_support() -> None:
    """Raise, saying why, where the INT8 engine would not give the features it was measured for."""
    reason = int8_refusal()
    if reason is not None:
        raise RuntimeError(
            f"featurize.engine onnxruntime-int8 is refused on this machine: {reason}. "
            "Use featurize.engine: onnxruntime (FP32), or run on a CPU with VNNI."
        )
