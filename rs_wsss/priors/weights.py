"""Where the frozen backbones' weights come from.

Order: explicit path (file, or directory holding the files) → ``$RS_WSSS_WEIGHTS_DIR`` → the libraries' hub cache
(or a download when online) → :class:`WeightsNotFound` with one line saying how to supply them.
``"random"`` is an explicit choice (tests, smoke runs), never a fallback.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from ..config import PriorsConfig
from ..errors import RsWsssError, WeightsNotFound

ENV_DIR = "RS_WSSS_WEIGHTS_DIR"
RANDOM = "random"
# File names looked for inside a weights directory, most specific first.
FILE_NAMES = {
    "clip": ("open_clip_vit_b16_openai.bin", "open_clip_pytorch_model.bin", "open_clip_model.safetensors",
             "ViT-B-16.pt"),  # the last: OpenAI's own TorchScript file
    "dino": ("dinov2_vitb14.safetensors", "dinov2_vitb14.bin", "dinov2_vitb14_pretrain.pth"),
}
NAME_HINT = {"clip": "clip", "dino": "dinov2"}
SUFFIXES = (".bin", ".pt", ".pth", ".safetensors")
HOW = (
    "put open_clip_vit_b16_openai.bin and dinov2_vitb14.safetensors in $RS_WSSS_WEIGHTS_DIR or pass --weights DIR"
    " (or --weights random / make demo WEIGHTS=random to see the mechanics with random backbones)"
)


@dataclass(frozen=True)
class ResolvedWeights:
    backbone: str  # "clip" or "dino"
    path: Path | None  # None when random
    source: str  # "explicit", "env", "hub-cache", "random"

    @property
    def is_random(self) -> bool:
        return self.path is None

    @property
    def identifier(self) -> str:
        """Stable id for cache keys: file name + size + head hash (hashing GBs of weights each run is wasteful)."""
        if self.path is None:
            return f"{self.backbone}:random"
        st = self.path.stat()
        with open(self.path, "rb") as fh:
            head = hashlib.sha256(fh.read(1 << 20)).hexdigest()[:12]
        return f"{self.backbone}:{self.path.name}:{st.st_size}:{head}"

    def describe(self) -> str:
        return f"{self.backbone}: random weights (explicit)" if self.path is None else (
            f"{self.backbone}: {self.path} (from {self.source})")


def resolve(backbone: str, cfg: PriorsConfig, weights: str | None = None) -> ResolvedWeights:
    """Resolve one backbone's weights; ``weights`` (CLI ``--weights``) beats ``cfg.weights``."""
    choice = weights if weights is not None else cfg.weights
    if cfg.tiny or choice == RANDOM:
        return ResolvedWeights(backbone, None, RANDOM)
    if choice:
        found = _in_location(backbone, Path(choice).expanduser())
        if found is None:
            raise WeightsNotFound(f"no {backbone} weights at {choice}: {HOW}")
        return ResolvedWeights(backbone, found, "explicit")
    env = os.environ.get(ENV_DIR)
    if env:
        found = _in_location(backbone, Path(env).expanduser())
        if found is not None:
            return ResolvedWeights(backbone, found, "env")
    found = _from_hub(backbone, cfg)
    if found is not None:
        return ResolvedWeights(backbone, found, "hub-cache")
    raise WeightsNotFound(f"{backbone} weights not found (offline and not cached): {HOW}")


def _in_location(backbone: str, loc: Path) -> Path | None:
    from ..paths import refuse_link_loop

    refuse_link_loop(loc, "--weights")
    if loc.is_file():
        return loc
    if not loc.is_dir():
        return None
    for name in FILE_NAMES[backbone]:
        refuse_link_loop(loc / name, "weights file")
        if (loc / name).is_file():
            return loc / name
    hits = sorted(p for p in loc.iterdir() if p.suffix in SUFFIXES and NAME_HINT[backbone] in p.name.lower())
    if backbone == "clip":  # 'clip' must not pick a dinov2 file that happens to mention clip
        hits = [p for p in hits if "dino" not in p.name.lower()]
    if len(hits) > 1:
        raise RsWsssError(f"several {backbone} weight files in {loc}: {', '.join(p.name for p in hits)}; keep one")
    return hits[0] if hits else None


