"""Segment scenes: join the engine (a model → a numpy predictor) and the raster layer (stitch → COG + qml → GPKG).

``load_segmenter`` builds the predictor once; ``segment_scene`` is a function of one scene; how its blocks are run
(this process, a Dask cluster) is a :class:`rs_wsss.raster.blocks.BlockExecutor` passed in.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ._version import __version__
from .classes import ClassSet
from .config import Config
from .errors import RsWsssError
from .outputs import output_paths

if TYPE_CHECKING:
    from .build import ModelSpec
    from .raster.blocks import BlockExecutor
    from .raster.extent import Extent

log = logging.getLogger("rs_wsss")
Progress = Callable[[str, int, int], None]
REPORT_KEYS = ("quicklook", "report")


@dataclass
class Segmenter:
    """A numpy predictor ``predict(batch (B,3,H,W) in [0,1], valid (B,H,W)) → probabilities (B,K+1,H,W)`` with the
    class set and config it was built for, output metadata, and the training scenes' normalisation statistics."""

    predict: Callable[[np.ndarray, np.ndarray], np.ndarray]
    class_set: ClassSet
    cfg: Config
    meta: dict[str, str]
    norms: dict[str, dict] = field(default_factory=dict)  # scene_key(file) → NormStats dict from training
    model: Any = None  # the WSSS module behind ``predict`` (benchmarks, introspection)
    auto_batch: Callable[[int], int] | None = None  # tile px → batch size, when infer.batch is 0 (automatic)


