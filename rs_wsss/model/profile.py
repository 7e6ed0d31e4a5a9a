"""The model described the way the paper reports it (Sect. 4.2): parameter counts, FLOPs per crop, and the config
values that differ from the defaults (the paper's reading). Used by ``rs-wsss info``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from ..config import Config

if TYPE_CHECKING:
    from .wsss import WSSS

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


def param_counts(model: WSSS) -> dict[str, int]:
    """Trainable and total parameters, with and without the CLIP text tower (the paper counts image encoders)."""
    c = model.param_counts()
    text = c["clip"] - c["clip_visual"]
    return {**c, "text_tower": text, "total_no_text": c["total"] - text}


@torch.no_grad()
def crop_flops(model: WSSS, size: int | None = None) -> Flops:
    """FLOPs of one RGB crop of ``size`` px (default the CLIP prior's crop, 320 in the paper) through the training
    forward: CLIP image encoder at its crop (per-block tokens and attention), DINOv2 at its crop (all adapter
    levels), CLIP and DINO adapters and the decoder. Not counted: the text tower (run once per class set), the CAM
    refinement (USR matrix powers, VPE, PAR — no_grad target construction), losses."""
    from torch.utils.flop_counter import FlopCounterMode

    c, d = model.clip.size, model.dino.size if model.dino is not None else 0
    size = size or c
    x = torch.rand(1, 3, size, size, device=model.prototypes.device)

    def count(fn: Callable[[], Any]) -> tuple[float, Any]:
        with FlopCounterMode(display=False) as fc:
            out = fn()
        return float(fc.get_total_flops()), out

    from .multiscale import resize

    clip_flops, f = count(lambda: model.clip(resize(x, (c, c))))
    dino_flops, dino = 0.0, None
    if model.dino_adapter is not None and model.dino is not None:
        dino_flops, dino = count(lambda: model.dino.levels(resize(x, (d, d)),
                                                           model.cfg.adapter.dino_levels))

    def trainable() -> None:
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
