"""The tensor names and shapes each backbone expects, the published file layouts mapped onto them, and a check that
names what a wrong file is (in milliseconds, from :func:`archive.read_shapes`, before any ViT is built).

CLIP (open_clip names; OpenAI's TorchScript archive, open_clip's hub ``.bin``/``.safetensors``, RemoteCLIP's and
GeoRSCLIP's bare state dicts and SkyCLIP's training checkpoints all use them): the expected table is derived from the
spec's open_clip model config (``model_configs/NAME.json`` with the spec's text positions), read without importing
open_clip. OpenAI's archive adds ``input_resolution``/``context_length``/``vocab_size`` and ``attn_mask``, which
open_clip's ``build_model_from_openai_state_dict`` drops too; a training checkpoint's ``optimizer``/``scaler`` are
not the model and are left out. DINOv2 (timm names): Meta's torch-hub ``dinov2_vit*14[_reg4]_pretrain.pth`` uses the
same names plus ``mask_token`` (dropped), and for the register models ``register_tokens`` with a position table that
includes the CLS token (converted as timm's ``_convert_dinov2`` does).
"""

from __future__ import annotations

from typing import Any

from .specs import KNOWN, BackboneSpec, clip_config

Shapes = dict[str, tuple[int, ...]]
WRAPPERS = ("state_dict.", "model.", "module.")
CLIP_EXTRAS = ("input_resolution", "context_length", "vocab_size")
# open_clip ViT names by (width, patch, blocks), for saying what a file looks like
CLIP_NAMES = {(768, 32, 12): "ViT-B-32", (768, 16, 12): "ViT-B-16", (1024, 14, 24): "ViT-L-14",
              (1280, 14, 32): "ViT-H-14", (1664, 14, 48): "ViT-bigG-14"}
DINO_NAMES = {(384, 12): "ViT-S/14", (768, 12): "ViT-B/14", (1024, 24): "ViT-L/14", (1536, 40): "ViT-g/14"}


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


def clip_shapes(name_or_config: str | dict[str, Any]) -> Shapes | None:
    """Name → shape of every tensor of an open_clip CLIP, given its config name or config (plain ViT towers only;
    None for other kinds)."""
    cfg = clip_config(name_or_config) if isinstance(name_or_config, str) else name_or_config
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


def dino_shapes(spec: BackboneSpec) -> Shapes:
    """Name → shape for timm's DINOv2 ViT of ``spec`` built with ``num_classes=0`` (pos_embed: the 518-px grid; the
    register models keep CLS and registers out of it)."""
    d, depth, p = spec.width, spec.blocks, spec.patch
    reg = spec.registers
    out: Shapes = {"cls_token": (1, 1, d), **({"reg_token": (1, reg, d)} if reg else {}),
                   "pos_embed": (1, 37 * 37 + (0 if reg else 1), d), "patch_embed.proj.weight": (d, 3, p, p),
                   "patch_embed.proj.bias": (d,), "norm.weight": (d,), "norm.bias": (d,)}
    for i in range(depth):
        b = f"blocks.{i}."
        out.update({b + "norm1.weight": (d,), b + "norm1.bias": (d,), b + "attn.qkv.weight": (3 * d, d),
                    b + "attn.qkv.bias": (3 * d,), b + "attn.proj.weight": (d, d), b + "attn.proj.bias": (d,),
                    b + "ls1.gamma": (d,), b + "norm2.weight": (d,), b + "norm2.bias": (d,),
                    b + "mlp.fc1.weight": (4 * d, d), b + "mlp.fc1.bias": (4 * d,), b + "mlp.fc2.weight": (d, 4 * d),
                    b + "mlp.fc2.bias": (d,), b + "ls2.gamma": (d,)})
    return out


def expected_shapes(spec: BackboneSpec) -> Shapes | None:
    """The table a file for ``spec`` must match (None: an architecture without one; the strict load decides)."""
    return clip_shapes(spec.clip_config()) if spec.role == "clip" else dino_shapes(spec)


