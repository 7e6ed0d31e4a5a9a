"""Checkpoints: a dict of tensors and plain values, loadable with ``torch.load(weights_only=True)``.

Contents: trainable state, VPE prototypes, optimiser + schedule state, step, RNG states, config, class set,
knowledge-base hash, backbone identifiers, the priors (registry names, weights files and their sha256),
random-weights flag, and the caller's ``extra`` (band selection,
normalisation statistics, …).
"""

from __future__ import annotations

import hashlib
import logging
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .._version import __version__
from ..atomic import atomic_path, disk_full, sweep_stale
from ..errors import DAMAGED_FILE_ERRORS, InputNotFound, RsWsssError
from ..priors.specs import canonical_name, prior_record

if TYPE_CHECKING:
    from .wsss import WSSS

FORMAT = 1
log = logging.getLogger("rs_wsss")


def rng_state() -> dict[str, Any]:
    """Torch (CPU and every CUDA device), numpy and python RNG states as tensors and plain values (weights_only)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),  # type: ignore[attr-defined]
                  "gauss": float(gauss)},
        "python": list(random.getstate()[1]),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the torch, CUDA (same device count only), numpy and Python generators from :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    random.setstate((3, tuple(state["python"]), None))


def save_checkpoint(path: str | Path, model: WSSS, optimizer: torch.optim.Optimizer | None = None,
                    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None, step: int = 0,
                    extra: dict | None = None) -> None:
    """Write atomically (temporary name, then rename): an interrupted save never corrupts the previous one."""
    path = Path(path)
    state = {
        "format": FORMAT,
        "rs_wsss_version": __version__,
        "trainable": {name: m.state_dict() for name, m in model.trainable_modules().items()},
        "prototypes": model.prototypes.detach().cpu().clone(),
        "proto_init": model.proto_init.detach().cpu().clone(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "step": int(step),
        "rng": rng_state(),
        "config": model.cfg.to_dict(),
        "class_set": model.class_set.to_dict(),
        "kb_hash": model.class_set.kb_hash(),
        "backbones": {"clip": model.clip.identifier, "dino": model.dino.identifier if model.dino is not None else None},
        # the priors by registry name with their weights files' sha256 (provenance; `backbones` is what is checked)
        "priors": {role: prior_record(p) for role, p in (("clip", model.clip), ("dino", model.dino)) if p is not None},
        "dims": {"dino_width": model.dino_adapter.in_dim if model.dino_adapter is not None else 0},
        "random_weights": "random" in model.clip.identifier,
        "extra": extra or {},
    }
    sweep_stale(path)  # what a save killed by SIGKILL left (its PID is gone)
    try:
        with atomic_path(path) as tmp:  # an interrupted or failed save leaves no half-written file behind
            torch.save(state, tmp)
    except (OSError, RuntimeError) as exc:
        if disk_full(exc, path.parent):
            raise RsWsssError(f"no space left on the disk of {path.parent} to save {path.name} (step {step}); "
                              "free space and rerun with --resume") from None
        raise


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint as a dict (tensors and plain values only), keys added since it was written filled in.

    Raises:
        InputNotFound: no such file. RsWsssError: not an rs-wsss checkpoint (any format, truncated, foreign).
    """
    from ..paths import refuse_link_loop

    path = Path(path)
    refuse_link_loop(path, "checkpoint")
    if not path.is_file():
        raise InputNotFound(f"checkpoint not found: {path} (train one with `rs-wsss train`)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except DAMAGED_FILE_ERRORS as exc:  # truncated, not torch, random bytes, or objects weights_only refuses
        raise RsWsssError(f"{path} is not an rs-wsss checkpoint ({type(exc).__name__}); "
                          "retrain or pass the right file") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT or "trainable" not in state:
        raise RsWsssError(f"{path} is not an rs-wsss checkpoint (format {FORMAT}); retrain or pass the right file")
    _fill_earlier_behaviour(state.get("config") or {})
    return state


# keys added after checkpoints already existed, with the behaviour those checkpoints were trained with (issue 13:
# one-level DINO adapter, background prototype, AFA's ignore band, affinity labels over all pairs, no warm-up)
EARLIER = {("adapter", "dino_levels"): 1, ("vpe", "background_prototype"): True, ("pseudo", "rule"): "band",
           ("loss", "aff_radius"): None, ("usr", "warmup_iters"): 0}


def _fill_earlier_behaviour(config: dict[str, Any]) -> None:
    """A checkpoint's config without a newer key gets the value that reproduces how it was trained, not today's
    default (which would, e.g., build a 12-level DINO adapter its weights do not fit)."""
    for (section, key), value in EARLIER.items():
        if isinstance(config.get(section), dict) and key not in config[section]:
            config[section][key] = value


def file_hash(path: str | Path) -> str:
    """The file's sha256 as hex, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def _weights_part(identifier: str | None) -> str:
    """The weights half of a prior's identifier ("arch|clip:file:size:head" → "size:head"; "random" when random):
    the file name is dropped so a renamed or moved weights file still matches."""
    w = (identifier or "").split("|", 1)[-1]
    return "random" if w.endswith(":random") else ":".join(w.split(":")[-2:])


def check_backbone(state: dict[str, Any], clip_identifier: str, path: str = "checkpoint") -> None:
    """Refuse a checkpoint whose CLIP architecture, or random-vs-pretrained weights, differ from the loaded prior;
    warn (only) when both are pretrained files of the same architecture with different contents (it may be the same
    weights saved in another format)."""
    want = state["backbones"]["clip"] or ""
    # the prior's registry name (a checkpoint made before the registry recorded the open_clip architecture)
    want_arch, have_arch = canonical_name(want.split("|")[0]), canonical_name(clip_identifier.split("|")[0])
    if want_arch != have_arch:
        raise RsWsssError(f"{path} was trained on the CLIP prior {want_arch}, not {have_arch}; segment with "
                          f"--clip-prior {want_arch.removesuffix('(tiny)')} and its weights, or retrain")
    w, h = _weights_part(want), _weights_part(clip_identifier)
    if (w == "random") != (h == "random"):
        how = "--weights random" if w == "random" else "the pretrained CLIP weights it was trained with"
        raise RsWsssError(f"{path} was trained on {'random' if w == 'random' else 'pretrained'} CLIP weights but "
                          f"{'random' if h == 'random' else 'pretrained'} ones are loaded; use {how} or retrain")
    if w != h:
        log.warning("%s was trained with another CLIP weights file (%s, now %s)", path, want, clip_identifier)


def check_dino(state: dict[str, Any], dino_identifier: str, path: str = "checkpoint") -> None:
    """Refuse a checkpoint trained on another DINO prior than the loaded one (its adapter reads that prior's blocks)."""
    want = (state["backbones"].get("dino") or "").split("|")[0]
    have = dino_identifier.split("|")[0]
    if want and canonical_name(want, "dino") != canonical_name(have, "dino"):
        name = canonical_name(want, "dino")
        raise RsWsssError(f"{path} was trained on the DINO prior {name}, not {canonical_name(have, 'dino')}; use "
                          f"--dino-prior {name.removesuffix('(tiny)')} and its weights, or retrain")


def restore_model(model: WSSS, state: dict[str, Any], path: str = "checkpoint") -> None:
    """Load trainable weights + prototypes, refusing a checkpoint made for another class set or backbone."""
    names = [c["name"] for c in state["class_set"]["classes"]]
    if names != [c.name for c in model.class_set.classes]:
        raise RsWsssError(
            f"{path} was trained for classes {', '.join(names)}, not class set '{model.class_set.name}'; "
            "use the same --classes or retrain"
        )
    check_backbone(state, model.clip.identifier, path)
    if model.dino is not None:
        check_dino(state, model.dino.identifier, path)
    for name, module in model.trainable_modules().items():
        if name not in state["trainable"]:
            raise RsWsssError(f"{path} has no '{name}' weights (trained with another usr.use_dino setting); "
                              "use the checkpoint's config or retrain")
        try:
            module.load_state_dict(state["trainable"][name])
        except RuntimeError as exc:  # shapes differ: another adapter/decoder config than the checkpoint's
            first = str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else str(exc)
            raise RsWsssError(f"{path}: '{name}' weights do not fit this model ({first[:160]}); "
                              "use the checkpoint's config (no --set of adapter/decoder sizes) or retrain") from None
    if tuple(state["prototypes"].shape) != tuple(model.prototypes.shape):
        raise RsWsssError(f"{path}: VPE prototypes {tuple(state['prototypes'].shape)} do not fit this model "
                          f"{tuple(model.prototypes.shape)}; use the checkpoint's config or retrain")
    model.prototypes.copy_(state["prototypes"])
    model.proto_init.copy_(state["proto_init"])
    model.steps_done = int(state["step"])  # usr.warmup_iters counts from the start of training, not of this run
