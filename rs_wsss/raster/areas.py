"""Areas in square metres whatever the CRS, and the per-class area summary written beside outputs.

A projected CRS is measured in its own plane (its linear unit converted to metres), except the Mercator family, whose
scale grows with latitude. A geographic or Mercator CRS is measured in a Lambert azimuthal equal-area projection
centred on the data, which is equal-area everywhere, so the figures are true ground areas on the ellipsoid.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from pyproj import CRS, Transformer
from rasterio.windows import Window

NODATA = 255
STRIP = 2048
STRIP_PIXELS = 1 << 22  # pixels per strip read for the class areas (bincount widens them to int64: 32 MB)
SUMMARY_FIELDS = ("class_id", "class_name", "polygons", "pixels", "area_m2", "area_ha", "share")


def _crs(crs: Any) -> CRS | None:
    return CRS.from_user_input(crs.to_wkt() if hasattr(crs, "to_wkt") else crs) if crs else None


def planar_factor(crs: Any) -> float | None:
    """Metres per CRS unit where planar areas are true areas (projected, not Mercator); None where they are not."""
    crs = _crs(crs)
    if crs is None:
        return 1.0  # no CRS: areas are in grid units², reported as they are
    if not crs.is_projected:
        return None
    method = (crs.coordinate_operation.method_name if crs.coordinate_operation else "").lower()
    if "mercator" in method and "transverse" not in method:
        return None
    return float(crs.axis_info[0].unit_conversion_factor)


def equal_area_crs(crs: Any, bounds: Sequence[float]) -> CRS:
    """A Lambert azimuthal equal-area CRS centred on ``bounds`` (xmin, ymin, xmax, ymax in ``crs``)."""
    to_ll = Transformer.from_crs(_crs(crs), CRS.from_epsg(4326), always_xy=True)
    lon, lat = to_ll.transform((bounds[0] + bounds[2]) / 2, (bounds[1] + bounds[3]) / 2)
    return CRS.from_proj4(f"+proj=laea +lat_0={lat:.6f} +lon_0={lon:.6f} +datum=WGS84 +units=m +no_defs")


def geometry_areas_m2(geoms: Any) -> np.ndarray:
    """Areas in m² of a GeoSeries (any CRS): planar where that is true, else in a local equal-area projection."""
    if len(geoms) == 0:
        return np.zeros(0)
    factor = planar_factor(geoms.crs)
    if factor is not None:
        return np.asarray(geoms.area, dtype=np.float64) * factor**2
    return np.asarray(geoms.to_crs(equal_area_crs(geoms.crs, geoms.total_bounds)).area, dtype=np.float64)


def pixel_areas_m2(crs: Any, transform: Affine, width: int, height: int) -> np.ndarray:
    """Ground area of one pixel in each row (m², shape (height,)); constant unless the CRS is geographic/Mercator."""
    factor = planar_factor(crs)
    if factor is not None:
        return np.full(height, abs(transform.a * transform.e - transform.b * transform.d) * factor**2)
    # pixels of one row have one area (north-up grid); measure the middle column's pixel of every row
    col = width // 2
    rows = np.arange(height + 1, dtype=np.float64)
    xs, ys = {}, {}
    for dc in (0, 1):
        xs[dc], ys[dc] = transform * (np.full_like(rows, col + dc), rows)
    west, south, east, north = rasterio.transform.array_bounds(height, width, transform)
    fwd = Transformer.from_crs(_crs(crs), equal_area_crs(crs, (west, south, east, north)), always_xy=True)
    px = {dc: fwd.transform(xs[dc], ys[dc]) for dc in (0, 1)}
    # quadrilateral (r, c) (r, c+1) (r+1, c+1) (r+1, c): shoelace
    x0, y0 = px[0][0][:-1], px[0][1][:-1]
    x1, y1 = px[1][0][:-1], px[1][1][:-1]
    x2, y2 = px[1][0][1:], px[1][1][1:]
    x3, y3 = px[0][0][1:], px[0][1][1:]
    return 0.5 * np.abs((x0 * y1 - x1 * y0) + (x1 * y2 - x2 * y1) + (x2 * y3 - x3 * y2) + (x3 * y0 - x0 * y3))


def summary_rows(class_ids: Sequence[int], areas_m2: Sequence[float], class_names: Sequence[str],
                 polygons: Sequence[int] | None = None, pixels: Sequence[int] | None = None) -> list[dict[str, Any]]:
    """One row per class present: class_id, class_name, polygons, pixels, area_m2, area_ha, share (of the total)."""
    total = float(np.sum(areas_m2)) or 1.0
    rows = []
    for i, c in enumerate(class_ids):
        rows.append({"class_id": int(c), "class_name": class_names[c] if c < len(class_names) else str(c),
                     "polygons": None if polygons is None else int(polygons[i]),
                     "pixels": None if pixels is None else int(pixels[i]),
                     "area_m2": float(areas_m2[i]), "area_ha": float(areas_m2[i]) / 1e4,
                     "share": float(areas_m2[i]) / total})
    return rows


def raster_class_areas(class_tif: str | Path, class_names: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Per-class pixel counts and areas (m², ha) of a class raster, read strip by strip; nodata (255) is left out.

    ``class_names`` default to the raster's CLASS_NAMES tag."""
    with rasterio.open(class_tif) as src:
        names = list(class_names) if class_names else src.tags().get("CLASS_NAMES", "").split(";")
        row_area = pixel_areas_m2(src.crs, src.transform, src.width, src.height)
        counts = np.zeros(256, np.int64)
        areas = np.zeros(256, np.float64)
        rows = max(1, min(STRIP, STRIP_PIXELS // max(1, src.width)))  # wide rasters get shorter strips
        for top in range(0, src.height, rows):
            n = min(rows, src.height - top)
            arr = src.read(1, window=Window(0, top, src.width, n))
            if np.ptp(row_area) == 0:
                c = np.bincount(arr.ravel(), minlength=256)
                counts += c
                areas += c * row_area[0]
            else:
                for r in range(n):
                    c = np.bincount(arr[r], minlength=256)
                    counts += c
                    areas += c * row_area[top + r]
    present = [c for c in range(256) if counts[c] and c != NODATA]
    return summary_rows(present, areas[present], names, pixels=counts[present])  # type: ignore[arg-type]


def polygon_class_areas(gdf: Any, class_names: Sequence[str]) -> list[dict[str, Any]]:
    """Per-class polygon counts, pixels and areas from a layer with class_id, pixels and area_m2 columns."""
    if len(gdf) == 0:
        return []
    grouped = gdf.groupby("class_id").agg(polygons=("area_m2", "count"), area=("area_m2", "sum"),
                                          pixels=("pixels", "sum")).sort_index()
    return summary_rows(list(grouped.index), list(grouped["area"]), class_names, polygons=list(grouped["polygons"]),
                        pixels=list(grouped["pixels"]))


def summary_paths(out: str | Path) -> tuple[Path, Path]:
    """OUT.ext → OUT_areas.csv, OUT_areas.json."""
    out = Path(out)
    return out.with_name(out.stem + "_areas.csv"), out.with_name(out.stem + "_areas.json")


def write_area_summary(rows: list[dict[str, Any]], csv_path: str | Path, json_path: str | Path,
                       crs: Any = None, source: str | None = None) -> None:
    """Write the summary as CSV (one row per class) and JSON (with the CRS and the total)."""
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=SUMMARY_FIELDS)
        w.writeheader()
        w.writerows(rows)
    total = float(sum(r["area_m2"] for r in rows))
    c = _crs(crs)
    doc = {"source": source, "crs": c.to_string() if c else None,
           "area_method": ("no CRS: grid units², not m²" if c is None else "planar" if planar_factor(crs) is not None
                           else "local Lambert azimuthal equal-area"),
           "total_area_m2": total, "total_area_ha": total / 1e4, "classes": rows}
    Path(json_path).write_text(json.dumps(doc, indent=2) + "\n")
