"""Tile-level tags, the weak labels: CSV or GeoPackage grids, generators (template, from a vector layer, from a
ground-truth raster) and validation that lists every problem with its row number in one error line."""

from __future__ import annotations

import csv
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rasterio.windows import Window, from_bounds
from rasterio.windows import bounds as window_bounds

from ..classes import ClassSet
from ..errors import InputNotFound, RsWsssError
from .io import open_dataset, preflight
from .masks import code_table, read_mask
from .tiles import TileGrid
from .write import atomic_output

log = logging.getLogger("rs_wsss")
FIELDS = ["image", "col_off", "row_off", "width", "height", "labels"]


@dataclass(frozen=True)
class TagRow:
    """One tagged tile: the scene, its pixel window and the class names present (empty: none of the classes)."""

    image: str  # path of the scene
    window: Window
    labels: tuple[str, ...]
    row: int = 0  # 1-based row (CSV line after the header, or GPKG feature number)

    @property
    def key(self) -> tuple:
        """Identity of the tile (absolute scene path and window): two rows with one key are duplicates."""
        w = self.window
        return (os.path.abspath(self.image), int(w.col_off), int(w.row_off), int(w.width), int(w.height))


# ---- reading + validation ---------------------------------------------------------------------------------------
def read_tags(path: str | Path, scenes: list[str], class_set: ClassSet) -> list[TagRow]:
    """Read a CSV or GPKG tag file and validate it against ``scenes`` and ``class_set`` (one error for all problems)."""
    path = Path(path)
    if not path.is_file():
        raise RsWsssError(f"tags file not found: {path}")
    by_name = {Path(s).name: s for s in scenes}
    problems: list[str] = []
    rows = _read_gpkg(path, by_name, problems) if path.suffix.lower() == ".gpkg" else _read_csv(path, by_name, problems)
    sizes: dict[str, tuple[int, int]] = {}
    seen: dict[tuple, int] = {}
    for r in rows:
        for name in r.labels:
            try:
                if class_set.index(name) == 0:
                    problems.append(f"row {r.row}: '{name}' is the background (leave labels empty instead)")
            except RsWsssError:
                problems.append(f"row {r.row}: unknown class '{name}' (known: "
                                f"{', '.join(c.name for c in class_set.classes)})")
        if r.image not in sizes:
            with open_dataset(r.image) as ds:
                sizes[r.image] = (ds.width, ds.height)
        w, h = sizes[r.image]
        win = r.window
        if (win.width <= 0 or win.height <= 0 or win.col_off < 0 or win.row_off < 0 or win.col_off >= w
                or win.row_off >= h):
            problems.append(f"row {r.row}: window "
                            f"{int(win.col_off)},{int(win.row_off)},{int(win.width)},{int(win.height)} is outside "
                            f"{Path(r.image).name} ({w}x{h})")
        if r.key in seen:
            problems.append(f"row {r.row}: duplicate of row {seen[r.key]}")
        seen.setdefault(r.key, r.row)
    tagged = {os.path.abspath(r.image) for r in rows}
    for s in scenes:
        if os.path.abspath(s) not in tagged:
            problems.append(f"scene {Path(s).name} has no rows")
    if problems:
        shown = "; ".join(problems[:8]) + (f"; … {len(problems) - 8} more" if len(problems) > 8 else "")
        raise RsWsssError(f"{path.name}: {len(problems)} problem{'s' if len(problems) > 1 else ''}: {shown}")
    return rows


def _stored_path(image: str, folder: Path) -> str:
    """An image path as a tags file stores it: relative to the file's folder, so both can move together; absolute
    when no relative path exists (another drive on Windows)."""
    try:
        return os.path.relpath(image, folder.resolve())
    except ValueError:
        return os.path.abspath(image)


def _resolve_image(value: str, base: Path, by_name: dict[str, str]) -> str | None:
    try:  # a NUL byte (ValueError) or an over-long name (OSError) is just a path that is not there
        cand = Path(value)
        if not cand.is_absolute():
            cand = base / cand
        if Path(value).name in by_name:
            return by_name[Path(value).name]
        return str(cand) if cand.is_file() else None
    except (OSError, ValueError):
        return None


