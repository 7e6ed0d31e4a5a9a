"""Block stitching: a raster cut into large blocks of the global tile grid, each stitched on its own, then assembled.

Tiles overlapping a block border are predicted by both neighbours, so the weighted blend inside each block (and hence
every output pixel) equals the whole-raster run. Blocks bound memory on wide rasters (the strip buffer spans a block,
not the raster) and are the unit of work of distributed runs. Who stitches a block is a :class:`BlockExecutor`:
:class:`LocalBlocks` here, ``rs_wsss.distributed.dask.DaskBlocks`` on a cluster. The assembly (a VRT of the block
files copied into one tiled GeoTIFF) is written once, here.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import rasterio.shutil
from rasterio.windows import Window

from ..atomic import pid_alive, remove_quietly, temp_path
from ..errors import RsWsssError
from .io import Scene
from .stitch import Predict, stitch
from .tiles import TileGrid
from .write import NODATA

Progress = Callable[[str, int, int], None]
log = logging.getLogger("rs_wsss")


def block_windows(width: int, height: int, block: int, stride: int) -> list[Window]:
    """Row-major blocks of about ``block`` px (rounded down to a multiple of the tile ``stride``, in px) that
    partition a ``width`` × ``height`` raster; every block starts on the tile grid."""
    if block < 1 or stride < 1:
        raise ValueError(f"block and stride must be ≥ 1, got {block}, {stride}")
    b = max(stride, block // stride * stride)
    return [Window(c, r, min(b, width - c), min(b, height - r))
            for r in range(0, height, b) for c in range(0, width, b)]


@dataclass(frozen=True)
class BlockJob:
    """One block to stitch: its window in the scene and the GeoTIFF(s) to write (class ids, optional confidence)."""

    window: Window
    out: Path
    conf: Path | None

    @property
    def bounds(self) -> tuple[int, int, int, int]:
        """(col_off, row_off, width, height) in px, as plain ints (picklable, JSON-able)."""
        w = self.window
        return int(w.col_off), int(w.row_off), int(w.width), int(w.height)


class BlockExecutor(Protocol):
    """Stitches every job's block of ``scene`` on the tile ``grid`` (``batch`` tiles per forward, batches cut as
    :meth:`~rs_wsss.raster.tiles.TileGrid.batches` does) into its files; calls
    ``progress("segment", done, total)``."""

    def __call__(self, scene: Scene, jobs: Sequence[BlockJob], *, grid: TileGrid, batch: int,
                 progress: Progress | None) -> None:
        """Stitch each job's block into its files (see the class docstring)."""
        ...


@dataclass
class LocalBlocks:
    """Stitch the blocks one after another in this process."""

    predict: Predict
    num_classes: int

    def __call__(self, scene: Scene, jobs: Sequence[BlockJob], *, grid: TileGrid, batch: int,
                 progress: Progress | None) -> None:
        """Stitch the jobs in order, reporting each finished block."""
        for n, job in enumerate(jobs, start=1):
            stitch_block(scene, self.predict, self.num_classes, job, grid=grid, batch=batch)
            if progress:
                progress("segment", n, len(jobs))


def stitch_block(scene: Scene, predict: Predict, num_classes: int, job: BlockJob, *, grid: TileGrid,
                 batch: int) -> None:
    """Stitch one block of the global tile grid into ``job.out`` (+ ``job.conf``), the way every executor does.

    The files are written under temporary names and renamed when whole, so a block file that exists is complete
    (what ``--resume`` relies on) and a retried task (a lost Dask worker) is harmless."""
    out, conf = temp_path(job.out), temp_path(job.conf) if job.conf else None
    try:
        stitch(scene, predict, num_classes, grid, out, batch, None, conf, block=job.window)
        if conf is not None and job.conf is not None:
            os.replace(conf, job.conf)
        os.replace(out, job.out)
    finally:
        remove_quietly(out, conf)


def open_workspace(folder: Path, signature: dict[str, Any], resume: bool) -> Path:
    """The folder of one output's block files, kept across runs so ``--resume`` can continue a killed run.

    ``folder/run.json`` records the writer's PID and what the blocks depend on (scene identity, model, tile grid,
    bands, normalisation, inference settings). Without ``resume`` a folder a dead run left is removed; with it, the
    blocks are reused when the signature matches.

    Raises:
        RsWsssError: another live process writes this output; ``resume`` with blocks made with other settings.
    """
    record = folder / "run.json"
    if folder.exists():
        try:
            old = json.loads(record.read_text())
        except (OSError, ValueError):
            old = {}
        pid = old.get("pid") if isinstance(old, dict) else None
        if isinstance(pid, int) and pid != os.getpid() and pid_alive(pid):
            raise RsWsssError(f"another rs-wsss run (PID {pid}) is writing this output ({folder}); wait for it or "
                              "choose another -o")
        if resume and isinstance(old, dict) and old.get("signature") != signature:
            raise RsWsssError(f"--resume: the unfinished run in {folder} used other settings (scene, model, tile, "
                              "bands or inference options); run the same command, or drop --resume to start afresh")
        if not resume:
            shutil.rmtree(folder)
    folder.mkdir(exist_ok=True)
    tmp = temp_path(record)
    tmp.write_text(json.dumps({"pid": os.getpid(), "signature": signature}))
    os.replace(tmp, record)
    return folder


