"""The long-running CLI call both cancellation tests interrupt (the CLI directly, and through the QGIS runner)."""

from __future__ import annotations

from pathlib import Path


def long_segment_args(raster: Path, gpkg: Path) -> list[str]:
    """``rs-wsss segment`` arguments: zero-shot, tiny random model, 64 px tiles at 0.75 overlap (slow enough to cancel
    mid-run)."""
    return [
        "segment",
        str(raster),
        "-o",
        str(gpkg),
        "--zero-shot",
        "--classes",
        "landcover",
        "--tiny",
        "--weights",
        "random",
        "--tile",
        "64",
        "--overlap",
        "0.75",
    ]
