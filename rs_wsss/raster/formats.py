"""The one table of the files rs-wsss writes: suffix → format name, kind, GDAL/OGR driver, media type, writer and how
QGIS finds its style. Output planning, the polygon writer, the STAC sidecar, the CLI's help texts and the QGIS plugin
(through ``rs-wsss options --json``) all read it; adding a format is one row here plus its writer.

Styles: a GeoPackage holds its own (the ``layer_styles`` table, ``styles.write_gpkg_style``); FlatGeobuf and GeoParquet
cannot, so QGIS reads the ``.qml`` of the same base name beside the file (QGIS's default-style rule). The class
raster's ``OUT.qml`` is that same file for ``OUT.fgb``/``OUT.parquet``: it holds the raster (paletted) and the vector
(categorized) style of the same classes, and each layer type reads its own part.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from ..errors import RsWsssError

Kind = Literal["raster", "vector", "table", "style", "page", "image", "metadata"]


@dataclass(frozen=True)
class Format:
    """One output format."""

    suffix: str  # lower case, with the dot
    name: str  # what a user calls it
    kind: Kind
    driver: str | None  # the GDAL/OGR driver that writes it (None: written as text by rs-wsss itself)
    media_type: str  # IANA media type, as STAC records it
    writer: Literal["cog", "ogr", "geoparquet", "text"]
    style: Literal["embedded", "sidecar"] | None = None  # where QGIS finds the class style

    def to_dict(self) -> dict[str, Any]:
        """The record as plain values (``rs-wsss options --json``, the QGIS provider)."""
        return asdict(self)


COG = "image/tiff; application=geotiff; profile=cloud-optimized"
FORMATS: tuple[Format, ...] = (
    Format(".tif", "Cloud-Optimized GeoTIFF", "raster", "COG", COG, "cog", "sidecar"),
    Format(".tiff", "Cloud-Optimized GeoTIFF", "raster", "COG", COG, "cog", "sidecar"),
    Format(".gpkg", "GeoPackage", "vector", "GPKG", "application/geopackage+sqlite3", "ogr", "embedded"),
    Format(".fgb", "FlatGeobuf", "vector", "FlatGeobuf", "application/vnd.flatgeobuf", "ogr", "sidecar"),
    Format(".parquet", "GeoParquet", "vector", "Parquet", "application/vnd.apache.parquet", "geoparquet", "sidecar"),
    Format(".csv", "CSV table", "table", None, "text/csv", "text"),
    Format(".json", "JSON", "metadata", None, "application/json", "text"),
    Format(".qml", "QGIS style", "style", None, "application/xml", "text"),
    Format(".html", "HTML report", "page", None, "text/html", "text"),
    Format(".png", "PNG image", "image", None, "image/png", "text"),
)
BY_SUFFIX = {f.suffix: f for f in FORMATS}
RASTER_SUFFIXES = tuple(f.suffix for f in FORMATS if f.kind == "raster")
VECTOR_SUFFIXES = tuple(f.suffix for f in FORMATS if f.kind == "vector")


def format_of(path: str | Path) -> Format | None:
    """The format of ``path`` by its suffix (any case); None for a suffix rs-wsss does not write."""
    return BY_SUFFIX.get(Path(path).suffix.lower())


def vector_format(path: str | Path) -> Format:
    """The polygon format of an output path.

    Raises:
        RsWsssError: the suffix is not a vector format of the table.
    """
    fmt = format_of(path)
    if fmt is None or fmt.kind != "vector":
        raise RsWsssError(f"polygon output must end in {suffix_list('vector')}, not {Path(path).name}")
    return fmt


def media_type(path: str | Path) -> str | None:
    """The IANA media type of ``path`` (None for an unknown suffix)."""
    fmt = format_of(path)
    return fmt.media_type if fmt else None


def _first_suffixes(kinds: tuple[Kind, ...]) -> dict[str, str]:
    """Format name → its first suffix, for the formats of ``kinds`` in that order (``.tif`` for the GeoTIFF, not
    ``.tiff`` too)."""
    out: dict[str, str] = {}
    for kind in kinds:
        for f in FORMATS:
            if f.kind == kind:
                out.setdefault(f.name, f.suffix)
    return out


def suffix_list(*kinds: Kind) -> str:
    """".gpkg, .fgb or .parquet": the suffixes of ``kinds``, for help texts and errors."""
    items = list(_first_suffixes(kinds).values())
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} or {items[-1]}"


def format_names(*kinds: Kind) -> str:
    """"GeoPackage (.gpkg), FlatGeobuf (.fgb), GeoParquet (.parquet)": for help texts."""
    return ", ".join(f"{name} ({suffix})" for name, suffix in _first_suffixes(kinds).items())
