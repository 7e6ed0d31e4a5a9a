"""``rs-wsss segment``: rasters → class COG (+ .qml style) and polygons (GeoPackage)."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("segment")
@click.argument("scenes", nargs=-1, required=True, type=click.Path())
@click.option("-o", "--output", required=True, type=click.Path(),
              help="OUT.gpkg (also writes OUT.tif), OUT.tif, or a directory for several scenes.")
@click.option("--model", "model_path", type=click.Path(), help="A checkpoint from rs-wsss train.")
@click.option("--zero-shot", is_flag=True, help="No training: text-driven CAM refined by USR.")
@click.option("--classes", "class_set", help="Class set (required with --zero-shot).")
@click.option("--tile", type=click.IntRange(min=32), default=512, show_default=True, help="Tile size in pixels.")
@click.option("--overlap", type=click.FloatRange(0, 1, max_open=True), default=0.25, show_default=True, help="Tile overlap fraction.")
@click.option("--scales", help="Inference scales, e.g. 0.75,1,1.25 (default: the config's).")
@click.option("--crf/--no-crf", default=None, help="Dense CRF post-processing (default: the config's).")
@click.option("--weights", help="Backbone weights directory/file, or 'random'.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
@click.option("--vectorize/--no-vectorize", default=None, help="Write polygons (default: for .gpkg outputs).")
@click.option("--probs", is_flag=True, help="Also write the per-pixel confidence raster (OUT_confidence.tif).")
@click.option("--min-area", type=click.FloatRange(min=0), default=0.0, help="Drop polygons smaller than this (CRS units²).")
@click.option("--simplify", type=click.FloatRange(min=0), default=0.0, help="Simplify polygons with this tolerance (CRS units).")
@click.option("--bands", help="Band numbers to use as R,G,B, e.g. 4,3,2 (default: by colour interpretation).")
@click.option("--config", "config_path", type=click.Path(), help="Config YAML (zero-shot).")
@click.option("--set", "overrides", multiple=True, help="Config override section.key=value (repeatable).")
@click.option("--tiny", is_flag=True, help="Tiny test architecture with random weights (zero-shot tests).")
@click.option("--dask", "dask_address", help="Run on Dask: a scheduler address (tcp://host:8786) or local:N workers.")
@click.option("--block-size", type=click.IntRange(min=256), default=4096, show_default=True, help="Pixels per Dask block side.")
@click.pass_context
def segment_cmd(ctx, scenes, output, model_path, zero_shot, class_set, tile, overlap, scales, crf, weights, device,
                overwrite, vectorize, probs, min_area, simplify, bands, config_path, overrides, tiny, dask_address,
                block_size) -> None:
    """Segment rasters into a georeferenced class raster and polygons.

    \b
    Examples:
      rs-wsss segment scene.tif -o out.gpkg --model model.pt
      rs-wsss segment scene.tif -o out.gpkg --zero-shot --classes landcover --scales 1 --no-crf
      rs-wsss segment ortho/*.tif -o results/ --model model.pt
    """
    from rs_wsss.errors import RsWsssError
    from rs_wsss.segment import load_segmenter, output_paths, segment_scene

    from .common import check_inputs, check_output, log, parse_scales, pick_device, progress_of

    check_inputs(scenes)
    from rs_wsss.raster.io import open_dataset

    band_list = None
    if bands:
        try:
            band_list = [int(b) for b in bands.split(",")]
        except ValueError:
            raise RsWsssError(f"--bands '{bands}': expected band numbers like 4,3,2") from None
    for s in scenes:  # unreadable rasters and impossible band choices fail before a model is built
        with open_dataset(s) as ds:
            if band_list and (len(band_list) not in (1, 3) or not all(1 <= b <= ds.count for b in band_list)):
                raise RsWsssError(f"{s}: --bands {bands} invalid: give 1 or 3 band numbers in 1..{ds.count}")
    if model_path:
        check_inputs([model_path])
    out = Path(output)
    multi = len(scenes) > 1 or out.is_dir() or output.endswith(("/", "\\"))
    new_dir = multi and not out.exists()  # created only once every check has passed
    if multi:
        if out.suffix.lower() in (".gpkg", ".tif", ".tiff"):
            raise RsWsssError(f"several scenes need a directory as -o (one output per scene), not the file {out.name}")
        if out.exists() and not out.is_dir():
            raise RsWsssError(f"-o {out} exists and is not a directory; give a directory for several scenes")
        targets = [(s, out / f"{Path(s).stem}.gpkg") for s in scenes]
        names = [t.name for _, t in targets]
        if len(set(names)) != len(names):
            raise RsWsssError("several scenes share a file name; segment them into different directories")
        check_output(out, overwrite=True)  # its parent exists and is writable
    else:
        targets = [(scenes[0], out)]
    for _, t in targets:  # refuse before any model is built
        for p in output_paths(t, vectorize).values():
            if p is not None and not new_dir:
                check_output(p, overwrite)
    sets = list(overrides)
    if scales:
        sets.append(f"infer.scales=[{','.join(map(str, parse_scales(scales)))}]")
    if crf is not None:
        sets.append(f"infer.crf={str(crf).lower()}")
    if band_list:
        sets.append(f"raster.bands=[{','.join(map(str, band_list))}]")
    dev = pick_device(device)
    spec = dict(model_path=model_path, class_set=class_set, zero_shot=zero_shot, weights=weights, device=dev,
                tiny=tiny, overrides=tuple(sets), config_path=config_path)
    seg = load_segmenter(**spec)
    progress = progress_of(ctx)
    runner = None
    if dask_address:
        from rs_wsss.distributed.dask import dask_runner, make_client

        client = make_client(dask_address)
        ctx.call_on_close(client.close)
        runner = dask_runner(client, spec, tile, overlap, block_size, progress)
    if new_dir:
        out.mkdir()
        ctx.call_on_close(lambda: next(out.iterdir(), None) is None and out.rmdir())  # no empty directory left behind
    for scene, target in targets:
        res = segment_scene(seg, scene, target, tile, overlap, vectorize, overwrite, probs, min_area, simplify, progress,
                            runner)
        log.info("%s → %s", scene, ", ".join(v for k, v in res.items() if k != "polygons" and v))
