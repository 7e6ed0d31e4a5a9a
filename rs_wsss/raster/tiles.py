"""Tiling: windows of ``tile`` px with ``overlap`` covering the whole raster, edge tiles included."""

from __future__ import annotations

from rasterio.windows import Window


def offsets(length: int, tile: int, stride: int) -> list[int]:
    """Start offsets along one axis: every ``stride``, plus a last tile aligned to the far edge, so nothing is
    dropped; a raster shorter than a tile gets one tile at 0 (padded past the edge when read)."""
    if length <= tile:
        return [0]
    offs = list(range(0, length - tile + 1, stride))
    if offs[-1] + tile < length:
        offs.append(length - tile)
    return offs


def tile_stride(tile: int, overlap: float) -> int:
    """Pixels between tile origins, round(tile · (1 − overlap)) ≥ 1: the one place this formula lives."""
    if tile <= 0 or not 0 <= overlap < 1:
        raise ValueError(f"tile must be > 0 and overlap in [0, 1), got {tile}, {overlap}")
    return max(1, round(tile * (1 - overlap)))


def tile_windows(width: int, height: int, tile: int, overlap: float) -> list[Window]:
    """Row-major windows (all ``tile`` × ``tile``) every :func:`tile_stride` px, edge tiles included."""
    stride = tile_stride(tile, overlap)
    return [Window(c, r, tile, tile) for r in offsets(height, tile, stride) for c in offsets(width, tile, stride)]


def tile_batches(width: int, height: int, tile: int, overlap: float, batch: int) -> list[list[Window]]:
    """The tiles predicted together: each row of :func:`tile_windows` cut into runs of ``batch`` from its left edge.

    A function of the global grid alone, so every way of cutting the raster (blocks, resumed runs, Dask workers)
    predicts each tile beside the same neighbours as the whole-raster run."""
    if batch < 1:
        raise ValueError(f"batch must be ≥ 1, got {batch}")
    rows: dict[int, list[Window]] = {}
    for w in tile_windows(width, height, tile, overlap):
        rows.setdefault(int(w.row_off), []).append(w)
    return [r[i : i + batch] for _, r in sorted(rows.items()) for i in range(0, len(r), batch)]
