"""Frozen DINOv2 ViT (timm; the paper's ViT-B/14 ``vit_base_patch14_dinov2``, or S/14, L/14, with or without
registers, by the spec of ``priors/specs.py``): per-block patch tokens F_init^dino for the DINO
adapter of USR (Sect. 3.5.1), and the last block's tokens for zero-shot F_cd."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..config import PriorsConfig
from .specs import crop_size, spec_for
from .weights import ResolvedWeights


class DinoPrior(nn.Module):
    """Frozen DINOv2 taking RGB in [0, 1]: :meth:`forward` returns the last block's patch tokens (B, D, h, w),
    :meth:`levels` the last n blocks' (B, n, D, h, w); prefix tokens removed, DINOv2's final LayerNorm applied to
    every block (its own multi-layer convention, ``get_intermediate_layers(norm=True)``)."""

    model: Any  # a timm VisionTransformer

    def __init__(self, cfg: PriorsConfig, weights: ResolvedWeights) -> None:
        super().__init__()
        import timm

        self.spec = spec = spec_for(cfg.dino, "dino")
        self.size = crop_size(cfg, "dino")
        # width, depth and heads from the spec (the timm defaults for the known priors; narrow stand-ins in tests)
        kwargs: dict = dict(dynamic_img_size=True, num_classes=0, embed_dim=spec.width, depth=spec.blocks,
                            num_heads=spec.heads)
        if cfg.tiny:
            kwargs.update(embed_dim=64, depth=2, num_heads=4, img_size=self.size)
        self.model = timm.create_model(spec.arch, pretrained=False, **kwargs)
        if not weights.is_random:  # read safely (timm or Meta's torch-hub names); timm's filter resizes pos_embed
            from timm.models.vision_transformer import checkpoint_filter_fn

            from .weights import load_state

            state = checkpoint_filter_fn(load_state(weights, spec), self.model)
            self.model.load_state_dict(state, strict=True)  # a missing or unexpected key is an error naming it
        self.identifier = f"{spec.name}{'(tiny)' if cfg.tiny else ''}|{weights.identifier}"
        self.weights = weights  # checkpoints record the file and its hash (specs.prior_record)
        self.register_buffer("mean", torch.tensor(spec.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(spec.std).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> DinoPrior:  # frozen: always eval
        """Stay in eval mode whatever ``mode`` asks: the prior is frozen."""
        return super().train(False)

    @property
    def width(self) -> int:
        """Token width (768 for ViT-B/14)."""
        return self.model.embed_dim

    @property
    def patch(self) -> int:
        """Patch size in pixels (14 for DINOv2)."""
        return int(self.model.patch_embed.patch_size[0])

    @property
    def num_blocks(self) -> int:
        """Transformer blocks (12 for ViT-B/14)."""
        return len(self.model.blocks)

    def _input(self, images: torch.Tensor) -> torch.Tensor:
        x = (images - self.mean) / self.std
        height, width = x.shape[-2:]
        p = self.patch
        if height % p or width % p:  # DINOv2 needs multiples of the patch size
            x = F.interpolate(x, size=(max(p, height // p * p), max(p, width // p * p)), mode="bilinear",
                              align_corners=False)
        return x

    @torch.no_grad()
    def levels(self, images: torch.Tensor, n: int) -> torch.Tensor:
        """Patch tokens of the last ``n`` blocks, (B, n, D, h, w), shallowest first."""
        if not 1 <= n <= self.num_blocks:
            from ..errors import RsWsssError

            raise RsWsssError(f"adapter.dino_levels must be in 1..{self.num_blocks} for {self.identifier}, got {n}")
        out = self.model.forward_intermediates(self._input(images), indices=n, norm=True, output_fmt="NCHW",
                                               intermediates_only=True)
        return torch.stack(out, dim=1)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """The last block's patch tokens (B, D, h, w)."""
        return self.levels(images, 1)[:, 0]
