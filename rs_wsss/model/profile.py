"""The model described the way the paper reports it (Sect. 4.2): parameter counts, FLOPs per crop, and the config
values that differ from the defaults (the paper's reading). Used by ``rs-wsss info``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..config import Config

PAPER = {"trainable": 16.45e6, "total": 177.89e6, "gflops": 194.0}  # Sect. 4.2 / the paper's complexity figures


@dataclass
class Flops:
    """FLOPs of one crop, by part (torch.utils.flop_counter: 2 per multiply–add; matmul, conv, attention)."""

    clip: float
    dino: float
    trainable: float  # adapters + decoder

    @property
    def train_forward(self) -> float:
        """What a training step runs forward per crop: both backbones, the adapters and the decoder."""
        return self.clip + self.dino + self.trainable


def param_counts(model) -> dict[str, int]:
    """Trainable and total parameters, with and without the CLIP text tower (the paper counts image encoders)."""
    c = model.param_counts()
    text = c["clip"] - c["clip_visual"]
    return {**c, "text_tower": text, "total_no_text": c["total"] - text}


@torch.no_grad()
def crop_flops(model, size: int | None = None) -> Flops:
    """FLOPs of one RGB crop of ``size`` px (default ``priors.clip_size``, 320 in the paper) through the training
    forward: CLIP image encoder at clip_size (per-block tokens and attention), DINOv2 at dino_size (all adapter
    levels), CLIP and DINO adapters and the decoder. Not counted: the text tower (run once per class set), the CAM
    refinement (USR matrix powers, VPE, PAR — no_grad target construction), losses."""
    from torch.utils.flop_counter import FlopCounterMode

    p = model.cfg.priors
    size = size or p.clip_size
    x = torch.rand(1, 3, size, size, device=model.prototypes.device)

    def count(fn) -> tuple[float, Any]:
        with FlopCounterMode(display=False) as fc:
            out = fn()
        return float(fc.get_total_flops()), out

    from .multiscale import resize

    clip_flops, f = count(lambda: model.clip(resize(x, (p.clip_size, p.clip_size))))
    dino_flops, dino = 0.0, None
    if model.dino_adapter is not None and model.dino is not None:
        dino_flops, dino = count(lambda: model.dino.levels(resize(x, (p.dino_size, p.dino_size)),
                                                           model.cfg.adapter.dino_levels))

    def trainable():
        f_clip = model.adapter(f.tokens)
        model.decoder(f_clip, (size, size))
        if dino is not None:
            model.f_cd(f_clip, dino)

    head, _ = count(trainable)
    return Flops(clip=clip_flops, dino=dino_flops, trainable=head)


def config_differences(cfg: Config, reference: Config | None = None) -> list[tuple[str, Any, Any]]:
    """(section.key, value, default) for every value that differs from the dataclass defaults (the paper's
    reading; see README "Choices where the paper is silent")."""
    ref = (reference or Config()).to_dict()
    out = []
    for section, values in cfg.to_dict().items():
        for key, value in values.items():
            default = ref.get(section, {}).get(key)
            if value != default:
                out.append((f"{section}.{key}", value, default))
    return out


def build_model(class_set: str | None, model_path: str | None, weights: str | None, tiny: bool = False,
                overrides: tuple[str, ...] = ()):
    """The model ``rs-wsss info`` describes: from a checkpoint (its config, classes and trained weights; both
    backbones are built so that totals are complete) or from a class set with the packaged (or tiny) config."""
    from ..classes import class_set_from_dict, load_class_set
    from ..config import apply_override, load_config, tiny_config
    from ..errors import RsWsssError
    from ..priors import build_priors
    from .checkpoint import load_checkpoint, restore_model
    from .wsss import WSSS

    if (class_set is None) == (model_path is None):
        raise RsWsssError("give either --classes SET or --model CKPT")
    state = None
    if model_path is not None:
        state = load_checkpoint(model_path)
        cfg = Config.from_dict(state["config"])
        for item in overrides:
            apply_override(cfg, item)
        cs = class_set_from_dict(state["class_set"], source=str(model_path))
    else:
        cfg = tiny_config(overrides) if tiny else load_config(None, overrides)
        cs = load_class_set(class_set)  # type: ignore[arg-type]
    clip, dino = build_priors(cfg.priors, weights, need_dino=cfg.usr.use_dino)
    model = WSSS(cfg, cs, clip, dino)
    if state is not None:
        restore_model(model, state, str(model_path))
    return model.eval()