def _decode(path: Path) -> str:
    """The file as text: UTF-8 (a byte-order mark is allowed); anything else is one line naming the fix."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RsWsssError(f"{path.name} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
                          "save the tags as a UTF-8 CSV or a GeoPackage") from None
    if "\x00" in text:
        raise RsWsssError(f"{path.name} contains NUL bytes, so it is not a CSV text file; "
                          "save the tags as a UTF-8 CSV or a GeoPackage")
    return text


def _labels(value: object) -> tuple[str, ...]:
    if value is None or (isinstance(value, float) and math.isnan(value)):  # empty GPKG field (None / NaN)
        return ()
    return tuple(s.strip() for s in str(value).split(";") if s.strip())


def _read_csv(path: Path, by_name: dict[str, str], problems: list[str]) -> list[TagRow]:
    import io

    rows = []
    reader = csv.DictReader(io.StringIO(_decode(path), newline=""))
    try:
        missing = [f for f in FIELDS if f not in (reader.fieldnames or [])]
        if missing:
            raise RsWsssError(f"{path.name}: missing columns {', '.join(missing)} (need {','.join(FIELDS)})")
        for i, rec in enumerate(reader, start=1):
            image = _resolve_image(str(rec["image"] or ""), path.parent, by_name)
            if image is None:
                problems.append(f"row {i}: image '{rec['image']}' not found")
                continue
            try:
                values = [float(rec[k]) for k in ("col_off", "row_off", "width", "height")]
                if not all(v.is_integer() and abs(v) < 2**31 for v in values):
                    raise ValueError
                win = Window(*(int(v) for v in values))
            except (TypeError, ValueError):
                problems.append(f"row {i}: col_off,row_off,width,height must be integers")
                continue
            rows.append(TagRow(image, win, _labels(rec["labels"]), i))
    except csv.Error as exc:
        raise RsWsssError(f"{path.name} is not a readable CSV ({exc}); save the tags as a UTF-8 CSV") from None
    return rows


def _read_gpkg(path: Path, by_name: dict[str, str], problems: list[str]) -> list[TagRow]:
    import geopandas as gpd

    from .vectors import UnreadableVector, read_vector

    try:
        gdf = read_vector(path)
    except UnreadableVector as exc:
        raise RsWsssError(f"{path.name} is not a readable GeoPackage ({exc.why}); give a tag grid from rs-wsss tags "
                          "or a UTF-8 CSV") from None
    missing = [f for f in ("image", "labels", "geometry") if f not in gdf.columns]
    if missing:
        raise RsWsssError(f"{path.name}: missing fields {', '.join(missing)} (a tag grid needs 'image', 'labels' "
                          "and tile footprints)")
    rows = []
    for i, (name, labels, geom) in enumerate(zip(gdf["image"], gdf["labels"], gdf.geometry), start=1):
        image = _resolve_image(str(name), path.parent, by_name)
        if image is None:
            problems.append(f"row {i}: image '{name}' not found")
            continue
        if geom is None or geom.is_empty:
            problems.append(f"row {i}: no tile footprint (empty geometry)")
            continue
        with open_dataset(image) as ds:
            if gdf.crs is not None and ds.crs is not None and gdf.crs != ds.crs:
                geom = gpd.GeoSeries([geom], crs=gdf.crs).to_crs(ds.crs).iloc[0]
            bounds = geom.bounds
            if not all(np.isfinite(bounds)):
                problems.append(f"row {i}: the tile footprint cannot be placed in {Path(image).name}'s CRS")
                continue
            win = from_bounds(*bounds, transform=ds.transform).round_offsets().round_lengths()
        rows.append(TagRow(image, win, _labels(labels), i))
    return rows


# ---- writing ----------------------------------------------------------------------------------------------------
def write_tags(rows: list[TagRow], path: str | Path, overwrite: bool = False) -> None:
    """CSV (image paths relative to the CSV) or GPKG grid (footprints in the scenes' CRS; scenes must share it)."""
    path = Path(path)
    if path.suffix.lower() == ".gpkg":
        _write_gpkg(rows, path, overwrite)
        return
    if path.suffix.lower() != ".csv":
        raise RsWsssError(f"tags output must end in .csv or .gpkg, not {path.name}")
    with atomic_output(path, overwrite) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(FIELDS)
        for r in rows:
            win = r.window
            w.writerow([_stored_path(r.image, path.parent), int(win.col_off), int(win.row_off),
                        int(win.width), int(win.height), ";".join(r.labels)])


def _write_gpkg(rows: list[TagRow], path: Path, overwrite: bool) -> None:
    import geopandas as gpd
    from shapely.geometry import box

    crs_seen, geoms = set(), []
    for r in rows:
        with open_dataset(r.image) as ds:
            crs_seen.add(ds.crs.to_string() if ds.crs else None)
            geoms.append(box(*window_bounds(r.window, ds.transform)))
    if len(crs_seen) > 1:
        raise RsWsssError(f"scenes have different CRSs ({', '.join(map(str, crs_seen))}): write tags as .csv instead")
    crs = next(iter(crs_seen)) if crs_seen else None
    gdf = gpd.GeoDataFrame(
        {"image": [_stored_path(r.image, path.parent) for r in rows],
         "col_off": [int(r.window.col_off) for r in rows], "row_off": [int(r.window.row_off) for r in rows],
         "width": [int(r.window.width) for r in rows], "height": [int(r.window.height) for r in rows],
         "labels": [";".join(r.labels) for r in rows]},
        geometry=geoms, crs=crs)
    with atomic_output(path, overwrite) as tmp:
        gdf.to_file(tmp, driver="GPKG", layer="tags", dataset_options={"VERSION": "1.2"})  # QGIS 3.22 reads 1.2


# ---- generators -------------------------------------------------------------------------------------------------
def template_grid(scenes: list[str], tile: int, overlap: float) -> list[TagRow]:
    """Every tile of every scene with empty labels, for a person to fill in (in QGIS, say)."""
    rows: list[TagRow] = []
    for s in scenes:
        with open_dataset(s) as ds:
            rows += [TagRow(str(s), w, (), len(rows) + 1) for w in TileGrid(ds.width, ds.height, tile, overlap).windows]
    return rows


def tags_from_vector(scenes: list[str], vector_path: str | Path, field: str | None, class_set: ClassSet, tile: int,
                     overlap: float, min_fraction: float = 0.0, constant_class: str | None = None,
                     value_map: dict | None = None) -> list[TagRow]:
    """A tile gets a class when that class's polygons cover more than ``min_fraction`` of the tile's area inside the
    raster (any overlap when 0), or a point of that class lies in it. Layers in any CRS are reprojected; a layer
    without CRS is taken to be in the scene's CRS (with a warning)."""
    from shapely.geometry import box

    if not Path(vector_path).exists():
        raise InputNotFound(f"vector layer not found: {vector_path}")
    from .vectors import read_vector

    layer = read_vector(vector_path)
    if constant_class is None and (field is None or field not in layer.columns):
        raise RsWsssError(f"{vector_path}: field '{field}' not found (fields: "
                          f"{', '.join(c for c in layer.columns if c != 'geometry')}); or use --class-name")
    names = [constant_class] * len(layer) if constant_class else [
        (value_map or {}).get(str(v), str(v)) for v in layer[field]]
    unknown = sorted({n for n in names if n not in class_set.names})
    if unknown:
        raise RsWsssError(f"{vector_path}: values {', '.join(unknown)} are not classes of '{class_set.name}' (use "
                          "--value-map VALUE=CLASS)")
    if layer.crs is not None and layer.crs.is_geographic and len(layer):
        x0, y0, x1, y1 = layer.total_bounds
        if min(x0, y0) < -180 or x1 > 180 or y1 > 90:  # GeoJSON without a crs member read as CRS84, yet projected
            log.warning("%s claims %s but its coordinates are projected: treating it as having no CRS", vector_path,
                        layer.crs)
            layer = layer.set_crs(None, allow_override=True)
    layer = layer.assign(_cls=names)
    layer = layer[layer.geometry.notna() & ~layer.geometry.is_empty]
    rows: list[TagRow] = []
    for s in scenes:
        with open_dataset(s) as ds:
            lyr = layer
            if lyr.crs is None:
                log.warning("%s has no CRS: assuming the CRS of %s", vector_path, Path(s).name)
                lyr = lyr.set_crs(ds.crs, allow_override=True) if ds.crs else lyr
            elif ds.crs is not None and lyr.crs != ds.crs:
                lyr = lyr.to_crs(ds.crs)
            sindex = lyr.sindex
            extent = box(*ds.bounds)
            for w in TileGrid(ds.width, ds.height, tile, overlap).windows:
                fp = box(*window_bounds(w, ds.transform)).intersection(extent)
                hits = lyr.iloc[sindex.query(fp, predicate="intersects")]
                found = []
                for cls, grp in hits.groupby("_cls"):
                    polys = grp[grp.geom_type.isin(["Polygon", "MultiPolygon"])]
                    frac = polys.geometry.intersection(fp).union_all().area / fp.area if len(polys) else 0.0
                    has_point = bool(grp.geom_type.isin(["Point", "MultiPoint"]).any())
                    if has_point or (frac > min_fraction if min_fraction == 0 else frac >= min_fraction):
                        found.append(cls)
                found = [n for n in class_set.names if n in found and n != class_set.background.name]
                rows.append(TagRow(str(s), w, tuple(found), len(rows) + 1))
    return rows


def tags_from_raster(scenes: list[str], masks: list[str], class_set: ClassSet, tile: int, overlap: float,
                     min_fraction: float = 0.0, value_map: dict | None = None) -> list[TagRow]:
    """Ground-truth class rasters → tags. Masks are matched to scenes by file stem (a mask stem may extend the
    scene's, e.g. ``P0003_instance_color_RGB``), or by order when counts match and no names do."""
    table = code_table(class_set, value_map)
    pairs = _match_masks(scenes, masks)
    rows: list[TagRow] = []
    for s, m in pairs:
        with open_dataset(s) as ds, open_dataset(m) as ms:
            preflight(ms, m)  # a truncated mask is refused by name, not read as a few odd tiles
            if (ms.width, ms.height) != (ds.width, ds.height):
                raise RsWsssError(f"mask {Path(m).name} is {ms.width}x{ms.height}, scene {Path(s).name} is "
                                  f"{ds.width}x{ds.height}")
            for w in TileGrid(ds.width, ds.height, tile, overlap).windows:
                inner = w.intersection(Window(0, 0, ds.width, ds.height))
                ids = read_mask(ms, inner, table)
                n = ids.size
                found = tuple(class_set.names[i] for i in range(1, len(class_set.names))
                              if (cnt := int(np.count_nonzero(ids == i))) and cnt / n >= max(min_fraction, 1e-12))
                rows.append(TagRow(str(s), w, found, len(rows) + 1))
    return rows


def _match_masks(scenes: list[str], masks: list[str]) -> list[tuple[str, str]]:
    pairs, missing = [], []
    for s in scenes:
        stem = Path(s).stem
        hits = [m for m in masks if Path(m).stem == stem] or [m for m in masks if Path(m).stem.startswith(stem + "_")]
        if len(hits) == 1:
            pairs.append((s, hits[0]))
        else:
            missing.append(Path(s).name)
    if missing and len(scenes) == len(masks) and not pairs:
        return list(zip(scenes, masks))
    if missing:
        raise RsWsssError(f"no (unique) mask found for {', '.join(missing)}: name masks like their scenes")
    return pairs
