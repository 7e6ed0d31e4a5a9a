"""One place for configuration: typed dataclasses whose defaults are the paper's (Sect. 3, 4.2).

The YAML files in ``configs/`` (packaged as ``rs_wsss_configs``) hold the same keys; ``load_config`` layers
``model.yaml`` + ``train.yaml`` + an optional user YAML + ``--set key=value`` overrides on top of the dataclass
defaults. Values the paper does not state are marked "not in paper" with the reason for the choice.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .errors import RsWsssError


@dataclass
class PriorsConfig:
    """Frozen backbones (Sect. 4.2): CLIP ViT-B/16 at 320 px, DINOv2 ViT-B/14 at 308 px."""

    clip_model: str = "ViT-B-16-quickgelu"  # OpenAI weights were trained with QuickGELU
    clip_pretrained: str = "openai"  # open_clip pretrained tag used for the hub cache
    clip_size: int = 320
    dino_model: str = "vit_base_patch14_dinov2"
    dino_size: int = 308
    weights: str | None = None  # None: resolve (path → $RS_WSSS_WEIGHTS_DIR → hub cache); "random": explicit
    tiny: bool = False  # small architectures of the same classes, for tests only (implies random weights)


@dataclass
class TPEConfig:
    """Textual Prototype-aware Enrichment, eqs 1–4."""

    enabled: bool = True
    template: str = "an overhead satellite image of {}."
    n_clusters: int = 8  # B, eq 2 (paper default, Table 5)
    topk: int = 3  # K, eq 3 — not in paper; 3 of 8 keeps the closest prototypes only
    lam: float = 0.5  # λ, eq 4 — not in paper
    seed: int = 0  # KMeans seed, so the enriched embeddings are reproducible


@dataclass
class AdapterConfig:
    """Multi-level feature adapter, eqs 5–6 (CLIP) and its DINO twin (Sect. 3.5.1: "a feature adapter (see Sect. 3.3)
    with its own dimensional setting"), multi-level over the last ``dino_levels`` DINO blocks.

    Widths are not in the paper; they are chosen so that the trainable count for iSAID's classes with the real ViT-B
    shapes is the paper's 16.45 M (16.55 M here; README "Choices where the paper is silent" has the arithmetic)."""

    hidden_dim: int = 768  # width of the 2-layer 1×1 MLP (W_fc^2) — not in paper (= the CLIP width)
    dim: int = 256  # d of F_clip — not in paper (WeCLIP uses 256)
    dino_hidden_dim: int = 256  # — not in paper; was 768 with one level (13.46 M trainable)
    dino_dim: int = 256  # F_cd has dim + dino_dim channels (2d in the paper, so dino_dim = d)
    dino_levels: int = 12  # last n DINO blocks fed to the DINO adapter (all 12 of ViT-B/14); 1 = last block only
    fuse_kernel: int = 1  # kernel of the fusing Conv in eq 6


@dataclass
class DecoderConfig:
    """Transformer decoder, eqs 7–8: D=3 layers, 8 heads (Sect. 4.2)."""

    layers: int = 3
    heads: int = 8
    mlp_ratio: float = 4.0
    dropout: float = 0.0


@dataclass
class CAMConfig:
    """Initial CAM, eq 9, and its background channel (the paper does not say how it is formed)."""

    bg_rule: str = "power"  # "power": bg = (1 - max_c M_c)^bg_power ; "constant": bg = bg_score
    bg_power: float = 1.0
    bg_score: float = 0.45


@dataclass
class USRConfig:
    """Unified Semantic Relation mining, eqs 10–15."""

    enabled: bool = True
    use_dino: bool = True  # False: F_cd = F_clip only (ablation of the DINO prior)
    n0: int = 6  # N0, first block (1-based) of the threshold/average in eqs 13–14 — not in paper
    alpha: int = 3  # α, eq 15 (paper default, Table 6)
    # eq 11 on raw F_cd as the paper writes it (False) or on L2-normalised tokens (True) — see usr.joint_affinity
    normalize_affinity: bool = False
    # training steps before the learned relations are used (not in paper, which refines from the first step: 0).
    # During warm-up USR diffuses with the mean frozen CLIP attention of blocks ≥ N0 only (no A_cd, no filter) and
    # VPE neither updates nor calibrates — WeCLIP's branch before its iteration 15000 (model_attn_aff_voc.py, forward)
    warmup_iters: int = 0


@dataclass
class VPEConfig:
    """Visual Prototype-aware Enrichment, eqs 16–20."""

    enabled: bool = True
    topk_percent: float = 0.3  # k%, eq 17 — not in paper
    momentum: float = 0.9  # τ, eq 18 — not in paper
    # prototypes exist "for each class" of an image labelled c (eqs 18–19): tagged foreground classes only. True also
    # gives the background channel seeds and a prototype (the previous behaviour); without one its S_0 is 1 in eq 20
    background_prototype: bool = False


@dataclass
class PARConfig:
    """Pixel-adaptive refinement of the CAM on the image (Ru et al. 2022, AFA)."""

    enabled: bool = True
    dilations: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 12, 24])
    iters: int = 10
    scale: float = 0.5  # PAR runs at this fraction of the crop size (AFA's down_scale=2)


