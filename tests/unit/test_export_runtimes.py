"""segment --runtime × --precision: what each runtime has kernels for, and what auto picks (from the benchmark)."""

from __future__ import annotations

import pytest

from rs_wsss.errors import RsWsssError
from rs_wsss.export import runtimes


@pytest.fixture
def amx_cpu(monkeypatch):
    monkeypatch.setattr(runtimes, "cpu_flags", lambda: {"avx512f", "avx512_bf16", "amx_bf16"})
    monkeypatch.setattr(runtimes, "_installed", lambda name: True)


def test_auto_is_the_benchmarks_choice_on_a_bf16_cpu_and_torch_elsewhere(amx_cpu, monkeypatch):
    assert runtimes.resolve("auto", "auto") == runtimes.AUTO_BF16_CPU
    assert runtimes.resolve("auto", "fp32") == (runtimes.AUTO_BF16_CPU[0], "fp32")
    monkeypatch.setattr(runtimes, "cpu_flags", lambda: {"avx2"})
    assert runtimes.resolve("auto", "auto") == ("torch", "auto")


def test_each_runtime_keeps_its_own_precisions(amx_cpu, monkeypatch):
    assert runtimes.resolve("onnxruntime", "auto") == ("onnxruntime", "fp32")
    assert runtimes.resolve("openvino", "auto") == ("openvino", "bf16")  # AMX: OpenVINO's bf16 inference precision
    assert runtimes.resolve("onnxruntime", "int8") == ("onnxruntime", "int8")
    with pytest.raises(RsWsssError, match="no bf16 path"):
        runtimes.resolve("onnxruntime", "bf16")
    monkeypatch.setattr(runtimes, "cpu_flags", lambda: {"avx2"})
    assert runtimes.resolve("openvino", "auto") == ("openvino", "fp32")
    monkeypatch.setattr(runtimes, "_installed", lambda name: False)
    with pytest.raises(RsWsssError, match=r"pip install 'rs-wsss\[openvino\]'"):
        runtimes.resolve("openvino", "fp32")
