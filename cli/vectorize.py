"""``rs-wsss vectorize``: a class raster → polygons (.gpkg / .fgb / .parquet), area summary, STAC sidecar."""

from __future__ import annotations

from typing import Any

import click

from rs_wsss.raster.formats import format_names  # a table of plain values: --help stays instant


@click.command("vectorize")
@click.argument("class_raster", type=click.Path())
@click.option("-o", "--output", required=True, type=click.Path(),
              help=f"Polygons as {format_names('vector')}, each styled for QGIS.")
@click.option("--classes", "class_set",
              help="Class set naming the class ids (a packaged set or YAML; default: the names stored in the raster).")
@click.option("--min-area", type=click.FloatRange(min=0), default=0.0, show_default=True, metavar="M2",
              help="Minimum mapping unit in m²: smaller regions merge into their largest neighbour (raster sieve).")
@click.option("--simplify", type=click.FloatRange(min=0), default=0.0, show_default=True, metavar="METRES",
              help="Coverage-preserving simplification tolerance in metres; neighbours keep shared edges.")
@click.option("--confidence", "conf_raster", type=click.Path(),
              help="Confidence raster on the same grid (OUT_confidence.tif): adds mean_confidence per polygon.")
@click.option("--layer", default="classes", show_default=True, help="Layer name (GeoPackage).")
@click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
def vectorize_cmd(class_raster: str, output: str, class_set: str | None, min_area: float, simplify: float,
                  conf_raster: str | None, layer: str, overwrite: bool) -> None:
    """Polygonise a class raster into a seam-free polygon coverage with areas in m² and ha.

    Writes OUT_areas.csv / OUT_areas.json (per-class areas) and OUT_stac.json (provenance) beside OUT.

    \b
    Examples:
      rs-wsss vectorize out.tif -o out.gpkg --min-area 100 --simplify 1
      rs-wsss vectorize out.tif -o out.fgb --classes landcover --confidence out_confidence.tif
      rs-wsss vectorize /vsicurl/https://example.com/classes.tif -o classes.parquet
    """
    from pathlib import Path

    from rs_wsss.raster.areas import summary_paths
    from rs_wsss.raster.formats import vector_format
    from rs_wsss.raster.io import open_dataset
    from rs_wsss.raster.stac import stac_item, stac_path, write_stac_item
    from rs_wsss.raster.vectorize import raster_classes, vectorize
    from rs_wsss.raster.write import atomic_output, check_output

    from .common import log

    vector_format(output)
    with open_dataset(class_raster) as ds:  # readable, any path GDAL opens (local, /vsicurl/, s3://)
        _check_class_raster(class_raster, ds)
    if conf_raster:
        with open_dataset(conf_raster):
            pass
    out = Path(output)
    csv_path, json_path = summary_paths(out)
    for p in (out, csv_path, json_path, stac_path(out)):  # refuse before any work
        check_output(p, overwrite)
    names, colors = raster_classes(class_raster)
    if class_set:
        from rs_wsss.classes import load_class_set

        cs = load_class_set(class_set)
        names, colors = cs.names, cs.colors
    n = vectorize(class_raster, out, names or None, conf_raster, min_area, simplify, layer, overwrite, colors,
                  summary=(csv_path, json_path))
    params = {"min_area_m2": min_area, "simplify_m": simplify, "layer": layer, "confidence": conf_raster}
    with open_dataset(class_raster) as ds:
        tags = ds.tags()
    meta = {"model": tags.get("MODEL"), "weights": tags.get("WEIGHTS"), "class_set": tags.get("CLASS_SET")}
    item = stac_item(class_raster, class_raster, {"polygons": out, "areas_csv": csv_path, "areas_json": json_path},
                     params, meta, item_id=out.stem, base=out.parent, class_names=names or None)
    with atomic_output(stac_path(out), overwrite=True) as tmp:
        write_stac_item(item, tmp)
    log.info("%s: %d polygons; areas in %s", out, n, csv_path)


def _check_class_raster(path: str, ds: Any) -> None:
    from rs_wsss.errors import RsWsssError

    if ds.count != 1 or ds.dtypes[0] != "uint8":
        raise RsWsssError(f"{path} is not a class raster ({ds.count} band(s) of {ds.dtypes[0]}); give the "
                          "single-band uint8 OUT.tif written by rs-wsss segment")
