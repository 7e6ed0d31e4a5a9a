"""``rs-wsss tags``: make tile-level tags (template grid, from a vector layer, from ground-truth rasters)."""

from __future__ import annotations

import glob
from collections.abc import Callable
from pathlib import Path

import click

from .options import F, config_opt, option, overwrite_opt

SCENES = click.argument("scenes", nargs=-1, required=True, type=click.Path())
OUT = click.option("-o", "--output", required=True, type=click.Path(), help="tags.csv or tags.gpkg")
TILE = option("--tile", default=None, type=click.IntRange(min=32), config_key="raster.tile", unit="px",
              help="Tile size in px (default: the config's raster.tile).")



def _overlap(default: float) -> Callable[[F], F]:
    return option("--overlap", default=default, show_default=True, type=click.FloatRange(0, 1, max_open=True),
                  unit="fraction of a tile", help="Tile overlap fraction in [0, 1).")


def _tile(tile: int | None, config_path: str | None) -> int:
    from .common import resolved_config

    return resolved_config(config_path).raster.tile if tile is None else tile


@click.group()
def tags() -> None:
    """Make tile-level tags: the weak labels rs-wsss trains from."""


@tags.command("template")
@SCENES
@OUT
@TILE
@config_opt
@_overlap(0.0)
@overwrite_opt
def template(scenes: tuple[str, ...], output: str, tile: int | None, config_path: str | None, overlap: float,
             overwrite: bool) -> None:
    """An empty grid of tiles (labels blank) to fill in, e.g. in QGIS.

    \b
    Example:
      rs-wsss tags template ortho/*.tif -o tags.gpkg --tile 512
      (open tags.gpkg in QGIS, type "building;road" into the labels field of each tile)
    """
    from rs_wsss.outputs import check_target as check_output
    from rs_wsss.outputs import input_files
    from rs_wsss.raster.tags import template_grid, write_tags

    from .common import check_inputs, log

    check_inputs(scenes)
    check_output(output, overwrite, inputs=input_files(list(scenes)))
    rows = template_grid(list(scenes), _tile(tile, config_path), overlap)
    write_tags(rows, output, overwrite)
    log.info("wrote %d empty tiles to %s", len(rows), output)


@tags.command("from-vector")
@SCENES
@click.option("--labels", "vector", required=True, type=click.Path(), help="Polygon/point layer (.gpkg, .geojson, "
                                                                           ".shp).")
@click.option("--field", help="Attribute holding the class name.")
@click.option("--class-name", help="Give every feature this class (instead of --field).")
@click.option("--value-map", multiple=True, help="Field value → class, e.g. yes=building (repeatable or "
                                                 "comma-separated).")
@click.option("--classes", "class_set", default="landcover", show_default=True, help="Class set name or YAML.")
@click.option("--min-fraction", default=0.0, show_default=True, type=click.FloatRange(0, 1), help="Minimum fraction of "
                                                                                                  "a tile a class must "
                                                                                                  "cover (0: any "
                                                                                                  "overlap).")
@OUT
@TILE
@config_opt
@_overlap(0.0)
@overwrite_opt
def from_vector(scenes: tuple[str, ...], vector: str, field: str | None, class_name: str | None,
                value_map: tuple[str, ...], class_set: str, min_fraction: float, output: str, tile: int | None,
                config_path: str | None, overlap: float, overwrite: bool) -> None:
    """Tags from a vector layer in any CRS (reprojected to each scene).

    \b
    Example:
      rs-wsss tags from-vector scene.tif --labels buildings.geojson --class-name building \\
          --classes landcover -o tags.csv --tile 256
    """
    from rs_wsss.classes import load_class_set
    from rs_wsss.errors import RsWsssError
    from rs_wsss.outputs import check_target as check_output
    from rs_wsss.outputs import input_files
    from rs_wsss.raster.tags import tags_from_vector, write_tags

    from .common import check_inputs, log, parse_value_map

    if not field and not class_name:
        raise RsWsssError("give --field FIELD (attribute with class names) or --class-name CLASS")
    check_inputs(scenes)
    check_output(output, overwrite, inputs=[vector, class_set, *input_files(list(scenes))])
    cs = load_class_set(class_set)
    if class_name:
        cs.index(class_name)
    vm = {str(k): v for k, v in (parse_value_map(value_map) or {}).items()}
    rows = tags_from_vector(list(scenes), vector, field, cs, _tile(tile, config_path), overlap, min_fraction,
                            class_name, vm)
    write_tags(rows, output, overwrite)
    log.info("wrote %d tiles (%d with classes) to %s", len(rows), sum(1 for r in rows if r.labels), output)


@tags.command("from-raster")
@SCENES
@click.option("--masks", required=True, help="Directory or glob of ground-truth class rasters.")
@click.option("--classes", "class_set", required=True, help="Class set name or YAML (its codes decode the masks).")
@click.option("--value-map", multiple=True, help="Mask value → class, e.g. 255=building,0=background.")
@click.option("--min-fraction", default=0.0, show_default=True, type=click.FloatRange(0, 1), help="Minimum fraction of "
                                                                                                  "a tile a class must "
                                                                                                  "cover.")
@OUT
@TILE
@config_opt
@_overlap(0.0)
@overwrite_opt
def from_raster(scenes: tuple[str, ...], masks: str, class_set: str, value_map: tuple[str, ...], min_fraction: float,
                output: str, tile: int | None, config_path: str | None, overlap: float, overwrite: bool) -> None:
    """Tags from ground-truth class rasters (for benchmarks).

    \b
    Example:
      rs-wsss tags from-raster dubai/images/*.jpg --masks dubai/masks --classes landcover -o tags.csv
    """
    from rs_wsss.classes import load_class_set
    from rs_wsss.errors import RsWsssError
    from rs_wsss.outputs import check_target as check_output
    from rs_wsss.outputs import input_files
    from rs_wsss.raster.tags import tags_from_raster, write_tags

    from .common import check_inputs, log, parse_value_map

    check_inputs(scenes)
    if Path(masks).is_dir():
        files = sorted(str(p) for p in Path(masks).iterdir() if p.is_file())
    else:
        files = sorted(glob.glob(masks))
    if not files:
        raise RsWsssError(f"--masks {masks}: no files found")
    check_output(output, overwrite, inputs=[class_set, *files, *input_files(list(scenes))])
    rows = tags_from_raster(list(scenes), files, load_class_set(class_set), _tile(tile, config_path), overlap,
                            min_fraction, parse_value_map(value_map))
    write_tags(rows, output, overwrite)
    log.info("wrote %d tiles to %s", len(rows), output)