def normalise_names(backbone: str, names: list[str]) -> dict[str, str]:
    """File name → model name for the tensors that matter: wrapper prefixes stripped, layout extras dropped (a
    training checkpoint's optimizer state is not the model: only its ``state_dict`` is kept)."""
    mapping = {n: n for n in names}
    if any(n.startswith("state_dict.") for n in names):
        mapping = {n: n for n in names if n.startswith("state_dict.")}
    for _ in range(3):  # {"state_dict": {"module.…": …}}
        for w in WRAPPERS:
            if mapping and all(m.startswith(w) for m in mapping.values()):
                mapping = {f: m[len(w):] for f, m in mapping.items()}
    if backbone == "clip":
        return {f: m for f, m in mapping.items() if m not in CLIP_EXTRAS and not m.endswith("attn_mask")}
    return {f: ("reg_token" if m == "register_tokens" else m) for f, m in mapping.items() if m != "mask_token"}


def meta_registers_to_timm(state: dict[str, Any]) -> dict[str, Any]:
    """Meta's DINOv2-with-registers tensors (model names already) → timm's: the CLS position folded into the CLS
    token and cut from the table, as timm's ``_convert_dinov2`` does. Other states are returned as they are."""
    if "register_tokens" not in state:
        return state
    out = {k: v for k, v in state.items() if k not in ("register_tokens", "cls_token", "pos_embed")}
    out["reg_token"] = state["register_tokens"]
    out["cls_token"] = state["cls_token"] + state["pos_embed"][:, :1]
    out["pos_embed"] = state["pos_embed"][:, 1:]
    return out


def describe(shapes: Shapes) -> str:
    """What a file holds, in words ("open_clip ViT-B-32 (width 768, 12 blocks, patch 32), like remoteclip-vit-b-32,
    …")."""
    names = list(normalise_names("clip", list(shapes)).values())
    by = {m: shapes[f] for f, m in normalise_names("clip", list(shapes)).items()}
    if "visual.conv1.weight" in by:
        w, _, p, _ = (*by["visual.conv1.weight"], 0, 0, 0, 0)[:4]
        n = len({k.split(".")[3] for k in names if k.startswith("visual.transformer.resblocks.")})
        text = by.get("positional_embedding", (77,))[0]
        arch = CLIP_NAMES.get((w, p, n), "ViT")
        return (f"open_clip {arch} (width {w}, {n} blocks, patch {p}"
                + (f", text {text} positions" if text != 77 else "") + ")" + _like("clip", w, p, n, text))
    if any(k.startswith("visual.layer1.") for k in names):
        return "a CLIP ResNet"
    if any(k.startswith("visual.trunk.") for k in names):
        return "an open_clip CLIP with a timm image tower"
    if "patch_embed.proj.weight" in by and len(by["patch_embed.proj.weight"]) == 4:
        w, _, p, _ = by["patch_embed.proj.weight"]
        n = len({k.split(".")[1] for k in names if k.startswith("blocks.")})
        reg = "reg_token" in by or "register_tokens" in by
        return (f"DINOv2 {DINO_NAMES.get((w, n), 'ViT')} (width {w}, {n} blocks, patch {p}"
                f"{', registers' if reg else ''})" + _like("dino", w, p, n, 4 if reg else 0))
    if not shapes:
        return "a file without tensors"
    return f"a file of {len(shapes)} tensors with none of the expected names (first: {names[0][:40]})"


def _like(role: str, width: int, patch: int, blocks: int, extra: int) -> str:
    """", like <the known priors of that shape>" (extra: text positions for CLIP, registers for DINO)."""
    hits = [s.name for s in KNOWN.values() if s.role == role and (s.width, s.patch, s.blocks) == (width, patch, blocks)
            and (s.context_length if role == "clip" else s.registers) == extra]
    return f", like {', '.join(hits)}" if hits else ""


def problems(spec: BackboneSpec, shapes: Shapes) -> str | None:
    """None when the file fits ``spec``; else the first mismatches in a few words."""
    backbone = spec.role
    want = expected_shapes(spec)
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
    """DINOv2's position table may come for another grid (timm resamples it): same width, a square grid, + CLS
    unless timm's register layout leaves it out (Meta's register files keep it: converted at load)."""
    if backbone != "dino" or key != "pos_embed" or len(have) != 3 or have[2] != want[2]:
        return False
    return any(n > 0 and round(n ** 0.5) ** 2 == n for n in (have[1] - 1, have[1]))


def _fmt(shape: tuple) -> str:
    return "x".join(map(str, shape)) or "a scalar"
