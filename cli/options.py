"""Options shared by several commands, declared once (rasterio's ``rio/options.py`` habit): rio's spellings where
they exist, parsing and validation in callbacks (a bad value is a usage error: exit 2, one line).

Options that set a config value default to None, meaning "the config's" (``rs_wsss/config.py`` holds every default).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


class ConfigOption(click.Option):
    """An option that knows the config key whose value it replaces (its real default), its unit and, for a free-text
    option with known values (the priors' registry names), those values: what ``rs-wsss options --json`` lists for
    the QGIS plugin, so that no label, default or choice list is written twice."""

    def __init__(self, *args: Any, config_key: str | None = None, unit: str | None = None,
                 known: list[str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.config_key, self.unit, self.known = config_key, unit, known


def option(*decls: str, config_key: str | None = None, unit: str | None = None, known: list[str] | None = None,
           **kwargs: Any) -> Callable[[F], F]:
    """``click.option`` with the config key it sets, its unit and its known values (see :class:`ConfigOption`)."""
    return click.option(*decls, cls=ConfigOption, config_key=config_key, unit=unit, known=known, **kwargs)


MAX_SCALE = 8.0  # a 512-px tile at ×8 is 4096 px: beyond that a scale is a typo, not a choice


def _band_list(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> list[int] | None:
    """-b 4 -b 3 -b 2 or --bands 4,3,2 → [4, 3, 2]."""
    try:
        bands = [int(v) for item in value for v in item.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter("band numbers are integers, e.g. --bands 4,3,2 or -b 4 -b 3 -b 2") from None
    if bands and len(bands) not in (1, 3):
        raise click.BadParameter(f"give 1 or 3 band numbers, not {len(bands)}")
    if any(b < 1 for b in bands):
        raise click.BadParameter("band numbers start at 1")
    return bands or None


def _scale_list(ctx: click.Context, param: click.Parameter, value: str | None) -> list[float] | None:
    """0.75,1,1.25 → [0.75, 1.0, 1.25]."""
    if value is None:
        return None
    try:
        scales = [float(s) for s in value.split(",") if s.strip()]
    except ValueError:
        raise click.BadParameter(f"'{value}': expected numbers separated by commas, e.g. 0.75,1,1.25") from None
    if not scales or any(not 0 < s <= MAX_SCALE for s in scales):  # also refuses nan and inf
        raise click.BadParameter(f"'{value}': scales must be numbers in (0, {MAX_SCALE:g}], e.g. 0.75,1,1.25")
    return scales


def _key_values(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> dict[str, str]:
    """--co COMPRESS=ZSTD --co level=9 → {"COMPRESS": "ZSTD", "LEVEL": "9"} (GDAL option names are upper case)."""
    out = {}
    for item in value:
        key, sep, val = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"'{item}': expected NAME=VALUE, e.g. --co COMPRESS=ZSTD")
        out[key.strip().upper()] = val.strip()
    return out


def _bounds(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[float, ...] | None:
    """xmin,ymin,xmax,ymax → four floats, min < max."""
    if value is None:
        return None
    try:
        b = tuple(float(v) for v in value.replace(" ", ",").split(",") if v.strip())
    except ValueError:
        b = ()
    if len(b) != 4 or not (b[0] < b[2] and b[1] < b[3]):
        raise click.BadParameter(f"'{value}': expected xmin,ymin,xmax,ymax with xmin < xmax and ymin < ymax")
    return b


def _dask_address(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """local:N (N ≥ 1 workers) or a scheduler address; checked before any model is built."""
    if value is None or not value.startswith("local:"):
        return value
    n = value.split(":", 1)[1]
    if not n.strip().isdigit() or int(n) < 1:  # local:0 would start a cluster with no workers and wait for ever
        raise click.BadParameter(f"'{value}': expected local:N with N ≥ 1 workers, e.g. local:2")
    return value


dask_opt = click.option("--dask", "dask_address", callback=_dask_address, metavar="ADDRESS|local:N",
                        help="Run on Dask: a scheduler address (tcp://host:8786) or local:N workers (N ≥ 1).")
creation_opt = click.option("--co", "--profile", "creation_options", multiple=True, metavar="NAME=VALUE",
                            callback=_key_values,
                            help="GDAL creation option of the output COGs, e.g. --co COMPRESS=ZSTD (repeatable).")
bounds_opt = click.option("--bounds", callback=_bounds, metavar="XMIN,YMIN,XMAX,YMAX",
                          help="Segment only this box (in the scene's CRS, or --bounds-crs); the output grid stays "
                               "aligned to the input pixels.")
bounds_crs_opt = click.option("--bounds-crs", metavar="CRS", help="CRS of --bounds, e.g. EPSG:4326.")
aoi_opt = click.option("--aoi", type=click.Path(), metavar="FILE",
                       help="Segment only inside these polygons (any vector file with a CRS); outside is nodata.")
src_nodata_opt = click.option("--src-nodata", type=float, metavar="V",
                              help="Treat pixels whose every band equals V as nodata (an unflagged black collar).")
bands_opt = option("-b", "--bidx", "--bands", "bands", multiple=True, metavar="N[,N,N]", callback=_band_list,
                   config_key="raster.bands",
                   help="Bands read as R,G,B, e.g. --bands 4,3,2 (default: by colour interpretation).")
scales_opt = option("--scales", callback=_scale_list, metavar="S[,S…]", config_key="infer.scales",
                          help="Inference scales, e.g. 0.75,1,1.25 (default: the config's infer.scales).")
tile_opt = option("--tile", type=click.IntRange(min=32), default=None, config_key="raster.tile", unit="px",
                        help="Tile size in px (default: the config's raster.tile).")
overlap_opt = option("--overlap", type=click.FloatRange(0, 1, max_open=True), default=None, config_key="raster.overlap",
                     unit="fraction of a tile",
                           help="Tile overlap fraction in [0, 1) (default: the config's raster.overlap).")
overwrite_opt = click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
device_opt = click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
                          help="Where the model runs (auto: CUDA when available).")
weights_opt = click.option("--weights", metavar="DIR|FILE|random",
                           help="Backbone weights directory or file, or 'random' (explicit, for smoke runs).")
set_opt = click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
                       help="Config override, e.g. usr.alpha=2 (repeatable).")
config_opt = click.option("--config", "config_path", type=click.Path(),
                          help="A YAML overriding the packaged configs (only the keys that differ).")
tiny_opt = click.option("--tiny", is_flag=True, help="Tiny test architecture with random weights (tests, smoke runs).")


def _prior_name(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A registry name (or open_clip:ARCH for CLIP), checked against the registry without importing torch."""
    if value is None:
        return None
    from rs_wsss.errors import ConfigError
    from rs_wsss.priors.specs import spec_for

    try:
        spec_for(value, "clip" if param.name == "clip_prior" else "dino")
    except ConfigError as exc:
        raise click.BadParameter(str(exc)) from None
    return value


def priors_opt(fn: F) -> F:
    """``--clip-prior NAME`` and ``--dino-prior NAME`` (config ``priors.clip`` / ``priors.dino``); the help lists
    the registry's names (``priors/specs.py``), and ``rs-wsss options --json`` lists them as the choices (QGIS)."""
    from rs_wsss.priors.specs import DEFAULT, names

    dino = option("--dino-prior", callback=_prior_name, metavar="NAME", config_key="priors.dino",
                  known=names("dino"), help=f"DINOv2 prior (default: the config's priors.dino, {DEFAULT['dino']}): "
                       f"{', '.join(names('dino'))}.")
    clip = option("--clip-prior", callback=_prior_name, metavar="NAME", config_key="priors.clip",
                  known=names("clip"), help=f"CLIP prior (default: the config's priors.clip, {DEFAULT['clip']}): "
                       f"{', '.join(names('clip'))}, or open_clip:ARCH with --weights (rs-wsss weights "
                       "lists files and sources).")
    return clip(dino(fn))


def prior_overrides(clip_prior: str | None, dino_prior: str | None) -> tuple[str, ...]:
    """--clip-prior / --dino-prior as ``--set`` items (applied after the config file and the checkpoint's config)."""
    return tuple(f"priors.{k}={v}" for k, v in (("clip", clip_prior), ("dino", dino_prior)) if v)


CLASSES_HELP = "Class set: a packaged name (landcover, potsdam, isaid, loveda) or a YAML file."


def classes_opt(required: bool = False, help: str = CLASSES_HELP) -> Callable[[F], F]:
    """``--classes SET``; required or not, depending on the command."""
    return click.option("--classes", "class_set", required=required, help=help)
