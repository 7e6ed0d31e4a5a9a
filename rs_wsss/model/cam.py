"""Initial CAM in CLIP's image–text space, eq 9 (Sect. 3.4), and its background channel."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..config import CAMConfig


def minmax_norm(x: torch.Tensor, dim: int | tuple[int, ...] = -1, eps: float = 1e-6) -> torch.Tensor:
    """Norm(·) of eqs 9 and 20: rescale each map linearly to [0, 1] by its min and max over ``dim``.
    A constant map becomes 0 (its range is clamped to ``eps``)."""
    lo = x.amin(dim=dim, keepdim=True)
    hi = x.amax(dim=dim, keepdim=True)
    return (x - lo) / (hi - lo).clamp_min(eps)


def background(fg: torch.Tensor, cfg: CAMConfig) -> torch.Tensor:
    """The background channel that eq 9's maps are stacked with (the paper does not define it), (B, 1, ...).

    ``power``: (1 − max_c M_c)^bg_power over the (tagged) foreground maps fg (B, C, ...) in [0, 1]: high where no
    class is active (CLIP-ES / WeCLIP); a tile tagged with nothing is background everywhere.
    ``constant``: bg_score everywhere (AFA's background threshold written as a channel).
    """
    if cfg.bg_rule == "power":
        return (1 - fg.amax(dim=1, keepdim=True)).clamp_min(0) ** cfg.bg_power
    if cfg.bg_rule == "constant":
        return torch.full_like(fg[:, :1], cfg.bg_score)
    raise ValueError(f"cam.bg_rule must be 'power' or 'constant', not {cfg.bg_rule!r}")


def initial_cam(
    joint: torch.Tensor, text: torch.Tensor, tags: torch.Tensor | None, cfg: CAMConfig
) -> torch.Tensor:
    """Eq 9: M_init^c = Norm(F̂ᵀT̂_c) → (B, C+1, h, w), background at channel 0.

    joint (B, E, h, w): final-block tokens in the image–text space; text (C, E): (enriched) class embeddings;
    tags (B, C) multi-hot or None (all classes). Steps: cosine of every token with every T_c, min–max per class over
    the h·w locations, classes not tagged on the tile set to 0, background channel from ``cfg.bg_rule``
    (see :func:`background`) computed from the tagged maps.
    """
    b, _, h, w = joint.shape
    cos = torch.einsum("bep,ce->bcp", F.normalize(joint.flatten(2), dim=1), F.normalize(text.to(joint), dim=-1))
    fg = minmax_norm(cos, dim=-1)
    if tags is not None:
        fg = fg * tags.to(fg)[:, :, None]
    fg = fg.view(b, -1, h, w)
    return torch.cat([background(fg, cfg), fg], dim=1)
