"""How inference runs on this machine: numeric precision (``infer.precision``) and batch size (``infer.batch``).

Precision ``auto`` is bfloat16 on CPUs with AMX or AVX512-BF16 (native bf16 matrix units: about 4× the float32
matmul rate here), bfloat16 on CUDA devices that support it (else float16), float32 elsewhere. Low precision casts
the frozen CLIP image tower's weights once (no per-call weight casts, half the memory); CLIP's outputs are handed on in
float32 and the adapter/decoder run in float32 (≈ 12 % of the FLOPs, ≈ 10 % of the bf16 forward's time, far fewer
argmax flips than a bf16 head: benchmarks/RESULTS.md, issue 24), so probabilities leave in float32.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import torch

from .errors import RsWsssError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_flags() -> set[str] | None:
    """The CPU's feature flags (Linux's /proc/cpuinfo); None where the system does not list them."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        return None
    return set()


def cpu_has_bf16() -> bool:
    """True on CPUs with native bfloat16 matrix instructions (AMX-BF16 or AVX512-BF16)."""
    flags = cpu_flags()
    if flags is None:  # not Linux: ask torch (private helpers, present in torch ≥ 2.3)
        cpu = getattr(torch, "cpu", None)
        return bool(getattr(cpu, "_is_amx_tile_supported", lambda: False)()
                    or getattr(cpu, "_is_avx512_bf16_supported", lambda: False)())
    return bool(flags & {"amx_bf16", "avx512_bf16"})


def choose_precision(name: str, device: torch.device | str) -> torch.dtype:
    """``infer.precision`` → the compute dtype on ``device`` (``auto`` resolved as in the module docstring)."""
    device = torch.device(device)
    if name not in PRECISIONS:
        raise RsWsssError(f"precision '{name}' unknown: use one of {', '.join(PRECISIONS)}")
    if name != "auto":
        return DTYPES[name]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_has_bf16():
        return torch.bfloat16
    return torch.float32


def training_dtype(precision: str, amp: bool, device: torch.device | str) -> torch.dtype:
    """``train.precision`` (+ ``train.amp``) → the autocast dtype of the trainable forward on ``device``.

    CPU: ``auto`` is bf16 where the CPU has AMX or AVX512-BF16 (:func:`cpu_has_bf16`), fp32 otherwise. CUDA keeps
    its AMP switch: bf16 autocast when ``train.amp`` (or ``precision`` bf16), fp32 otherwise."""
    device = torch.device(device)
    if precision not in ("auto", "fp32", "bf16"):
        raise RsWsssError(f"train.precision '{precision}' unknown: use auto, fp32 or bf16")
    if device.type == "cuda":
        return torch.bfloat16 if amp or precision == "bf16" else torch.float32
    if precision == "auto":
        return torch.bfloat16 if device.type == "cpu" and cpu_has_bf16() else torch.float32
    return DTYPES[precision]


def autocast(device: torch.device | str, dtype: torch.dtype) -> contextlib.AbstractContextManager[Any]:
    """``torch.autocast`` for a low-precision dtype; a no-op for float32 (and on devices autocast does not cover)."""
    device = torch.device(device)
    if dtype == torch.float32 or device.type not in ("cpu", "cuda"):
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def apply_precision(model: torch.nn.Module, dtype: torch.dtype) -> None:
    """Cast the frozen CLIP image tower of a WSSS model to ``dtype`` (in place); the text tower stays float32 (text
    embeddings are computed once and cached) and the trainable parts stay float32."""
    model.clip.model.visual.to(dtype)


def auto_batch(tile: int, device: torch.device | str, width: int = 768, blocks: int = 12, patch: int = 16,
               scales: list[float] | tuple[float, ...] = (1.0,)) -> int:
    """Tiles per forward, from the memory one tile needs at the largest scale (float32 activations: every block's
    tapped tokens plus about 16 token-sized working buffers; fused attention keeps no hw × hw maps).

    CUDA: what fits in half the free device memory (bigger batches keep a GPU busy), up to 64. CPU: a batch only
    amortises per-call overhead (the cores are busy at batch 1), so at most 4 and within 1 GiB of activations."""
    device = torch.device(device)
    tokens = (tile * max(scales) / patch) ** 2 + 1
    per_tile = tokens * width * 4 * (blocks + 16)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(max(1, min(64, free * 0.5 // per_tile)))
    return int(max(1, min(4, (1 << 30) // per_tile)))
