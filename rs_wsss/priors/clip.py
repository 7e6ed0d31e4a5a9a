"""Frozen CLIP ViT-B/16 (open_clip): per-block patch tokens, per-block attention maps, joint-space tokens, text encoder.

open_clip runs attention with ``need_weights=False``, so the blocks are run here by hand: when the attention maps are
wanted (training, zero-shot USR), each block's probabilities are computed from the same q/k used for its output (one
pass, no second forward), head-averaged and cut to the patch-to-patch part (CLS row and column dropped, rows not
renormalised); when they are not (decoder inference), attention is one fused ``scaled_dot_product_attention`` call and
no hw × hw matrix is ever materialised, while every block's tokens are still tapped.

Real weights are loaded straight into a model skeleton built on the meta device (no random initialisation of 150 M
parameters first, no second copy): ``load_state_dict(assign=True)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..config import PriorsConfig
from .weights import ResolvedWeights

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class ClipFeatures:
    tokens: list[torch.Tensor]  # N × (B, D, h, w): every block's patch tokens (F_init^l, Sect. 3.3)
    attn: torch.Tensor | None  # (B, N, hw, hw): head-averaged attention of every block, patch-to-patch (A_s^l, eq 12)
    joint: torch.Tensor  # (B, E, h, w): final tokens after ln_post + proj, in the image–text space (eq 9)


def _tiny_clip(size: int) -> nn.Module:
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    vision = CLIPVisionCfg(layers=4, width=64, head_width=16, patch_size=16, image_size=size)
    text = CLIPTextCfg(context_length=77, vocab_size=49408, width=64, heads=4, layers=2)
    return CLIP(embed_dim=48, vision_cfg=vision, text_cfg=text, quick_gelu=True)


class ClipPrior(nn.Module):
    model: Any  # an open_clip CLIP (or the tiny stand-in); typed loosely, as open_clip is
    """Frozen CLIP image + text encoders; ``forward`` takes RGB in [0, 1] and applies CLIP's own mean/std."""

    def __init__(self, cfg: PriorsConfig, weights: ResolvedWeights):
        super().__init__()
        import open_clip

        if cfg.tiny:
            self.model = _tiny_clip(cfg.clip_size)
            self.tokenizer = open_clip.get_tokenizer("ViT-B-16")
        elif weights.is_random:
            self.model = open_clip.create_model(cfg.clip_model)
            self.tokenizer = open_clip.get_tokenizer(cfg.clip_model)
        else:
            from .weights import (
                load_state,  # read safely (OpenAI's TorchScript archive included), names checked
            )

            self.model = _skeleton_with(cfg.clip_model, load_state(weights, cfg.clip_model))
            self.tokenizer = open_clip.get_tokenizer(cfg.clip_model)
        self.size = cfg.clip_size
        self.patch = self.model.visual.conv1.kernel_size[0]
        self.identifier = f"{'tiny' if cfg.tiny else cfg.clip_model}|{weights.identifier}"
        self.register_buffer("mean", torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(CLIP_STD).view(1, 3, 1, 1), persistent=False)
        self._pos_cache: dict[tuple[int, int, torch.dtype, torch.device], torch.Tensor] = {}
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> ClipPrior:  # frozen: always eval (no dropout / patch dropout)
        return super().train(False)

    @property
    def num_blocks(self) -> int:
        return len(self.model.visual.transformer.resblocks)

    @property
    def width(self) -> int:
        return self.model.visual.conv1.out_channels

    @property
    def embed_dim(self) -> int:
        return self.model.visual.proj.shape[1]

    def _pos_embed(self, gh: int, gw: int) -> torch.Tensor:
        """Positional embedding resized bicubically to a gh × gw grid (CLIP is trained at 224 px = 14 × 14); resized
        once per grid size, dtype and device (every tile of a raster has the same grid), computed in float32."""
        pos = self.model.visual.positional_embedding
        key = (gh, gw, pos.dtype, pos.device)
        if key not in self._pos_cache:
            cls, grid = pos[:1].float(), pos[1:].float()
            n = round(grid.shape[0] ** 0.5)
            if (gh, gw) != (n, n):
                grid = grid.reshape(1, n, n, -1).permute(0, 3, 1, 2)
                grid = F.interpolate(grid, size=(gh, gw), mode="bicubic", align_corners=False)
                grid = grid.permute(0, 2, 3, 1).reshape(gh * gw, -1)
            self._pos_cache[key] = torch.cat([cls, grid], 0).to(pos.dtype)
        return self._pos_cache[key]

    def _apply(self, fn, recurse=True):  # .to()/.half() etc. change the weights: drop the resized copies
        self._pos_cache = {}
        return super()._apply(fn, recurse)

    @torch.no_grad()
    def forward(self, images: torch.Tensor, need_attn: bool = True) -> ClipFeatures:
        """``need_attn=False`` (decoder inference): fused attention, no attention maps (B·N·hw² floats) at all.

        Computes in the dtype of the visual tower's weights (float32, or bfloat16/float16 after ``to``: the caller's
        precision choice is the dtype of the tower) and hands every output on in float32."""
        v = self.model.visual
        x = (images - self.mean) / self.std
        x = v.conv1(x.to(v.conv1.weight.dtype))
        b, c, gh, gw = x.shape
        x = x.reshape(b, c, gh * gw).permute(0, 2, 1)
        x = torch.cat([v.class_embedding.to(x.dtype).expand(b, 1, c), x], dim=1)
        x = v.ln_pre(x + self._pos_embed(gh, gw).to(x.dtype))
        tokens, attns = [], []
        for blk in v.transformer.resblocks:
            if need_attn:
                out, prob = _attention(blk.attn, blk.ln_1(x))
                attns.append(prob.mean(1)[:, 1:, 1:])
                del prob
            else:
                out = _fused_attention(blk.attn, blk.ln_1(x))
            x = x + blk.ls_1(out)
            x = x + blk.ls_2(blk.mlp(blk.ln_2(x)))
            tokens.append(x[:, 1:].permute(0, 2, 1).reshape(b, c, gh, gw).float())
        joint = v.ln_post(x[:, 1:]) @ v.proj
        joint = joint.permute(0, 2, 1).reshape(b, -1, gh, gw).float()
        attn = torch.stack(attns, 1).float() if need_attn else None
        return ClipFeatures(tokens=tokens, attn=attn, joint=joint)  # float32 whatever the tower's precision

    @torch.no_grad()
    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """Text embeddings (n, E), not normalised (TPE normalises where the paper compares directions)."""
        device = self.model.token_embedding.weight.device
        return self.model.encode_text(self.tokenizer(texts).to(device), normalize=False).float()


