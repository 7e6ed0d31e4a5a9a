"""rs-wsss: weakly supervised semantic segmentation of remote-sensing rasters from tile-level tags.

``from rs_wsss import segment_raster, train_from_tags`` (see ``rs_wsss.api``): imported on first use, so
``import rs_wsss`` stays light (no torch, no GDAL).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__

__all__ = ["__version__", "segment_raster", "train_from_tags"]

if TYPE_CHECKING:
    from .api import segment_raster, train_from_tags


def __getattr__(name: str) -> Any:
    if name in ("segment_raster", "train_from_tags"):
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'rs_wsss' has no attribute {name!r}")
