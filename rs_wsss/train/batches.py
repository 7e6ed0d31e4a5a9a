"""Training batches as tensors: fresh crops every step, or views whose frozen features are cached on disk.

A batch is a :class:`Batch`; its ``feats`` field (not its length) says whether the backbones still have to run.
Both sources are functions of the step and return this rank's slice of the step's global batch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import RsWsssError
from ..priors.specs import crop_size
from .cache import FeatureCache, cache_key, file_identity
from .ddp import rank_slice
from .sampler import TileSampler

log = logging.getLogger("rs_wsss")
Progress = Callable[[str, int, int], None]


@dataclass
class Batch:
    """images (B, 3, H, W) in [0, 1], tags (B, C) multi-hot, and the cached frozen features (None: compute them)."""

    images: torch.Tensor
    tags: torch.Tensor
    feats: dict[str, torch.Tensor] | None = None

    def to(self, device: str | torch.device) -> Batch:
        """The same batch on ``device``."""
        feats = None if self.feats is None else {k: v.to(device) for k, v in self.feats.items()}
        return Batch(self.images.to(device), self.tags.to(device), feats)

    def shard(self, global_batch: int) -> Batch:
        """This rank's slice of a global batch (see :func:`rs_wsss.train.ddp.rank_slice`)."""
        sl = rank_slice(global_batch)
        if sl == slice(0, global_batch):
            return self
        feats = None if self.feats is None else {k: v[sl] for k, v in self.feats.items()}
        return Batch(self.images[sl], self.tags[sl], feats)


class FreshBatches:
    """``batches(step) → Batch``: fresh random crops every step (the paper's setting)."""

    def __init__(self, sampler: TileSampler) -> None:
        self.sampler = sampler

    def __call__(self, step: int) -> Batch:
        """The batch of ``step``: crops drawn by the sampler, this rank's shard."""
        imgs, tags = self.sampler.draw(step)
        return Batch(torch.from_numpy(imgs), torch.from_numpy(tags)).shard(self.sampler.cfg.train.batch)


class CachedBatches:
    """``batches(step) → Batch`` from a fixed set of views per tile (``train.cache_views``) whose frozen features
    are computed once (:meth:`fill`) and read from ``cache`` afterwards."""

    def __init__(self, sampler: TileSampler, cache: FeatureCache) -> None:
        self.sampler, self.cache = sampler, cache
        self.views: list[tuple[int, int, str]] = []

    def view_key(self, i: int, v: int, backbones: list[str]) -> str:
        """The cache key of view ``v`` of tile ``i``: everything its features depend on, backbones included."""
        s = self.sampler
        r, p, cfg = s.rows[i], s.cfg.priors, s.cfg
        scene = s.scenes[r.image]
        win = [int(r.window.col_off), int(r.window.row_off), int(r.window.width), int(r.window.height)]
        rescale = [] if list(cfg.train.rescale) == [1.0, 1.0] else [list(cfg.train.rescale)]  # keys unchanged when off
        return cache_key(file_identity(r.image), win, v, cfg.train.seed, s.crop, cfg.train.hflip, scene.bands,
                         scene.norm.to_dict(), backbones, crop_size(p, "clip"), crop_size(p, "dino"), cfg.raster.gsd,
                         *rescale)

    def fill(self, model: Any, progress: Progress | None = None) -> list[tuple[int, int, str]]:
        """Compute the frozen features of every view once (misses only); the usable (tile, view, key), sorted.

        Raises:
            RsWsssError: every view is mostly nodata.
        """
        s = self.sampler
        ids = [m.identifier for m in (model.clip, model.dino) if m is not None]
        views = [(i, v, self.view_key(i, v, ids)) for i in range(len(s.rows)) for v in range(s.cfg.train.cache_views)]
        todo = [(i, v, k) for i, v, k in views if not self.cache.has(k)]
        usable = [x for x in views if x not in todo]
        step = s.cfg.train.batch
        device = model.prototypes.device
        for n in range(0, len(todo), step):
            chunk = [(i, v, k, s.view(i, v)) for i, v, k in todo[n : n + step]]
            kept = [(i, v, k, img) for i, v, k, img in chunk if img is not None]  # mostly-nodata views are dropped
            if kept:
                imgs = torch.from_numpy(np.stack([c[3] for c in kept])).to(device)
                feats = model.frozen_features(imgs)
                for j, (i, v, k, _) in enumerate(kept):
                    self.cache.put(k, {"image": imgs[j], **{name: t[j] for name, t in feats.items()}})
                    usable.append((i, v, k))
            if progress:
                progress("cache", min(n + step, len(todo)), len(todo))
        if not usable:
            raise RsWsssError("no usable training view: every tagged tile is mostly nodata")
        self.views = sorted(usable)
        return self.views

    def __call__(self, step: int) -> Batch:
        """The batch of ``step``: cached views picked by the sampler, with their cached prior features.

        Raises:
            RuntimeError: :meth:`fill` has not run.
        """
        if not self.views:
            raise RuntimeError("CachedBatches.fill must run before the first batch")
        picks = [self.views[j] for j in self.sampler.pick(step, len(self.views))]
        items = []
        for _, _, k in picks:
            item = self.cache.get(k)
            if item is None:
                raise RsWsssError(f"feature cache entry {k} disappeared during training; rerun to refill the cache")
            items.append(item)
        feats = {name: torch.stack([it[name] for it in items]) for name in items[0] if name != "image"}
        images = torch.stack([it["image"] for it in items])
        tags = torch.from_numpy(np.stack([self.sampler.tags[i] for i, _, _ in picks]))
        return Batch(images, tags, feats).shard(self.sampler.cfg.train.batch)
