"""Class raster → a polygon coverage (GeoPackage, FlatGeobuf or GeoParquet), seam-free by construction.

Regions (4-connectivity, as ``rasterio.features.shapes``) are polygonised strip by strip **in pixel space**: every
vertex is an integer pixel corner, exactly representable, so the pieces of one region in neighbouring strips share
bit-identical edges and union exactly. Pieces are joined by label adjacency across the strip border (union-find), not
by geometry tests. Only then is the coverage simplified (``shapely.coverage_simplify``, neighbours keep shared edges)
and mapped to the CRS by one affine transform applied to every vertex, so a vertex shared by two polygons gets the same
coordinates in both. The minimum mapping unit is a raster sieve (``rasterio.features.sieve``) before polygonising: small
regions merge into their largest neighbour, leaving no holes.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import rasterio
import shapely
from affine import Affine
from rasterio.features import shapes, sieve
from rasterio.windows import Window
from scipy import ndimage
from shapely.geometry import shape

from ..errors import RsWsssError
from .areas import geometry_areas_m2, pixel_areas_m2, polygon_class_areas, write_area_summary
from .formats import Format, vector_format
from .write import NODATA, atomic_output

log = logging.getLogger("rs_wsss")
STRIP = 2048  # rows per strip at most ...
STRIP_PIXELS = 2048 * 2048  # ... and pixels per strip at most, so a very wide raster gets shorter strips


def mmu_pixels(min_area_m2: float, pixel_area_m2: float) -> int:
    """Smallest region kept by the sieve, in pixels: a region of ``min_area_m2`` or more always survives."""
    return max(1, math.ceil(min_area_m2 / pixel_area_m2 - 1e-9)) if min_area_m2 > 0 else 0


def _strips(src: Any, conf_src: Any, sieved: np.ndarray | None) -> Iterator[tuple[int, np.ndarray, np.ndarray | None]]:
    rows = max(1, min(STRIP, STRIP_PIXELS // max(src.width, 1)))
    for top in range(0, src.height, rows):
        win = Window(0, top, src.width, min(rows, src.height - top))
        arr = sieved[top : top + int(win.height)] if sieved is not None else src.read(1, window=win)
        conf = conf_src.read(1, window=win).astype(np.float64) if conf_src is not None else None
        yield top, arr, conf


def sieve_classes(arr: np.ndarray, size: int, max_passes: int = 10) -> np.ndarray:
    """Merge regions under ``size`` px into their largest neighbour (4-connectivity); nodata is never a neighbour.

    GDAL's sieve is one pass: a small region whose largest neighbour is also small can survive it, so it is repeated
    until nothing changes (two or three passes in practice). Islands surrounded by nodata only have nothing to join."""
    for _ in range(max_passes):
        out = sieve(arr, size, mask=arr != NODATA, connectivity=4)
        if np.array_equal(out, arr):
            break
        arr = out
    return arr


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, i: int) -> int:
        root = i
        while self.parent.get(root, root) != root:
            root = self.parent[root]
        while self.parent.get(i, i) != root:  # path compression
            self.parent[i], i = root, self.parent[i]
        return root

    def union(self, i: int, j: int) -> None:
        ri, rj = self.find(i), self.find(j)
        if ri != rj:
            self.parent[max(ri, rj)] = min(ri, rj)


def _strip_regions(arr: np.ndarray, conf: np.ndarray | None, top: int
                   ) -> tuple[list[Any], list[int], list[float], list[int], np.ndarray, np.ndarray]:
    """One strip's regions: pixel-space polygons (rows offset by ``top``), classes, confidence sums, pixel counts,
    and the strip-local labels (1-based, 0 = nodata) of its first and last rows."""
    labels = np.zeros(arr.shape, np.int32)
    owner: list[int] = []
    for c in np.unique(arr):
        if c == NODATA:
            continue
        lab, k = ndimage.label(arr == c)
        labels[lab > 0] = lab[lab > 0] + len(owner)
        owner.extend([int(c)] * k)
    if not owner:
        return [], [], [], [], labels[0].astype(np.int64), labels[-1].astype(np.int64)
    ids = np.arange(1, len(owner) + 1)
    counts = ndimage.sum_labels(np.ones(arr.shape), labels, ids)
    sums = ndimage.sum_labels(conf, labels, ids) if conf is not None else np.zeros(len(owner))
    geoms: list[Any] = [None] * len(owner)
    for geom, value in shapes(labels, mask=labels > 0, transform=Affine.translation(0, top)):
        geoms[int(value) - 1] = shape(geom)
    return (geoms, owner, [float(v) for v in sums], [int(v) for v in counts], labels[0].astype(np.int64),
            labels[-1].astype(np.int64))


def polygonize(class_tif: str | Path, class_names: Sequence[str], conf_tif: str | Path | None = None,
               min_area: float = 0.0, simplify: float = 0.0) -> gpd.GeoDataFrame:
    """Polygons of a class raster: one per connected region, in the raster's CRS.

    Args:
        class_tif: uint8 class raster, nodata 255.
        class_names: names by class id.
        conf_tif: optional confidence raster on the same grid; adds ``mean_confidence``.
        min_area: minimum mapping unit in m²; smaller regions are sieved into their neighbours.
        simplify: coverage simplification tolerance in metres (ground distance); 0 keeps pixel edges.

    Returns:
        GeoDataFrame with class_id, class_name, pixels, area_m2, area_ha (and mean_confidence).
    """
    with ExitStack() as stack:
        src = stack.enter_context(rasterio.open(class_tif))
        conf_src = stack.enter_context(rasterio.open(conf_tif)) if conf_tif else None
        if conf_src is not None and (conf_src.width, conf_src.height) != (src.width, src.height):
            raise RsWsssError(f"--confidence {conf_tif} is {conf_src.width}×{conf_src.height} px, the class raster "
                              f"{src.width}×{src.height}; give the confidence raster written with it")
        crs, transform = src.crs, src.transform
        px_area = float(np.mean(pixel_areas_m2(crs, transform, src.width, src.height)))
        sieved = None
        size = mmu_pixels(min_area, px_area)
        if size > 1:  # the sieve needs the whole raster (1 byte per pixel); regions cross strips
            sieved = sieve_classes(src.read(1), size)
        pieces: list[Any] = []  # pixel-space polygons, indexed by global label - 1
        cls: list[int] = []
        conf_sum: list[float] = []
        count: list[int] = []
        uf = _UnionFind()
        prev_last: np.ndarray | None = None  # global labels of the previous strip's last row
        prev_cls: np.ndarray | None = None
        for top, arr, conf in _strips(src, conf_src, sieved):
            base = len(pieces)
            geoms, owner, sums, counts, first, last = _strip_regions(arr, conf, top)
            pieces += geoms
            cls += owner
            conf_sum += sums
            count += counts
            if prev_last is not None:  # 4-connected across the border: same class directly above
                join = (first > 0) & (prev_last > 0) & (arr[0] == prev_cls)
                for a, b in set(zip(prev_last[join].tolist(), (first[join] + base).tolist())):
                    uf.union(a, b)
            prev_last, prev_cls = np.where(last > 0, last + base, 0), arr[-1]
    groups: dict[int, list[int]] = {}
    for i in range(1, len(pieces) + 1):
        groups.setdefault(uf.find(i), []).append(i)
    geoms_px, rows = [], []
    for members in groups.values():
        g = pieces[members[0] - 1] if len(members) == 1 else shapely.union_all([pieces[m - 1] for m in members])
        geoms_px.append(g)
        rows.append((cls[members[0] - 1], sum(conf_sum[m - 1] for m in members), sum(count[m - 1] for m in members)))
    geoms_arr = np.asarray(geoms_px, dtype=object)
    if simplify > 0 and len(geoms_arr):
        # tolerance in pixels; the outer boundary (raster edge, nodata) stays exact so the footprint is unchanged
        geoms_arr = shapely.coverage_simplify(geoms_arr, simplify / math.sqrt(px_area), simplify_boundary=False)
    world = shapely.transform(geoms_arr, lambda xy: _to_world(transform, xy)) if len(geoms_arr) else geoms_arr
    data: dict[str, Any] = {
        "class_id": np.array([r[0] for r in rows], np.int32),
        "class_name": [class_names[r[0]] if r[0] < len(class_names) else str(r[0]) for r in rows],
        "pixels": np.array([r[2] for r in rows], np.int64),  # raster pixels of the region (after the sieve)
    }
    if conf_tif:
        data["mean_confidence"] = [r[1] / r[2] if r[2] else float("nan") for r in rows]
    gdf = gpd.GeoDataFrame(data, geometry=list(world), crs=crs)
    gdf["area_m2"] = geometry_areas_m2(gdf.geometry)
    gdf["area_ha"] = gdf["area_m2"] / 1e4
    cols = ["class_id", "class_name", "pixels", "area_m2", "area_ha"] + (["mean_confidence"] if conf_tif else [])
    return gdf[cols + ["geometry"]].sort_values(["class_id"], kind="stable").reset_index(drop=True)


def _to_world(transform: Affine, xy: np.ndarray) -> np.ndarray:
    """Pixel (col, row) → CRS (x, y), the same float operations as GDAL's geotransform (c + a·col + b·row)."""
    a, b, c, d, e, f = transform[:6]
    col, row = xy[:, 0], xy[:, 1]
    return np.column_stack([c + col * a + row * b, f + col * d + row * e])