def load_segmenter(spec: ModelSpec, zero_shot: bool = False, device: str = "cpu") -> Segmenter:
    """A trained checkpoint (decoder inference, no DINO) or zero-shot (TPE → CAM → USR, no training).

    Args:
        spec: the checkpoint (``spec.model_path``) or, zero-shot, the class set, config and overrides
            (:class:`rs_wsss.build.ModelSpec`, JSON-able: Dask workers rebuild the same model from it).
        zero_shot: text-driven CAM refined by USR, no training (needs ``spec.class_set``, no checkpoint).
        device: "cpu", "cuda", "cuda:1" ….

    Raises:
        RsWsssError: bad combination of arguments, unknown class set, bad config, missing or wrong weights.
    """
    if zero_shot == bool(spec.model_path):
        raise RsWsssError("give either --model model.pt or --zero-shot --classes SET")
    if spec.model_path and Path(spec.model_path).suffix.lower() == ".onnx":  # an exported graph: no torch, open_clip
        from .export.load import load_exported

        cfg, cs, meta, norms, exported = load_exported(spec.model_path, spec.overrides, spec.settings)
        return Segmenter(_with_crf(exported, cfg), cs, cfg, meta, norms)
    import torch

    from .build import build

    if zero_shot and not spec.class_set:
        raise RsWsssError("--zero-shot needs --classes SET (a packaged set or a YAML file)")
    built = build(spec, "zero_shot" if zero_shot else "predict")
    cfg, cs, clip, model = built.cfg, built.class_set, built.clip, built.model
    if built.state is not None:
        from .model.checkpoint import file_hash

        model_id = f"checkpoint:{file_hash(spec.model_path)}"  # type: ignore[arg-type]
        norms = built.state["extra"].get("norms", {})
    else:
        model_id, norms = "zero-shot", {}
    model.to(device).eval()
    random_weights = "random" in clip.identifier  # build_priors has said so in the log
    from .runtime import apply_precision, auto_batch, autocast, choose_precision

    graph: Callable[[np.ndarray], np.ndarray] | None = None
    if cfg.infer.runtime != "torch":  # the same model as an ONNX graph on another runtime (rs_wsss.export)
        from .export.runtimes import on_the_fly, resolve

        runtime, precision = resolve(cfg.infer.runtime, cfg.infer.precision)
        if runtime != "torch":
            if zero_shot or device != "cpu":
                raise RsWsssError(f"--runtime {runtime} runs a trained checkpoint on the CPU; use --runtime torch")
            graph = on_the_fly(model, cfg, f"{model_id}|{clip.identifier}", runtime, precision)
    dtype = choose_precision("fp32" if graph is not None else cfg.infer.precision, device)
    if dtype != torch.float32:
        apply_precision(model, dtype)
    # the decoder runs under autocast; zero-shot's CAM/USR arithmetic (cosines, sigmoids, attention powers) stays
    # float32 on float32 CLIP outputs: only the CLIP tower is in low precision there
    ctx = (lambda: autocast(device, dtype)) if not zero_shot else contextlib.nullcontext
    batch_of = None
    if cfg.infer.batch <= 0:  # resolved now for the config's tile size, again by segment_scene for the one it gets

        def batch_of(tile: int) -> int:
            return auto_batch(tile, device, clip.width, clip.num_blocks, clip.patch, cfg.infer.scales)

        cfg.infer.batch = batch_of(cfg.raster.tile)
    log.info("inference: %s, batch %d", str(dtype).replace("torch.", ""), cfg.infer.batch)

    def probs_of(batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(batch).to(device)
        with torch.inference_mode(), ctx():
            return (model.zero_shot(x) if zero_shot else model.predict(x)).float().cpu().numpy()

    meta = {"rs_wsss_version": __version__, "model": model_id, "class_set": cs.name,
            "weights": "random-weights" if random_weights else clip.identifier}
    return Segmenter(_with_crf(graph or probs_of, cfg), cs, cfg, meta, norms, model, batch_of)


def _with_crf(probs_of: Callable[[np.ndarray], np.ndarray], cfg: Config) -> Callable[[np.ndarray, np.ndarray],
                                                                                      np.ndarray]:
    """The Segmenter's ``predict``: a model's probabilities, refined by the dense CRF when ``infer.crf``."""

    def predict(batch: np.ndarray, valid: np.ndarray) -> np.ndarray:
        probs = probs_of(batch)
        if cfg.infer.crf:
            from .model.crf import crf_refine_batch, crf_workers

            rgb = (batch.transpose(0, 2, 3, 1) * 255).round().astype(np.uint8)
            probs = crf_refine_batch(rgb, probs, cfg.infer, crf_workers(cfg.infer.crf_workers, len(probs)))
        return probs

    return predict


def segment_scene(seg: Segmenter, scene_path: str | Path, out: str | Path, *, tile: int | None = None,
                  overlap: float | None = None, vectorize: bool | None = None, overwrite: bool = False,
                  probs: bool = False, min_area: float = 0.0, simplify: float = 0.0, progress: Progress | None = None,
                  executor: BlockExecutor | None = None, block: int | None = None, extent: Extent | None = None,
                  creation_options: dict[str, str] | None = None, report: bool = False,
                  timings: dict[str, float] | None = None, resume: bool = False) -> dict[str, Any]:
    """Segment one scene into COG + qml (+ polygons, + confidence COG), a per-class area summary and a STAC Item.

    Everything is written under temporary names and renamed at the end, so a failure leaves nothing partial and an
    existing output is untouched.

    Args:
        seg: the predictor from :func:`load_segmenter`.
        scene_path: the input raster: any path GDAL opens (local, /vsicurl/, https://, s3://).
        out: ``OUT.gpkg``/``.fgb``/``.parquet`` or ``OUT.tif`` (see :func:`rs_wsss.outputs.output_paths`).
        tile: tile side in px (None: ``seg.cfg.raster.tile``). overlap: tile overlap fraction in [0, 1) (None:
            ``seg.cfg.raster.overlap``).
        vectorize: write polygons (None: for vector outputs). overwrite: replace existing outputs.
        probs: also write the per-pixel confidence raster. min_area: minimum mapping unit in m² (raster sieve:
            smaller regions merge into their neighbours). simplify: coverage-preserving simplification tolerance in
            metres. progress: ``progress(stage, done, total)``.
        executor: stitch in blocks with this executor (e.g. ``rs_wsss.distributed.dask.DaskBlocks``); None: in this
            process, in blocks when a side of the raster exceeds ``raster.blocks.MAX_STRIP_WIDTH``.
        block: block side in px for the executor (None: ``raster.blocks.BLOCK``).
        extent: --bounds/--aoi (a pixel-aligned part of the scene) and --src-nodata.
        creation_options: GDAL creation options of the COGs (``--co KEY=VALUE``).
        report: also write ``OUT_quicklook.png`` and ``OUT_report.html`` (after the outputs are in place).
        timings: seconds spent before this call (e.g. ``{"load model": 3.2}``), shown in the report.
        resume: continue a killed or interrupted run of the same settings from the blocks it wrote (beside the
            output, in ``.OUT.tif.blocks/``); stitches in blocks even when the raster is small.

    Returns:
        ``{"tif", "qml", ["vector"], ["conf"], "areas_csv", "areas_json", "stac", ["quicklook", "report"]: path,
        "polygons": count or None}``.

    Raises:
        RsWsssError: bad output name, existing output without ``overwrite``, unreadable scene, bad band choice,
            bounds/AOI outside the scene.
    """
    from .atomic import disk_full, remove_quietly, sweep_stale, temp_path
    from .outputs import guard_outputs, input_files
    from .raster import blocks
    from .raster.areas import raster_class_areas, write_area_summary
    from .raster.env import raster_env
    from .raster.io import known_norm, open_scene
    from .raster.stac import stac_item, write_stac_item
    from .raster.stitch import stitch
    from .raster.vectorize import vectorize as to_polygons
    from .raster.write import (
        aux_path,
        finalize_class_raster,
        finalize_confidence_raster,
        write_qml,
    )

    cs, cfg = seg.class_set, seg.cfg
    tile = cfg.raster.tile if tile is None else tile
    overlap = cfg.raster.overlap if overlap is None else overlap
    paths = output_paths(Path(out), vectorize, probs, report)
    t0 = time.perf_counter()
    guard_outputs(list(paths.values()), list(input_files([scene_path])), overwrite)  # never an input, any sibling
    for p in paths.values():
        if p is not None:
            sweep_stale(p)  # temporaries of a killed earlier run (their PID is gone)
    if seg.auto_batch is not None or cfg.infer.batch <= 0:  # automatic: for this tile size
        from .runtime import auto_batch

        cfg.infer.batch = seg.auto_batch(tile) if seg.auto_batch is not None else auto_batch(tile, "cpu")
    # the report is written last, from the final files (and atomically by itself)
    temps: dict[str, Path] = {k: temp_path(p) for k, p in paths.items() if p and k not in REPORT_KEYS}
    tif = paths["tif"]
    assert tif is not None  # output_paths always names the class raster
    raw = temp_path(tif, "raw")
    conf_tmp = temp_path(tif, "rawconf") if probs or paths["vector"] else None
    folder, work = tif.with_name(f".{tif.name}.blocks"), None
    with raster_env():
        try:
            with open_scene(scene_path, cfg.raster.bands, known_norm(seg.norms, scene_path), cfg.raster.gsd,
                            tuple(cfg.raster.percentile), extent) as scene:
                # large rasters go in blocks: memory bounded by the block, and a killed run can be resumed
                if executor is None and (resume or max(scene.width, scene.height) > blocks.MAX_STRIP_WIDTH):
                    executor = blocks.LocalBlocks(seg.predict, cs.num_classes + 1)
                if executor is None:
                    blocks.discard_workspace(folder)  # a dead run's blocks, now unused
                    stitch(scene, seg.predict, cs.num_classes + 1, tile, overlap, raw, cfg.infer.batch, progress,
                           conf_tmp)
                else:
                    block = block or blocks.BLOCK
                    signature = _signature(seg, scene, scene_path, tile, overlap, block, conf_tmp is not None, extent)
                    work = blocks.open_workspace(folder, signature, resume)
                    blocks.stitch_blocks(scene, executor, tile=tile, overlap=overlap, batch=cfg.infer.batch,
                                         block=block, raw=raw,
                                         conf=conf_tmp, progress=progress, work=work)
                crs = scene.crs
                read = {"bands": list(scene.bands), "norm": scene.norm.to_dict(), "gsd": cfg.raster.gsd,
                        "percentile": list(cfg.raster.percentile), "extent": extent}
            t_seg = time.perf_counter()
            finalize_class_raster(raw, temps["tif"], cs.names, cs.colors, seg.meta, creation_options)
            if probs:
                finalize_confidence_raster(conf_tmp, temps["conf"], creation_options)  # type: ignore[arg-type]
            write_qml(temps["qml"], cs.names, cs.colors)
            n_poly = None
            summary = (temps["areas_csv"], temps["areas_json"])
            if paths["vector"]:
                if progress:
                    progress("vectorize", 0, 1)
                n_poly = to_polygons(temps["tif"], temps["vector"], cs.names, conf_tmp, min_area, simplify,
                                     overwrite=True, colors=cs.colors, summary=summary)
                if progress:
                    progress("vectorize", 1, 1)
            else:
                write_area_summary(raster_class_areas(temps["tif"], cs.names), *summary, crs, str(scene_path))
            params = {"tile_px": tile, "overlap": overlap, "scales": list(cfg.infer.scales), "crf": cfg.infer.crf,
                      "bands": cfg.raster.bands, "gsd": cfg.raster.gsd, "min_area_m2": min_area,
                      "simplify_m": simplify, "extent": dataclasses.asdict(extent) if extent else None,
                      "creation_options": creation_options or {}}
            item = stac_item(temps["tif"], str(scene_path), {k: v for k, v in paths.items() if v and k != "stac"},
                             params, seg.meta, item_id=tif.stem, base=tif.parent, class_names=cs.names)
            write_stac_item(item, temps["stac"])
            t_vec = time.perf_counter()
            for key, tmp in temps.items():
                if aux_path(tmp).exists():  # the class COG's categories and attribute table travel with it
                    os.replace(aux_path(tmp), aux_path(paths[key]))  # type: ignore[arg-type]
                os.replace(tmp, paths[key])  # type: ignore[arg-type]
        except KeyboardInterrupt:  # Ctrl-C / Cancel: the blocks stay for --resume
            raise
        except BaseException as exc:  # bad input, disk full …: nothing worth resuming
            full = disk_full(exc, tif.parent)  # before the clean-up frees the space again
            remove_quietly(work, raw, conf_tmp, *temps.values())
            if full:
                raise RsWsssError(f"no space left on the disk of {tif.parent} while writing the outputs of "
                                  f"{Path(scene_path).name}; nothing was written: "
                                  "free space or choose another -o") from None
            raise
        finally:
            remove_quietly(raw, conf_tmp, *temps.values())
        remove_quietly(work)
    gpkg = f" and {paths['vector']} ({n_poly} polygons)" if paths["vector"] else ""
    log.info("wrote %s%s (CRS %s)", tif, gpkg, crs)
    if report:
        from .report.segment_report import write_segment_report

        shown = {**params, "bands": read["bands"], "polygons": n_poly,
                 "executor": type(executor).__name__ if executor else "local"}
        times = {**(timings or {}), "segment": t_seg - t0, "finalize + vectorize": t_vec - t_seg}
        outputs = {k: str(v) for k, v in paths.items() if v and k not in REPORT_KEYS}
        write_segment_report(scene_path, tif, cs.names, cs.colors, seg.meta, shown, times, read, outputs,
                             paths={k: paths[k] for k in REPORT_KEYS})  # type: ignore[misc]
    return {k: str(v) for k, v in paths.items() if v} | {"polygons": n_poly}


def _signature(seg: Segmenter, scene: Any, scene_path: str | Path, tile: int, overlap: float, block: int,
               conf: bool, extent: Any) -> dict[str, Any]:
    """What a scene's block files depend on; ``--resume`` reuses blocks only when it is unchanged."""
    import dataclasses
    import json

    from .raster.io import scene_key

    sig = {"scene": scene_key(scene_path), "size": [scene.width, scene.height], "bands": list(scene.bands),
           "norm": scene.norm.to_dict(), "gsd": seg.cfg.raster.gsd, "tile": tile, "overlap": overlap,
           "block": block, "conf": conf, "model": seg.meta, "infer": dataclasses.asdict(seg.cfg.infer),
           "extent": str(extent)}
    return json.loads(json.dumps(sig, default=str))  # the form it is compared with after a JSON round trip
