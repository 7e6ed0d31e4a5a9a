"""Initial CAM in CLIP's image–text space, eq 9 (Sect. 3.4), plus the background channel."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..config import CAMConfig


def minmax_norm(x: torch.Tensor, dim: int | tuple[int, ...] = -1, eps: float = 1e-6) -> torch.Tensor:
    """Norm(·) of eqs 9 and 20: rescale each map linearly to [0, 1] by its min and max over ``dim``."""
    lo = x.amin(dim=dim, keepdim=True)
    hi = x.amax(dim=dim, keepdim=True)
    return (x - lo) / (hi - lo).clamp_min(eps)


def background(fg: torch.Tensor, cfg: CAMConfig) -> torch.Tensor:
    """Background channel (the paper stacks one but does not define it).

    ``power``: (1 − max_c M_c)^bg_power, high where no class is active (CLIP-ES style);
    ``constant``: bg_score everywhere (AFA's threshold written as a channel).
    """
    if cfg.bg_rule == "power":
        return (1 - fg.amax(dim=1, keepdim=True)).clamp_min(0) ** cfg.bg_power
    if cfg.bg_rule == "constant":
        return torch.full_like(fg[:, :1], cfg.bg_score)
    raise ValueError(f"cam.bg_rule must be 'power' or 'constant', not {cfg.bg_rule!r}")


def initial_cam(joint: torch.Tensor, text: torch.Tensor, tags: torch.Tensor | None, cfg: CAMConfig) -> torch.Tensor:
    """Eq 9: M_init^c = Norm(F̂ᵀ T̂_c), cosine of final-block joint tokens (B, E, h, w) with the (enriched) text
    embeddings (C, E), min–max per class over the h·w locations; classes not tagged on a tile are zeroed; the
    background channel is stacked first → (B, C+1, h, w)."""
    b, _, h, w = joint.shape
    cos = torch.einsum("bep,ce->bcp", F.normalize(joint.flatten(2), dim=1), F.normalize(text, dim=-1))
    fg = minmax_norm(cos, dim=-1).view(b, -1, h, w)
    if tags is not None:
        fg = fg * tags.to(fg.dtype)[:, :, None, None]
    return torch.cat([background(fg, cfg), fg], dim=1)
