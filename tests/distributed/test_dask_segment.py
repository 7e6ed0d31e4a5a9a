"""Segmentation on a real dask.distributed LocalCluster (2 worker processes, loopback) equals the single-process run."""

from __future__ import annotations

import os
import subprocess
import sys

import geopandas as gpd
import numpy as np
import pytest
import rasterio

pytest.importorskip("dask.distributed", reason="dask[distributed] is part of the test install")


def _segment(shared_data, out, *extra):
    env = dict(os.environ, OMP_NUM_THREADS="1")  # workers run one torch thread; GEMM sums depend on the count
    cmd = [sys.executable, "-m", "rs_wsss_cli.main", "segment",
           str(shared_data / "naip/m_4709963_se_14_1_20200831.tif"),
           "-o", str(out), "--zero-shot", "--classes", "landcover", "--tiny", "--tile", "128", "--overlap", "0.25",
           "--probs", "--set", "infer.batch=3", *extra]  # 3 tiles a forward: batches straddle the 2-tile blocks
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    return p


def test_dask_blocks_equal_the_single_process_result(shared_data, tmp_path):
    _segment(shared_data, tmp_path / "single.gpkg")
    _segment(shared_data, tmp_path / "dask.gpkg", "--dask", "local:2", "--block-size", "256")  # 4 × 3 blocks
    with rasterio.open(tmp_path / "single.tif") as a, rasterio.open(tmp_path / "dask.tif") as b:
        assert a.profile["transform"] == b.profile["transform"] and a.crs == b.crs
        assert np.array_equal(a.read(1), b.read(1))
        assert b.tags()["CLASS_NAMES"] == a.tags()["CLASS_NAMES"]
    with rasterio.open(tmp_path / "single_confidence.tif") as a, rasterio.open(tmp_path / "dask_confidence.tif") as b:
        assert np.allclose(a.read(1), b.read(1), atol=1e-6)
    ga, gb = gpd.read_file(tmp_path / "single.gpkg"), gpd.read_file(tmp_path / "dask.gpkg")
    assert len(ga) == len(gb)
    area_a, area_b = ga.groupby("class_name").area_m2.sum(), gb.groupby("class_name").area_m2.sum()
    assert area_a.index.equals(area_b.index) and np.allclose(area_a.values, area_b.values)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # block files and temporaries are gone


def test_block_windows_cover_the_raster_on_the_tile_grid():
    from rs_wsss.raster.blocks import block_windows

    blocks = block_windows(934, 723, 256, 96)
    cover = np.zeros((723, 934), int)
    for w in blocks:
        assert w.col_off % 96 == 0 and w.row_off % 96 == 0
        cover[int(w.row_off) : int(w.row_off + w.height), int(w.col_off) : int(w.col_off + w.width)] += 1
    assert (cover == 1).all() and len(blocks) >= 4