@dataclass
class PseudoConfig:
    """Online pseudo labels M_p from the PAR-refined CAM (the paper only says PAR produces them).

    ``rule``: "argmax" (WeCLIP: arg-max over the background and the tagged classes, no ignored pixels) or "band"
    (AFA: confident foreground above ``high``, background below ``low``, ignored in between)."""

    rule: str = "argmax"
    high: float = 0.55  # rule "band" only: above, confident foreground (AFA's value)
    low: float = 0.35  # rule "band" only: below, confident background (AFA's value)
    ignore_index: int = 255


@dataclass
class LossConfig:
    """Eq 21: L = λ1·L_seg + λ2·L_aff."""

    seg_weight: float = 1.0  # λ1
    aff_weight: float = 0.1  # λ2 — not in paper (AFA's weight)
    # what L_aff supervises: "joint" = A_cd of eq 11 (trains both adapters' relations; the DINO adapter gets no other
    # gradient), "decoder" = the decoder's last self-attention (AFA's reading of "affinity within the MHSA")
    aff_on: str = "joint"
    # affinity labels only for token pairs within this Chebyshev radius on the token grid, the rest ignored (AFA and
    # WeCLIP: get_mask_by_radius, --radius default 8, scripts/dist_train_voc.py / scripts/dist_clip_voc.py);
    # null = all hw² pairs (the previous behaviour)
    aff_radius: int | None = 8


@dataclass
class TrainConfig:
    """Sect. 4.2: AdamW, lr 2e-3, wd 1e-3, poly schedule, batch 4, 40 000 iterations."""

    iters: int = 40000
    batch: int = 4
    lr: float = 2e-3
    weight_decay: float = 1e-3
    poly_power: float = 0.9
    warmup_iters: int = 0
    checkpoint_every: int = 1000
    log_every: int = 20
    seed: int = 0
    tile: int = 512  # training tiles are read at this size, then cropped for CLIP (320) / DINO (308)
    hflip: bool = True  # random horizontal flip augmentation
    amp: bool = False  # bf16/fp16 autocast on CUDA
    # frozen-feature cache (--cache-features): each tagged tile keeps this many fixed crops/flips, instead of the
    # paper's fresh random crop every iteration; the backbones then run once per view, not once per step
    cache_views: int = 4
    # the training report (not in paper): previews of fixed tiles, validation (--val-masks / --val-tags) and the
    # best checkpoint every report_every steps; the CSV log and curves are rewritten then too
    report_every: int = 500
    preview_tiles: int = 4  # tag rows shown in the previews (tagged rows first, spread over the file)
    val_tiles: int = 16  # validation windows at most (spread evenly), so a validation costs seconds, not minutes
    val_min_fraction: float = 0.02  # --val-tags: a class is "predicted" on a tile from this share of its pixels


@dataclass
class InferConfig:
    """Inference: multi-scale averaging and dense CRF (Sect. 4.2)."""

    scales: list[float] = field(default_factory=lambda: [0.75, 1.0, 1.25])
    flip: bool = False
    crf: bool = True
    crf_iters: int = 10
    crf_gauss_sxy: float = 3.0
    crf_gauss_compat: float = 3.0
    crf_bilateral_sxy: float = 50.0
    crf_bilateral_srgb: float = 13.0
    crf_bilateral_compat: float = 10.0
    batch: int = 0  # tiles per forward; 0: automatic from tile size and memory (rs_wsss.runtime.auto_batch)
    # auto: bf16 on CPUs with AMX/AVX512-BF16, autocast bf16 (or fp16) on CUDA, else fp32 (rs_wsss.runtime)
    precision: str = "auto"
    crf_workers: int = 0  # processes refining a batch's tiles in parallel; 0: one per two cores (1: in-process)


