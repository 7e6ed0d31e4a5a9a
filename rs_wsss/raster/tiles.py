"""Tiling: the tile grid of a raster, windows of ``size`` px with ``overlap`` covering it whole, edge tiles included.

:class:`TileGrid` is the one description of a grid that stitching, blocks, Dask workers, tag grids and validation
sampling share; ``tile_stride`` is the one place its stride formula lives.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

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


@dataclass(frozen=True)
class TileGrid:
    """The tiles of a ``width`` × ``height`` raster: ``size`` px squares every :attr:`stride` px (``overlap`` is the
    share of a tile its neighbour covers), plus edge tiles aligned to the far edges. Row-major; ``len`` tiles."""

    width: int
    height: int
    size: int
    overlap: float = 0.0

    def __post_init__(self) -> None:
        tile_stride(self.size, self.overlap)  # refuses a bad size or overlap at once

    @property
    def stride(self) -> int:
        """Pixels between tile origins (:func:`tile_stride`)."""
        return tile_stride(self.size, self.overlap)

    @cached_property
    def windows(self) -> list[Window]:
        """Every tile's window (all ``size`` × ``size``; edge tiles reach past a raster smaller than a tile)."""
        t, s = self.size, self.stride
        return [Window(c, r, t, t) for r in offsets(self.height, t, s) for c in offsets(self.width, t, s)]

    def __len__(self) -> int:
        return len(self.windows)

    def __reduce__(self) -> tuple[type[TileGrid], tuple[int, int, int, float]]:
        # pickled (to Dask workers) as its four numbers, not with the cached windows
        return TileGrid, (self.width, self.height, self.size, self.overlap)

    def touches(self, win: Window, area: Window) -> bool:
        """Whether the tile ``win`` overlaps ``area`` (a block of the raster)."""
        c0, r0, w, h = int(area.col_off), int(area.row_off), int(area.width), int(area.height)
        return (win.col_off < c0 + w and win.col_off + self.size > c0
                and win.row_off < r0 + h and win.row_off + self.size > r0)

    def batches(self, batch: int) -> list[list[Window]]:
        """The tiles predicted together: each row of :attr:`windows` cut into runs of ``batch`` from its left edge.

        A function of the global grid alone, so every way of cutting the raster (blocks, resumed runs, Dask workers)
        predicts each tile beside the same neighbours as the whole-raster run."""
        if batch < 1:
            raise ValueError(f"batch must be ≥ 1, got {batch}")
        rows: dict[int, list[Window]] = {}
        for w in self.windows:
            rows.setdefault(int(w.row_off), []).append(w)
        return [r[i : i + batch] for _, r in sorted(rows.items()) for i in range(0, len(r), batch)]


def tile_windows(width: int, height: int, tile: int, overlap: float) -> list[Window]:
    """Row-major windows (all ``tile`` × ``tile``) every :func:`tile_stride` px, edge tiles included."""
    return TileGrid(width, height, tile, overlap).windows


def tile_batches(width: int, height: int, tile: int, overlap: float, batch: int) -> list[list[Window]]:
    """:meth:`TileGrid.batches` of the grid of a ``width`` × ``height`` raster."""
    return TileGrid(width, height, tile, overlap).batches(batch)
