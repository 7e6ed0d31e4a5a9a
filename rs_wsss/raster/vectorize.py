"""Class raster → polygons (GeoPackage), strip by strip so large rasters fit in memory.

Each strip's connected regions (4-connectivity, as ``rasterio.features.shapes``) are polygonised with their
confidence sums; regions touching a strip border are unioned with their neighbours across it afterwards, so polygons
are never cut at strip (or tile) boundaries.
"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
from rasterio.features import shapes
from rasterio.windows import Window
from scipy import ndimage
from shapely.geometry import shape
from shapely.ops import unary_union

from .write import NODATA, atomic_output

STRIP = 2048


def vectorize(class_tif: str | Path, out_gpkg: str | Path, class_names: list[str], conf_tif: str | Path | None = None,
              min_area: float = 0.0, simplify: float = 0.0, layer: str = "classes", overwrite: bool = False,
              skip_classes: tuple[int, ...] = ()) -> int:
    """Write polygons with class_id, class_name, area (CRS units²), mean_confidence; returns the polygon count."""
    records: list[tuple[int, object, float, int, bool]] = []  # class, geom, conf sum, pixel count, on border
    with rasterio.open(class_tif) as src, (rasterio.open(conf_tif) if conf_tif else _null()) as conf_src:
        crs, height, width = src.crs, src.height, src.width
        for top in range(0, height, STRIP):
            n = min(STRIP, height - top)
            win = Window(0, top, width, n)
            arr = src.read(1, window=win)
            conf = conf_src.read(1, window=win).astype(np.float64) if conf_src is not None else np.zeros(arr.shape)
            labels = np.zeros(arr.shape, np.int32)
            owner: dict[int, int] = {}
            next_id = 1
            for c in np.unique(arr):
                if c == NODATA or int(c) in skip_classes:
                    continue
                lab, k = ndimage.label(arr == c)
                labels[lab > 0] = lab[lab > 0] + next_id - 1
                owner.update({i: int(c) for i in range(next_id, next_id + k)})
                next_id += k
            if next_id == 1:
                continue
            ids = np.arange(1, next_id)
            sums = ndimage.sum_labels(conf, labels, ids)
            counts = ndimage.sum_labels(np.ones_like(conf), labels, ids)
            touch = set(np.unique(labels[0])) | set(np.unique(labels[-1]))
            transform = rasterio.windows.transform(win, src.transform)
            for geom, value in shapes(labels, mask=labels > 0, transform=transform):
                i = int(value)
                records.append((owner[i], shape(geom), float(sums[i - 1]), int(counts[i - 1]), i in touch))
    rows = _merge_borders(records)
    gdf = gpd.GeoDataFrame(
        {
            "class_id": [r[0] for r in rows],
            "class_name": [class_names[r[0]] if r[0] < len(class_names) else str(r[0]) for r in rows],
            "mean_confidence": [r[2] / r[3] if conf_tif and r[3] else float("nan") for r in rows],
        },
        geometry=[r[1] for r in rows],
        crs=crs,
    )
    if simplify > 0:
        gdf["geometry"] = gdf.geometry.simplify(simplify, preserve_topology=True)
    gdf["area"] = gdf.geometry.area
    if min_area > 0:
        gdf = gdf[gdf["area"] >= min_area]
    gdf = gdf[["class_id", "class_name", "area", "mean_confidence", "geometry"]]
    with atomic_output(out_gpkg, overwrite=overwrite) as tmp:
        gdf.to_file(tmp, driver="GPKG", layer=layer)
    return len(gdf)


def _merge_borders(records):
    """Union same-class regions that touch across strip borders; sums and counts add up."""
    out = [(c, g, s, n) for c, g, s, n, b in records if not b]
    by_class: dict[int, list] = {}
    for c, g, s, n, b in records:
        if b:
            by_class.setdefault(c, []).append((g, s, n))
    for c, items in by_class.items():
        merged = unary_union([g for g, _, _ in items])
        parts = list(getattr(merged, "geoms", [merged]))
        tree_parts = [(p, 0.0, 0) for p in parts]
        for g, s, n in items:  # attribute each strip piece's stats to the merged part containing it
            pt = g.representative_point()
            for k, (p, ps, pn) in enumerate(tree_parts):
                if p.covers(pt):
                    tree_parts[k] = (p, ps + s, pn + n)
                    break
        out.extend((c, p, s, n) for p, s, n in tree_parts)
    return out


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False
