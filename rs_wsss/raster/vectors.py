"""Reading a user's vector layer (AOI, tag grid, label polygons): any failure of a damaged or foreign file becomes
one user-facing error carrying GDAL's (or GEOS's) reason."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import RsWsssError


class UnreadableVector(RsWsssError, ValueError):
    """A vector file GDAL cannot open or whose geometries do not decode; ``why`` holds the reason (one line)."""

    def __init__(self, path: str | Path, why: str) -> None:
        super().__init__(f"cannot read vector layer {path}: {why}")
        self.why = why


def read_vector(path: str | Path) -> Any:
    """``geopandas.read_file(path)``.

    Raises:
        UnreadableVector: not a vector file, truncated, not UTF-8, or geometries that do not decode (a flipped byte
            in a WKB ring).
    """
    import geopandas as gpd
    from shapely.errors import ShapelyError

    try:
        return gpd.read_file(path)
    except (RuntimeError, OSError, ValueError, UnicodeDecodeError, ShapelyError) as exc:  # pyogrio's errors are
        # RuntimeErrors; GEOS refuses rings that a damaged file no longer closes
        text = str(exc).strip()
        raise UnreadableVector(path, text.splitlines()[0][:160] if text else type(exc).__name__) from None
