"""Checkpoints: a dict of tensors and plain values, loadable with ``torch.load(weights_only=True)``.

Contents: trainable state, VPE prototypes, optimiser + schedule state, step, RNG states, config, class set,
knowledge-base hash, backbone identifiers, random-weights flag, and the caller's ``extra`` (band selection,
normalisation statistics, …).
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import __version__
from ..errors import RsWsssError

FORMAT = 1


def rng_state() -> dict[str, Any]:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": list(random.getstate()[1]),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    random.setstate((3, tuple(state["python"]), None))


def save_checkpoint(path: str | Path, model, optimizer=None, scheduler=None, step: int = 0, extra: dict | None = None) -> None:
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
        "dims": {"dino_width": model.dino_adapter.mlps[0][0].in_channels if model.dino_adapter is not None else 0},
        "random_weights": "random" in model.clip.identifier,
        "extra": extra or {},
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise RsWsssError(f"checkpoint not found: {path} (train one with `rs-wsss train`)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated file, not a torch file, pickled objects
        raise RsWsssError(f"{path} is not an rs-wsss checkpoint ({type(exc).__name__}); retrain or pass the right file") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT or "trainable" not in state:
        raise RsWsssError(f"{path} is not an rs-wsss checkpoint (format {FORMAT}); retrain or pass the right file")
    return state


def file_hash(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def restore_model(model, state: dict[str, Any], path: str = "checkpoint") -> None:
    """Load trainable weights + prototypes, refusing a checkpoint made for another class set or backbone."""
    names = [c["name"] for c in state["class_set"]["classes"]]
    if names != [c.name for c in model.class_set.classes]:
        raise RsWsssError(
            f"{path} was trained for classes {', '.join(names)}, not class set '{model.class_set.name}'; "
            "use the same --classes or retrain"
        )
    want = state["backbones"]["clip"].split("|")[0]
    have = model.clip.identifier.split("|")[0]
    if want != have:
        raise RsWsssError(f"{path} was trained on backbone {want}, not {have}; use the same priors config or retrain")
    for name, module in model.trainable_modules().items():
        if name not in state["trainable"]:
            raise RsWsssError(f"{path} has no '{name}' weights (trained with another usr.use_dino setting)")
        module.load_state_dict(state["trainable"][name])
    model.prototypes.copy_(state["prototypes"])
    model.proto_init.copy_(state["proto_init"])
