"""Transformer decoder, eqs 7–8 (Sect. 3.3.2): D pre-norm blocks (MHSA + FFN, residuals, LayerNorm), a 1×1 conv to
C+1 logits (a ``Linear`` over the tokens' channels: the same map without a layout round trip) and bilinear
upsampling. The last block also yields the affinity that L_aff supervises: the sigmoid of its
head-averaged, symmetrised attention logits (Ru et al. 2022 learn affinity from self-attention the same way)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .adapter import conv1x1_to_linear


class Block(nn.Module):
    """One pre-norm transformer block of eq 7: x + MHSA(LN(x)), then x + FFN(LN(x))."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim))
        self.dropout = dropout

    def forward(self, x: torch.Tensor, want_affinity: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Tokens (B, n, d) → tokens (B, n, d) and, on request, the affinity (B, n, n): the sigmoid of the
        head-averaged, symmetrised attention logits."""
        b, n, c = x.shape
        q, k, v = self.qkv(self.norm1(x)).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        drop = self.dropout if self.training else 0.0
        if q.device.type == "cpu" and q.dtype != torch.float32:  # the CPU's bf16 attention kernel is slower than
            with torch.autocast("cpu", enabled=False):  # its fp32 one at these sizes (benchmarks/train_cache.py)
                out = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), dropout_p=drop).to(q.dtype)
        else:
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=drop)
        x = x + self.proj(out.transpose(1, 2).reshape(b, n, c))
        x = x + self.mlp(self.norm2(x))
        aff = None
        if want_affinity:
            logits = (q @ k.transpose(-2, -1) * (c // self.heads) ** -0.5).mean(1)
            aff = torch.sigmoid((logits + logits.transpose(1, 2)) / 2)
        return x, aff


class Decoder(nn.Module):
    """The decoder of eqs 7–8: ``layers`` blocks of width ``dim`` over F_clip's tokens, then ``num_classes`` logits
    (C+1, background first) upsampled to the image."""

    def __init__(self, dim: int, num_classes: int, layers: int, heads: int, mlp_ratio: float = 4.0,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.classifier = nn.Linear(dim, num_classes)  # eq 8's 1×1 conv, applied to the tokens

    def features(self, f_clip: torch.Tensor, want_affinity: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """F_clip (B, d, h, w) → F̃ as tokens (B, hw, d) (eq 7) and, on request, the last block's affinity."""
        x = f_clip.flatten(2).transpose(1, 2)
        aff = None
        for i, blk in enumerate(self.blocks):
            x, a = blk(x, want_affinity and i == len(self.blocks) - 1)
            aff = a if a is not None else aff
        return self.norm(x), aff

    def forward(
        self, f_clip: torch.Tensor, out_size: tuple[int, int], want_affinity: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """F_clip (B, d, h, w) → P (B, C+1, H, W) (eqs 7–8) and, on request, the last block's affinity (B, hw, hw)."""
        b, _, h, w = f_clip.shape
        x, aff = self.features(f_clip, want_affinity)
        low = self.classifier(x).transpose(1, 2).reshape(b, -1, h, w)  # token logits
        logits = F.interpolate(low, size=out_size, mode="bilinear", align_corners=False)  # eq 8
        return logits, aff

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        """Checkpoints written before held the classifier as a 1×1 ``Conv2d`` ([K, d, 1, 1]): same map, reshaped."""
        conv1x1_to_linear(state_dict, f"{prefix}classifier.weight")
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