def write_polygons(gdf: gpd.GeoDataFrame, out: str | Path, layer: str = "classes",
                   colors: Sequence[tuple[int, int, int]] | None = None, class_names: Sequence[str] = (),
                   styled: Sequence[int] = (), fmt: Format | None = None) -> None:
    """Write a polygon layer in the format of ``fmt`` (default: by the extension of ``out``, ``raster.formats``); a
    GeoPackage also gets the style of classes ``styled`` (default: all ``class_names``) in its ``layer_styles``
    table, so QGIS opens it styled (the other formats' style is the ``.qml`` beside them: :func:`vectorize`)."""
    fmt = fmt or vector_format(out)
    if fmt.writer == "geoparquet":
        gdf.to_parquet(out, index=False)  # GeoParquet (pyarrow), with the CRS as PROJJSON
        return
    # GeoPackage 1.2, not GDAL 3.10's default 1.4: QGIS 3.22 LTR's GDAL 3.6 warns on 1.4 files
    options = {"VERSION": "1.2"} if fmt.driver == "GPKG" else {}
    gdf.to_file(out, driver=fmt.driver, layer=layer if fmt.style == "embedded" else None, engine="pyogrio",
                dataset_options=options)
    if fmt.style == "embedded" and colors:
        from .styles import write_gpkg_style

        write_gpkg_style(out, layer, class_names, colors, styled or range(len(class_names)))


