"""Multi-level feature adapter, eqs 5–6 (Sect. 3.3.1); the DINO branch of USR uses the same module (one level)."""

from __future__ import annotations

import torch
from torch import nn


class FeatureAdapter(nn.Module):
    """Eq 5: F_new^l = W¹(σ(W² F_init^l)) per level (two 1×1 convs, σ = GELU);
    eq 6: F = Conv(Concat[F_new^1 … F_new^N])."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, n_levels: int, fuse_kernel: int = 1):
        super().__init__()
        self.mlps = nn.ModuleList(
            nn.Sequential(nn.Conv2d(in_dim, hidden_dim, 1), nn.GELU(), nn.Conv2d(hidden_dim, out_dim, 1))
            for _ in range(n_levels)
        )
        self.fuse = nn.Conv2d(n_levels * out_dim, out_dim, fuse_kernel, padding=fuse_kernel // 2)

    def forward(self, levels: list[torch.Tensor]) -> torch.Tensor:
        if len(levels) != len(self.mlps):
            raise ValueError(f"adapter expects {len(self.mlps)} feature levels, got {len(levels)}")
        return self.fuse(torch.cat([mlp(x) for mlp, x in zip(self.mlps, levels)], dim=1))
