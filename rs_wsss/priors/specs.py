"""The backbone registry: one :class:`BackboneSpec` per known prior, and the :class:`Prior` protocol they build.

Everything that differs between priors lives here and nowhere else: the open_clip / timm architecture, patch,
width, depth, heads, input mean/std, the activation (QuickGELU for every CLIP trained from OpenAI's weights; taken
from the spec, never guessed from the file), the published file names and layouts, licence, where to download,
and the token grid of the default crop (the paper's 20 × 20 for CLIP at patch 16, i.e. 320 px, and 22 × 22 for
DINOv2 at patch 14, i.e. 308 px, Sect. 4.2; the grid is kept for another patch: 640 px at patch 32, 280 px at
patch 14). ``open_clip:ARCH`` names any open_clip architecture (plain ViT towers) given with a weights file.

Facts about the remote-sensing CLIPs come from their projects' READMEs and code (issue 23): RemoteCLIP and
GeoRSCLIP fine-tune OpenAI's models (QuickGELU); SkyCLIP ViT-B-32 starts from LAION-2B (GELU), its ViT-L-14 from
OpenAI (QuickGELU); FarSLIP ViT-B-16 is OpenAI-based with a Long-CLIP text tower of 248 positions.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar, runtime_checkable

if TYPE_CHECKING:
    import torch

Role = Literal["clip", "dino"]
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
OPEN_CLIP = "open_clip:"  # prefix of a prior named by its open_clip architecture
# layouts, in words (``rs-wsss weights`` prints them); every one is read by archive.py without running its code
BARE = "bare open_clip state dict (torch.save)"
TRAINING = "open_clip training checkpoint {epoch, state_dict, optimizer, …}, keys prefixed module., inside a zip"
OPENAI_JIT = "OpenAI TorchScript archive"
HUB = "open_clip hub .bin/.safetensors"
META = "Meta torch-hub .pth (timm names + mask_token)"
TIMM = "timm hub model.safetensors"


@dataclass(frozen=True)
class BackboneSpec:
    """One frozen prior: what to build, how to feed it, which files hold it and where to get them."""

    name: str  # the registry name (``--clip-prior`` / ``--dino-prior``)
    role: Role
    arch: str  # open_clip model-config name (CLIP) or timm model name (DINO)
    patch: int
    width: int
    blocks: int
    heads: int
    activation: Literal["quick_gelu", "gelu"]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    files: tuple[str, ...]  # published file names, looked for in a weights directory, most specific first
    layouts: tuple[str, ...]  # published layouts, in words
    licence: str
    source: str  # where to download
    grid: int  # token-grid side of the default crop (crop = grid × patch)
    pretrained: str | None = None  # open_clip pretrained tag (hub cache) or timm hub id
    context_length: int = 77  # text tower positions (Long-CLIP: 248)
    registers: int = 0  # DINOv2 register tokens
    note: str = ""  # which to choose, in a few words
    aliases: tuple[str, ...] = ()  # names earlier versions recorded (checkpoints made before the registry)

    @property
    def crop(self) -> int:
        """Default crop side in px: the paper's token grid at this patch size."""
        return self.grid * self.patch

    @property
    def hint(self) -> str:
        """A lower-case fragment a weights file of this prior has in its name (when it is not a published name)."""
        return {"clip": "clip", "dino": "dinov2"}[self.role]

    def clip_config(self) -> dict[str, Any]:
        """open_clip's model config of ``arch`` with this spec's image-tower width, depth, heads and patch, its
        activation and its text positions (CLIP only): the spec, not the file, decides what is built."""
        base = clip_config(self.arch)
        if base is None:
            from ..errors import ConfigError

            raise ConfigError(f"open_clip has no model config '{self.arch}' (prior {self.name}); "
                              "see open_clip.list_models()")
        text = dict(base.get("text_cfg", {}), context_length=self.context_length)
        vision = dict(base.get("vision_cfg", {}), width=self.width, layers=self.blocks, patch_size=self.patch,
                      head_width=self.width // self.heads)
        return {**base, "quick_gelu": self.activation == "quick_gelu", "vision_cfg": vision, "text_cfg": text}


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


def _clip(name: str, arch: str, files: tuple[str, ...], layouts: tuple[str, ...], licence: str, source: str,
          note: str, activation: Literal["quick_gelu", "gelu"] = "quick_gelu", **kw: Any) -> BackboneSpec:
    patch, width, blocks = {"ViT-B-16": (16, 768, 12), "ViT-B-32": (32, 768, 12), "ViT-L-14": (14, 1024, 24)}[arch]
    return BackboneSpec(name, "clip", arch, patch, width, blocks, width // 64, activation, OPENAI_MEAN, OPENAI_STD,
                        files, layouts, licence, source, grid=20, note=note, **kw)


NOTES = {"s": "the smallest", "b": "the paper's size", "l": "the largest supported (g/14's SwiGLU MLP is not)"}


def _dino(size: str, reg: bool) -> BackboneSpec:
    width, blocks, heads, word = {"s": (384, 12, 6, "small"), "b": (768, 12, 12, "base"),
                                  "l": (1024, 24, 16, "large")}[size]
    tag = "_reg4" if reg else ""
    arch = f"vit_{word}_patch14{tag}_dinov2"
    meta = f"dinov2_vit{size}14{tag}_pretrain.pth"
    legacy = (f"dinov2_vit{size}14.safetensors", f"dinov2_vit{size}14.bin") if not reg else ()
    return BackboneSpec(
        f"dinov2-vit-{size}-14{'-reg' if reg else ''}", "dino", arch, 14, width, blocks, heads, "gelu",
        IMAGENET_MEAN, IMAGENET_STD, (*legacy, meta, "model.safetensors"), (META, TIMM), "Apache-2.0",
        f"https://dl.fbaipublicfiles.com/dinov2/dinov2_vit{size}14{tag}/{meta} or huggingface.co/timm/{arch}.lvd142m",
        grid=22, pretrained=f"timm/{arch}.lvd142m", registers=4 if reg else 0,
        note=NOTES[size] + ("; with 4 registers (cleaner attention maps)" if reg else ""),
        aliases=(arch,))


REMOTE_SRC = "huggingface.co/chendelong/RemoteCLIP"
GEO_SRC = "huggingface.co/Zilun/GeoRSCLIP"
SKY_SRC = "github.com/wangzhecheng/SkyScript (release zips)"
KNOWN: dict[str, BackboneSpec] = {s.name: s for s in (
    _clip("openai-vit-b-16", "ViT-B-16", ("open_clip_vit_b16_openai.bin", "open_clip_pytorch_model.bin",
                                          "open_clip_model.safetensors", "ViT-B-16.pt"), (HUB, OPENAI_JIT),
          "MIT", "open_clip pretrained 'openai' (huggingface.co/timm/vit_base_patch16_clip_224.openai)",
          "the paper's CLIP (default)", pretrained="openai", aliases=("ViT-B-16-quickgelu",)),
    _clip("remoteclip-vit-b-32", "ViT-B-32", ("RemoteCLIP-ViT-B-32.pt",), (BARE,), "Apache-2.0", REMOTE_SRC,
          "remote-sensing CLIP; patch 32 makes 640 px crops"),
    _clip("remoteclip-vit-l-14", "ViT-L-14", ("RemoteCLIP-ViT-L-14.pt",), (BARE,), "Apache-2.0", REMOTE_SRC,
          "remote-sensing CLIP, large"),
    _clip("georsclip-vit-b-32", "ViT-B-32", ("RS5M_ViT-B-32.pt",), (BARE,), "see " + GEO_SRC, GEO_SRC,
          "trained on RS5M"),
    _clip("georsclip-vit-l-14", "ViT-L-14", ("RS5M_ViT-L-14.pt",), (BARE,), "see " + GEO_SRC, GEO_SRC,
          "trained on RS5M, large"),
    _clip("skyclip-vit-b-32", "ViT-B-32", ("epoch_20.pt",), (TRAINING,), "MIT", SKY_SRC,
          "SkyScript; from LAION-2B, so GELU", activation="gelu"),
    _clip("skyclip-vit-l-14", "ViT-L-14", ("epoch_20.pt",), (TRAINING,), "MIT", SKY_SRC, "SkyScript, large"),
    _clip("farslip-vit-b-16", "ViT-B-16", ("FarSLIP2_ViT-B-16.pt", "FarSLIP1_ViT-B-16.pt"), (BARE,), "MIT",
          "FarSLIP's release (GitHub / Hugging Face)",
          "the paper's grid (patch 16) with a fine-grained RS CLIP; Long-CLIP text (248 positions)",
          context_length=248),
    *(_dino(s, r) for s in "sbl" for r in (False, True)),
)}
DEFAULT = {"clip": "openai-vit-b-16", "dino": "dinov2-vit-b-14"}


class PriorsConfig(Protocol):
    """The ``priors`` config section as this module reads it (``config.PriorsConfig``; not imported: the config
    layer sits above the registry)."""

    clip: str
    dino: str
    clip_grid: int | None
    dino_grid: int | None
    clip_size: int | None
    dino_size: int | None


C = TypeVar("C", bound=PriorsConfig)


def spec_for(name: str, role: Role) -> BackboneSpec:
    """The spec of prior ``name`` (a registry name, an earlier version's arch name, or ``open_clip:ARCH``).

    Raises:
        ConfigError: an unknown name, or one of the other role (a DINO name given as the CLIP prior).
    """
    from ..errors import ConfigError

    hit = KNOWN.get(name) or next((s for s in KNOWN.values() if name in s.aliases), None)
    if hit is None and role == "clip" and name.startswith(OPEN_CLIP):
        hit = _open_clip_spec(name[len(OPEN_CLIP):])
    if hit is None:
        raise ConfigError(f"unknown {role} prior '{name}' (known: {', '.join(names(role))}"
                          + (", or open_clip:ARCH with --weights FILE" if role == "clip" else "") + ")")
    if hit.role != role:
        raise ConfigError(f"'{name}' is a {hit.role} prior, not a {role} one (known: {', '.join(names(role))})")
    return hit


def canonical_name(name: str, role: Role = "clip") -> str:
    """The registry name for an earlier version's recorded name (``ViT-B-16-quickgelu`` → ``openai-vit-b-16``;
    ``tiny`` → ``openai-vit-b-16(tiny)``); other names as they are."""
    if name == "tiny":
        return f"{DEFAULT[role]}(tiny)"
    return next((s.name for s in KNOWN.values() if name in s.aliases), name)


def names(role: Role) -> list[str]:
    """Registry names of one role, in registry order (help texts and the QGIS choices read this)."""
    return [s.name for s in KNOWN.values() if s.role == role]


def _open_clip_spec(arch: str) -> BackboneSpec:
    """A spec for any plain-ViT open_clip architecture, read from its model config (activation from the config's
    ``quick_gelu``: the ``-quickgelu`` names are the OpenAI-trained ones)."""
    from ..errors import ConfigError

    cfg = clip_config(arch)
    v = (cfg or {}).get("vision_cfg", {})
    if not cfg or not isinstance(v.get("patch_size"), int) or isinstance(v.get("layers"), (list, tuple)):
        raise ConfigError(f"open_clip:{arch}: not an open_clip ViT architecture (see open_clip.list_models())")
    pre = cfg.get("preprocess_cfg", {})
    width = v["width"]
    return BackboneSpec(
        OPEN_CLIP + arch, "clip", arch, v["patch_size"], width, v["layers"], width // v.get("head_width", 64),
        "quick_gelu" if cfg.get("quick_gelu") else "gelu", tuple(pre.get("mean", OPENAI_MEAN)),
        tuple(pre.get("std", OPENAI_STD)), (), (BARE, TRAINING, HUB, OPENAI_JIT), "that of the weights",
        "the weights' own project", grid=20, context_length=cfg.get("text_cfg", {}).get("context_length", 77))


PAPER_DEPTH = 12  # blocks of the paper's CLIP ViT-B/16: usr.n0 is counted on it


def depth_scaled(block: int, depth: int) -> int:
    """Block ``block`` (1-based) of the paper's 12-block CLIP at a prior of ``depth`` blocks: the same share of
    blocks from it to the last, round((block − 1) · depth / 12) + 1 (ViT-L/14, 24 blocks: N0 = 6 → 11, the last 14
    of 24 as the last 7 of 12). The identity for 12-block priors (every ViT-B)."""
    return round((block - 1) * depth / PAPER_DEPTH) + 1


def prior_specs(cfg: PriorsConfig) -> dict[Role, BackboneSpec]:
    """The CLIP and DINO specs ``cfg`` names."""
    return {"clip": spec_for(cfg.clip, "clip"), "dino": spec_for(cfg.dino, "dino")}


def crop_size(cfg: PriorsConfig, role: Role) -> int:
    """The input side of one prior: ``priors.clip_size``/``dino_size`` when set, else the token grid
    (``priors.clip_grid``/``dino_grid``, default the spec's) times the patch (tiny: the tiny patch 16 / 14)."""
    size = cfg.clip_size if role == "clip" else cfg.dino_size
    if size is not None:
        return size
    spec = spec_for(cfg.clip if role == "clip" else cfg.dino, role)
    grid = cfg.clip_grid if role == "clip" else cfg.dino_grid
    return (grid or spec.grid) * spec.patch


def with_prior(cfg: C, spec: BackboneSpec) -> C:
    """A copy of the config dataclass ``cfg`` naming ``spec`` as its prior of that role."""
    changes = {"clip": spec.name} if spec.role == "clip" else {"dino": spec.name}
    return dataclasses.replace(cfg, **changes)  # type: ignore[type-var]


def with_overrides(spec: BackboneSpec, **changes: Any) -> BackboneSpec:
    """A copy of ``spec`` with fields changed (tests' narrow stand-ins of the real sizes)."""
    return dataclasses.replace(spec, **changes)


def prior_record(prior: Any) -> dict[str, Any]:
    """What a checkpoint records of a built prior: registry name, architecture, the weights file's name, size and
    sha256 (None for random weights)."""
    w = prior.weights
    return {"name": prior.spec.name, "arch": prior.spec.arch, "file": w.path.name if w.path else None,
            "size": w.path.stat().st_size if w.path else None, "sha256": w.sha256()}


@runtime_checkable
class Prior(Protocol):
    """What a frozen prior offers the method, CLIP-like or DINO-like (``ClipPrior``, ``DinoPrior``).

    Both take RGB in [0, 1] and apply their spec's mean/std; both are frozen (``eval`` whatever ``train`` asks).
    CLIP-like priors add ``forward(images, need_attn) -> ClipFeatures`` (per-block tokens, attention, joint
    tokens), ``encode_text`` and ``embed_dim``; DINO-like ones ``levels(images, n)`` (last n blocks' tokens).
    """

    spec: BackboneSpec
    identifier: str  # "<prior name>|<weights identifier>": checkpoints and caches are keyed by it
    size: int  # input side in px (crop_size)

    @property
    def width(self) -> int:
        """Token width of the tower."""
        ...

    @property
    def patch(self) -> int:
        """Patch side in px."""
        ...

    @property
    def num_blocks(self) -> int:
        """Number of transformer blocks."""
        ...

    def parameters(self, recurse: bool = True) -> Any:
        """The tower's parameters (``torch.nn.Module.parameters``), for counting and device moves."""
        ...

    def __call__(self, images: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        """The forward: ``ClipFeatures`` for CLIP-like priors, a tensor for DINO-like ones."""
        ...
