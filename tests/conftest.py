"""Shared fixtures: the real data pack lives in ../shared/data (never copied into the repository)."""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("RS_WSSS_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``; its absence is a failure, not a skip (CI has it)."""
    assert SHARED_DATA.is_dir(), f"real data pack missing: {SHARED_DATA} (set RS_WSSS_SHARED_DATA)"
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _offline_hub(monkeypatch):
    # Tests never reach a model hub: weights are random (explicitly) or written by the test itself.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


def run_main_in_process(argv: list[str], capfd) -> tuple[int, str]:
    """``rs-wsss ARGV`` through the real entry point in this process; logging/signal state restored afterwards."""
    from rs_wsss_cli.main import main

    logger, root = logging.getLogger("rs_wsss"), logging.getLogger()
    saved = (logger.handlers[:], logger.level, logger.propagate, root.handlers[:], root.level,
             signal.getsignal(signal.SIGTERM))
    capfd.readouterr()
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        logger.handlers[:], logger.level, logger.propagate = saved[0], saved[1], saved[2]
        root.handlers[:], root.level = saved[3], saved[4]
        signal.signal(signal.SIGTERM, saved[5])
    return code, capfd.readouterr().err


def spacenet_class_raster(shared_data: Path, folder: Path, class_set) -> Path:
    """A class COG on SpaceNet's grid: building (id 1) where the real footprint mask says so, vegetation (id 3)
    elsewhere, written by rs-wsss's own finaliser (colour table, class names, categories). Returns its path."""
    import numpy as np
    import rasterio

    from rs_wsss.raster.write import finalize_class_raster

    with rasterio.open(shared_data / "spacenet/sample_fp_mask_from_geojson.tif") as m, \
            rasterio.open(shared_data / "spacenet/sample_geotiff.tif") as src:
        arr = np.where(m.read(1) > 0, 1, 3).astype(np.uint8)
        profile = dict(driver="GTiff", width=src.width, height=src.height, count=1, dtype="uint8", nodata=255,
                       crs=src.crs, transform=src.transform, tiled=True)
    with rasterio.open(folder / "raw.tif", "w", **profile) as dst:
        dst.write(arr, 1)
    finalize_class_raster(folder / "raw.tif", folder / "c.tif", class_set.names, class_set.colors)
    return folder / "c.tif"