def discard_workspace(folder: Path) -> None:
    """Remove a block folder that a run no longer alive left (a run that will not use blocks does this)."""
    if not folder.is_dir():
        return
    try:
        pid = json.loads((folder / "run.json").read_text()).get("pid")
    except (OSError, ValueError, AttributeError):
        pid = None
    if not (isinstance(pid, int) and pid != os.getpid() and pid_alive(pid)):
        shutil.rmtree(folder, ignore_errors=True)


def stitch_blocks(scene: Scene, executor: BlockExecutor, *, grid: TileGrid, batch: int, block: int, raw: Path,
                  conf: Path | None = None, progress: Progress | None = None, work: Path | None = None) -> None:
    """Stitch ``scene`` block by block with ``executor`` into ``raw`` (uint8 class ids) and ``conf`` (float32).

    Args:
        scene: the open scene.
        executor: who stitches each block (:class:`LocalBlocks`, a Dask executor, …).
        grid: the scene's tile grid (size and overlap).
        batch: tiles per forward; with the grid it fixes which tiles are predicted together, the same in every
            block, worker and resumed run as in the whole-raster run.
        block: block side in px (rounded down to a multiple of the tile stride).
        raw: the class GeoTIFF to write.
        conf: the confidence GeoTIFF to write, or None.
        progress: optional ``progress(stage, done, total)``.
        work: the block folder from :func:`open_workspace` (blocks already in it are not stitched again; the caller
            removes it); None: a private temporary folder, removed here.
    """
    windows = block_windows(scene.width, scene.height, block, grid.stride)
    private = work is None
    folder = Path(tempfile.mkdtemp(prefix=f".{raw.name}.{os.getpid()}.blocks",
                                   dir=raw.parent)) if work is None else work
    try:
        jobs = [BlockJob(w, folder / f"block_{int(w.col_off)}_{int(w.row_off)}.tif",
                         folder / f"block_{int(w.col_off)}_{int(w.row_off)}_conf.tif" if conf is not None else None)
                for w in windows]
        todo = [j for j in jobs if not (j.out.exists() and (j.conf is None or j.conf.exists()))]
        skipped = len(jobs) - len(todo)
        if skipped:
            log.info("resuming: %d of %d blocks already written", skipped, len(jobs))
            if progress:
                progress("segment", skipped, len(jobs))
        counted = (lambda stage, n, total: progress(stage, n + skipped,
                                                    len(jobs))) if progress and skipped else progress
        executor(scene, todo, grid=grid, batch=batch, progress=counted)
        assemble_blocks(jobs, scene, raw, conf, folder)
    finally:
        if private:
            shutil.rmtree(folder, ignore_errors=True)


def assemble_blocks(jobs: Sequence[BlockJob], scene: Scene, raw: Path, conf: Path | None, work: Path) -> None:
    """Block GeoTIFFs → one tiled GeoTIFF of class ids and, if asked, one confidence GeoTIFF, through a VRT."""
    opts = dict(driver="GTiff", tiled=True, blockxsize=256, blockysize=256, compress="deflate")
    rasterio.shutil.copy(_vrt([(j.out, j.bounds) for j in jobs], scene, "uint8", NODATA, work / "c.vrt"), raw, **opts)
    if conf is not None:
        parts = [(j.conf, j.bounds) for j in jobs if j.conf is not None]
        rasterio.shutil.copy(_vrt(parts, scene, "float32", -1.0, work / "p.vrt"), conf, **opts)


def _vrt(blocks: list[tuple[Path, tuple[int, int, int, int]]], scene: Scene, dtype: str, nodata: float,
         path: Path) -> Path:
    t = scene.transform
    vrt_type = {"uint8": "Byte", "float32": "Float32"}[dtype]
    sources = "".join(
        f'<SimpleSource><SourceFilename relativeToVRT="0">{p}</SourceFilename><SourceBand>1</SourceBand>'
        f'<SrcRect xOff="0" yOff="0" xSize="{b[2]}" ySize="{b[3]}"/>'
        f'<DstRect xOff="{b[0]}" yOff="{b[1]}" xSize="{b[2]}" ySize="{b[3]}"/></SimpleSource>' for p, b in blocks)
    srs = f"<SRS>{scene.crs.to_wkt()}</SRS>" if scene.crs else ""
    path.write_text(f'<VRTDataset rasterXSize="{scene.width}" rasterYSize="{scene.height}">{srs}'
                    f"<GeoTransform>{t.c}, {t.a}, {t.b}, {t.f}, {t.d}, {t.e}</GeoTransform>"
                    f'<VRTRasterBand dataType="{vrt_type}" band="1"><NoDataValue>{nodata}</NoDataValue>{sources}'
                    f"</VRTRasterBand></VRTDataset>")
    return path
