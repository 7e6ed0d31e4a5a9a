"""Frozen pretrained priors (Sect. 3.1, 4.2): the paper's CLIP ViT-B/16 and DINOv2 ViT-B/14, or any prior of the
registry in :mod:`.specs` (remote-sensing CLIPs, other DINOv2 sizes), named by ``priors.clip`` / ``priors.dino``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ..config import PriorsConfig
from .specs import KNOWN, BackboneSpec, Prior, prior_specs, spec_for
from .weights import RANDOM, ResolvedWeights, check_file, resolve

if TYPE_CHECKING:
    from torch import nn

    from .clip import ClipPrior
    from .dino import DinoPrior

    P = TypeVar("P", bound=nn.Module)  # the prior class given is the prior built

__all__ = ["KNOWN", "RANDOM", "BackboneSpec", "Prior", "ResolvedWeights", "build_priors", "check_weights_file",
           "prior_specs", "resolve", "spec_for"]


def build_priors(
    cfg: PriorsConfig, weights: str | None = None, need_dino: bool = True, need_text: bool = True
) -> tuple[ClipPrior, DinoPrior | None]:
    """Resolve weights (raises WeightsNotFound with one line) and build the frozen backbones.

    DINO is resolved only when needed, and CLIP's text tower only with ``need_text`` (inference with a trained
    decoder uses neither).
    """
    from .clip import ClipPrior
    from .dino import DinoPrior

    specs = prior_specs(cfg)  # an unknown name fails here, before any file is looked for
    clip_w = resolve("clip", cfg, weights)
    dino_w = resolve("dino", cfg, weights) if need_dino else None
    # a file for another architecture fails here in milliseconds, before either ViT is built
    check_file(clip_w, specs["clip"])
    if dino_w is not None:
        check_file(dino_w, specs["dino"])
    if clip_w.is_random:
        import logging

        logging.getLogger("rs_wsss").warning("RANDOM backbone weights (explicit): outputs only show the mechanics and "
                                             "are marked random-weights")
    import torch

    # random backbones are drawn from a fixed seed: every process (a resumed run, a segment after train) gets the
    # same "random" model, and the caller's RNG stream is left untouched
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        clip = _build(ClipPrior, cfg, clip_w, specs["clip"], text=need_text)
        torch.manual_seed(1)
        dino = _build(DinoPrior, cfg, dino_w, specs["dino"]) if dino_w is not None else None
    return clip, dino


def check_weights_file(path: str | Path, backbone: str, cfg: PriorsConfig) -> int:
    """Load ``path`` into the ``backbone`` ("clip" or "dino") prior that ``cfg`` names; the parameter count.

    Raises:
        InputNotFound: the file does not exist. WeightsNotFound: it does not load as that backbone (one line).
    """
    from ..errors import InputNotFound
    from .clip import ClipPrior
    from .dino import DinoPrior

    path = Path(path)
    if not path.is_file():
        raise InputNotFound(f"weights file not found: {path}")
    prior_cls = ClipPrior if backbone == "clip" else DinoPrior
    spec = prior_specs(cfg)[backbone]
    rw = ResolvedWeights(backbone, path, "explicit")
    check_file(rw, spec)
    model = _build(prior_cls, cfg, rw, spec)
    return sum(p.numel() for p in model.parameters())


def _build(prior_cls: type[P], cfg: PriorsConfig, rw: ResolvedWeights, spec: BackboneSpec, **kw: Any) -> P:
    """A weights file that is not the expected backbone (wrong model, corrupt, not weights at all) is bad input."""
    import pickle

    from safetensors import SafetensorError

    from ..errors import RsWsssError, WeightsNotFound

    try:
        return prior_cls(cfg, rw, **kw)
    except (RsWsssError, RuntimeError, OSError, EOFError, ValueError, KeyError, pickle.UnpicklingError,
            SafetensorError) as exc:  # what reading or loading a wrong, corrupt or foreign file raises
        if rw.is_random:
            raise
        text = str(exc).strip()
        why = text.splitlines()[0].split(". ")[0][:120] if text else type(exc).__name__  # first sentence only
        raise WeightsNotFound(f"{rw.path} does not load as {spec.name} ({spec.arch}): {why}; "
                              f"check it with rs-wsss weights --check FILE --backbone {rw.backbone}") from None
