"""Seamless stitching of per-tile class probabilities into a class raster, strip by strip.

Tiles are blended by a smooth, strictly positive weight window (weighted average, so tile borders leave no seam).
Probabilities are accumulated in a strip of ``tile`` rows × raster width; rows no later tile can touch are written
out and the strip moves down, so memory is K × tile × width × 4 bytes whatever the raster height.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

from .io import Scene
from .tiles import TileGrid
from .write import NODATA

Predict = Callable[[np.ndarray, np.ndarray], np.ndarray]
Progress = Callable[[str, int, int], None]


def weight_window(tile: int) -> np.ndarray:
    """Separable sine window, floored so every pixel of every tile counts (edge pixels have one tile only)."""
    w = np.sin(np.pi * (np.arange(tile) + 0.5) / tile)
    w = np.maximum(w, 1e-3)
    return np.outer(w, w).astype(np.float32)


def stitch(scene: Scene, predict: Predict, num_classes: int, grid: TileGrid, out_path: str | Path,
           batch: int = 4, progress: Progress | None = None, conf_path: str | Path | None = None,
           block: Window | None = None) -> None:
    """Segment ``scene`` tile by tile on its tile ``grid`` with ``predict`` and write a uint8 class GeoTIFF (nodata 255)
    to ``out_path`` (and the max probability as float32 to ``conf_path``). ``block`` restricts the output to a
    sub-window of the global tile grid (for distributed runs): its pixels equal those of the whole-raster run.

    The tiles ``predict`` sees together are fixed by the global grid (:meth:`TileGrid.batches`), whatever ``block``: a
    block predicts every batch that touches it whole. A tile's probabilities may depend on its batch-mates in the last
    bits (GEMM kernels choose their blocking by batch size on some CPUs), so this is what makes a blocked, resumed or
    distributed run equal the whole-raster run by construction, not by the luck of the CPU."""
    if (grid.width, grid.height) != (scene.width, scene.height):
        raise ValueError(f"the tile grid is for {grid.width}x{grid.height} px, the scene {scene.width}x{scene.height}")
    tile = grid.size
    area = block or Window(0, 0, scene.width, scene.height)
    a_c0, a_r0, a_w, a_h = int(area.col_off), int(area.row_off), int(area.width), int(area.height)
    chunks = [c for c in grid.batches(batch) if any(grid.touches(w, area) for w in c)]
    weight = weight_window(tile)
    profile = dict(driver="GTiff", width=a_w, height=a_h, count=1, dtype="uint8", nodata=NODATA, tiled=True,
                   blockxsize=256, blockysize=256, compress="deflate", crs=scene.crs,
                   transform=rasterio.windows.transform(area, scene.transform))
    acc = np.zeros((num_classes, tile, a_w), np.float32)
    wsum = np.zeros((tile, a_w), np.float32)
    valid_buf = np.zeros((tile, a_w), bool)
    top = a_r0  # raster row of acc[:, 0]
    done, total = 0, sum(map(len, chunks))
    conf_ds = rasterio.open(conf_path, "w", **{**profile, "dtype": "float32", "nodata": -1.0}) if conf_path else None
    with rasterio.open(out_path, "w", **profile) as dst:
        def flush(until: int) -> None:
            nonlocal top
            n = min(until, a_r0 + a_h) - top
            if n <= 0:
                return
            cls = np.argmax(acc[:, :n], axis=0).astype(np.uint8)
            covered = (wsum[:n] > 0) & valid_buf[:n]
            cls[~covered] = NODATA
            dst.write(cls[None], window=Window(0, top - a_r0, a_w, n))
            if conf_ds is not None:
                conf = np.where(covered, acc[:, :n].max(0) / np.maximum(wsum[:n], 1e-12), -1.0).astype(np.float32)
                conf_ds.write(conf[None], window=Window(0, top - a_r0, a_w, n))
            for buf in (acc[:, :], wsum, valid_buf):  # shift the strip up by n rows
                buf[..., : tile - n, :] = buf[..., n:, :]
                buf[..., tile - n :, :] = 0
            top += n

        for chunk in chunks:  # row-major: a chunk never starts above an earlier one
            flush(max(int(chunk[0].row_off), a_r0))
            reads = [scene.read(w) for w in chunk]
            keep = [j for j, (_, v) in enumerate(reads) if v.any()]  # all-nodata tiles are not predicted
            if keep:
                imgs = np.stack([_pad_reflect(reads[j][0], reads[j][1]) for j in keep])
                probs = predict(imgs, np.stack([reads[j][1] for j in keep]))
                for j, p in zip(keep, probs):  # tiles of the batch outside the block add nothing (clipped)
                    _accumulate(acc, wsum, valid_buf, chunk[j], reads[j][1], p, weight, top, a_c0, a_w)
            done += len(chunk)
            if progress:
                progress("segment", done, total)
        flush(a_r0 + a_h)
    if conf_ds is not None:
        conf_ds.close()


def _accumulate(acc: np.ndarray, wsum: np.ndarray, valid_buf: np.ndarray, win: Window, valid: np.ndarray,
                prob: np.ndarray, weight: np.ndarray, top: int, a_c0: int, a_w: int) -> None:
    """Add one tile's weighted probabilities to the strip, clipped to the strip/area."""
    t = weight.shape[0]
    r0, c0 = int(win.row_off) - top, int(win.col_off) - a_c0
    sr0, sc0 = max(0, -r0), max(0, -c0)
    er, ec = min(t, acc.shape[1] - r0), min(t, a_w - c0)
    if er <= sr0 or ec <= sc0:
        return
    dst = (slice(r0 + sr0, r0 + er), slice(c0 + sc0, c0 + ec))
    w = weight[sr0:er, sc0:ec]
    acc[(slice(None), *dst)] += prob[:, sr0:er, sc0:ec] * w
    wsum[dst] += w
    valid_buf[dst] |= valid[sr0:er, sc0:ec]


def _pad_reflect(img: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Fill the part of an edge tile outside the raster by mirroring, so the model does not see a black border."""
    rows, cols = np.where(valid.any(1))[0], np.where(valid.any(0))[0]
    if len(rows) == 0 or (len(rows) == img.shape[1] and len(cols) == img.shape[2]):
        return img
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    core = img[:, r0:r1, c0:c1]
    pad = ((0, 0), (r0, img.shape[1] - r1), (c0, img.shape[2] - c1))
    mode = "symmetric"
    return np.pad(core, pad, mode=mode)
