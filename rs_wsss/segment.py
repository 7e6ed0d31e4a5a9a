"""Segment scenes: join the engine (a model → a numpy predictor) and the raster layer (stitch → COG + qml → GPKG).

``load_segmenter`` builds the predictor once; ``segment_scene`` is a pure function of one scene (and an optional
block window), so distributed runners can call it anywhere.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from . import __version__
from .classes import ClassSet, class_set_from_dict, load_class_set
from .config import Config, apply_override, load_config, tiny_config
from .errors import RsWsssError

log = logging.getLogger("rs_wsss")
# Rasters wider than this are stitched in column blocks of BLOCK px, so memory does not grow with raster width.
MAX_STRIP_WIDTH = 6144
BLOCK = 4096


@dataclass
class Segmenter:
    predict: Callable[[np.ndarray, np.ndarray], np.ndarray]
    class_set: ClassSet
    cfg: Config
    meta: dict[str, str]
    norms: dict[str, dict] = field(default_factory=dict)  # scene file name → NormStats dict from training


def load_segmenter(model_path: str | None, class_set: str | None, zero_shot: bool, weights: str | None = None,
                   device: str = "cpu", tiny: bool = False, overrides: list[str] | tuple[str, ...] = (),
                   config_path: str | None = None) -> Segmenter:
    """A trained checkpoint (decoder inference, no DINO) or zero-shot (TPE → CAM → USR, no training)."""
    import torch

    from .model.checkpoint import file_hash, load_checkpoint, restore_model
    from .model.wsss import WSSS
    from .priors import build_priors

    if zero_shot == bool(model_path):
        raise RsWsssError("give either --model model.pt or --zero-shot --classes SET")
    if model_path:
        state = load_checkpoint(model_path)
        cfg = Config.from_dict(state["config"])
        cs = class_set_from_dict(state["class_set"], source=str(model_path))
        if class_set and load_class_set(class_set).names != cs.names:
            raise RsWsssError(f"{model_path} was trained for classes {', '.join(cs.names[1:])}, not '{class_set}'; drop --classes or retrain")
        for item in overrides:
            apply_override(cfg, item)
        clip, _ = build_priors(cfg.priors, weights, need_dino=False)
        model = WSSS(cfg, cs, clip, None, dino_width=state["dims"]["dino_width"])
        restore_model(model, state, str(model_path))
        model_id = f"checkpoint:{file_hash(model_path)}"
        norms = state["extra"].get("norms", {})
    else:
        if not class_set:
            raise RsWsssError("--zero-shot needs --classes SET (a packaged set or a YAML file)")
        cs = load_class_set(class_set)
        cfg = tiny_config(overrides) if tiny else load_config(config_path, overrides)
        clip, dino = build_priors(cfg.priors, weights, need_dino=cfg.usr.enabled and cfg.usr.use_dino)
        model = WSSS(cfg, cs, clip, dino)
        model_id, norms = "zero-shot", {}
    model.to(device).eval()
    random_weights = "random" in clip.identifier  # build_priors has said so in the log

    def predict(batch: np.ndarray, valid: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(batch).to(device)
        with torch.inference_mode():
            probs = (model.predict(x) if model_path else model.zero_shot(x)).float().cpu().numpy()
        if cfg.infer.crf:
            from .model.crf import crf_refine

            for i in range(len(probs)):
                rgb = (batch[i].transpose(1, 2, 0) * 255).round().astype(np.uint8)
                probs[i] = crf_refine(rgb, probs[i], cfg.infer)
        return probs

    meta = {"rs_wsss_version": __version__, "model": model_id, "class_set": cs.name,
            "weights": "random-weights" if random_weights else clip.identifier}
    return Segmenter(predict, cs, cfg, meta, norms)


def output_paths(out: Path, vectorize: bool | None) -> dict[str, Path | None]:
    """OUT.gpkg → OUT.tif + OUT.qml + OUT.gpkg; OUT.tif → OUT.tif + OUT.qml (+ OUT.gpkg if asked)."""
    suffix = out.suffix.lower()
    if suffix not in (".gpkg", ".tif", ".tiff"):
        raise RsWsssError(f"output must end in .gpkg or .tif (or be a directory for several scenes), not {out.name}")
    tif = out.with_suffix(".tif") if suffix == ".gpkg" else out
    want_gpkg = vectorize if vectorize is not None else suffix == ".gpkg"
    return {"tif": tif, "qml": tif.with_suffix(".qml"), "gpkg": out.with_suffix(".gpkg") if want_gpkg else None}


def segment_scene(seg: Segmenter, scene_path: str, out: Path, tile: int, overlap: float, vectorize: bool | None = None,
                  overwrite: bool = False, probs: bool = False, min_area: float = 0.0, simplify: float = 0.0,
                  progress: Callable[[str, int, int], None] | None = None, runner: Callable | None = None) -> dict[str, Any]:
    """Segment one scene into COG + qml (+ GPKG). Everything is written under temporary names and renamed at the end,
    so a failure leaves nothing partial and an existing output is untouched.

    ``runner(scene, raw_tif, conf_tif)`` produces the uint8 class GeoTIFF (and confidence); the default stitches in
    this process, ``rs_wsss.distributed.dask`` farms blocks out to a cluster."""
    from .raster.io import NormStats, open_scene
    from .raster.stitch import stitch
    from .raster.vectorize import vectorize as to_polygons
    from .raster.write import check_output, finalize_class_raster, write_qml

    paths = output_paths(Path(out), vectorize)
    if probs:
        paths["conf"] = paths["tif"].with_name(paths["tif"].stem + "_confidence.tif")
    for p in paths.values():
        if p is not None:
            check_output(p, overwrite)
    cs, cfg = seg.class_set, seg.cfg
    known = seg.norms.get(Path(scene_path).name)
    temps: dict[str, Path] = {k: p.with_name(f".{p.stem}.{os.getpid()}.tmp{p.suffix}") for k, p in paths.items() if p}
    raw = paths["tif"].with_name(f".{paths['tif'].stem}.{os.getpid()}.raw.tif")
    conf_tmp = temps.get("conf") if probs else (raw.with_suffix(".conf.tif") if paths["gpkg"] else None)
    try:
        with open_scene(scene_path, cfg.raster.bands, NormStats.from_dict(known) if known else None, cfg.raster.gsd,
                        tuple(cfg.raster.percentile)) as scene:
            if runner is None and scene.width > MAX_STRIP_WIDTH:  # bound the strip buffer: column blocks
                from .distributed.dask import local_block_runner

                runner = local_block_runner(seg, tile, overlap, BLOCK, progress)
            if runner is None:
                stitch(scene, seg.predict, cs.num_classes + 1, tile, overlap, raw, cfg.infer.batch, progress, conf_tmp)
            else:
                runner(scene, raw, conf_tmp)
            crs = scene.crs
        finalize_class_raster(raw, temps["tif"], cs.names, cs.colors, seg.meta)
        write_qml(temps["qml"], cs.names, cs.colors)
        n_poly = None
        if paths["gpkg"]:
            if progress:
                progress("vectorize", 0, 1)
            n_poly = to_polygons(temps["tif"], temps["gpkg"], cs.names, conf_tmp, min_area, simplify, overwrite=True)
            if progress:
                progress("vectorize", 1, 1)
        for key, tmp in temps.items():
            os.replace(tmp, paths[key])
    finally:
        for p in [raw, *temps.values()] + ([conf_tmp] if conf_tmp else []):
            for q in (p, Path(str(p) + ".aux.xml")):
                if q.exists():
                    q.unlink()
    log.info("wrote %s%s (CRS %s)", paths["tif"], f" and {paths['gpkg']} ({n_poly} polygons)" if paths["gpkg"] else "", crs)
    return {k: str(v) for k, v in paths.items() if v} | {"polygons": n_poly}