def raster_classes(class_tif: str | Path) -> tuple[list[str], list[tuple[int, int, int]] | None]:
    """Class names (the CLASS_NAMES tag; empty if absent) and colours (the colour table) stored in a class raster."""
    with rasterio.open(class_tif) as src:
        names = [n for n in src.tags().get("CLASS_NAMES", "").split(";") if n]
        try:
            cmap = src.colormap(1)
        except ValueError:  # no colour table
            cmap = None
    colors = [tuple(cmap.get(i, (128, 128, 128, 255))[:3]) for i in range(len(names) or NODATA)] if cmap else None
    return names, colors


def vectorize(class_tif: str | Path, out: str | Path, class_names: Sequence[str] | None = None,
              conf_tif: str | Path | None = None, min_area: float = 0.0, simplify: float = 0.0,
              layer: str = "classes", overwrite: bool = False,
              colors: Sequence[tuple[int, int, int]] | None = None,
              summary: tuple[str | Path, str | Path] | None = None) -> int:
    """Polygonise ``class_tif`` into ``out`` (.gpkg, .fgb or .parquet) atomically; returns the polygon count.

    ``class_names`` and ``colors`` default to those stored in the raster. ``summary`` = (CSV path, JSON path) also
    writes the per-class polygon counts and areas there (``areas.summary_paths(out)`` names them beside ``out``)."""
    fmt = vector_format(out)
    stored_names, stored_colors = raster_classes(class_tif)
    names = list(class_names or stored_names) or [f"class_{i}" for i in range(NODATA)]
    gdf = polygonize(class_tif, names, conf_tif, min_area, simplify)
    styled = range(len(class_names or stored_names)) or sorted(set(gdf["class_id"].tolist()))
    with atomic_output(out, overwrite=overwrite) as tmp:
        write_polygons(gdf, tmp, layer, colors or stored_colors, names, styled, fmt)
    if fmt.style == "sidecar" and (colors or stored_colors):  # QGIS reads OUT.qml beside OUT.fgb / OUT.parquet
        from .styles import class_qml

        with atomic_output(Path(out).with_suffix(".qml"), overwrite=True) as tmp:
            tmp.write_text(class_qml(names, colors or stored_colors or [], styled))
    if summary:
        with atomic_output(summary[0], overwrite=True) as tcsv, atomic_output(summary[1], overwrite=True) as tjson:
            write_area_summary(polygon_class_areas(gdf, names), tcsv, tjson, gdf.crs, str(class_tif))
    log.debug("%s: %d polygons", out, len(gdf))
    return len(gdf)
