"""A training run: tag rows + scenes → deterministic batches → the training loop (``rs-wsss train``)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..classes import ClassSet
from ..config import Config
from ..errors import RsWsssError
from ..raster.env import ensure_raster_env
from .monitor import refuse_stale_best
from .validate import ValidationSpec

log = logging.getLogger("rs_wsss")


@ensure_raster_env
def run_training(tags_path: str, scenes: list[str], class_set: ClassSet, cfg: Config, out_path: str | Path,
                 weights: str | None = None, device: str = "cpu", resume: bool = False,
                 progress: Callable[[str, int, int], None] | None = None,
                 cache_dir: str | Path | None = None, *, validation: ValidationSpec | None = None,
                 report: bool = True) -> dict[str, Any]:
    """Train the adapter + decoder from tile tags and write the checkpoint ``out_path``.

    Args:
        tags_path: tile tags (.csv or .gpkg).
        scenes: the rasters the tags refer to.
        class_set: the classes.
        cfg: the resolved config.
        out_path: the checkpoint to write.
        weights: backbone weights directory/file, or "random".
        device: "cpu", "cuda" ….
        resume: continue ``out_path`` from its saved step.
        progress: ``progress(stage, done, total)``.
        cache_dir: frozen-feature cache directory (None: run the backbones every step).
        validation: masks or a tag file to validate on every ``train.report_every`` steps (``train.validate``),
            keeping the best checkpoint as ``MODEL.best.pt``; None: no validation.
        report: write ``MODEL.log.csv`` and ``MODEL.report.html`` (+ curves, previews) beside the checkpoint.

    Returns:
        ``{"start", "step", "losses", "seg", "aff", "params", "files", "validation"}`` (files: log, report, curves,
        previews, best, those written; validation: one dict per evaluation of this call, with its step).

    Raises:
        RsWsssError: the output exists without ``resume``, a resumed checkpoint has other classes, bad tags.
    """
    import torch

    from ..build import assemble
    from ..export.card import ground_resolution_m, model_card, write_card
    from ..export.run import training_resolution_cm
    from ..model.checkpoint import load_checkpoint
    from ..raster.io import Scene, known_norm, open_scene, scene_key
    from ..raster.tags import read_tags
    from . import validate
    from .batches import Batch, CachedBatches, FreshBatches
    from .cache import FeatureCache
    from .ddp import finish, in_group, init_from_env
    from .loop import train
    from .monitor import TrainMonitor, fixed_previews
    from .sampler import TileSampler

    out_path = Path(out_path)
    joined_here = not in_group()  # a group this call starts, this call leaves
    rank, _ = init_from_env(device)
    if rank > 0:  # one voice in the log
        log.setLevel(logging.WARNING)
    if out_path.exists() and not resume:
        raise RsWsssError(f"output exists: {out_path} (pass --resume to continue it, or choose another -o)")
    val = validation or ValidationSpec()
    if val.masks and val.tags:
        raise RsWsssError("give --val-masks or --val-tags, not both")
    refuse_stale_best(out_path, resume)
    known_norms: dict[str, Any] = {}
    if resume and out_path.exists():
        state = load_checkpoint(out_path)
        if [c["name"] for c in state["class_set"]["classes"]] != [c.name for c in class_set.classes]:
            raise RsWsssError(f"{out_path} was trained for another class set; use the same --classes to resume")
        known_norms = state["extra"].get("norms", {})
    rows = read_tags(tags_path, scenes, class_set)
    if not any(r.labels for r in rows):  # a grid nobody filled in: the model could only learn "background"
        log.warning("every one of the %d tag rows has empty labels, so training sees background only; fill the "
                    "'labels' field with class names (e.g. in QGIS) for the tiles where they appear", len(rows))
    opened: dict[str, Scene] = {}
    val_opened: dict[str, Scene] = {}
    try:
        for r in rows:
            if r.image not in opened:
                opened[r.image] = open_scene(r.image, cfg.raster, known_norm(known_norms, r.image))
        sampler = TileSampler(rows, opened, class_set, cfg)
        torch.manual_seed(cfg.train.seed)  # reproducible adapter/decoder initialisation
        model = assemble(cfg, class_set, weights, "train").model.to(device)
        counts = model.param_counts()
        log.info("parameters: %.2f M total, %.3f M trainable; %d tagged tiles in %d scenes",
                 counts["total"] / 1e6, counts["trainable"] / 1e6, len(rows), len(opened))
        extra = {"norms": {scene_key(p): s.norm.to_dict() for p, s in opened.items()},  # by file identity
                 "bands": {scene_key(p): list(s.bands) for p, s in opened.items()},
                 "resolution_m": {scene_key(p): ground_resolution_m(s.crs, s.transform, s.width, s.height)
                                  for p, s in opened.items()}}  # Deepness's resolution for rs-wsss export
        batches: Callable[[int], Batch] = FreshBatches(sampler)
        if cache_dir:
            cache = FeatureCache(cache_dir)
            cached = CachedBatches(sampler, cache)
            views = cached.fill(model, progress)
            log.info("feature cache %s: %d views (%.1f MB)", cache_dir, len(views), cache.size_bytes() / 1e6)
            batches = cached
        monitor = None
        if rank == 0 and (report or val):
            def open_val(p: str) -> Scene:
                if p not in opened and p not in val_opened:
                    val_opened[p] = open_scene(p, cfg.raster)
                return opened.get(p) or val_opened[p]

            validator = (validate.from_masks(val.masks, opened, class_set, cfg, val.value_map) if val.masks else
                         validate.from_tags(val.tags, class_set, cfg, open_val) if val.tags else None)
            meta = {"class set": class_set.name, "trainable parameters": counts["trainable"],
                    "tagged tiles": len(rows), "scenes": ", ".join(Path(p).name for p in opened), "device": str(device)}
            monitor = TrainMonitor(out_path, cfg, class_set, resume, fixed_previews(sampler, cfg.train.preview_tiles)
                                   if report else None, validator, extra, meta, write_files=report)
        result = train(model, batches, cfg.train, out_path, resume, progress, extra, device, on_step=monitor)
        files = monitor.finish(model) if monitor is not None else {}
        if rank == 0:  # the standard model card (STAC MLM) beside the checkpoint
            card = model_card(model, class_set, cfg, out_path, training_resolution_cm(extra), "fp32",
                              extra["norms"])  # type: ignore[arg-type]
            files["card"] = str(write_card(card, out_path))
        evaluations = monitor.val if monitor is not None else []
        if joined_here:
            finish()  # every rank leaves the process group together, after rank 0 has written
    finally:
        for s in [*opened.values(), *val_opened.values()]:
            s.close()
    return result | {"params": counts, "files": files, "validation": evaluations}
