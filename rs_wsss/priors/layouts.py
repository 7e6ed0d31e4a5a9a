"""The tensor names and shapes each backbone expects, the published file layouts mapped onto them, and a check that
names what a wrong file is (in milliseconds, from :func:`archive.read_shapes`, before any ViT is built).

CLIP (open_clip names; OpenAI's TorchScript archive, open_clip's hub ``.bin``/``.safetensors`` all use them): the
expected table is derived from open_clip's own model config (``model_configs/NAME.json``), read without importing
open_clip. OpenAI's archive adds ``input_resolution``/``context_length``/``vocab_size`` and ``attn_mask``, which
open_clip's ``build_model_from_openai_state_dict`` drops too. DINOv2 (timm names): Meta's torch-hub
``dinov2_vitb14_pretrain.pth`` uses the same names plus ``mask_token`` (timm's ``_convert_dinov2`` drops it).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

Shapes = dict[str, tuple[int, ...]]
WRAPPERS = ("state_dict.", "model.", "module.")
CLIP_EXTRAS = ("input_resolution", "context_length", "vocab_size")
# timm DINOv2 ViTs: (width, blocks); all patch 14, MLP ratio 4 (the giant model's SwiGLU MLP is not supported)
DINO_ARCHS = {"vit_small_patch14_dinov2": (384, 12), "vit_base_patch14_dinov2": (768, 12),
              "vit_large_patch14_dinov2": (1024, 24)}


def clip_config(name: str) -> dict[str, Any] | None:
    """open_clip's config of model ``name``: from its registry when open_clip is loaded (configs added at run time
    included), else from the JSON file, without importing open_clip (and torch)."""
    if ":" in name:  # hf-hub:/local-dir: models: their config is remote or elsewhere; the strict load decides
        return None
    if "open_clip.factory" in sys.modules:
        cfg = sys.modules["open_clip.factory"].get_model_config(name)
        return dict(cfg) if cfg else None
    spec = importlib.util.find_spec("open_clip")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "model_configs" / f"{name}.json"
        if path.is_file():
            return json.loads(path.read_text())
    return None


def _blocks(prefix: str, width: int, layers: int, mlp: int) -> Shapes:
    out: Shapes = {}
    for i in range(layers):
        b = f"{prefix}{i}."
        out.update({b + "ln_1.weight": (width,), b + "ln_1.bias": (width,), b + "ln_2.weight": (width,),
                    b + "ln_2.bias": (width,), b + "attn.in_proj_weight": (3 * width, width),
                    b + "attn.in_proj_bias": (3 * width,), b + "attn.out_proj.weight": (width, width),
                    b + "attn.out_proj.bias": (width,), b + "mlp.c_fc.weight": (mlp,
                                                                                width), b + "mlp.c_fc.bias": (mlp,),
                    b + "mlp.c_proj.weight": (width, mlp), b + "mlp.c_proj.bias": (width,)})
    return out


def clip_shapes(name: str) -> Shapes | None:
    """Name → shape of every tensor of open_clip's CLIP ``name`` (plain ViT towers only; None for other kinds)."""
    cfg = clip_config(name)
    if not cfg:
        return None
    v, t, e = cfg.get("vision_cfg", {}), cfg.get("text_cfg", {}), cfg["embed_dim"]
    plain = ("timm_model_name", "hf_model_name", "attentional_pool", "ls_init_value", "no_ln_pre", "attn_pooler_heads",
             "final_ln_after_pool", "pool_type", "act_kwargs", "norm_kwargs", "proj_type", "proj_bias", "embed_cls")
    if isinstance(v.get("layers"), (list, tuple)) or any(k in v or k in t for k in plain):
        return None
    w, p, size = v["width"], v["patch_size"], v["image_size"]
    grid = (size // p) ** 2 if isinstance(size, int) else (size[0] // p) * (size[1] // p)
    tw = t.get("width", 512)
    out: Shapes = {"visual.conv1.weight": (w, 3, p, p), "visual.class_embedding": (w,),  # the telling one first
                   "visual.positional_embedding": (grid + 1, w), "visual.proj": (w, e), "visual.ln_pre.weight": (w,),
                   "visual.ln_pre.bias": (w,), "visual.ln_post.weight": (w,), "visual.ln_post.bias": (w,),
                   "positional_embedding": (t.get("context_length", 77), tw), "text_projection": (tw, e),
                   "logit_scale": (), "token_embedding.weight": (t.get("vocab_size", 49408), tw),
                   "ln_final.weight": (tw,), "ln_final.bias": (tw,)}
    out.update(_blocks("visual.transformer.resblocks.", w, v["layers"], int(w * v.get("mlp_ratio", 4.0))))
    out.update(_blocks("transformer.resblocks.", tw, t.get("layers", 12), int(tw * t.get("mlp_ratio", 4.0))))
    return out


def dino_shapes(name: str) -> Shapes | None:
    """Name → shape for timm's DINOv2 ViT ``name`` built with ``num_classes=0`` (pos_embed: the 518-px grid)."""
    if name not in DINO_ARCHS:
        return None
    d, depth = DINO_ARCHS[name]
    out: Shapes = {"cls_token": (1, 1, d), "pos_embed": (1, 37 * 37 + 1, d), "patch_embed.proj.weight": (d, 3, 14, 14),
                   "patch_embed.proj.bias": (d,), "norm.weight": (d,), "norm.bias": (d,)}
    for i in range(depth):
        b = f"blocks.{i}."
        out.update({b + "norm1.weight": (d,), b + "norm1.bias": (d,), b + "attn.qkv.weight": (3 * d, d),
                    b + "attn.qkv.bias": (3 * d,), b + "attn.proj.weight": (d, d), b + "attn.proj.bias": (d,),
                    b + "ls1.gamma": (d,), b + "norm2.weight": (d,), b + "norm2.bias": (d,),
                    b + "mlp.fc1.weight": (4 * d, d), b + "mlp.fc1.bias": (4 * d,), b + "mlp.fc2.weight": (d, 4 * d),
                    b + "mlp.fc2.bias": (d,), b + "ls2.gamma": (d,)})
    return out


def normalise_names(backbone: str, names: list[str]) -> dict[str, str]:
    """File name → model name for the tensors that matter: wrapper prefixes stripped, layout extras dropped."""
    mapping = {n: n for n in names}
    for _ in range(3):  # {"state_dict": {"module.…": …}}
        for w in WRAPPERS:
            if mapping and all(m.startswith(w) for m in mapping.values()):
                mapping = {f: m[len(w):] for f, m in mapping.items()}
    if backbone == "clip":
        return {f: m for f, m in mapping.items() if m not in CLIP_EXTRAS and not m.endswith("attn_mask")}
    return {f: m for f, m in mapping.items() if m != "mask_token"}


def describe(shapes: Shapes) -> str:
    """What a file holds, in words ("a CLIP ViT (width 1024, patch 14, 24 blocks)")."""
    names = list(normalise_names("clip", list(shapes)).values())
    by = {m: shapes[f] for f, m in normalise_names("clip", list(shapes)).items()}
    if "visual.conv1.weight" in by:
        w, _, p, _ = (*by["visual.conv1.weight"], 0, 0, 0, 0)[:4]
        n = len({k.split(".")[3] for k in names if k.startswith("visual.transformer.resblocks.")})
        return f"a CLIP ViT (width {w}, patch {p}, {n} blocks)"
    if any(k.startswith("visual.layer1.") for k in names):
        return "a CLIP ResNet"
    if any(k.startswith("visual.trunk.") for k in names):
        return "an open_clip CLIP with a timm image tower"
    if "patch_embed.proj.weight" in by and len(by["patch_embed.proj.weight"]) == 4:
        w, _, p, _ = by["patch_embed.proj.weight"]
        n = len({k.split(".")[1] for k in names if k.startswith("blocks.")})
        return f"a timm/DINOv2-style ViT (width {w}, patch {p}, {n} blocks)"
    if not shapes:
        return "a file without tensors"
    return f"a file of {len(shapes)} tensors with none of the expected names (first: {names[0][:40]})"


def problems(backbone: str, arch: str, shapes: Shapes) -> str | None:
    """None when the file fits ``arch``; else the first mismatches in a few words."""
    want = clip_shapes(arch) if backbone == "clip" else dino_shapes(arch)
    if want is None:
        return None  # an architecture without a table: the strict load afterwards decides
    have = {m: shapes[f] for f, m in normalise_names(backbone, list(shapes)).items()}
    missing = [k for k in want if k not in have]
    extra = [k for k in have if k not in want]
    wrong = [k for k in want if k in have and have[k] != want[k] and not _flexible(backbone, k, have[k], want[k])]
    parts = []
    if wrong:
        k = wrong[0]
        more = f" (+{len(wrong) - 1} more)" if len(wrong) > 1 else ""
        parts.append(f"{k} is {_fmt(have[k])}, expected {_fmt(want[k])}{more}")
    if missing:
        parts.append(f"{len(missing)} tensors missing, e.g. {missing[0]}")
    if extra:
        parts.append(f"{len(extra)} unexpected, e.g. {extra[0]}")
    return "; ".join(parts) or None


def _flexible(backbone: str, key: str, have: tuple, want: tuple) -> bool:
    """DINOv2's position table may come for another grid (timm resamples it): same width, a square grid + CLS."""
    if backbone != "dino" or key != "pos_embed" or len(have) != 3 or have[2] != want[2]:
        return False
    n = have[1] - 1
    return n > 0 and round(n ** 0.5) ** 2 == n


def _fmt(shape: tuple) -> str:
    return "x".join(map(str, shape)) or "a scalar"
