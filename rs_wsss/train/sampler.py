"""Tagged tiles → training crops (numpy only): deterministic picks, random crop and flip, multi-hot tags.

Every draw is a pure function of (seed, step) or (seed, tile, view), so ``--resume`` after an interruption sees exactly
the crops the uninterrupted run would have seen, and a feature cache names its views reproducibly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..classes import ClassSet
from ..config import Config
from ..errors import RsWsssError
from ..priors.specs import crop_size

# a step retries past mostly-nodata tiles at most this many times per sample of the batch
RETRIES_PER_SAMPLE = 50


def resize_bilinear(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """(C, h, w) → (C, height, width) by bilinear interpolation on pixel centres (torch's ``align_corners=False``
    without antialiasing, which is what upsampling needs)."""

    def axis(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        src = np.maximum((np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5, 0.0)
        i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
        i1 = np.minimum(i0 + 1, n_in - 1)
        return i0, i1, (src - i0).astype(np.float32)

    r0, r1, fr = axis(img.shape[1], height)
    c0, c1, fc = axis(img.shape[2], width)
    rows = img[:, r0, :] * (1 - fr)[None, :, None] + img[:, r1, :] * fr[None, :, None]
    out = rows[:, :, c0] * (1 - fc)[None, None, :] + rows[:, :, c1] * fc[None, None, :]
    return out.astype(img.dtype, copy=False)


class TileSampler:
    """Random tagged tiles → crops of the CLIP prior's crop size (``specs.crop_size``) with random flips; tags
    multi-hot (N, C).

    Args:
        rows: tag rows (``image``, ``window``, ``labels``) from :func:`rs_wsss.raster.tags.read_tags`.
        scenes: open scenes by image path (anything with ``read(window) → (image (3,h,w) in [0,1], valid (h,w))``).
        class_set: the classes the labels name. cfg: crop size, seed, flip and nodata settings.
    """

    def __init__(self, rows: Sequence[Any], scenes: Mapping[str, Any], class_set: ClassSet, cfg: Config) -> None:
        self.rows, self.scenes, self.cfg = rows, scenes, cfg
        self.crop = crop_size(cfg.priors, "clip")
        self.tags = np.zeros((len(rows), class_set.num_classes), np.float32)
        for i, r in enumerate(rows):
            for name in r.labels:
                self.tags[i, class_set.index(name) - 1] = 1.0

    def read(self, i: int, rng: np.random.Generator) -> np.ndarray | None:
        """Tile ``i`` rescaled at random (``train.rescale``), as a random ``crop`` × ``crop`` crop (3, crop, crop),
        flipped at random; None if mostly nodata."""
        r = self.rows[i]
        img, valid = self.scenes[r.image].read(r.window)
        if 1 - valid.mean() > self.cfg.raster.max_nodata_fraction:
            return None  # mostly nodata: skipped
        _, h, w = img.shape
        lo, hi = self.cfg.train.rescale[:2]
        if (lo, hi) != (1.0, 1.0):  # random rescale (train.rescale); no draw when off, so the crops stay the same
            s = rng.uniform(min(lo, hi), max(lo, hi))
            img = resize_bilinear(img, max(1, round(h * s)), max(1, round(w * s)))
            _, h, w = img.shape
        if min(h, w) < self.crop:  # small tiles are upsampled to the crop size
            img = resize_bilinear(img, max(h, self.crop), max(w, self.crop))
            _, h, w = img.shape
        y, x = rng.integers(0, h - self.crop + 1), rng.integers(0, w - self.crop + 1)
        img = img[:, y : y + self.crop, x : x + self.crop]
        if self.cfg.train.hflip and rng.random() < 0.5:
            img = img[:, :, ::-1]
        return np.ascontiguousarray(img)

    def view(self, i: int, v: int) -> np.ndarray | None:
        """The fixed view ``v`` of tile ``i`` (crop and flip seeded by (seed, i, v)): the unit of the feature cache."""
        return self.read(i, np.random.default_rng([self.cfg.train.seed, i, v, 7]))

    def draw(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """The global batch of ``step``: images (B, 3, crop, crop) float32 in [0, 1] and tags (B, C).

        Raises:
            RsWsssError: almost every tagged tile is nodata.
        """
        rng = np.random.default_rng([self.cfg.train.seed, step])
        imgs, tags = [], []
        for _ in range(RETRIES_PER_SAMPLE * self.cfg.train.batch):  # bounded retries past mostly-nodata tiles
            i = int(rng.integers(len(self.rows)))
            img = self.read(i, rng)
            if img is not None:
                imgs.append(img)
                tags.append(self.tags[i])
            if len(imgs) == self.cfg.train.batch:
                return np.stack(imgs), np.stack(tags)
        raise RsWsssError("almost every tagged tile is nodata: check the tags' windows or raster.max_nodata_fraction")

    def pick(self, step: int, n: int) -> list[int]:
        """``train.batch`` indices into ``n`` items (e.g. cached views) for ``step``."""
        rng = np.random.default_rng([self.cfg.train.seed, step])
        return [int(j) for j in rng.integers(n, size=self.cfg.train.batch)]
