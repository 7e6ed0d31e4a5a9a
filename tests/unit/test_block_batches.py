"""Blocked, resumed and reordered stitching equal the whole-raster run by construction, even with a predictor whose
output depends on the other tiles of its batch (as GEMM rounding does on CPUs whose kernels block by batch size).

The stand-in below is batch-dependent on purpose and strongly (it flips classes), so a stitcher that lets a block
cut the global batches differently fails here on any CPU, not only on the one whose rounding shows it."""

from __future__ import annotations

import random

import numpy as np
import pytest
import rasterio

from rs_wsss.raster.blocks import LocalBlocks, block_windows, stitch_blocks
from rs_wsss.raster.io import open_scene
from rs_wsss.raster.stitch import stitch
from rs_wsss.raster.tiles import TileGrid, tile_batches, tile_windows

K, TILE, OVERLAP, BATCH = 4, 64, 0.25, 4
SCENE = "spacenet/sample_geotiff.tif"  # 900 × 900: 19 × 19 tiles of 64 px at stride 48


def batch_dependent(imgs: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Classes by brightness bands whose edges move with the batch's size and mean brightness."""
    shift = 0.05 * len(imgs) + 0.5 * float(imgs.mean())
    centres = np.linspace(0, 1, K, dtype=np.float32)[None, :, None, None]
    logits = -(((imgs.mean(1, keepdims=True) - shift) - centres) ** 2) * 40
    e = np.exp(logits - logits.max(1, keepdims=True))
    return (e / e.sum(1, keepdims=True)).astype(np.float32)


class Reordered(LocalBlocks):
    """Stitch the jobs in a shuffled order, and stop (as a kill would) after ``stop_after`` blocks."""

    def __init__(self, seed: int | None, stop_after: int | None = None):
        super().__init__(batch_dependent, K)
        self.seed, self.stop_after = seed, stop_after

    def __call__(self, scene, jobs, *, grid, batch, progress):
        jobs = list(jobs)
        if self.seed is not None:
            random.Random(self.seed).shuffle(jobs)
        if self.stop_after is not None:
            super().__call__(scene, jobs[: self.stop_after], grid=grid, batch=batch, progress=progress)
            raise KeyboardInterrupt  # the run dies here; its finished block files stay
        super().__call__(scene, jobs, grid=grid, batch=batch, progress=progress)


@pytest.fixture(scope="module")
def whole(shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("whole") / "whole.tif"
    with open_scene(shared_data / SCENE) as sc:
        stitch(sc, batch_dependent, K, TileGrid(sc.width, sc.height, TILE, OVERLAP), out, BATCH)
    with rasterio.open(out) as ds:
        return ds.read(1)


def test_the_stand_in_really_depends_on_its_batch(shared_data):
    with open_scene(shared_data / SCENE) as sc:
        chunk = tile_batches(sc.width, sc.height, TILE, OVERLAP, BATCH)[1]
        imgs = np.stack([sc.read(w)[0] for w in chunk])
    valid = np.ones((len(chunk), TILE, TILE), bool)
    together, alone = batch_dependent(imgs, valid)[0], batch_dependent(imgs[:1], valid[:1])[0]
    assert (together.argmax(0) != alone.argmax(0)).mean() > 0.05


def test_tile_batches_cut_each_grid_row_from_its_left_edge():
    batches = tile_batches(900, 900, TILE, OVERLAP, BATCH)
    flat = [w for b in batches for w in b]
    assert flat == tile_windows(900, 900, TILE, OVERLAP)  # every tile once, in row-major order
    assert all(len({int(w.row_off) for w in b}) == 1 for b in batches)  # a batch never spans two rows
    assert [len(b) for b in batches[:5]] == [4, 4, 4, 4, 3]  # 19 tiles a row: 4 + 4 + 4 + 4 + 3
    with pytest.raises(ValueError):
        tile_batches(900, 900, TILE, OVERLAP, 0)


@pytest.mark.parametrize("block, seed, stop_after", [(256, None, 4), (256, 7, 9), (400, 3, 1), (512, 11, 3)])
def test_blocks_killed_then_resumed_in_any_order_equal_the_whole_raster(shared_data, tmp_path, whole, block, seed,
                                                                        stop_after):
    raw, work = tmp_path / "blocks.tif", tmp_path / "work"
    work.mkdir()
    n_blocks = len(block_windows(900, 900, block, 48))
    assert 1 <= stop_after < n_blocks
    with open_scene(shared_data / SCENE) as sc:
        with pytest.raises(KeyboardInterrupt):  # the first run dies after some blocks, in a shuffled order
            stitch_blocks(sc, Reordered(seed, stop_after), grid=TileGrid(900, 900, TILE, OVERLAP), batch=BATCH,
                          block=block, raw=raw, work=work)
        assert len(list(work.glob("block_*.tif"))) == stop_after
        # the resumed run stitches the rest in another order and reuses what the first one wrote
        stitch_blocks(sc, Reordered(None if seed is None else seed + 1), grid=TileGrid(900, 900, TILE, OVERLAP),
                      batch=BATCH, block=block, raw=raw, work=work)
    with rasterio.open(raw) as ds:
        got = ds.read(1)
    assert got.shape == whole.shape
    assert np.array_equal(got, whole), f"{(got != whole).sum()} pixels differ"
