"""CLIP's image tower alone, under open_clip's own parameter names (``visual.*``), for decoder inference.

A trained checkpoint's ``segment`` never runs the text tower (the class text embeddings are lazy, eqs 1–4 run in
training and zero-shot only), so it need not read the text tower's 63 M parameters from the weights file, nor import
open_clip (whose import pulls in torchvision and torch._dynamo: ≈ 1.3 s of a 2.7 Mpx segment's ≈ 17 s, issue 24).
The modules here are the ones open_clip's ``VisionTransformer`` is made of for the plain configs every registered
prior uses (learnable positions, CLS pooling, ``ln_pre``, no layer scale, no attentional pooler); ``ClipPrior.forward``
runs the blocks by hand either way, so the arithmetic is the same ops on the same tensors.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from torch import nn

# the vision_cfg keys a plain open_clip ViT is described by; any other key (layer scale, attentional pooler, another
# pooling or position type …) changes the modules, and such a config is built by open_clip itself
PLAIN_KEYS = frozenset({"image_size", "layers", "width", "patch_size", "head_width", "mlp_ratio"})


class QuickGELU(nn.Module):
    """OpenAI CLIP's activation, x · σ(1.702 x) (open_clip.transformer.QuickGELU)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The activation, elementwise."""
        return x * torch.sigmoid(1.702 * x)


class _Block(nn.Module):
    """open_clip's ``ResidualAttentionBlock`` layout: ln_1, attn, ls_1, ln_2, mlp (c_fc, gelu, c_proj), ls_2."""

    def __init__(self, width: int, heads: int, mlp_width: int, quick_gelu: bool) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ls_1 = nn.Identity()
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(OrderedDict(c_fc=nn.Linear(width, mlp_width),
                                             gelu=QuickGELU() if quick_gelu else nn.GELU(),
                                             c_proj=nn.Linear(mlp_width, width)))
        self.ls_2 = nn.Identity()


class _Blocks(nn.Module):
    """``transformer.resblocks``, as open_clip names the block list."""

    def __init__(self, blocks: list[_Block]) -> None:
        super().__init__()
        self.resblocks = nn.ModuleList(blocks)


class ImageTower(nn.Module):
    """open_clip's plain ``VisionTransformer`` parameters: conv1, class_embedding, positional_embedding, ln_pre,
    transformer.resblocks, ln_post, proj (the forward is ``ClipPrior.forward``)."""

    def __init__(self, width: int, layers: int, heads: int, patch: int, grid: int, out_dim: int, mlp_width: int,
                 quick_gelu: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, patch, patch, bias=False)
        self.class_embedding = nn.Parameter(torch.empty(width))
        self.positional_embedding = nn.Parameter(torch.empty(grid * grid + 1, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = _Blocks([_Block(width, heads, mlp_width, quick_gelu) for _ in range(layers)])
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(torch.empty(width, out_dim))


class ImageOnlyClip(nn.Module):
    """A CLIP holding only ``visual`` (its state-dict keys are the ``visual.*`` keys of open_clip's CLIP)."""

    def __init__(self, visual: ImageTower) -> None:
        super().__init__()
        self.visual = visual


def is_plain(config: dict[str, Any]) -> bool:
    """Whether the open_clip model config's image tower is the plain ViT :class:`ImageTower` reproduces."""
    return set(config.get("vision_cfg", {})) <= PLAIN_KEYS


def image_only(config: dict[str, Any]) -> ImageOnlyClip:
    """The image tower of an open_clip model config (random values; on the meta device under ``torch.device``)."""
    v = config["vision_cfg"]
    width, patch = v["width"], v["patch_size"]
    tower = ImageTower(width, v["layers"], width // v.get("head_width", 64), patch, v["image_size"] // patch,
                       config["embed_dim"], int(width * v.get("mlp_ratio", 4.0)), bool(config.get("quick_gelu")))
    return ImageOnlyClip(tower)
