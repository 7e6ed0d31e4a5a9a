"""Writing outputs: atomic rename, class COG with colour table and class names, QGIS style (.qml)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from xml.sax.saxutils import escape

import rasterio
import rasterio.shutil

from ..errors import RsWsssError

NODATA = 255


def check_output(path: str | Path, overwrite: bool) -> Path:
    """Refuse an existing output (without overwrite) or an unwritable directory, before any work is done."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise RsWsssError(f"output exists: {path} (pass --overwrite to replace it)")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise RsWsssError(f"output directory does not exist: {parent}")
    if not os.access(parent, os.W_OK):
        raise RsWsssError(f"output directory is not writable: {parent}")
    return path


@contextlib.contextmanager
def atomic_output(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    path = check_output(path, overwrite)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    os.unlink(tmp)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        for leftover in (tmp_path, Path(str(tmp_path) + ".aux.xml")):
            if leftover.exists():
                leftover.unlink() if leftover.is_file() else shutil.rmtree(leftover)


def class_tags(class_names: list[str], meta: dict | None = None) -> dict[str, str]:
    tags = {"CLASS_NAMES": ";".join(class_names)}
    tags.update({f"CLASS_{i}": n for i, n in enumerate(class_names)})
    tags.update({k.upper(): str(v) for k, v in (meta or {}).items()})
    return tags


def finalize_class_raster(tmp_tif: str | Path, out_path: str | Path, class_names: list[str],
                          colors: list[tuple[int, int, int]], meta: dict | None = None) -> None:
    """Turn a tiled uint8 GeoTIFF into a Cloud-Optimized GeoTIFF (colour table, class names, overviews)."""
    with rasterio.open(tmp_tif, "r+") as ds:
        ds.write_colormap(1, {i: (*c, 255) for i, c in enumerate(colors)})
        ds.update_tags(**class_tags(class_names, meta))
        ds.set_band_description(1, "class")
    rasterio.shutil.copy(tmp_tif, out_path, driver="COG", compress="DEFLATE", overview_resampling="NEAREST",
                         blocksize=512)


def write_qml(path: str | Path, class_names: list[str], colors: list[tuple[int, int, int]]) -> None:
    """A paletted QGIS raster style: class names as legend entries, nodata transparent."""
    entries = "\n".join(
        f'          <paletteEntry value="{i}" label="{escape(n)}" color="#{c[0]:02x}{c[1]:02x}{c[2]:02x}" alpha="255"/>'
        for i, (n, c) in enumerate(zip(class_names, colors))
    )
    Path(path).write_text(f"""<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>
<qgis version="3.22" styleCategories="Symbology">
  <pipe>
    <rasterrenderer type="paletted" band="1" opacity="1" nodataColor="">
      <rasterTransparency/>
      <colorPalette>
{entries}
      </colorPalette>
    </rasterrenderer>
  </pipe>
</qgis>
""")
