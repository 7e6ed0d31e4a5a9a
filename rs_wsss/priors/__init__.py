"""Frozen pretrained priors: CLIP ViT-B/16 and DINOv2 ViT-B/14 (Sect. 3.1, 4.2)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..config import PriorsConfig
from .weights import RANDOM, ResolvedWeights, resolve

if TYPE_CHECKING:
    from .clip import ClipPrior
    from .dino import DinoPrior

__all__ = ["RANDOM", "ResolvedWeights", "build_priors", "resolve"]


def build_priors(
    cfg: PriorsConfig, weights: str | None = None, need_dino: bool = True
) -> tuple[ClipPrior, DinoPrior | None]:
    """Resolve weights (raises WeightsNotFound with one line) and build the frozen backbones.

    DINO is resolved only when needed (inference with a trained decoder does not use it).
    """
    from .clip import ClipPrior
    from .dino import DinoPrior

    clip_w = resolve("clip", cfg, weights)
    dino_w = resolve("dino", cfg, weights) if need_dino else None
    if clip_w.is_random:
        import logging

        logging.getLogger("rs_wsss").warning("RANDOM backbone weights (explicit): outputs only show the mechanics and are marked random-weights")
    import torch

    # random backbones are drawn from a fixed seed: every process (a resumed run, a segment after train) gets the
    # same "random" model, and the caller's RNG stream is left untouched
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        clip = ClipPrior(cfg, clip_w)
        torch.manual_seed(1)
        dino = DinoPrior(cfg, dino_w) if dino_w is not None else None
    return clip, dino
