"""The INT8 engine is refused, saying why, on CPUs whose INT8 kernels saturate."""

import platform
from pathlib import Path

import pytest

from fruit_pipeline.core import feature_model, int8_support
from fruit_pipeline.spark import embedding

AVX2_ONLY = "fpu vme sse sse2 ssse3 fma avx avx2 bmi2"
AVX512_VNNI = f"{AVX2_ONLY} avx512f avx512bw avx512_vnni"


def fake_cpu(monkeypatch, tmp_path: Path, machine: str, flags: str | None) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    if flags is not None:
        cpuinfo.write_text(f"processor\t: 0\nmodel name\t: A CPU\nflags\t\t: {flags}\n\n")
    monkeypatch.setattr(int8_support, "CPUINFO", cpuinfo)
    monkeypatch.setattr(platform, "machine", lambda: machine)


@pytest.mark.parametrize(
    ("machine", "flags", "refused"),
    [
        ("x86_64", AVX2_ONLY, "no VNNI instructions"),
        ("x86_64", AVX512_VNNI, None),
        ("x86_64", f"{AVX2_ONLY} avx_vnni", None),
        ("x86_64", None, "could not be read"),
        ("aarch64", None, None),
    ],
)
def test_the_refusal_follows_the_cpus_instruction_sets(
    monkeypatch, tmp_path, machine, flags, refused
):
    fake_cpu(monkeypatch, tmp_path, machine, flags)
    reason = int8_support.int8_refusal()
    assert reason is None if refused is None else refused in reason


def test_the_int8_model_is_refused_before_it_is_calibrated_or_cached(monkeypatch, tmp_path):
    fake_cpu(monkeypatch, tmp_path, "x86_64", AVX2_ONLY)
    cache = tmp_path / "cache"
    with pytest.raises(RuntimeError, match="onnxruntime-int8 is refused on this machine"):
        feature_model.int8_feature_model("imagenet", str(cache), lambda: pytest.fail("calibrated"))
    assert not cache.exists()


def test_an_executor_without_vnni_refuses_the_broadcast_int8_model(monkeypatch, tmp_path):
    fake_cpu(monkeypatch, tmp_path, "x86_64", AVX2_ONLY)
    with pytest.raises(RuntimeError, match="no VNNI instructions"):
        embedding.worker_predictor("onnxruntime-int8", None, "int8-key", 1)
