"""The Python API for notebooks and scripts: ``segment_raster`` and ``train_from_tags``.

The CLI commands ``rs-wsss segment`` and ``rs-wsss train`` call these same functions (they only parse and print)::

    from rs_wsss import segment_raster, train_from_tags

    ckpt = train_from_tags("tags.csv", ["ortho/a.tif"], "model.pt", classes="landcover", iters=2000)
    res = segment_raster("ortho/b.tif", "out.gpkg", model=ckpt["checkpoint"], return_gdf=True)
    res["gdf"].plot(column="class_name")

Essentials are positional; everything else is keyword-only. Paths come back as strings. Bad input raises
``rs_wsss.errors.RsWsssError`` with one line naming the problem and the fix.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .errors import InputNotFound, RsWsssError

Progress = Callable[[str, int, int], None]
PathLike = str | Path


def pick_device(name: str = "auto") -> str:
    """"auto" → "cuda" when a GPU is visible, else "cpu"; "cuda" without a GPU is an error, not a fallback."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RsWsssError(f"--device {name}: no CUDA device is available here (use --device cpu or auto)")
    return name


def _exported(model: PathLike | None) -> bool:
    """An ``rs-wsss export`` file: it runs on a CPU runtime, so torch is never imported to pick a device."""
    return bool(model) and Path(str(model)).suffix.lower() == ".onnx"


def _paths(scenes: PathLike | Sequence[PathLike]) -> tuple[list[str], bool]:
    if isinstance(scenes, (str, Path)):
        return [str(scenes)], True
    out = [str(s) for s in scenes]
    if not out:
        raise RsWsssError("no scene given: pass a raster path or a list of them")
    return out, False


def _exist(paths: list[str]) -> None:
    """Local files must exist; GDAL virtual paths and URLs are left to the open that follows."""
    from .paths import refuse_link_loop
    from .raster.io import is_remote

    for p in paths:
        if not is_remote(p):
            refuse_link_loop(p)
        if not is_remote(p) and not Path(p).is_file():
            raise InputNotFound(f"input not found: {p} (check the path)")