def _fused_attention(mha: nn.MultiheadAttention, x: torch.Tensor) -> torch.Tensor:
    """The same attention as :func:`_attention` through one fused kernel (flash attention on CPU and GPU): no maps."""
    b, n, c = x.shape
    h = mha.num_heads
    q, k, v = F.linear(x, mha.in_proj_weight, mha.in_proj_bias).reshape(b, n, 3, h, c // h).permute(2, 0, 3, 1, 4)
    out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, c)
    return mha.out_proj(out)


def _skeleton_with(name: str, state: dict[str, torch.Tensor]) -> nn.Module:
    """open_clip model ``name`` holding exactly the tensors of ``state``: built on the meta device (no memory, no
    random initialisation), then ``load_state_dict(strict=True, assign=True)``. Non-persistent buffers (the text
    tower's causal mask) are rebuilt on the CPU."""
    import logging

    import open_clip

    def not_random(record: logging.LogRecord) -> bool:  # open_clip says "initialized randomly" for the skeleton
        return "No pretrained weights" not in record.getMessage()

    root = logging.getLogger()
    root.addFilter(not_random)
    try:
        with torch.device("meta"):
            model = open_clip.create_model(name, load_weights=False, device="meta")
    finally:
        root.removeFilter(not_random)
    model.load_state_dict(state, strict=True, assign=True)
    n = model.attn_mask.shape[0]
    model.attn_mask = torch.full((n, n), float("-inf")).triu_(1)  # open_clip's build_causal_mask
    still_meta = [k for k, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if still_meta:
        raise RuntimeError(f"weights leave {', '.join(still_meta[:3])} unset")
    return model


def _attention(mha: nn.MultiheadAttention, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """nn.MultiheadAttention (batch-first input) computed by hand; the output and the per-head probabilities."""
    b, n, c = x.shape
    h = mha.num_heads
    q, k, v = F.linear(x, mha.in_proj_weight, mha.in_proj_bias).reshape(b, n, 3, h, c // h).permute(2, 0, 3, 1, 4)
    prob = torch.softmax((q * (c // h) ** -0.5) @ k.transpose(-2, -1), dim=-1)
    out = (prob @ v).transpose(1, 2).reshape(b, n, c)
    return mha.out_proj(out), prob