@dataclass
class RasterConfig:
    """Reading and tiling of rasters."""

    tile: int = 512
    overlap: float = 0.25
    bands: list[int] | None = None  # 1-based; None: RGB by colour interpretation, else the first three
    percentile: list[float] = field(default_factory=lambda: [2.0, 98.0])  # stretch for non-8-bit data
    max_nodata_fraction: float = 0.5  # training tiles with more nodata are skipped
    gsd: float | None = None  # resample to this ground sample distance (CRS units/pixel)


@dataclass
class Config:
    priors: PriorsConfig = field(default_factory=PriorsConfig)
    tpe: TPEConfig = field(default_factory=TPEConfig)
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    cam: CAMConfig = field(default_factory=CAMConfig)
    usr: USRConfig = field(default_factory=USRConfig)
    vpe: VPEConfig = field(default_factory=VPEConfig)
    par: PARConfig = field(default_factory=PARConfig)
    pseudo: PseudoConfig = field(default_factory=PseudoConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    infer: InferConfig = field(default_factory=InferConfig)
    raster: RasterConfig = field(default_factory=RasterConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Config:
        cfg = cls()
        merge_into(cfg, data)
        return cfg


def packaged_config(name: str) -> Path:
    """Path of a YAML shipped in ``configs/`` (works for editable and regular installs)."""
    return Path(str(resources.files("rs_wsss_configs").joinpath(name)))


def merge_into(cfg: Config, data: dict[str, Any], source: str = "config") -> None:
    """Overlay a nested dict onto ``cfg``; unknown sections or keys are an error, not silently ignored."""
    for section, values in (data or {}).items():
        if not hasattr(cfg, section) or not dataclasses.is_dataclass(getattr(cfg, section)):
            raise RsWsssError(f"{source}: unknown section '{section}' (known: {', '.join(_sections())})")
        sub = getattr(cfg, section)
        if not isinstance(values, dict):
            raise RsWsssError(f"{source}: section '{section}' must be a mapping")
        names = {f.name for f in dataclasses.fields(sub)}
        for key, value in values.items():
            if key not in names:
                raise RsWsssError(f"{source}: unknown key '{section}.{key}' (known: {', '.join(sorted(names))})")
            setattr(sub, key, value)


def apply_override(cfg: Config, item: str) -> None:
    """Apply one ``section.key=value`` override (value parsed as YAML: numbers, booleans, lists)."""
    if "=" not in item or "." not in item.split("=", 1)[0]:
        raise RsWsssError(f"--set '{item}': expected section.key=value, e.g. usr.alpha=2")
    key, raw = item.split("=", 1)
    section, name = key.strip().split(".", 1)
    merge_into(cfg, {section: {name: yaml.safe_load(raw)}}, source=f"--set {item}")


def set_value(cfg: Config, key: str, value: Any, source: str = "option") -> None:
    """Assign a typed value (e.g. from a CLI option) to ``section.key``, with the same checks as a YAML value."""
    if "." not in key:
        raise RsWsssError(f"{source}: expected section.key, not '{key}'")
    section, name = key.split(".", 1)
    merge_into(cfg, {section: {name: value}}, source=source)


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Defaults from ``configs/model.yaml`` and ``configs/train.yaml``, then ``path``, then ``overrides``."""
    cfg = Config()
    for name in ("model.yaml", "train.yaml"):
        merge_into(cfg, _read_yaml(packaged_config(name)), source=name)
    if path is not None:
        merge_into(cfg, _read_yaml(Path(path)), source=str(path))
    for item in overrides:
        apply_override(cfg, item)
    return cfg


def tiny_config(overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """The small test architecture (random weights, same code path): ``configs/tiny.yaml``."""
    return load_config(packaged_config("tiny.yaml"), overrides)


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise RsWsssError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise RsWsssError(f"config file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise RsWsssError(f"config file {path} must be a YAML mapping of sections (e.g. 'train: {{iters: 2000}}')")
    return data


def _sections() -> list[str]:
    return [f.name for f in dataclasses.fields(Config)]
