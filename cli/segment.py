"""``rs-wsss segment``: rasters → class COG (+ .qml style) and polygons (GeoPackage)."""

from __future__ import annotations

import click

from rs_wsss.raster.formats import format_names  # a table of plain values: --help stays instant

from .options import (
    aoi_opt,
    bands_opt,
    bounds_crs_opt,
    bounds_opt,
    classes_opt,
    config_opt,
    creation_opt,
    dask_opt,
    device_opt,
    option,
    overlap_opt,
    overwrite_opt,
    prior_overrides,
    priors_opt,
    scales_opt,
    set_opt,
    src_nodata_opt,
    tile_opt,
    tiny_opt,
    weights_opt,
)


@click.command("segment")
@click.argument("scenes", nargs=-1, required=True, type=click.Path())
@click.option("-o", "--output", required=True, type=click.Path(),
              help=f"Polygons as {format_names('vector')}, each styled for QGIS (also writes OUT.tif), OUT.tif "
                   "only, or a directory for several scenes.")
@click.option("--model", "model_path", type=click.Path(), help="A checkpoint from rs-wsss train.")
@click.option("--zero-shot", is_flag=True, help="No training: text-driven CAM refined by USR.")
@classes_opt(help="Class set (required with --zero-shot): a packaged name or a YAML file.")
@tile_opt
@overlap_opt
@scales_opt
@option("--crf/--no-crf", default=None, config_key="infer.crf",
        help="Dense CRF post-processing (default: the config's infer.crf).")
@weights_opt
@priors_opt
@device_opt
@option("--precision", type=click.Choice(["auto", "fp32", "bf16", "fp16", "int8"]), default=None,
        config_key="infer.precision",
        help="Numeric precision (default: the config's infer.precision; auto: bf16 on CPUs with AMX or "
             "AVX512-BF16, autocast on CUDA, else fp32; int8: an exported int8 graph).")
@option("--runtime", type=click.Choice(["torch", "onnxruntime", "openvino", "auto"]), default=None,
        config_key="infer.runtime",
        help="torch, or the model as an ONNX graph (exported on the fly, or --model MODEL.onnx) on ONNX "
             "Runtime / OpenVINO, single scale (default: the config's infer.runtime).")
@overwrite_opt
@click.option("--vectorize/--no-vectorize", default=None, help="Write polygons (default: for .gpkg outputs).")
@click.option("--probs", is_flag=True, help="Also write the per-pixel confidence raster (OUT_confidence.tif).")
@click.option("--report/--no-report", default=True, show_default=True,
              help="Write OUT_quicklook.png (image + classes + legend) and OUT_report.html (areas, parameters, model).")
@option("--min-area", type=click.FloatRange(min=0), default=0.0, metavar="M2", unit="m²",
              help="Minimum mapping unit in m²: smaller regions merge into their largest neighbour (no holes).")
@option("--simplify", type=click.FloatRange(min=0), default=0.0, metavar="METRES", unit="m",
              help="Coverage-preserving polygon simplification tolerance in metres (shared edges stay shared).")
@bounds_opt
@bounds_crs_opt
@aoi_opt
@src_nodata_opt
@creation_opt
@bands_opt
@config_opt
@set_opt
@tiny_opt
@dask_opt
@option("--block-size", type=click.IntRange(min=256), default=None, config_key="raster.block", unit="px",
        help="Block side in px (default: the config's raster.block): rasters larger than raster.max_strip_width "
             "px, --resume runs and Dask runs go in blocks.")
@click.option("--resume", is_flag=True,
              help="Continue a killed or interrupted run of the same command from the blocks it wrote.")
@click.pass_context
def segment_cmd(ctx: click.Context, scenes: tuple[str, ...], output: str, model_path: str | None, zero_shot: bool,
                class_set: str | None, tile: int | None, overlap: float | None, scales: list[float] | None,
                crf: bool | None, weights: str | None, device: str, overwrite: bool, vectorize: bool | None,
                probs: bool, report: bool, min_area: float, simplify: float, bands: list[int] | None,
                config_path: str | None, overrides: tuple[str, ...], tiny: bool, dask_address: str | None,
                block_size: int | None,
                precision: str | None, runtime: str | None, bounds: tuple[float, float, float, float] | None,
                bounds_crs: str | None,
                aoi: str | None, src_nodata: float | None, creation_options: dict[str, str], resume: bool,
                clip_prior: str | None, dino_prior: str | None) -> None:
    """Segment rasters into a georeferenced class raster and polygons.

    \b
    Examples:
      rs-wsss segment scene.tif -o out.gpkg --model model.pt
      rs-wsss segment scene.tif -o out.gpkg --zero-shot --classes landcover --scales 1 --no-crf
      rs-wsss segment ortho/*.tif -o results/ --model model.pt
      rs-wsss segment /vsicurl/https://example.com/cog.tif -o out.fgb --model model.pt \
          --bounds=-84.48,33.63,-84.47,33.64 --bounds-crs EPSG:4326
      rs-wsss segment big.tif -o out.gpkg --model model.pt --resume   # after a killed run
      rs-wsss segment scene.tif -o out.parquet --model model.pt --aoi field.gpkg --min-area 100 --co COMPRESS=ZSTD
    """
    from rs_wsss.api import segment_raster

    from .common import log, progress_of

    overrides = (*overrides, *prior_overrides(clip_prior, dino_prior))
    several = list(scenes) if len(scenes) > 1 else scenes[0]  # one scene may still go to a directory (-o dir/)
    results = segment_raster(several, output, model=model_path, zero_shot=zero_shot, classes=class_set,
                             weights=weights, device=device, precision=precision, runtime=runtime, tile=tile,
                             overlap=overlap,
                             scales=scales, crf=crf, bands=bands, probs=probs, vectorize=vectorize, min_area=min_area,
                             simplify=simplify, bounds=bounds, bounds_crs=bounds_crs, aoi=aoi, src_nodata=src_nodata,
                             creation_options=creation_options, overwrite=overwrite, report=report,
                             config=config_path, overrides=overrides, tiny=tiny, dask=dask_address,
                             block_size=block_size, resume=resume, progress=progress_of(ctx))
    for res in results if isinstance(results, list) else [results]:
        log.info("%s → %s", res["scene"], ", ".join(str(v) for k, v in res.items()
                                                   if k not in ("scene", "polygons", "seconds") and v))
