"""Where the frozen backbones' weights come from.

Order: explicit path (file, or directory holding the files) → ``$RS_WSSS_WEIGHTS_DIR`` → the libraries' hub cache
(or a download when online) → :class:`WeightsNotFound` with one line saying how to supply them.
``"random"`` is an explicit choice (tests, smoke runs), never a fallback.
"""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from ..config import PriorsConfig
from ..errors import RsWsssError, WeightsNotFound
from .specs import BackboneSpec, Role, prior_specs

ENV_DIR = "RS_WSSS_WEIGHTS_DIR"
RANDOM = "random"
SUFFIXES = (".bin", ".pt", ".pth", ".safetensors", ".zip")


def how(spec: BackboneSpec) -> str:
    """How to supply ``spec``'s weights, in one clause."""
    where = f" (from {spec.source})" if spec.files else ""
    name = spec.files[0] if spec.files else "the weights file"
    return (f"put {name}{where} in ${ENV_DIR} or pass --weights DIR or FILE (or --weights random / make demo "
            "WEIGHTS=random to see the mechanics with random backbones)")


@dataclass(frozen=True)
class ResolvedWeights:
    """Where a backbone's weights come from: a file found explicitly, by environment or hub cache, or random."""

    backbone: str  # "clip" or "dino"
    path: Path | None  # None when random
    source: str  # "explicit", "env", "hub-cache", "random"

    @property
    def is_random(self) -> bool:
        """Whether the backbone keeps its random initialisation (``--weights random``)."""
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

    def sha256(self) -> str | None:
        """The whole file's sha256 (None when random): what a checkpoint records. Streamed and computed once per
        file version in a process (a checkpoint is saved every ``train.checkpoint_every`` steps)."""
        if self.path is None:
            return None
        st = self.path.stat()
        return _file_sha256(str(self.path), st.st_size, st.st_mtime_ns)

    def describe(self) -> str:
        """One line for logs and ``doctor``: the backbone and the file and source, or "random weights"."""
        return f"{self.backbone}: random weights (explicit)" if self.path is None else (
            f"{self.backbone}: {self.path} (from {self.source})")


@functools.lru_cache(maxsize=8)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def resolve(backbone: str, cfg: PriorsConfig, weights: str | None = None) -> ResolvedWeights:
    """Resolve one backbone's (``"clip"`` or ``"dino"``, the prior ``cfg`` names) weights; ``weights`` (CLI
    ``--weights``) beats ``cfg.weights``. A folder serves both priors; a single file is the CLIP prior's, and the
    DINO prior's file is then looked for beside it, then in ``$RS_WSSS_WEIGHTS_DIR`` and the hub cache."""
    spec = prior_specs(cfg)[backbone]
    choice = weights if weights is not None else cfg.weights
    if cfg.tiny or choice == RANDOM:
        return ResolvedWeights(backbone, None, RANDOM)
    if choice:
        found = _explicit(spec, Path(choice).expanduser())
        if found is not None:
            return ResolvedWeights(backbone, found, "explicit")
        if not _clip_file_only(spec, Path(choice).expanduser()):
            raise WeightsNotFound(f"no {spec.name} weights at {choice}: {how(spec)}")
    env = os.environ.get(ENV_DIR)
    if env:
        found = _in_location(spec, Path(env).expanduser())
        if found is not None:
            return ResolvedWeights(backbone, found, "env")
    found = _from_hub(spec)
    if found is not None:
        return ResolvedWeights(backbone, found, "hub-cache")
    raise WeightsNotFound(f"{spec.name} weights not found (offline and not cached): {how(spec)}")


def _clip_file_only(spec: BackboneSpec, loc: Path) -> bool:
    """``--weights FILE`` names the CLIP prior's file: the DINO prior is not bound to it."""
    return spec.role == "dino" and loc.is_file()


def _explicit(spec: BackboneSpec, loc: Path) -> Path | None:
    """The file ``--weights`` gives ``spec``: in the folder, or the file itself (CLIP) / the DINO file beside it
    (which may be the file itself when its name is DINO's)."""
    if _clip_file_only(spec, loc):
        return _in_location(spec, loc.parent)  # by its published names or "dinov2" in the name
    return _in_location(spec, loc)


def _in_location(spec: BackboneSpec, loc: Path) -> Path | None:
    """The file ``loc`` names, or in the folder ``loc``: a published name of ``spec``, else the one file whose name
    has the role's hint (several: an error naming them)."""
    from ..paths import refuse_link_loop

    refuse_link_loop(loc, "--weights")
    if loc.is_file():
        return loc
    if not loc.is_dir():
        return None
    for name in spec.files:
        refuse_link_loop(loc / name, "weights file")
        if (loc / name).is_file():
            return loc / name
    hits = sorted(p for p in loc.iterdir() if p.suffix in SUFFIXES and spec.hint in p.name.lower())
    backbone = spec.role
    if backbone == "clip":  # 'clip' must not pick a dinov2 file that happens to mention clip
        hits = [p for p in hits if "dino" not in p.name.lower()]
    if len(hits) > 1:
        raise RsWsssError(f"several {backbone} weight files in {loc}: {', '.join(p.name for p in hits)}; keep one")
    return hits[0] if hits else None