def segment_raster(scenes: PathLike | Sequence[PathLike], output: PathLike, *, model: PathLike | None = None,
                   zero_shot: bool = False, classes: str | None = None, weights: str | None = None,
                   device: str = "auto", precision: str | None = None, runtime: str | None = None,
                   tile: int | None = None, overlap: float | None = None, scales: Sequence[float] | None = None,
                   crf: bool | None = None, bands: Sequence[int] | None = None, probs: bool = False,
                   vectorize: bool | None = None,
                   min_area: float = 0.0, simplify: float = 0.0, bounds: Sequence[float] | None = None,
                   bounds_crs: str | None = None, aoi: PathLike | None = None, src_nodata: float | None = None,
                   creation_options: dict[str, str] | None = None, overwrite: bool = False, report: bool = True,
                   config: PathLike | None = None,
                   overrides: Sequence[str] = (), tiny: bool = False, dask: str | None = None,
                   block_size: int | None = None, resume: bool = False, progress: Progress | None = None,
                   return_gdf: bool = False) -> dict[str, Any] | list[dict[str, Any]]:
    """Segment one raster (or several into a directory) with a trained checkpoint or zero-shot.

    Args:
        scenes: a raster path, or a list of them (then ``output`` is a directory, created if missing: one
            ``SCENE.gpkg`` each).
        output: ``OUT.gpkg``/``.fgb``/``.parquet`` (polygons; also ``OUT.tif`` + ``OUT.qml``), ``OUT.tif``, or a
            directory.
        model: a checkpoint from :func:`train_from_tags`; or ``zero_shot=True`` with ``classes``.
        zero_shot: no training: the text-driven CAM (eq 9) refined by USR (no checkpoint; needs ``classes``).
        classes: the class set (packaged name or YAML) of a zero-shot run.
        weights: backbone weights directory/file, or "random" (explicit; outputs are marked random-weights).
        device: "auto", "cpu", "cuda", "cuda:1" ….
        precision: "auto", "fp32", "bf16", "fp16", "int8" (None: the config's).
        runtime: "torch", "onnxruntime", "openvino", "auto" (an ONNX graph of the model; ``model`` may be an
            ``rs-wsss export`` file).
        tile: tile side in px (None: the config's).
        overlap: tile overlap fraction in [0, 1) (None: the config's).
        scales: multi-scale inference factors (None: the config's).
        crf: dense-CRF post-processing (None: the config's).
        bands: the 1 or 3 band numbers read as R, G, B (None: the config's, else colour interpretation).
        probs: also write ``OUT_confidence.tif``.
        vectorize: polygons (None: for vector outputs).
        min_area: minimum mapping unit in m².
        simplify: coverage-preserving simplification tolerance in metres.
        bounds: (xmin, ymin, xmax, ymax) in ``bounds_crs`` or the scene's CRS: segment that part only.
        bounds_crs: the CRS of ``bounds`` (None: the scene's).
        aoi: a polygon file: segment inside it only.
        src_nodata: an unflagged collar value, read as nodata.
        creation_options: GDAL creation options of the COGs.
        overwrite: replace existing outputs.
        report: write ``OUT_quicklook.png`` and ``OUT_report.html`` beside the outputs.
        config: a config YAML (only the keys that differ).
        overrides: ``section.key=value`` strings, applied last.
        tiny: the tiny test architecture with random weights.
        dask: a scheduler address or ``local:N``.
        block_size: block side in px (None: the config's).
        resume: continue a killed run of the same command from the blocks it wrote (see ``segment_scene``).
        progress: ``progress(stage, done, total)``.
        return_gdf: add the polygons as a GeoDataFrame (``"gdf"``).

    Returns:
        Per scene ``{"scene", "tif", "qml", ["vector"], ["conf"], ["quicklook", "report"], "polygons", "seconds",
        ["gdf"]}``: one dict for a single path, a list for a list.
    """
    from .build import ModelSpec, needs_dino, resolve_config
    from .outputs import OutputSpec, plan_outputs
    from .raster.creation import check_creation_options
    from .raster.extent import Extent
    from .raster.io import check_bands, check_extent
    from .segment import SceneRun, load_segmenter, segment_scene

    paths, single = _paths(scenes)
    _exist(paths + [str(p) for p in (model, aoi) if p])  # GDAL paths (/vsicurl/, s3://) are checked by opening
    if bounds_crs and not bounds:
        raise RsWsssError("--bounds-crs needs --bounds xmin,ymin,xmax,ymax")
    extent = (Extent(tuple(bounds) if bounds else None, bounds_crs, str(aoi) if aoi else None, src_nodata)  # type: ignore[arg-type]
              if (bounds or aoi or src_nodata is not None) else None)
    bands = list(bands) if bands else None
    check_bands(paths, bands)  # unreadable rasters and impossible band choices fail before a model is built
    check_extent(paths, extent)
    check_creation_options(creation_options, "COG")  # GDAL only warns about a wrong one (and aborts on some)
    out = str(output)
    if not single and not out.endswith(("/", "\\")):
        out += "/"  # a list of scenes always goes to a directory, even a list of one
    reads = [model, config, weights, classes]  # never written to, whatever the output says
    outputs = OutputSpec(vectorize, probs, report, overwrite, min_area, simplify, dict(creation_options or {}))
    plan = plan_outputs(paths, out, outputs, inputs=[str(p) for p in reads if p and os.path.isfile(p)])
    settings = {k: v for k, v in {"infer.scales": list(scales) if scales else None, "infer.crf": crf,
                                  "infer.precision": precision, "infer.runtime": runtime, "raster.bands": bands,
                                  "raster.tile": tile, "raster.overlap": overlap}.items() if v is not None}
    spec = ModelSpec(model_path=str(model) if model else None, class_set=classes,
                     config_path=str(config) if config else None, overrides=tuple(overrides), tiny=tiny,
                     settings=settings, weights=weights)
    if zero_shot and not model:  # the config is known without torch: a wrong weights file fails here, in ms
        from .priors.weights import check_early

        zcfg, _ = resolve_config(spec)
        check_early(zcfg.priors, weights, need_dino=needs_dino(zcfg, "zero_shot"))
    device = "cpu" if _exported(model) else pick_device(device)  # an export runs on a CPU runtime, without torch
    t0 = time.perf_counter()
    seg = load_segmenter(spec, zero_shot, device)
    load_s = time.perf_counter() - t0
    executor, client = None, None
    if dask:
        from .distributed.dask import DaskBlocks, make_client

        client = make_client(dask)
        executor = DaskBlocks(client, {"spec": spec.to_dict(), "zero_shot": zero_shot, "device": device})
    run = SceneRun(extent=extent, executor=executor, block=block_size, resume=resume)
    results = []
    try:
        plan.make_dir()
        for scene, target in plan.targets:
            t1 = time.perf_counter()
            res = segment_scene(seg, scene, target, outputs, run, progress, timings={"load model": load_s})
            res = {"scene": scene, **res, "seconds": time.perf_counter() - t1}
            if return_gdf and res.get("vector"):
                import geopandas as gpd

                from .raster.formats import vector_format

                gpkg = vector_format(res["vector"]).driver == "GPKG"  # which also holds its layer_styles table
                res["gdf"] = gpd.read_file(res["vector"], layer="classes" if gpkg else None)
            results.append(res)
    finally:
        plan.remove_dir_if_empty()
        if client is not None:
            client.close()
    return results[0] if single else results


