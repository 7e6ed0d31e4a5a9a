"""Where to segment: ``--bounds`` / ``--aoi`` → a pixel window aligned to the input's grid, and the AOI's pixel mask.

The window is rounded outward to whole input pixels, so the output grid is the input grid cropped (same resolution,
same pixel edges): outputs of neighbouring AOIs line up, and a crop of the full result covers the same pixels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine
from rasterio.features import geometry_mask
from rasterio.warp import transform_bounds
from rasterio.windows import Window, from_bounds

from ..errors import RsWsssError


@dataclass(frozen=True)
class Extent:
    """What part of a scene to segment and which extra value is nodata; plain values, so it travels to workers.

    Attributes:
        bounds: xmin, ymin, xmax, ymax in ``bounds_crs`` (default: the raster's CRS), or None for everything.
        bounds_crs: CRS of ``bounds`` (anything rasterio accepts: "EPSG:4326", WKT …).
        aoi: a polygon file; pixels whose centre is outside its polygons are nodata.
        src_nodata: a value that marks nodata where the file does not flag it (a pixel is nodata when every band
            read equals it, so a dark pixel in one band is still data).
    """

    bounds: tuple[float, float, float, float] | None = None
    bounds_crs: str | None = None
    aoi: str | None = None
    src_nodata: float | None = None

    def window(self, src: Any, aoi_geoms: Sequence[Any] | None = None) -> Window:
        """The pixel window of ``src`` to segment (the whole raster when neither bounds nor an AOI is given)."""
        win = Window(0, 0, src.width, src.height)
        if aoi_geoms:
            win = aoi_window(src, aoi_geoms)
        if self.bounds:
            b = bounds_window(src, self.bounds, self.bounds_crs)
            win = win.intersection(b) if _overlap(win, b) else None
            if win is None:
                raise RsWsssError(f"--bounds and --aoi {self.aoi} do not overlap; give an AOI inside the bounds")
        return win


def _overlap(a: Window, b: Window) -> bool:
    return (a.col_off < b.col_off + b.width and b.col_off < a.col_off + a.width
            and a.row_off < b.row_off + b.height and b.row_off < a.row_off + a.height)


def parse_bounds(text: str) -> tuple[float, float, float, float]:
    """``"xmin,ymin,xmax,ymax"`` → four floats with xmin < xmax and ymin < ymax."""
    try:
        vals = tuple(float(v) for v in text.replace(" ", ",").split(",") if v.strip())
    except ValueError:
        vals = ()
    if len(vals) != 4 or not (vals[0] < vals[2] and vals[1] < vals[3]) or not all(map(math.isfinite, vals)):
        raise RsWsssError(f"--bounds '{text}': expected xmin,ymin,xmax,ymax with xmin < xmax and ymin < ymax")
    return vals


def bounds_window(src: Any, bounds: Sequence[float], bounds_crs: Any = None) -> Window:
    """The window of ``src`` covering ``bounds`` (in ``bounds_crs``, default the raster's), rounded outward to whole
    pixels and clipped to the raster.

    Raises:
        RsWsssError: the bounds do not overlap the raster.
    """
    if bounds_crs is not None and src.crs is None:
        raise RsWsssError(f"{src.name} has no CRS, so --bounds-crs cannot be applied; give --bounds in pixels' CRS")
    b = tuple(bounds)
    if bounds_crs is not None and src.crs is not None:
        b = transform_bounds(bounds_crs, src.crs, *b, densify_pts=21)
    if not all(map(math.isfinite, b)):  # far outside the CRS's area of use: the projection gives inf/NaN
        return _no_overlap(src, bounds)
    win = from_bounds(*b, transform=src.transform)
    eps = 1e-6  # a bound on a pixel edge, up to float noise, does not take the next pixel
    col0, row0 = math.floor(win.col_off + eps), math.floor(win.row_off + eps)
    col1, row1 = math.ceil(win.col_off + win.width - eps), math.ceil(win.row_off + win.height - eps)
    col0, row0, col1, row1 = max(col0, 0), max(row0, 0), min(col1, src.width), min(row1, src.height)
    if col1 <= col0 or row1 <= row0:
        return _no_overlap(src, bounds)
    return Window(col0, row0, col1 - col0, row1 - row0)


def _no_overlap(src: Any, bounds: Sequence[float]) -> Window:
    raise RsWsssError(f"--bounds/--aoi {','.join(f'{v:g}' for v in bounds)} do not overlap {src.name} (its bounds are "
                      f"{', '.join(f'{v:.6g}' for v in src.bounds)} in {src.crs}); check the numbers or --bounds-crs")


def read_aoi(path: str | Path, crs: Any) -> list[Any]:
    """The AOI file's (multi)polygons in ``crs`` (any vector format GDAL reads; a layer without a CRS is refused)."""
    from .vectors import UnreadableVector, read_vector

    try:
        aoi = read_vector(path)
    except UnreadableVector as exc:
        raise RsWsssError(f"--aoi {path}: cannot read it as a vector layer ({exc.why})") from None
    aoi = aoi[aoi.geometry.notna() & aoi.geom_type.isin(["Polygon", "MultiPolygon"])]
    if aoi.empty:
        raise RsWsssError(f"--aoi {path}: no polygons in it; give a polygon layer (GeoPackage, GeoJSON, shapefile …)")
    if crs is not None:
        if aoi.crs is None:
            raise RsWsssError(f"--aoi {path} has no CRS; save it with one (e.g. in QGIS: Export → Save Features As)")
        aoi = aoi.to_crs(crs)
    return list(aoi.geometry)


def aoi_window(src: Any, geoms: Sequence[Any]) -> Window:
    """The pixel-aligned window of ``src`` covering the AOI polygons (already in the raster's CRS)."""
    xmin, ymin, xmax, ymax = np.array([g.bounds for g in geoms]).T
    return bounds_window(src, (xmin.min(), ymin.min(), xmax.max(), ymax.max()))


def aoi_mask(geoms: Sequence[Any], shape: tuple[int, int], transform: Affine) -> np.ndarray:
    """True where a pixel centre is inside the AOI (GDAL's rasterisation rule)."""
    return geometry_mask(geoms, out_shape=shape, transform=transform, invert=True)

