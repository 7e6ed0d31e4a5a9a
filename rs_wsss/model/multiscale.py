"""Multi-scale (+ horizontal flip) averaging, shared by decoder inference and zero-shot segmentation (Sect. 4.2:
"a multi-scale testing strategy is applied ... fused by averaging")."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

# fn(x, out_size) → (B, K, *out_size): a probability map of the (resized, maybe flipped) input x at out_size
MapFn = Callable[[torch.Tensor, tuple[int, int]], torch.Tensor]


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of (B, C, H, W) to ``size`` (a no-op at the same size)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def scaled_sizes(height: int, width: int, scales: list[float], patch: int) -> list[tuple[int, int]]:
    """Input sizes for each scale, rounded to whole patches (at least one patch per side)."""
    return [(max(patch, round(height * s / patch) * patch), max(patch, round(width * s / patch) * patch))
            for s in scales]


def multi_scale(fn: MapFn, images: torch.Tensor, scales: list[float], flip: bool, patch: int) -> torch.Tensor:
    """Mean over ``scales`` (and, with ``flip``, the horizontally flipped input flipped back) of ``fn`` applied to the
    images resized to each scale, every map taken at the original size (H, W). → (B, K, H, W)."""
    if not scales:
        raise ValueError("infer.scales is empty; give at least one scale, e.g. [1.0]")
    out_size = (int(images.shape[-2]), int(images.shape[-1]))
    total: torch.Tensor | None = None
    n = 0
    for size in scaled_sizes(*out_size, scales, patch):
        x = resize(images, size)
        for flipped in (False, True) if flip else (False,):
            m = fn(x.flip(-1) if flipped else x, out_size)
            m = m.flip(-1) if flipped else m
            total = m if total is None else total + m
            n += 1
    assert total is not None
    return total / n
