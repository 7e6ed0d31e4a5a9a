"""A training run: tag rows + scenes → deterministic batches → the engine's training loop.

Batches are a pure function of the step (seeded by (seed, step)), so ``--resume`` after an interruption sees exactly
the batches the uninterrupted run would have seen.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .classes import ClassSet
from .config import Config
from .errors import RsWsssError

log = logging.getLogger("rs_wsss")


class TileSampler:
    """Random tagged tiles → crops of ``crop`` px with random flips, tags multi-hot (B, C)."""

    def __init__(self, rows, scenes: dict, class_set: ClassSet, cfg: Config):
        self.rows, self.scenes, self.cfg = rows, scenes, cfg
        self.crop = cfg.priors.clip_size
        self.tags = np.zeros((len(rows), class_set.num_classes), np.float32)
        for i, r in enumerate(rows):
            for name in r.labels:
                self.tags[i, class_set.index(name) - 1] = 1.0

    def read(self, i: int, rng: np.random.Generator) -> np.ndarray | None:
        r = self.rows[i]
        img, valid = self.scenes[r.image].read(r.window)
        if 1 - valid.mean() > self.cfg.raster.max_nodata_fraction:
            return None  # mostly nodata: skipped
        _, h, w = img.shape
        if min(h, w) < self.crop:  # small tiles are upsampled to the crop size
            import torch
            import torch.nn.functional as F

            img = F.interpolate(torch.from_numpy(img)[None], size=(max(h, self.crop), max(w, self.crop)),
                                mode="bilinear", align_corners=False)[0].numpy()
            _, h, w = img.shape
        y, x = rng.integers(0, h - self.crop + 1), rng.integers(0, w - self.crop + 1)
        img = img[:, y : y + self.crop, x : x + self.crop]
        if self.cfg.train.hflip and rng.random() < 0.5:
            img = img[:, :, ::-1]
        return np.ascontiguousarray(img)

    # ---- frozen-feature cache: a fixed set of views (crop + flip) per tagged tile -------------------------------
    def view(self, i: int, v: int) -> np.ndarray | None:
        return self.read(i, np.random.default_rng([self.cfg.train.seed, i, v, 7]))

    def view_key(self, i: int, v: int, backbones: list[str]) -> str:
        from .train.cache import cache_key, file_identity

        r, p = self.rows[i], self.cfg.priors
        scene = self.scenes[r.image]
        return cache_key(file_identity(r.image), [int(r.window.col_off), int(r.window.row_off), int(r.window.width),
                         int(r.window.height)], v, self.cfg.train.seed, self.crop, self.cfg.train.hflip, scene.bands,
                         scene.norm.to_dict(), backbones, p.clip_size, p.dino_size, self.cfg.raster.gsd)

    def fill_cache(self, model, cache, progress=None) -> list[tuple[int, int, str]]:
        """Compute the frozen features of every view once (misses only); returns the usable (row, view, key)."""
        import torch

        ids = [m.identifier for m in (model.clip, model.dino) if m is not None]
        views = [(i, v, self.view_key(i, v, ids)) for i in range(len(self.rows)) for v in range(self.cfg.train.cache_views)]
        todo = [(i, v, k) for i, v, k in views if not cache.has(k)]
        usable = [x for x in views if x not in todo]
        step = self.cfg.train.batch
        device = model.prototypes.device
        for n in range(0, len(todo), step):
            chunk = [(i, v, k, self.view(i, v)) for i, v, k in todo[n : n + step]]
            chunk = [c for c in chunk if c[3] is not None]  # mostly-nodata views are dropped
            if chunk:
                imgs = torch.from_numpy(np.stack([c[3] for c in chunk])).to(device)
                feats = model.frozen_features(imgs)
                for j, (i, v, k, _) in enumerate(chunk):
                    cache.put(k, {"image": imgs[j], **{name: t[j] for name, t in feats.items()}})
                    usable.append((i, v, k))
            if progress:
                progress("cache", min(n + step, len(todo)), len(todo))
        if not usable:
            raise RsWsssError("no usable training view: every tagged tile is mostly nodata")
        self.cached = sorted(usable)
        self.cache = cache
        return self.cached

    def cached_batch(self, step: int):
        import torch

        rng = np.random.default_rng([self.cfg.train.seed, step])
        picks = [self.cached[int(j)] for j in rng.integers(len(self.cached), size=self.cfg.train.batch)]
        items = [self.cache.get(k) for _, _, k in picks]
        feats = {name: torch.stack([it[name] for it in items]) for name in items[0] if name != "image"}
        images = torch.stack([it["image"] for it in items])
        tags = torch.from_numpy(np.stack([self.tags[i] for i, _, _ in picks]))
        return self.shard(images, tags, feats)

    def shard(self, images, tags, feats=None):
        """This rank's slice of the step's global batch (all of it for a single process)."""
        from .distributed.ddp import world

        rank, n = world()
        if n == 1:
            return (images, tags) if feats is None else (images, tags, feats)
        if self.cfg.train.batch % n:
            raise RsWsssError(f"train.batch={self.cfg.train.batch} must be a multiple of the {n} processes")
        k = self.cfg.train.batch // n
        sl = slice(rank * k, (rank + 1) * k)
        out = (images[sl], tags[sl])
        return out if feats is None else out + ({name: t[sl] for name, t in feats.items()},)

    def batch(self, step: int):
        import torch

        rng = np.random.default_rng([self.cfg.train.seed, step])
        imgs, tags = [], []
        for _ in range(50 * self.cfg.train.batch):  # bounded retries past mostly-nodata tiles
            i = int(rng.integers(len(self.rows)))
            img = self.read(i, rng)
            if img is not None:
                imgs.append(img)
                tags.append(self.tags[i])
            if len(imgs) == self.cfg.train.batch:
                return self.shard(torch.from_numpy(np.stack(imgs)), torch.from_numpy(np.stack(tags)))
        raise RsWsssError("almost every tagged tile is nodata: check the tags' windows or raster.max_nodata_fraction")


def run_training(tags_path: str, scenes: list[str], class_set: ClassSet, cfg: Config, out_path: str | Path,
                 weights: str | None = None, device: str = "cpu", resume: bool = False,
                 progress: Callable[[str, int, int], None] | None = None,
                 cache_dir: str | Path | None = None) -> dict[str, Any]:
    from .distributed.ddp import init_from_env
    from .model.checkpoint import load_checkpoint
    from .model.wsss import WSSS
    from .priors import build_priors
    from .raster.io import NormStats, open_scene
    from .raster.tags import read_tags
    from .train.loop import train

    out_path = Path(out_path)
    rank, _ = init_from_env(device)
    if rank > 0:  # one voice in the log
        log.setLevel(logging.WARNING)
    if out_path.exists() and not resume:
        raise RsWsssError(f"output exists: {out_path} (pass --resume to continue it, or choose another -o)")
    known_norms: dict = {}
    if resume and out_path.exists():
        state = load_checkpoint(out_path)
        if [c["name"] for c in state["class_set"]["classes"]] != [c.name for c in class_set.classes]:
            raise RsWsssError(f"{out_path} was trained for another class set; use the same --classes to resume")
        known_norms = state["extra"].get("norms", {})
    rows = read_tags(tags_path, scenes, class_set)
    opened = {}
    try:
        for r in rows:
            if r.image not in opened:
                prior = known_norms.get(Path(r.image).name)
                opened[r.image] = open_scene(r.image, cfg.raster.bands, NormStats.from_dict(prior) if prior else None,
                                             cfg.raster.gsd, tuple(cfg.raster.percentile))
        sampler = TileSampler(rows, opened, class_set, cfg)
        import torch

        torch.manual_seed(cfg.train.seed)  # reproducible adapter/decoder initialisation
        clip, dino = build_priors(cfg.priors, weights, need_dino=cfg.usr.use_dino)
        model = WSSS(cfg, class_set, clip, dino).to(device)
        counts = model.param_counts()
        log.info("parameters: %.2f M total, %.3f M trainable; %d tagged tiles in %d scenes",
                 counts["total"] / 1e6, counts["trainable"] / 1e6, len(rows), len(opened))
        extra = {"norms": {Path(p).name: s.norm.to_dict() for p, s in opened.items()},
                 "bands": {Path(p).name: list(s.bands) for p, s in opened.items()}}
        batch_fn = sampler.batch
        if cache_dir:
            from .train.cache import FeatureCache

            cache = FeatureCache(cache_dir)
            views = sampler.fill_cache(model, cache, progress)
            log.info("feature cache %s: %d views (%.1f MB)", cache_dir, len(views), cache.size_bytes() / 1e6)
            batch_fn = sampler.cached_batch
        result = train(model, batch_fn, cfg.train, out_path, resume, progress, extra, device)
    finally:
        for s in opened.values():
            s.close()
    return result | {"params": counts}
