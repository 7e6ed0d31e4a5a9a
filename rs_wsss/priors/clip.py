"""Frozen CLIP ViT (open_clip; the paper's ViT-B/16 or any prior of ``priors/specs.py``): per-block patch tokens,
per-block attention maps, joint-space tokens, text encoder.

open_clip runs attention with ``need_weights=False``, so the blocks are run here by hand: when the attention maps are
wanted (training, zero-shot USR), each block's probabilities are computed from the same q/k used for its output (one
pass, no second forward), head-averaged and cut to the patch-to-patch part (CLS row and column dropped, rows not
renormalised); when they are not (decoder inference), attention is one fused ``scaled_dot_product_attention`` call and
no hw × hw matrix is ever materialised, while every block's tokens are still tapped.

Real weights are loaded straight into a model skeleton built on the meta device (no random initialisation of 150 M
parameters first, no second copy): ``load_state_dict(assign=True)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..config import PriorsConfig
from .clip_tower import image_only as image_only_clip
from .clip_tower import is_plain
from .specs import BackboneSpec, crop_size, spec_for
from .weights import ResolvedWeights


@dataclass
class ClipFeatures:
    """What one CLIP forward hands the method: per-block patch tokens, attention and the joint-space tokens."""

    tokens: list[torch.Tensor]  # N × (B, D, h, w): every block's patch tokens (F_init^l, Sect. 3.3)
    attn: torch.Tensor | None  # (B, N, hw, hw): head-averaged attention of every block, patch-to-patch (A_s^l, eq 12)
    joint: torch.Tensor  # (B, E, h, w): final tokens after ln_post + proj, in the image–text space (eq 9)


def _tiny_config(spec: BackboneSpec, size: int) -> dict[str, Any]:
    """A narrow stand-in of ``spec`` (width 64, 4 blocks; same patch, activation and text positions) for tests."""
    return {"embed_dim": 48, "quick_gelu": spec.activation == "quick_gelu",
            "vision_cfg": {"layers": 4, "width": 64, "head_width": 16, "patch_size": spec.patch, "image_size": size},
            "text_cfg": {"context_length": spec.context_length, "vocab_size": 49408, "width": 64, "heads": 4,
                         "layers": 2}}


def build_clip(config: dict[str, Any]) -> nn.Module:
    """An open_clip ``CLIP`` from a model config (random values; on the meta device under ``torch.device``)."""
    import inspect

    from open_clip.model import CLIP

    allowed = set(inspect.signature(CLIP).parameters)
    return CLIP(**{k: v for k, v in config.items() if k in allowed})


class ClipPrior(nn.Module):
    """Frozen CLIP image + text encoders; ``forward`` takes RGB in [0, 1] and applies the spec's mean/std. Built from
    the spec's config (its activation and text positions), tokenised by open_clip's tokenizer for the architecture at
    the spec's context length (Long-CLIP: 248)."""

    model: Any  # an open_clip CLIP (or the tiny stand-in); typed loosely, as open_clip is

    def __init__(self, cfg: PriorsConfig, weights: ResolvedWeights, text: bool = True) -> None:
        """``text=False`` (decoder inference): the image tower alone, under open_clip's names (:mod:`.clip_tower`),
        when the config is a plain ViT (every registered prior's is): the file's text tower is not read and, for a
        weights file, open_clip is not imported."""
        super().__init__()
        self.spec = spec = spec_for(cfg.clip, "clip")
        self.size = crop_size(cfg, "clip")
        self.config = config = _tiny_config(spec, self.size) if cfg.tiny else spec.clip_config()  # open_clip's form
        image_only = not text and is_plain(config)
        if cfg.tiny or weights.is_random:  # open_clip's own initialisation (the caller fixes the seed)
            full = build_clip(config)
            self.model = _skeleton_with(config, _visual(full.state_dict()), image_only=True) if image_only else full
        else:
            from .weights import (
                load_state,  # read safely (OpenAI's TorchScript archive included), names checked
            )

            state = load_state(weights, spec, prefix="visual." if image_only else "")
            self.model = _skeleton_with(config, state, image_only)
        self.tokenizer: Callable[..., torch.Tensor] | None = None
        if not image_only:
            import open_clip

            self.tokenizer = open_clip.get_tokenizer(spec.arch, context_length=spec.context_length)
        self.patch = self.model.visual.conv1.kernel_size[0]
        self.identifier = f"{spec.name}{'(tiny)' if cfg.tiny else ''}|{weights.identifier}"
        self.weights = weights  # checkpoints record the file and its hash (specs.prior_record)
        self.register_buffer("mean", torch.tensor(spec.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(spec.std).view(1, 3, 1, 1), persistent=False)
        self._pos_cache: dict[tuple[int, int, torch.dtype, torch.device], torch.Tensor] = {}
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> ClipPrior:  # frozen: always eval (no dropout / patch dropout)
        """Stay in eval mode whatever ``mode`` asks: the prior is frozen."""
        return super().train(False)

    @property
    def num_blocks(self) -> int:
        """Transformer blocks of the visual tower (N: 12 for ViT-B/16)."""
        return len(self.model.visual.transformer.resblocks)

    @property
    def width(self) -> int:
        """Token width D of the visual tower (768 for ViT-B/16)."""
        return self.model.visual.conv1.out_channels

    @property
    def embed_dim(self) -> int:
        """Width E of the joint image–text space (512 for ViT-B/16)."""
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

    # .to()/.half() etc. change the weights: drop the resized copies
    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> ClipPrior:
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
        if self.tokenizer is None:
            raise RuntimeError("this CLIP prior was built without its text tower (decoder inference: text=False)")
        device = self.model.token_embedding.weight.device
        return self.model.encode_text(self.tokenizer(texts).to(device), normalize=False).float()


def _fused_attention(mha: nn.MultiheadAttention, x: torch.Tensor) -> torch.Tensor:
    """The same attention as :func:`_attention` through one fused kernel (flash attention on CPU and GPU): no maps."""
    b, n, c = x.shape
    h = mha.num_heads
    q, k, v = F.linear(x, mha.in_proj_weight, mha.in_proj_bias).reshape(b, n, 3, h, c // h).permute(2, 0, 3, 1, 4)
    out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, c)
    return mha.out_proj(out)


def _skeleton_with(config: dict[str, Any], state: dict[str, torch.Tensor], image_only: bool = False) -> nn.Module:
    """The model of ``config`` (open_clip's CLIP, or with ``image_only`` its image tower alone) holding exactly the
    tensors of ``state``: built on the meta device (no memory, no random initialisation), then
    ``load_state_dict(strict=True, assign=True)`` (a missing or unexpected key is an error naming it). Non-persistent
    buffers (the text tower's causal mask) are rebuilt on the CPU."""
    with torch.device("meta"):
        model = image_only_clip(config) if image_only else build_clip(config)
    missing, unexpected = _key_diff(model.state_dict(), state)
    if missing or unexpected:
        raise RuntimeError(f"missing keys: {', '.join(missing[:4]) or 'none'}; unexpected keys: "
                           f"{', '.join(unexpected[:4]) or 'none'}")
    model.load_state_dict(state, strict=True, assign=True)
    if not image_only:
        n = int(model.attn_mask.shape[0])
        model.attn_mask = torch.full((n, n), float("-inf")).triu_(1)  # open_clip's build_causal_mask
    still_meta = [k for k, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if still_meta:
        raise RuntimeError(f"weights leave {', '.join(still_meta[:3])} unset")
    return model


def _visual(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The image tower's tensors of a CLIP state dict (``visual.*``)."""
    return {k: v for k, v in state.items() if k.startswith("visual.")}


def _key_diff(want: dict[str, Any], have: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(missing, unexpected) parameter names, the causal mask buffer left out."""
    w = {k for k in want if not k.endswith("attn_mask")}
    return sorted(w - set(have)), sorted(set(have) - w)


def _attention(mha: nn.MultiheadAttention, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """nn.MultiheadAttention (batch-first input) computed by hand; the output and the per-head probabilities."""
    b, n, c = x.shape
    h = mha.num_heads
    q, k, v = F.linear(x, mha.in_proj_weight, mha.in_proj_bias).reshape(b, n, 3, h, c // h).permute(2, 0, 3, 1, 4)
    prob = torch.softmax((q * (c // h) ** -0.5) @ k.transpose(-2, -1), dim=-1)
    out = (prob @ v).transpose(1, 2).reshape(b, n, c)
    return mha.out_proj(out), prob
