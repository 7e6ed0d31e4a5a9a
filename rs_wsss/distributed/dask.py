"""Segmentation on a Dask cluster: each scene is cut into large blocks of the global tile grid; a worker loads the
priors and checkpoint once (a per-process cache keyed by the model spec), stitches its blocks exactly as the
single-process run would (tiles overlapping a block border are predicted by both neighbours, so the weighted blend
inside each block is unchanged), and writes them; the driver assembles a VRT of the blocks into the class COG and
vectorises the whole raster, so polygons are merged across block borders.

Workers need the same rs-wsss install, weights and access to the input and output paths (a shared file system).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import rasterio
import rasterio.shutil
from rasterio.windows import Window

from ..errors import RsWsssError

log = logging.getLogger("rs_wsss")
_WORKER_SEGMENTERS: dict[str, Any] = {}


def make_client(address: str):
    """``local:N`` → a LocalCluster of N worker processes on loopback; anything else → a scheduler address."""
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise RsWsssError("--dask needs dask.distributed: pip install 'dask[distributed]'") from None
    if address.startswith("local:"):
        try:
            n = int(address.split(":", 1)[1])
        except ValueError:
            raise RsWsssError(f"--dask {address}: expected local:N, e.g. local:2") from None
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                               dashboard_address=None, silence_logs=logging.ERROR)
        return Client(cluster)
    try:
        return Client(address, timeout="20s")
    except OSError as exc:
        raise RsWsssError(f"cannot reach the Dask scheduler at {address}: {exc}") from None


def block_windows(width: int, height: int, block: int, stride: int) -> list[Window]:
    """Blocks of about ``block`` px (a multiple of the tile stride) covering the raster."""
    b = max(stride, block // stride * stride)
    return [Window(c, r, min(b, width - c), min(b, height - r)) for r in range(0, height, b) for c in range(0, width, b)]


def _segmenter(spec: dict):
    """The worker's model, built once per process and reused by every block it segments."""
    key = json.dumps(spec, sort_keys=True)
    if key not in _WORKER_SEGMENTERS:
        from ..segment import load_segmenter

        _WORKER_SEGMENTERS[key] = load_segmenter(**spec)
    return _WORKER_SEGMENTERS[key]


def segment_block(spec: dict, scene_path: str, norm: dict, block: tuple[int, int, int, int], tile: int, overlap: float,
                  out_dir: str, with_conf: bool) -> tuple[str, str | None]:
    """One block → ``out_dir/block_<col>_<row>.tif`` (+ confidence). Idempotent, so a retried task is harmless."""
    from ..raster.io import NormStats, open_scene
    from ..raster.stitch import stitch

    seg = _segmenter(spec)
    cfg = seg.cfg
    win = Window(*block)
    name = f"block_{block[0]}_{block[1]}"
    out, conf = Path(out_dir) / f"{name}.tif", (Path(out_dir) / f"{name}_conf.tif" if with_conf else None)
    tmp = Path(out_dir) / f".{name}.{os.getpid()}.tif"
    tmp_conf = Path(out_dir) / f".{name}.{os.getpid()}_conf.tif" if with_conf else None
    with open_scene(scene_path, cfg.raster.bands, NormStats.from_dict(norm), cfg.raster.gsd, tuple(cfg.raster.percentile)) as sc:
        stitch(sc, seg.predict, seg.class_set.num_classes + 1, tile, overlap, tmp, cfg.infer.batch, None, tmp_conf, block=win)
    os.replace(tmp, out)  # a worker lost mid-block leaves only a temp file; the retry rewrites the block
    if tmp_conf:
        os.replace(tmp_conf, conf)
    return str(out), (str(conf) if conf else None)


def _vrt(blocks: list[tuple[str, tuple]], scene, dtype: str, nodata: float, path: Path) -> Path:
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


def assemble_blocks(results: list[tuple[str, str | None]], blocks: list[tuple], scene, raw: Path, conf: Path | None,
                    work: Path) -> None:
    """Block GeoTIFFs → one tiled GeoTIFF (class ids) and, if asked, one confidence GeoTIFF, through a VRT."""
    opts = dict(driver="GTiff", tiled=True, blockxsize=256, blockysize=256, compress="deflate")
    rasterio.shutil.copy(_vrt([(r[0], b) for r, b in zip(results, blocks)], scene, "uint8", 255, work / "c.vrt"), raw, **opts)
    if conf is not None:
        rasterio.shutil.copy(_vrt([(r[1], b) for r, b in zip(results, blocks)], scene, "float32", -1.0, work / "p.vrt"), conf, **opts)


def _blocks_of(scene, tile: int, overlap: float, block: int) -> list[tuple[int, int, int, int]]:
    stride = max(1, round(tile * (1 - overlap)))
    return [(int(w.col_off), int(w.row_off), int(w.width), int(w.height))
            for w in block_windows(scene.width, scene.height, block, stride)]


def local_block_runner(seg, tile: int, overlap: float, block: int, progress=None):
    """In-process block stitching for rasters wider than ``block``: the strip buffer then spans a block, not the
    raster, so memory no longer grows with width (tiles on block borders are predicted twice: ≈ tile/block extra)."""
    from ..raster.stitch import stitch

    def run(scene, raw: Path, conf: Path | None) -> None:
        blocks = _blocks_of(scene, tile, overlap, block)
        work = Path(tempfile.mkdtemp(prefix=".rs-wsss-blocks-", dir=raw.parent))
        try:
            results = []
            for n, b in enumerate(blocks, start=1):
                out, c = work / f"b{n}.tif", (work / f"b{n}_conf.tif" if conf is not None else None)
                stitch(scene, seg.predict, seg.class_set.num_classes + 1, tile, overlap, out, seg.cfg.infer.batch, None, c,
                       block=Window(*b))
                results.append((str(out), str(c) if c else None))
                if progress:
                    progress("segment", n, len(blocks))
            assemble_blocks(results, blocks, scene, raw, conf, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    return run


def dask_runner(client, spec: dict, tile: int, overlap: float, block: int, progress=None):
    """A ``runner`` for :func:`rs_wsss.segment.segment_scene` that farms the scene's blocks out to ``client``."""
    from dask.distributed import as_completed

    def run(scene, raw: Path, conf: Path | None) -> None:
        blocks = _blocks_of(scene, tile, overlap, block)
        work = Path(tempfile.mkdtemp(prefix=".rs-wsss-blocks-", dir=raw.parent))
        try:
            futures = [client.submit(segment_block, spec, scene.path, scene.norm.to_dict(), b, tile, overlap, str(work),
                                     conf is not None, key=f"rs-wsss-block-{os.getpid()}-{Path(scene.path).stem}-{b[0]}-{b[1]}",
                                     retries=2) for b in blocks]
            done = {}
            for n, fut in enumerate(as_completed(futures), start=1):
                done[fut.key] = fut.result()
                if progress:
                    progress("segment", n, len(futures))
            assemble_blocks([done[f.key] for f in futures], blocks, scene, raw, conf, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    return run
