"""Provenance sidecar: a STAC Item (JSON) describing an output set — its input, grid, parameters and model.

STAC 1.0.0 core with the projection (v2.0.0) and processing (v1.2.0) extensions; rs-wsss's own fields are prefixed
``rs_wsss:``. Asset hrefs are relative to the item file, so the output folder can be moved as a whole.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import rasterio
import shapely
from rasterio.warp import transform_geom

from .._version import __version__
from .formats import media_type

DATA_KEYS = ("tif", "classes", "vector", "polygons", "conf")  # the rest (styles, areas, reports) is metadata

EXTENSIONS = ["https://stac-extensions.github.io/projection/v2.0.0/schema.json",
              "https://stac-extensions.github.io/processing/v1.2.0/schema.json"]


def stac_path(out: str | Path) -> Path:
    """OUT.ext → OUT_stac.json."""
    out = Path(out)
    return out.with_name(out.stem + "_stac.json")


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def stac_item(grid_raster: str | Path, source: str, assets: Mapping[str, str | Path], parameters: Mapping[str, Any],
              meta: Mapping[str, str] | None = None, item_id: str | None = None, base: Path | None = None,
              class_names: list[str] | None = None) -> dict[str, Any]:
    """A STAC Item for outputs on the grid of ``grid_raster`` (the class raster), derived from ``source``.

    Args:
        grid_raster: the raster whose CRS, bbox, shape and transform the item records.
        source: the input as the user gave it (a path or URL): the ``derived_from`` link.
        assets: role key → output path; hrefs are written relative to ``base`` (the item's folder).
        parameters: the run's parameters (tile, overlap, min_area_m2 …), recorded as given.
        meta: model identity (``model``: zero-shot or checkpoint:SHA256, ``weights``, ``class_set``).
        item_id: the item's id (default: the class raster's file stem).
        base: the folder hrefs are relative to (default: the class raster's folder).
        class_names: class names by id.
    """
    with rasterio.open(grid_raster) as ds:
        crs, bounds, shape, transform = ds.crs, ds.bounds, (ds.height, ds.width), ds.transform
        acquired = ds.tags().get("TIFFTAG_DATETIME")
    try:
        with rasterio.open(source) as src:  # the acquisition time, when the input records one
            acquired = src.tags().get("TIFFTAG_DATETIME") or acquired
    except rasterio.errors.RasterioIOError:
        pass
    created = _now()
    geometry, bbox = None, None
    if crs:
        footprint = shapely.segmentize(shapely.box(*bounds), max(bounds.right - bounds.left,
                                                                  bounds.top - bounds.bottom) / 16)
        geometry = transform_geom(crs, "EPSG:4326", shapely.geometry.mapping(footprint))
        bbox = list(shapely.geometry.shape(geometry).bounds)
    epsg = crs.to_epsg() if crs else None
    meta = dict(meta or {})
    props: dict[str, Any] = {
        "datetime": _iso(acquired) or created,
        "created": created,
        "proj:code": f"EPSG:{epsg}" if epsg else None,
        "proj:wkt2": crs.to_wkt() if crs else None,
        "proj:bbox": list(bounds),
        "proj:shape": list(shape),
        "proj:transform": list(transform)[:6],
        "processing:software": {"rs-wsss": __version__},
        "processing:lineage": "rs-wsss weakly supervised segmentation (CLIP + DINOv2 priors) of the derived_from input",
        "rs_wsss:version": __version__,
        "rs_wsss:model": meta.get("model"),
        "rs_wsss:weights": meta.get("weights"),
        "rs_wsss:class_set": meta.get("class_set"),
        "rs_wsss:classes": class_names,
        "rs_wsss:parameters": dict(parameters),
    }
    base = base or Path(grid_raster).parent
    item: dict[str, Any] = {
        "type": "Feature", "stac_version": "1.0.0", "stac_extensions": EXTENSIONS,
        "id": item_id or Path(grid_raster).stem, "geometry": geometry, "properties": props,
        "links": [{"rel": "derived_from", "href": str(source)}],
        "assets": {key: {"href": _rel(p, base),
                         "type": media_type(p) or "application/octet-stream",
                         "roles": ["data"] if key in DATA_KEYS else ["metadata"]}
                   for key, p in assets.items()},
    }
    if bbox:
        item["bbox"] = bbox
    return item


def _iso(tiff_datetime: str | None) -> str | None:
    """TIFFTAG_DATETIME (``YYYY:MM:DD HH:MM:SS``) → RFC 3339, or None."""
    if not tiff_datetime:
        return None
    try:
        return _dt.datetime.strptime(tiff_datetime.strip(), "%Y:%m:%d %H:%M:%S").isoformat() + "Z"
    except ValueError:
        return None


def _rel(path: str | Path, base: Path) -> str:
    try:
        return Path(path).resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return str(path)


def write_stac_item(item: Mapping[str, Any], path: str | Path) -> None:
    """Write the item as indented JSON."""
    Path(path).write_text(json.dumps(item, indent=2) + "\n")