@functools.lru_cache(maxsize=1)  # once per process: `rs-wsss weights` resolves every known prior
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


def _from_hub(spec: BackboneSpec) -> Path | None:
    """The libraries' own cache (or download when online) for a prior published on the hub; any failure means 'not
    available'."""
    if not spec.pretrained:
        return None
    cached = _hub_cached(spec)
    if cached is not None or not _hub_reachable():
        return cached
    try:
        if spec.role == "clip":
            from open_clip.pretrained import download_pretrained, get_pretrained_cfg

            target = download_pretrained(get_pretrained_cfg(spec.arch, spec.pretrained))
        else:
            from huggingface_hub import hf_hub_download

            target = hf_hub_download(spec.pretrained, "model.safetensors")
    except (ImportError, OSError, ValueError, KeyError, RuntimeError):  # offline (hub errors are OSErrors), no
        return None  # cache, no hub client, an unknown pretrained tag: all the same to the user
    return Path(target) if target and Path(target).is_file() else None


def _hub_cached(spec: BackboneSpec) -> Path | None:
    """The file from the Hugging Face cache, without any network access."""
    try:
        from huggingface_hub import try_to_load_from_cache

        if spec.role == "clip":
            from open_clip.pretrained import get_pretrained_cfg

            hub = get_pretrained_cfg(spec.arch, spec.pretrained or "").get("hf_hub", "")
            repo, name = os.path.split(hub.rstrip("/"))
            if not name.endswith((".bin", ".safetensors")):  # a repo id, not a file
                repo, name = hub.rstrip("/"), ""
            names = [name] if name else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
        else:
            repo, names = spec.pretrained or "", ["model.safetensors", "pytorch_model.bin"]
        for n in names:
            hit = try_to_load_from_cache(repo, n) if repo else None
            if isinstance(hit, str) and Path(hit).is_file():
                return Path(hit)
    except (ImportError, OSError, ValueError, KeyError):  # no hub client, an unreadable cache, an unknown model
        return None
    return None


def check_file(rw: ResolvedWeights, spec: BackboneSpec) -> dict[str, tuple[int, ...]]:
    """Refuse a file that is not ``spec``'s weights from its names and shapes alone (milliseconds: no tensor data is
    read and no model is built), saying in one line what the file looks like instead; the file's tensor name → shape
    (empty for random weights)."""
    from .archive import read_shapes
    from .layouts import describe, problems

    if rw.path is None:
        return {}
    shapes = read_shapes(rw.path)
    why = problems(spec, shapes)
    if why:
        flag = "--clip-prior" if spec.role == "clip" else "--dino-prior"
        raise WeightsNotFound(f"{rw.path} looks like {describe(shapes)}, not {spec.name} ({spec.arch}: {why}); "
                              f"give the {spec.name} file or name the file's prior with {flag} "
                              f"(rs-wsss weights lists them)")
    return shapes


def load_state(rw: ResolvedWeights, spec: BackboneSpec, prefix: str = "") -> dict:
    """The file's tensors under the model's names, float32, checked against ``spec`` (any published layout).

    ``prefix`` keeps only the model names starting with it ("visual.": CLIP's image tower); the other tensors' data
    is not read (safetensors and torch zip archives; a legacy pickle is read whole)."""
    from .archive import read_tensors
    from .layouts import meta_registers_to_timm, normalise_names

    assert rw.path is not None, "random weights have no file"
    # chosen by the names alone (normalise_names strips the wrappers all of a file's names share), so tensors that
    # are not the model's (a training checkpoint's optimiser state) or not asked for are never read
    names = {f: m for f, m in normalise_names(rw.backbone, list(check_file(rw, spec))).items() if m.startswith(prefix)}
    tensors = read_tensors(rw.path, set(names))
    state = {m: tensors[f].float().contiguous() for f, m in names.items()}
    if any(f.endswith("register_tokens") for f in names):  # Meta's register layout (timm's names: reg_token)
        state = meta_registers_to_timm({("register_tokens" if m == "reg_token" else m): v for m, v in state.items()})
    return state


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
    specs = prior_specs(cfg)
    roles: list[Role] = ["clip", "dino"] if need_dino else ["clip"]
    for role in roles:
        found = (_explicit if choice else _in_location)(specs[role], Path(location).expanduser())
        if found is not None:
            check_file(ResolvedWeights(role, found, "explicit" if choice else "env"), specs[role])
