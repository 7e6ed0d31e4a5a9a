"""Segment scenes: join the engine (a model → a numpy predictor) and the raster layer (stitch → COG + qml → GPKG).

``load_segmenter`` builds the predictor once; ``segment_scene`` is a function of one scene; how its blocks are run
(this process, a Dask cluster) is a :class:`rs_wsss.raster.blocks.BlockExecutor` passed in.
"""

from __future__ import annotations

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
from .outputs import OutputSpec

if TYPE_CHECKING:
    from .build import ModelSpec
    from .raster.blocks import BlockExecutor
    from .raster.extent import Extent
    from .raster.io import Scene

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

    def batch_for(self, tile: int) -> int:
        """Tiles per ``predict`` call for tiles of ``tile`` px: ``infer.batch``, or the automatic choice when it is 0
        (the config itself is left as it is)."""
        if self.auto_batch is not None:
            return self.auto_batch(tile)
        if self.cfg.infer.batch > 0:
            return self.cfg.infer.batch
        from .runtime import auto_batch

        return auto_batch(tile, "cpu")


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
        _keep_heap(cfg)
        return Segmenter(_with_crf(exported, cfg), cs, cfg, meta, norms)
    import torch

    from .build import build

    if zero_shot and not spec.class_set:
        raise RsWsssError("--zero-shot needs --classes SET (a packaged set or a YAML file)")
    built = build(spec, "zero_shot" if zero_shot else "predict")
    cfg, cs, clip, model = built.cfg, built.class_set, built.clip, built.model
    _keep_heap(cfg)
    if built.state is not None:
        from .model.checkpoint import file_hash

        model_id = f"checkpoint:{file_hash(spec.model_path)}"  # type: ignore[arg-type]
        norms = built.state["extra"].get("norms", {})
    else:
        model_id, norms = "zero-shot", {}
    model.to(device).eval()
    random_weights = "random" in clip.identifier  # build_priors has said so in the log
    from .runtime import apply_precision, auto_batch, choose_precision

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
    # only the CLIP tower runs in low precision; its tokens leave it in float32 and the adapter/decoder (≈ 12 % of the
    # FLOPs) and zero-shot's CAM/USR arithmetic stay float32: the fp32 head costs ≈ 10 % of the bf16 forward and moved
    # argmax agreement with fp32 from 97.9 % to 99.4 % of pixels on the 24 Mpx mosaic (benchmarks/RESULTS.md, issue 24)
    batch_of = None
    if cfg.infer.batch <= 0:  # automatic: chosen per scene for the tile size it is segmented with

        def batch_of(tile: int) -> int:
            return auto_batch(tile, device, clip.width, clip.num_blocks, clip.patch, cfg.infer.scales)

    log.info("inference: %s, batch %d", str(dtype).replace("torch.", ""),
             cfg.infer.batch if batch_of is None else batch_of(cfg.raster.tile))

    def probs_of(batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(batch).to(device)
        with torch.inference_mode():
            return (model.zero_shot(x) if zero_shot else model.predict(x)).float().cpu().numpy()

    meta = {"rs_wsss_version": __version__, "model": model_id, "class_set": cs.name,
            "weights": "random-weights" if random_weights else clip.identifier}
    return Segmenter(_with_crf(graph or probs_of, cfg), cs, cfg, meta, norms, model, batch_of)


def _keep_heap(cfg: Config) -> None:
    """``infer.keep_heap``: freed tile buffers stay in the process for the next batch (rs_wsss.heap)."""
    if cfg.infer.keep_heap:
        from .heap import keep_heap

        keep_heap()


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


@dataclass(frozen=True)
class SceneRun:
    """How a scene is segmented, beyond the model and the outputs: its tile grid (None: the config's
    ``raster.tile``/``raster.overlap``), the part of it read (--bounds/--aoi/--src-nodata) and who stitches it."""

    tile: int | None = None  # tile side in px
    overlap: float | None = None  # share of a tile overlapping its neighbour, in [0, 1)
    extent: Extent | None = None
    # stitch in blocks with this executor (e.g. ``rs_wsss.distributed.dask.DaskBlocks``); None: in this process, in
    # blocks when a side of the raster exceeds the config's ``raster.max_strip_width`` (or with ``resume``)
    executor: BlockExecutor | None = None
    block: int | None = None  # block side in px (None: the config's ``raster.block``)
    # continue a killed or interrupted run of the same settings from the blocks it wrote (``.OUT.tif.blocks/``)
    resume: bool = False


@dataclass
class ScenePlan:
    """Stage 1 (:func:`plan_scene`): the files one scene writes, their temporary names, and its tile grid and batch,
    settled before a pixel is read."""

    scene_path: str | Path
    paths: dict[str, Path | None]  # the outputs (``OutputSpec.paths``)
    temps: dict[str, Path]  # their temporary names (not the report's, written last and atomically by itself)
    raw: Path  # the stitched class ids, before the COG
    conf: Path | None  # the stitched confidence (for --probs and the polygons' mean confidence)
    tile: int
    overlap: float
    batch: int  # tiles per forward, fixed for the run (with the grid it fixes which tiles are predicted together)
    started: float = field(default_factory=time.perf_counter)

    @property
    def tif(self) -> Path:
        """The class raster."""
        return self.paths["tif"]  # type: ignore[return-value]  # output_paths always names it

    @property
    def blocks_folder(self) -> Path:
        """Where the block files of a blocked run live (kept for --resume)."""
        return self.tif.with_name(f".{self.tif.name}.blocks")


def segment_scene(seg: Segmenter, scene_path: str | Path, out: str | Path, outputs: OutputSpec | None = None,
                  run: SceneRun | None = None, progress: Progress | None = None,
                  timings: dict[str, float] | None = None) -> dict[str, Any]:
    """Segment one scene into COG + qml (+ polygons, + confidence COG), a per-class area summary and a STAC Item.

    Four stages: :func:`plan_scene` (outputs, refusals, grid), :func:`predict_and_stitch` (the model over the tile
    grid, whole or in blocks), :func:`finalise` (COGs, style, polygons, areas, STAC under temporary names) and
    :func:`publish` (the renames), then the report. A failure leaves nothing partial; an existing output is
    untouched (Ctrl-C keeps the blocks of a blocked run for ``resume``).

    Args:
        seg: the predictor from :func:`load_segmenter`.
        scene_path: the input raster: any path GDAL opens (local, /vsicurl/, https://, s3://).
        out: ``OUT.gpkg``/``.fgb``/``.parquet`` or ``OUT.tif`` (see :func:`rs_wsss.outputs.output_paths`).
        outputs: which files and how (:class:`rs_wsss.outputs.OutputSpec`; None: its defaults).
        run: tile grid, extent, block executor and resume (:class:`SceneRun`; None: the config's grid, in-process).
        progress: ``progress(stage, done, total)``.
        timings: seconds spent before this call (e.g. ``{"load model": 3.2}``), shown in the report.

    Returns:
        ``{"tif", "qml", ["vector"], ["conf"], "areas_csv", "areas_json", "stac", ["quicklook", "report"]: path,
        "polygons": count or None}``.

    Raises:
        RsWsssError: bad output name, existing output without ``overwrite``, unreadable scene, bad band choice,
            bounds/AOI outside the scene, disk full.
    """
    from .atomic import disk_full, remove_quietly
    from .raster.env import raster_env
    from .raster.io import known_norm, open_scene

    outputs, run = outputs or OutputSpec(), run or SceneRun()
    plan = plan_scene(seg, scene_path, out, outputs, run)
    work = None
    with raster_env():
        try:
            with open_scene(scene_path, seg.cfg.raster, known_norm(seg.norms, scene_path), run.extent) as scene:
                executor, work = predict_and_stitch(seg, plan, scene, run, progress)
                crs, bands, norm = scene.crs, list(scene.bands), scene.norm.to_dict()
            t_seg = time.perf_counter()
            n_poly, params = finalise(seg, plan, outputs, run, progress, crs)
            t_vec = time.perf_counter()
            publish(plan)
        except KeyboardInterrupt:  # Ctrl-C / Cancel: the blocks stay for --resume
            raise
        except BaseException as exc:  # bad input, disk full …: nothing worth resuming
            full = disk_full(exc, plan.tif.parent)  # before the clean-up frees the space again
            remove_quietly(work, plan.raw, plan.conf, *plan.temps.values())
            if full:
                raise RsWsssError(f"no space left on the disk of {plan.tif.parent} while writing the outputs of "
                                  f"{Path(scene_path).name}; nothing was written: "
                                  "free space or choose another -o") from None
            raise
        finally:
            remove_quietly(plan.raw, plan.conf, *plan.temps.values())
        remove_quietly(work)
    gpkg = f" and {plan.paths['vector']} ({n_poly} polygons)" if plan.paths["vector"] else ""
    log.info("wrote %s%s (CRS %s)", plan.tif, gpkg, crs)
    if outputs.report:
        from .report.segment_report import write_segment_report

        shown = {**params, "bands": bands, "polygons": n_poly,
                 "executor": type(executor).__name__ if executor else "local"}
        times = {**(timings or {}), "segment": t_seg - plan.started, "finalize + vectorize": t_vec - t_seg}
        files = {k: str(v) for k, v in plan.paths.items() if v and k not in REPORT_KEYS}
        read = {"raster": dataclasses.replace(seg.cfg.raster, bands=bands), "norm": norm, "extent": run.extent}
        write_segment_report(scene_path, plan.tif, seg.class_set.names, seg.class_set.colors, seg.meta, shown, times,
                             read, files, paths={k: plan.paths[k] for k in REPORT_KEYS})  # type: ignore[misc]
    return {k: str(v) for k, v in plan.paths.items() if v} | {"polygons": n_poly}


def plan_scene(seg: Segmenter, scene_path: str | Path, out: str | Path, outputs: OutputSpec,
               run: SceneRun) -> ScenePlan:
    """Stage 1: the scene's outputs (refused now if one is an input, exists without ``overwrite`` or cannot be
    written), their temporary names (a killed earlier run's are swept), its tile grid and batch size.

    Raises:
        RsWsssError: a bad output name, an output that is an input or exists without ``overwrite``.
    """
    from .atomic import sweep_stale, temp_path
    from .outputs import guard_outputs, input_files

    cfg = seg.cfg
    paths = outputs.paths(out)
    guard_outputs(list(paths.values()), list(input_files([scene_path])), outputs.overwrite)  # never an input
    for p in paths.values():
        if p is not None:
            sweep_stale(p)  # temporaries of a killed earlier run (their PID is gone)
    tile = cfg.raster.tile if run.tile is None else run.tile
    overlap = cfg.raster.overlap if run.overlap is None else run.overlap
    tif = paths["tif"]
    assert tif is not None  # output_paths always names the class raster
    return ScenePlan(scene_path, paths, {k: temp_path(p) for k, p in paths.items() if p and k not in REPORT_KEYS},
                     temp_path(tif, "raw"), temp_path(tif, "rawconf") if outputs.probs or paths["vector"] else None,
                     tile, overlap, seg.batch_for(tile))


def predict_and_stitch(seg: Segmenter, plan: ScenePlan, scene: Scene, run: SceneRun,
                       progress: Progress | None) -> tuple[BlockExecutor | None, Path | None]:
    """Stage 2: the model over the scene's tile grid into ``plan.raw`` (+ ``plan.conf``): strip by strip, or in
    blocks (large rasters, ``resume``, an executor) whose files stay until the run is published.

    Returns:
        The block executor used (None: the whole raster in this process) and the block folder (None without).
    """
    from .raster import blocks
    from .raster.stitch import stitch
    from .raster.tiles import TileGrid

    k = seg.class_set.num_classes + 1
    grid = TileGrid(scene.width, scene.height, plan.tile, plan.overlap)
    executor = run.executor
    # large rasters go in blocks: memory bounded by the block, and a killed run can be resumed
    if executor is None and (run.resume or max(scene.width, scene.height) > seg.cfg.raster.max_strip_width):
        executor = blocks.LocalBlocks(seg.predict, k)
    if executor is None:
        blocks.discard_workspace(plan.blocks_folder)  # a dead run's blocks, now unused
        stitch(scene, seg.predict, k, grid, plan.raw, plan.batch, progress, plan.conf)
        return None, None
    block = run.block or seg.cfg.raster.block
    work = blocks.open_workspace(plan.blocks_folder, _signature(seg, plan, scene, block, run.extent), run.resume)
    blocks.stitch_blocks(scene, executor, grid=grid, batch=plan.batch, block=block, raw=plan.raw, conf=plan.conf,
                         progress=progress, work=work)
    return executor, work


def finalise(seg: Segmenter, plan: ScenePlan, outputs: OutputSpec, run: SceneRun, progress: Progress | None,
             crs: Any) -> tuple[int | None, dict[str, Any]]:
    """Stage 3: the stitched rasters → class COG (+ confidence COG), .qml, polygons or the area summary, and the
    STAC Item, all under their temporary names. Returns the polygon count (None without polygons) and the run's
    parameters as recorded in the STAC Item (and shown in the report)."""
    from .raster.areas import raster_class_areas, write_area_summary
    from .raster.stac import stac_item, write_stac_item
    from .raster.vectorize import vectorize as to_polygons
    from .raster.write import finalize_class_raster, finalize_confidence_raster, write_qml

    cs, cfg, temps, co = seg.class_set, seg.cfg, plan.temps, outputs.creation_options
    finalize_class_raster(plan.raw, temps["tif"], cs.names, cs.colors, seg.meta, co)
    if outputs.probs:
        finalize_confidence_raster(plan.conf, temps["conf"], co)  # type: ignore[arg-type]
    write_qml(temps["qml"], cs.names, cs.colors)
    n_poly = None
    summary = (temps["areas_csv"], temps["areas_json"])
    if plan.paths["vector"]:
        if progress:
            progress("vectorize", 0, 1)
        n_poly = to_polygons(temps["tif"], temps["vector"], cs.names, plan.conf, outputs.min_area, outputs.simplify,
                             overwrite=True, colors=cs.colors, summary=summary)
        if progress:
            progress("vectorize", 1, 1)
    else:
        write_area_summary(raster_class_areas(temps["tif"], cs.names), *summary, crs, str(plan.scene_path))
    params = {"tile_px": plan.tile, "overlap": plan.overlap, "scales": list(cfg.infer.scales), "crf": cfg.infer.crf,
              "bands": cfg.raster.bands, "gsd": cfg.raster.gsd, "min_area_m2": outputs.min_area,
              "simplify_m": outputs.simplify, "extent": dataclasses.asdict(run.extent) if run.extent else None,
              "creation_options": co or {}, "priors": {"clip": cfg.priors.clip, "dino": cfg.priors.dino}}
    tif = plan.tif
    item = stac_item(temps["tif"], str(plan.scene_path), {k: v for k, v in plan.paths.items() if v and k != "stac"},
                     params, seg.meta, item_id=tif.stem, base=tif.parent, class_names=cs.names)
    write_stac_item(item, temps["stac"])
    return n_poly, params


def publish(plan: ScenePlan) -> None:
    """Stage 4: every temporary output renamed to its name (the class COG's ``.aux.xml`` categories with it)."""
    from .raster.write import aux_path

    for key, tmp in plan.temps.items():
        if aux_path(tmp).exists():  # the class COG's categories and attribute table travel with it
            os.replace(aux_path(tmp), aux_path(plan.paths[key]))  # type: ignore[arg-type]
        os.replace(tmp, plan.paths[key])  # type: ignore[arg-type]


def _signature(seg: Segmenter, plan: ScenePlan, scene: Scene, block: int, extent: Extent | None) -> dict[str, Any]:
    """What a scene's block files depend on; ``--resume`` reuses blocks only when it is unchanged."""
    import json

    from .raster.io import scene_key

    sig = {"scene": scene_key(plan.scene_path), "size": [scene.width, scene.height], "bands": list(scene.bands),
           "norm": scene.norm.to_dict(), "gsd": seg.cfg.raster.gsd, "tile": plan.tile, "overlap": plan.overlap,
           "block": block, "conf": plan.conf is not None, "model": seg.meta,
           "infer": dataclasses.asdict(seg.cfg.infer) | {"batch": plan.batch}, "extent": str(extent)}
    return json.loads(json.dumps(sig, default=str))  # the form it is compared with after a JSON round trip
