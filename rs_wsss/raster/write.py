"""Writing outputs: atomic rename, class COG (colour table, class names, categories, MODE overviews), confidence COG,
QGIS raster style (.qml)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from xml.sax.saxutils import escape

import rasterio
import rasterio.shutil

from ..atomic import atomic_path, sweep_stale
from ..errors import OutputExists, RsWsssError

NODATA = 255


def check_output(path: str | Path, overwrite: bool) -> Path:
    """Refuse an existing output (without overwrite) or an unwritable directory, before any work is done."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExists(f"output exists: {path} (pass --overwrite to replace it)")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise RsWsssError(f"output directory does not exist: {parent}")
    if not os.access(parent, os.W_OK):
        raise RsWsssError(f"output directory is not writable: {parent}")
    return path


@contextlib.contextmanager
def atomic_output(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds. Temporaries a
    killed earlier run left for ``path`` are removed first."""
    path = check_output(path, overwrite)
    sweep_stale(path)
    with atomic_path(path) as tmp:
        yield tmp
        if aux_path(tmp).exists():  # GDAL's sidecar (category names, attribute table) travels with its raster
            os.replace(aux_path(tmp), aux_path(path))
        elif aux_path(path).exists():  # a replaced raster's stale sidecar would describe the old file
            aux_path(path).unlink()


def class_tags(class_names: list[str], meta: dict | None = None) -> dict[str, str]:
    """GeoTIFF metadata naming the classes (CLASS_NAMES, CLASS_i) plus ``meta`` upper-cased (model identity)."""
    tags = {"CLASS_NAMES": ";".join(class_names)}
    tags.update({f"CLASS_{i}": n for i, n in enumerate(class_names)})
    tags.update({k.upper(): str(v) for k, v in (meta or {}).items()})
    return tags


# COG defaults; --co KEY=VALUE entries replace them key by key (GDAL's creation options, as gdal_translate/rio take)
COG_OPTIONS = {"COMPRESS": "DEFLATE", "BLOCKSIZE": "512"}


def parse_creation_options(items: Sequence[str]) -> dict[str, str]:
    """``["COMPRESS=ZSTD", "level=9"]`` → ``{"COMPRESS": "ZSTD", "LEVEL": "9"}`` (keys upper-cased, as GDAL's)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise RsWsssError(f"--co {item!r}: expected KEY=VALUE, e.g. --co COMPRESS=ZSTD")
        out[key.strip().upper()] = value.strip()
    return out


def aux_path(path: str | Path) -> Path:
    """GDAL's PAM sidecar of a raster: category names and the attribute table of a GeoTIFF live there."""
    return Path(str(path) + ".aux.xml")


def write_class_aux(path: str | Path, class_names: Sequence[str], colors: Sequence[Sequence[int]]) -> None:
    """Category names and a thematic raster attribute table (value, class name, RGBA) for band 1, in GDAL's PAM
    format (``PATH.aux.xml``): GDAL, QGIS and ArcGIS show class names from it; the TIFF itself cannot hold them."""
    cats = "".join(f"<Category>{escape(n)}</Category>" for n in class_names)
    fields = [("Value", 0, 5), ("Class", 2, 2), ("Red", 0, 6), ("Green", 0, 7), ("Blue", 0, 8), ("Alpha", 0, 9)]
    defs = "".join(f'<FieldDefn index="{i}"><Name>{n}</Name><Type>{t}</Type><Usage>{u}</Usage></FieldDefn>'
                   for i, (n, t, u) in enumerate(fields))
    rows = "".join(f'<Row index="{i}"><F>{i}</F><F>{escape(n)}</F>' + "".join(f"<F>{v}</F>" for v in (*c[:3], 255))
                   + "</Row>" for i, (n, c) in enumerate(zip(class_names, colors)))
    aux_path(path).write_text(f"""<PAMDataset>
  <PAMRasterBand band="1">
    <CategoryNames>{cats}</CategoryNames>
    <GDALRasterAttributeTable tableType="thematic">{defs}{rows}</GDALRasterAttributeTable>
  </PAMRasterBand>
</PAMDataset>
""")


def finalize_class_raster(tmp_tif: str | Path, out_path: str | Path, class_names: list[str],
                          colors: list[tuple[int, int, int]], meta: dict | None = None,
                          creation_options: dict[str, str] | None = None) -> None:
    """Turn a tiled uint8 GeoTIFF into a Cloud-Optimized GeoTIFF: colour table, class names as tags and as GDAL
    categories + attribute table (``out_path.aux.xml``), MODE overviews (each overview pixel is the majority class)."""
    with rasterio.open(tmp_tif, "r+") as ds:
        ds.write_colormap(1, {i: (*c, 255) for i, c in enumerate(colors)})
        ds.update_tags(**class_tags(class_names, meta))
        ds.set_band_description(1, "class")
    options = COG_OPTIONS | {"OVERVIEW_RESAMPLING": "MODE"} | (creation_options or {})
    rasterio.shutil.copy(tmp_tif, out_path, driver="COG", **options)
    write_class_aux(out_path, class_names, colors)


def finalize_confidence_raster(tmp_tif: str | Path, out_path: str | Path,
                               creation_options: dict[str, str] | None = None) -> None:
    """The float32 confidence raster as a Cloud-Optimized GeoTIFF with AVERAGE overviews."""
    with rasterio.open(tmp_tif, "r+") as ds:
        ds.set_band_description(1, "confidence")
    options = COG_OPTIONS | {"OVERVIEW_RESAMPLING": "AVERAGE", "PREDICTOR": "YES"} | (creation_options or {})
    rasterio.shutil.copy(tmp_tif, out_path, driver="COG", **options)


def write_qml(path: str | Path, class_names: list[str], colors: list[tuple[int, int, int]]) -> None:
    """The QGIS style of the class raster, which also styles polygons of the same base name (``styles.class_qml``)."""
    from .styles import class_qml

    Path(path).write_text(class_qml(class_names, colors, range(len(class_names))))
