"""Segmentation on a Dask cluster: the scene's blocks (:mod:`rs_wsss.raster.blocks`) become tasks. A worker loads the
priors and checkpoint once (a per-process cache keyed by the model spec), stitches its blocks exactly as the
single-process run would, and writes them; the driver assembles them (``stitch_blocks``) and vectorises the whole
raster, so polygons are merged across block borders.

Workers need the same rs-wsss install, weights and access to the input and output paths (a shared file system).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import RsWsssError
from ..raster.blocks import BlockJob, Progress
from ..raster.io import Scene
from ..raster.tiles import TileGrid

log = logging.getLogger("rs_wsss")
_WORKER_SEGMENTERS: dict[str, Any] = {}


def make_client(address: str) -> Any:
    """``local:N`` → a LocalCluster of N worker processes on loopback; anything else → a scheduler address.

    Raises:
        RsWsssError: dask.distributed is not installed, ``local:N`` is malformed or the scheduler is unreachable.
    """
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise RsWsssError("--dask needs dask.distributed: pip install 'dask[distributed]'") from None
    if address.startswith("local:"):
        try:
            n = int(address.split(":", 1)[1])
        except ValueError:
            raise RsWsssError(f"--dask {address}: expected local:N, e.g. local:2") from None
        if n < 1:  # a cluster of no workers accepts the blocks and waits for ever
            raise RsWsssError(f"--dask {address}: give at least one worker, e.g. local:2")
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                               dashboard_address=None, silence_logs=logging.ERROR)
        return Client(cluster)
    try:
        return Client(address, timeout="20s")
    except OSError as exc:
        raise RsWsssError(f"cannot reach the Dask scheduler at {address}: {exc}") from None


def _segmenter(spec: dict[str, Any]) -> Any:
    """The worker's model, built once per process (through :mod:`rs_wsss.build`, as the driver's) and reused by every
    block it segments."""
    key = json.dumps(spec, sort_keys=True)
    if key not in _WORKER_SEGMENTERS:
        from ..build import ModelSpec
        from ..segment import load_segmenter

        _WORKER_SEGMENTERS[key] = load_segmenter(ModelSpec.from_dict(spec["spec"]), spec["zero_shot"],
                                                 spec["device"])
    return _WORKER_SEGMENTERS[key]


def segment_block(spec: dict[str, Any], scene_path: str, norm: dict[str, Any], job: BlockJob, grid: TileGrid,
                  batch: int, extent: dict[str, Any] | None = None) -> BlockJob:
    """One block of the scene → its files (:func:`rs_wsss.raster.blocks.stitch_block`); a retried task is harmless.

    ``batch`` is the driver's, not this worker's automatic choice: with the tile grid it fixes which tiles are
    predicted together, so the block equals the whole-raster run."""
    from ..raster.blocks import stitch_block
    from ..raster.env import raster_env
    from ..raster.extent import Extent
    from ..raster.io import NormStats, open_scene

    seg = _segmenter(spec)
    cfg = seg.cfg
    with raster_env(), open_scene(scene_path, cfg.raster, NormStats.from_dict(norm),
                                  Extent(**extent) if extent else None) as sc:
        stitch_block(sc, seg.predict, seg.class_set.num_classes + 1, job, grid=grid, batch=batch)
    return job


@dataclass
class DaskBlocks:
    """A :class:`~rs_wsss.raster.blocks.BlockExecutor` that farms blocks out to a ``dask.distributed`` client.

    ``spec`` is ``{"spec": ModelSpec.to_dict(), "zero_shot": bool, "device": str}``, the arguments of
    :func:`rs_wsss.segment.load_segmenter`, so each worker builds the same model.
    """

    client: Any
    spec: dict[str, Any]

    def __call__(self, scene: Scene, jobs: Sequence[BlockJob], *, grid: TileGrid, batch: int,
                 progress: Progress | None) -> None:
        """One task per block, each reported as it finishes; a worker's error is re-raised here (after 2 retries)."""
        from dask.distributed import as_completed

        stem = Path(scene.path).stem
        futures = [self.client.submit(segment_block, self.spec, str(scene.path), scene.norm.to_dict(), j, grid,
                                      batch, dataclasses.asdict(scene.extent),
                                      key=f"rs-wsss-block-{os.getpid()}-{stem}-{j.bounds[0]}-{j.bounds[1]}", retries=2)
                   for j in jobs]
        for n, fut in enumerate(as_completed(futures), start=1):
            fut.result()  # re-raises a worker's error here
            if progress:
                progress("segment", n, len(futures))
