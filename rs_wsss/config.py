"""One place for configuration: typed dataclasses whose defaults are the paper's (Sect. 3, 4.2).

The dataclass defaults below are the ONLY place a default lives. ``load_config`` layers, on top of them, the packaged
``configs/tiny.yaml`` (with ``tiny``), an optional user YAML holding only what differs, and ``--set section.key=value``
overrides. Every value is checked against its field's type (int, float, bool, str, lists, ``Literal`` choices) and
range when it is loaded, so a bad value fails at once with one line naming the key. Values the paper does not state
are marked "not in paper" with the reason for the choice. ``rs-wsss config show`` prints the resolved config.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from .config_check import check_value, ranged, ranged_list
from .errors import ConfigError

# Keys that existed once: a user file naming one gets the reason; an old checkpoint's copy is dropped silently.
REMOVED_KEYS = {"train.tile": "training tiles are the tag windows (set them with rs-wsss tags ... --tile)",
                **{f"priors.{k}": "priors are named with priors.clip / priors.dino (rs-wsss weights lists them)"
                   for k in ("clip_model", "clip_pretrained", "dino_model")}}


@dataclass
class PriorsConfig:
    """Frozen backbones (Sect. 4.2): CLIP ViT-B/16 at 320 px, DINOv2 ViT-B/14 at 308 px, by name from the registry
    in ``priors/specs.py`` (``rs-wsss weights`` lists the names, files and sources)."""

    clip: str = "openai-vit-b-16"  # --clip-prior: a registry name or open_clip:ARCH (the paper's CLIP ViT-B/16)
    dino: str = "dinov2-vit-b-14"  # --dino-prior (the paper's DINOv2 ViT-B/14)
    # token-grid side of the crop (crop = grid × patch); None: the prior's, the paper's 20 (CLIP) / 22 (DINO)
    clip_grid: int | None = ranged(None, ge=1)
    dino_grid: int | None = ranged(None, ge=1)
    clip_size: int | None = ranged(None, ge=14)  # crop side in px; None: grid × patch (320 for ViT-B/16)
    dino_size: int | None = ranged(None, ge=14)  # None: grid × patch (308 for ViT-B/14)
    weights: str | None = None  # None: resolve (path → $RS_WSSS_WEIGHTS_DIR → hub cache); "random": explicit
    tiny: bool = False  # small architectures of the same classes, for tests only (implies random weights)


@dataclass
class TPEConfig:
    """Textual Prototype-aware Enrichment, eqs 1–4."""

    enabled: bool = True
    template: str = "an overhead satellite image of {}."
    n_clusters: int = ranged(8, ge=1)  # B, eq 2 (paper default, Table 5)
    topk: int = ranged(3, ge=1)  # K, eq 3 — not in paper; 3 of 8 keeps the closest prototypes only
    lam: float = ranged(0.5, ge=0, le=1)  # λ, eq 4 — not in paper
    seed: int = ranged(0, ge=0)  # KMeans seed, so the enriched embeddings are reproducible


@dataclass
class AdapterConfig:
    """Multi-level feature adapter, eqs 5–6 (CLIP) and its DINO twin (Sect. 3.5.1: "a feature adapter (see Sect. 3.3)
    with its own dimensional setting"), multi-level over the last ``dino_levels`` DINO blocks.

    Widths are not in the paper; they are chosen so that the trainable count for iSAID's classes with the real ViT-B
    shapes is the paper's 16.45 M (16.55 M here; README "Choices where the paper is silent" has the arithmetic)."""

    hidden_dim: int = ranged(768, ge=1)  # width of the 2-layer 1×1 MLP (W_fc^2) — not in paper (= the CLIP width)
    dim: int = ranged(256, ge=1)  # d of F_clip — not in paper (WeCLIP uses 256)
    dino_hidden_dim: int = ranged(256, ge=1)  # — not in paper; was 768 with one level (13.46 M trainable)
    dino_dim: int = ranged(256, ge=1)  # F_cd has dim + dino_dim channels (2d in the paper, so dino_dim = d)
    # last n DINO blocks fed to the DINO adapter (all 12 of ViT-B/14); 1 = last block only
    dino_levels: int = ranged(12, ge=1)
    fuse_kernel: int = ranged(1, ge=1)  # kernel of the fusing Conv in eq 6


@dataclass
class DecoderConfig:
    """Transformer decoder, eqs 7–8: D=3 layers, 8 heads (Sect. 4.2)."""

    layers: int = ranged(3, ge=1)
    heads: int = ranged(8, ge=1)
    mlp_ratio: float = ranged(4.0, gt=0)
    dropout: float = ranged(0.0, ge=0, lt=1)


@dataclass
class CAMConfig:
    """Initial CAM, eq 9, and its background channel (the paper does not say how it is formed)."""

    # "power": bg = (1 - max_c M_c)^bg_power ; "constant": bg = bg_score
    bg_rule: Literal["power", "constant"] = "power"
    bg_power: float = ranged(1.0, gt=0)
    bg_score: float = ranged(0.45, ge=0, le=1)
    # False (the paper: M_init, background channel included, is what USR and VPE refine): the background is
    # diffused and calibrated like the classes. True (WeCLIP, model_attn_aff_voc.py forward: bg_score =
    # (1 − max refined cams)^cam_bg_thres after perform_single_voc_cam): recomputed from the refined maps with
    # bg_rule "power" before PAR
    bg_after_refine: bool = False


@dataclass
class USRConfig:
    """Unified Semantic Relation mining, eqs 10–15."""

    enabled: bool = True
    use_dino: bool = True  # False: F_cd = F_clip only (ablation of the DINO prior)
    # N0, first block (1-based) of the threshold/average in eqs 13–14 — not in paper. 7 = WeCLIP's last six maps,
    # blocks 7–12 (clip/clip_tool.py perform_single_voc_cam: attn_weight[:, 1:, 1:][-6:]). Counted on the paper's
    # 12-block ViT-B/16 and scaled to the CLIP prior's depth (priors.specs.depth_scaled: ViT-L/14, 7 → 13, the last
    # 12 of 24 blocks as the last 6 of 12)
    n0: int = ranged(7, ge=1)
    alpha: int = ranged(3, ge=1)  # α, eq 15 (paper default, Table 6)
    # eq 11 on raw F_cd as the paper writes it (False) or on L2-normalised tokens (True) — see usr.joint_affinity
    normalize_affinity: bool = False
    # training steps before the learned relations are used (not in paper, which refines from the first step: 0).
    # During warm-up USR diffuses with the mean frozen CLIP attention of blocks ≥ N0 only (no A_cd, no filter) and
    # VPE neither updates nor calibrates — WeCLIP's branch before its iteration 15000 (model_attn_aff_voc.py, forward)
    warmup_iters: int = ranged(0, ge=0)


@dataclass
class VPEConfig:
    """Visual Prototype-aware Enrichment, eqs 16–20."""

    enabled: bool = True
    topk_percent: float = ranged(0.3, gt=0, le=1)  # k%, eq 17 — not in paper
    momentum: float = ranged(0.9, ge=0, le=1)  # τ, eq 18 — not in paper
    # prototypes exist "for each class" of an image labelled c (eqs 18–19): tagged foreground classes only. True also
    # gives the background channel seeds and a prototype (the previous behaviour); without one its S_0 is 1 in eq 20
    background_prototype: bool = False


@dataclass
class PARConfig:
    """Pixel-adaptive refinement of the CAM on the image (Ru et al. 2022, AFA)."""

    enabled: bool = True
    dilations: list[int] = ranged_list([1, 2, 4, 8, 12, 24], min_items=1, ge=1)
    iters: int = ranged(10, ge=0)
    scale: float = ranged(0.5, gt=0, le=1)  # PAR runs at this fraction of the crop size (AFA's down_scale=2)


@dataclass
class PseudoConfig:
    """Online pseudo labels M_p from the PAR-refined CAM (the paper only says PAR produces them).

    ``rule``: "argmax" (WeCLIP: arg-max over the background and the tagged classes, no ignored pixels) or "band"
    (AFA: confident foreground above ``high``, background below ``low``, ignored in between)."""

    rule: Literal["argmax", "band"] = "argmax"
    high: float = ranged(0.55, ge=0, le=1)  # rule "band" only: above, confident foreground (AFA's value)
    low: float = ranged(0.35, ge=0, le=1)  # rule "band" only: below, confident background (AFA's value)
    ignore_index: int = ranged(255, ge=0, le=255)


@dataclass
class LossConfig:
    """Eq 21: L = λ1·L_seg + λ2·L_aff."""

    seg_weight: float = ranged(1.0, ge=0)  # λ1
    aff_weight: float = ranged(0.1, ge=0)  # λ2 — not in paper (AFA's weight)
    # what L_aff supervises: "joint" = A_cd of eq 11 (trains both adapters' relations; the DINO adapter gets no other
    # gradient), "decoder" = the decoder's last self-attention (AFA's reading of "affinity within the MHSA")
    aff_on: Literal["joint", "decoder"] = "joint"
    # affinity labels only for token pairs within this Chebyshev radius on the token grid, the rest ignored (AFA and
    # WeCLIP: get_mask_by_radius, --radius default 8, scripts/dist_train_voc.py / scripts/dist_clip_voc.py);
    # null = all hw² pairs (the previous behaviour)
    aff_radius: int | None = ranged(8, ge=1)


@dataclass
class TrainConfig:
    """Sect. 4.2: AdamW, lr 2e-3, wd 1e-3, poly schedule, batch 4, 40 000 iterations."""

    iters: int = ranged(40000, ge=1)
    batch: int = ranged(4, ge=1)
    lr: float = ranged(2e-3, gt=0)
    weight_decay: float = ranged(1e-3, ge=0)
    poly_power: float = ranged(0.9, ge=0)
    warmup_iters: int = ranged(0, ge=0)
    checkpoint_every: int = ranged(1000, ge=1)
    log_every: int = ranged(20, ge=1)
    seed: int = ranged(0, ge=0)
    hflip: bool = True  # random horizontal flip augmentation (AFA and WeCLIP flip too)
    # random rescale of each tagged tile by a factor drawn uniformly from [low, high] before the crop; [1, 1] = off
    # (the paper only crops; WeCLIP rescales by [0.5, 2.0], configs/voc_attn_reg.yaml rescale_range)
    rescale: list[float] = ranged_list([1.0, 1.0], min_items=2, gt=0)
    amp: bool = False  # bf16/fp16 autocast on CUDA
    # the trainable forward's compute precision (adapters + decoder under autocast; fp32 master weights, optimiser,
    # pseudo labels and losses): auto = bf16 on CPUs with AMX/AVX512-BF16, else fp32; CUDA: train.amp decides
    # unless bf16 is asked for (rs_wsss.runtime.training_dtype)
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    # frozen-feature cache (--cache-features): each tagged tile keeps this many fixed crops/flips, instead of the
    # paper's fresh random crop every iteration; the backbones then run once per view, not once per step
    cache_views: int = ranged(4, ge=1)
    # the training report (not in paper): previews of fixed tiles, validation (--val-masks / --val-tags) and the
    # best checkpoint every report_every steps; the CSV log and curves are rewritten then too
    report_every: int = ranged(500, ge=1)
    preview_tiles: int = ranged(4, ge=0)  # tag rows shown in the previews (tagged rows first, spread over the file)
    # validation windows at most (spread evenly), so a validation costs seconds, not minutes
    val_tiles: int = ranged(16, ge=1)
    # --val-tags: a class is "predicted" on a tile from this share of its pixels
    val_min_fraction: float = ranged(0.02, ge=0, le=1)


@dataclass
class InferConfig:
    """Inference: multi-scale averaging and dense CRF (Sect. 4.2)."""

    scales: list[float] = ranged_list([0.75, 1.0, 1.25], min_items=1, gt=0)
    flip: bool = False
    crf: bool = True
    crf_iters: int = ranged(10, ge=0)
    crf_gauss_sxy: float = ranged(3.0, gt=0)
    crf_gauss_compat: float = ranged(3.0, ge=0)
    crf_bilateral_sxy: float = ranged(50.0, gt=0)
    crf_bilateral_srgb: float = ranged(13.0, gt=0)
    crf_bilateral_compat: float = ranged(10.0, ge=0)
    # tiles per forward; 0: automatic from tile size and memory (rs_wsss.runtime.auto_batch)
    batch: int = ranged(0, ge=0)
    # auto: bf16 on CPUs with AMX/AVX512-BF16, autocast bf16 (or fp16) on CUDA, else fp32 (rs_wsss.runtime)
    precision: Literal["auto", "fp32", "bf16", "fp16", "int8"] = "auto"  # int8: an exported graph (rs_wsss.export)
    # torch, or the model as an ONNX graph on onnxruntime / openvino; auto: the pairing benchmarks/runtimes.py
    # measured fastest at ≥ 99.5 % pixel agreement on CPUs with AMX/AVX512-BF16, torch elsewhere (export.runtimes)
    runtime: Literal["torch", "onnxruntime", "openvino", "auto"] = "torch"
    # processes refining a batch's tiles in parallel; 0: one per two cores (1: in-process)
    crf_workers: int = ranged(0, ge=0)
    # glibc malloc keeps freed tile buffers for reuse, not unmapped (rs_wsss.heap) — not in paper (issue 24)
    keep_heap: bool = True


@dataclass
class RasterConfig:
    """Reading and tiling of rasters."""

    tile: int = ranged(512, ge=32)  # segment: tile side in px
    overlap: float = ranged(0.25, ge=0, lt=1)  # segment: share of a tile overlapping its neighbour
    # 1-based; None: RGB by colour interpretation, else the first three
    bands: list[int] | None = ranged_list(None, ge=1)
    percentile: list[float] = ranged_list([2.0, 98.0], min_items=2, ge=0, le=100)  # stretch for non-8-bit data
    max_nodata_fraction: float = ranged(0.5, ge=0, le=1)  # training tiles with more nodata are skipped
    gsd: float | None = ranged(None, gt=0)  # resample to this ground sample distance (CRS units/pixel)
    # segment: rasters with a side over ``max_strip_width`` px (and --resume, --dask runs) are stitched in blocks of
    # ``block`` px, so memory does not grow with the raster's width and a killed run resumes from its blocks
    max_strip_width: int = ranged(6144, ge=256)
    block: int = ranged(4096, ge=256)  # rounded down to a multiple of the tile stride


@dataclass
class Config:
    """Every setting of rs-wsss, by section (YAML: ``section: {key: value}``; CLI: ``--set section.key=value``)."""

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
        """Plain nested dict (YAML- and checkpoint-safe)."""
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        """The resolved config as YAML, sections in dataclass order."""
        return dump_yaml(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "checkpoint") -> Config:
        """A config from a stored dict (a checkpoint's): defaults for keys it lacks, removed keys dropped."""
        cfg = cls()
        merge_into(cfg, data, source=source, drop_removed=True)
        return cfg


class _Dumper(yaml.SafeDumper):
    """Block mappings, but lists on one line (``scales: [0.75, 1.0, 1.25]``), as a person writes a config."""


_Dumper.add_representer(list, lambda d, v: d.represent_sequence("tag:yaml.org,2002:seq", v, flow_style=True))


def dump_yaml(data: dict[str, Any]) -> str:
    """``data`` as config-style YAML (block sections, inline lists, keys in their order)."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True)


def packaged_config(name: str) -> Path:
    """Path of a YAML shipped in ``configs/`` (works for editable and regular installs)."""
    return Path(str(resources.files("rs_wsss_configs").joinpath(name)))


def merge_into(cfg: Config, data: dict[str, Any], source: str = "config", drop_removed: bool = False) -> None:
    """Overlay a nested dict onto ``cfg``, checking every value's type and range; unknown sections or keys fail.

    Raises:
        ConfigError: unknown section or key, a section that is not a mapping, a value of the wrong type or range.
    """
    for section, values in (data or {}).items():
        if not hasattr(cfg, section) or not dataclasses.is_dataclass(getattr(cfg, section)):
            raise ConfigError(f"{source}: unknown section '{section}' (known: {', '.join(_sections())})")
        sub = getattr(cfg, section)
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: section '{section}' must be a mapping of keys, e.g. '{section}: "
                              f"{{key: value}}'")
        fields = {f.name: f for f in dataclasses.fields(sub)}
        for key, value in values.items():
            name = f"{section}.{key}"
            if name in REMOVED_KEYS:
                if drop_removed:
                    continue
                raise ConfigError(f"{source}: '{name}' was removed: {REMOVED_KEYS[name]}")
            if key not in fields:
                raise ConfigError(f"{source}: unknown key '{name}' (known: {', '.join(sorted(fields))})")
            setattr(sub, key, check_value(type(sub), fields[key], name, value, source))


def apply_override(cfg: Config, item: str) -> None:
    """Apply one ``section.key=value`` override (value parsed as YAML: numbers, booleans, lists), type-checked."""
    if "=" not in item or "." not in item.split("=", 1)[0]:
        raise ConfigError(f"--set '{item}': expected section.key=value, e.g. usr.alpha=2")
    key, raw = item.split("=", 1)
    section, name = key.strip().split(".", 1)
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw  # not YAML (e.g. "[1,"): the type check names the key and what it expects
    merge_into(cfg, {section: {name: value}}, source=f"--set {item}")


def set_value(cfg: Config, key: str, value: Any, source: str = "option") -> None:
    """Assign a typed value (e.g. from a CLI option) to ``section.key``, with the same checks as a YAML value."""
    if "." not in key:
        raise ConfigError(f"{source}: expected section.key, not '{key}'")
    section, name = key.split(".", 1)
    merge_into(cfg, {section: {name: value}}, source=source)


def load_config(path: str | Path | None = None, overrides: Sequence[str] = (), tiny: bool = False,
                settings: dict[str, Any] | None = None) -> Config:
    """The dataclass defaults, then ``configs/tiny.yaml`` (with ``tiny``), then the YAML ``path``, then ``overrides``
    (``section.key=value`` strings), then ``settings`` (typed values by ``section.key``, e.g. from CLI options).

    Raises:
        ConfigError: a missing or malformed file, an unknown key, a value of the wrong type or range.
    """
    cfg = Config()
    if tiny:
        merge_into(cfg, _read_yaml(packaged_config("tiny.yaml")), source="tiny.yaml")
    if path is not None:
        merge_into(cfg, _read_yaml(Path(path)), source=str(path))
    return configure(cfg, overrides, settings)


def configure(cfg: Config, overrides: Sequence[str] = (), settings: dict[str, Any] | None = None
              ) -> Config:
    """Apply ``overrides`` (``section.key=value``), then typed ``settings`` by ``section.key``, to ``cfg``; it."""
    for item in overrides:
        apply_override(cfg, item)
    for key, value in (settings or {}).items():
        set_value(cfg, key, value, source=f"the option for {key}")
    return cfg


def changed(cfg: Config, reference: Config | None = None) -> dict[str, dict[str, Any]]:
    """The sections and keys of ``cfg`` that differ from ``reference`` (default: the dataclass defaults)."""
    ref = (reference or Config()).to_dict()
    out: dict[str, dict[str, Any]] = {}
    for section, values in cfg.to_dict().items():
        diff = {k: v for k, v in values.items() if v != ref[section][k]}
        if diff:
            out[section] = diff
    return out


def tiny_config(overrides: Sequence[str] = ()) -> Config:
    """The small test architecture (random weights, same code path): ``configs/tiny.yaml``."""
    return load_config(overrides=overrides, tiny=True)


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):  # `?` alone is {None: None}
        raise ConfigError(f"config file {path} must be a YAML mapping of sections (e.g. 'train: {{iters: 2000}}')")
    return data


def _sections() -> list[str]:
    return [f.name for f in dataclasses.fields(Config)]