def train_from_tags(tags: PathLike, scenes: PathLike | Sequence[PathLike], output: PathLike, *, classes: str,
                    iters: int | None = None, batch: int | None = None, bands: Sequence[int] | None = None,
                    weights: str | None = None, device: str = "auto", resume: bool = False,
                    config: PathLike | None = None, overrides: Sequence[str] = (), tiny: bool = False,
                    cache_features: PathLike | None = None, val_masks: PathLike | None = None,
                    val_tags: PathLike | None = None, val_value_map: dict | None = None, report: bool = True,
                    progress: Progress | None = None) -> dict[str, Any]:
    """Train the adapter + decoder from tile-level tags and write the checkpoint ``output`` (model.pt).

    Args:
        tags: a tag file (.csv or .gpkg grid).
        scenes: the rasters it refers to.
        output: the checkpoint to write.
        classes: a packaged class set (landcover, potsdam, isaid, loveda) or a class-set YAML.
        iters: training steps (None: the config's; paper: 40 000).
        batch: crops per step (None: the config's; paper: 4).
        bands: the 1 or 3 band numbers read as R, G, B (None: the config's).
        weights: backbone weights directory/file, or "random".
        device: "auto", "cpu", "cuda" ….
        resume: continue ``output`` from its last checkpoint.
        config: a config YAML, as in :func:`segment_raster`.
        overrides: ``section.key=value`` strings, as in :func:`segment_raster`.
        tiny: the tiny test architecture, as in :func:`segment_raster`.
        cache_features: a frozen-feature cache directory (the backbones then run once per view).
        val_masks: a folder of ground-truth masks named like the scenes. With it (or ``val_tags``) the run
            evaluates (tag) mIoU every ``train.report_every`` steps and keeps the best checkpoint as
            ``MODEL.best.pt``.
        val_tags: a tag file to validate on (tag mIoU), instead of ``val_masks``.
        val_value_map: mask code → class name, for masks whose codes are not the class set's.
        report: write ``MODEL.log.csv`` (per step) and ``MODEL.report.html`` with curves and previews.
        progress: ``progress(stage, done, total)``.

    Returns:
        ``{"checkpoint", ["best", "log", "report", "curves", "previews", "card"], "start", "step", "losses", "seg",
        "aff",
        "params", "validation"}``: paths of the files written, the step range of this call, per-step losses, parameter
        counts and the validation results (one dict per evaluation: step, metric, score, per_class).
    """
    from .build import ModelSpec, needs_dino, resolve_config
    from .classes import load_class_set
    from .outputs import check_target, input_files
    from .raster.io import check_bands
    from .train.run import run_training
    from .train.validate import ValidationSpec

    paths, _ = _paths(scenes)
    _exist(paths)
    if val_masks and val_tags:
        raise RsWsssError("give --val-masks or --val-tags, not both")
    for p in [val_tags] if val_tags else []:
        if not Path(p).is_file():
            raise InputNotFound(f"--val-tags {p}: file not found (give a tag file, .csv or .gpkg)")
    reads = [tags, config, weights, classes, val_tags, *input_files(paths)]  # the output may be none of them
    inputs = [str(p) for p in reads if p and os.path.isfile(p)]
    # an existing output is run_training's call (refused unless resume)
    check_target(output, overwrite=True, inputs=inputs)
    bands = list(bands) if bands else None
    check_bands(paths, bands)
    cs = load_class_set(classes)
    settings: dict[str, Any] = {k: v for k, v in {"train.batch": batch, "raster.bands": bands}.items()
                                if v is not None}
    spec = ModelSpec(config_path=str(config) if config else None, overrides=tuple(overrides), tiny=tiny,
                     settings=settings)
    cfg, _ = resolve_config(spec)
    if iters is not None:  # the config's whole schedule compressed into --iters steps (warm-ups keep their share)
        from .train.loop import compressed_schedule

        cfg, _ = resolve_config(dataclasses.replace(spec, settings={**settings, **compressed_schedule(cfg, iters)}))
    from .priors.weights import check_early

    # a wrong weights file fails before torch loads
    check_early(cfg.priors, weights, need_dino=needs_dino(cfg, "train"))
    from .outputs import guard_outputs
    from .train.monitor import monitor_paths

    guard_outputs(list(monitor_paths(output).values()), inputs, check=False)  # nor may a sibling (log, report, best)
    res = run_training(str(tags), paths, cs, cfg, output, weights, pick_device(device), resume, progress,
                       cache_features, validation=ValidationSpec(val_masks, val_tags, val_value_map), report=report)
    files = res.pop("files", {})
    return {"checkpoint": str(output), **files, **res}