def _hub_reachable(timeout: float = 2.0) -> bool:
    """A quick TCP probe of the hub endpoint, so an offline machine fails in seconds, not after HTTP retries."""
    import socket
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False
    try:
        from huggingface_hub import constants

        url = urlparse(constants.ENDPOINT)
        with socket.create_connection((url.hostname, url.port or 443), timeout=timeout):
            return True
    except (ImportError, OSError, ValueError):  # no hub client, no network, a malformed endpoint
        return False


def _from_hub(backbone: str, cfg: PriorsConfig) -> Path | None:
    """The libraries' own cache (or download when online); any failure means 'not available'."""
    cached = _hub_cached(backbone, cfg)
    if cached is not None or not _hub_reachable():
        return cached
    try:
        if backbone == "clip":
            from open_clip.pretrained import download_pretrained, get_pretrained_cfg

            target = download_pretrained(get_pretrained_cfg(cfg.clip_model, cfg.clip_pretrained))
        else:
            from huggingface_hub import hf_hub_download
            from timm.models import get_pretrained_cfg

            pcfg = get_pretrained_cfg(cfg.dino_model)
            target = hf_hub_download(pcfg.hf_hub_id, "model.safetensors") if pcfg and pcfg.hf_hub_id else ""
    except (ImportError, OSError, ValueError, KeyError, RuntimeError):  # offline (hub errors are OSErrors), no
        return None  # cache, no hub client, an unknown pretrained tag: all the same to the user
    return Path(target) if target and Path(target).is_file() else None


def _hub_cached(backbone: str, cfg: PriorsConfig) -> Path | None:
    """The file from the Hugging Face cache, without any network access."""
    try:
        from huggingface_hub import try_to_load_from_cache

        if backbone == "clip":
            from open_clip.pretrained import get_pretrained_cfg

            hub = get_pretrained_cfg(cfg.clip_model, cfg.clip_pretrained).get("hf_hub", "")
            repo, name = os.path.split(hub)
            names = [name] if name else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
        else:
            from timm.models import get_pretrained_cfg

            pcfg = get_pretrained_cfg(cfg.dino_model)
            repo, names = (pcfg.hf_hub_id if pcfg else ""), ["model.safetensors", "pytorch_model.bin"]
        for n in names:
            hit = try_to_load_from_cache(repo, n) if repo else None
            if isinstance(hit, str) and Path(hit).is_file():
                return Path(hit)
    except (ImportError, OSError, ValueError, KeyError):  # no hub client, an unreadable cache, an unknown model
        return None
    return None


def check_file(rw: ResolvedWeights, arch: str) -> None:
    """Refuse a file that is not ``arch``'s weights from its names and shapes alone (milliseconds: no tensor data is
    read and no model is built), naming what the file holds instead."""
    from .archive import read_shapes
    from .layouts import describe, problems

    if rw.path is None:
        return
    shapes = read_shapes(rw.path)
    why = problems(rw.backbone, arch, shapes)
    if why:
        raise WeightsNotFound(f"{rw.path} is {describe(shapes)}, not {rw.backbone} weights for {arch} ({why}); "
                              f"give the {rw.backbone} file for {arch} "
                              f"(rs-wsss weights --check FILE --backbone {rw.backbone})")


def load_state(rw: ResolvedWeights, arch: str) -> dict:
    """The file's tensors under the model's names, float32, checked against ``arch`` (any published layout)."""
    from .archive import read_tensors
    from .layouts import normalise_names

    assert rw.path is not None, "random weights have no file"
    check_file(rw, arch)
    tensors = read_tensors(rw.path)
    names = normalise_names(rw.backbone, list(tensors))
    return {m: tensors[f].float().contiguous() for f, m in names.items()}


def check_early(cfg: PriorsConfig, weights: str | None = None, need_dino: bool = True) -> None:
    """Check weights files given by ``--weights`` or ``$RS_WSSS_WEIGHTS_DIR`` against the architectures before torch
    is even imported, so a wrong file fails in well under a second (hub-cache resolution is left to
    :func:`resolve` later; a missing file is reported there too)."""
    choice = weights if weights is not None else cfg.weights
    if cfg.tiny or choice == RANDOM:
        return
    location = choice or os.environ.get(ENV_DIR)
    if not location:
        return
    for backbone, arch in [("clip", cfg.clip_model)] + ([("dino", cfg.dino_model)] if need_dino else []):
        found = _in_location(backbone, Path(location).expanduser())
        if found is not None:
            check_file(ResolvedWeights(backbone, found, "explicit" if choice else "env"), arch)
