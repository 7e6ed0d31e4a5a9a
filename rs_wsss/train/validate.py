"""Validation during training (``--val-masks DIR`` or ``--val-tags FILE``): mIoU every ``train.report_every`` steps.

- masks: the training scenes that have a mask of the same file stem in DIR, read as a grid of ``raster.tile`` px
  windows (at most ``train.val_tiles``, spread evenly); pixel mIoU as ``rs-wsss evaluate`` computes it.
- tags: the tiles of a tag file (at most ``train.val_tiles``); a class counts as predicted on a tile when it covers
  at least ``train.val_min_fraction`` of its valid pixels; "tag mIoU" = mean over foreground classes of
  TP/(TP+FP+FN) counted over tiles. Tags carry no pixels, so this is the only IoU they allow.

Predictions are single scale, without flip or CRF: cheap, and comparable from one step to the next.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from rasterio.windows import Window

from ..classes import ClassSet
from ..config import Config
from ..errors import InputNotFound, RsWsssError
from .previews import pick_evenly, predict_classes

if TYPE_CHECKING:
    from ..model.wsss import WSSS
    from ..raster.io import Scene

MASK_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp")


@dataclass(frozen=True)
class ValidationSpec:
    """What training validates on: a folder of ground-truth masks named like the scenes (``value_map``: mask code →
    class name, for masks whose codes are not the class set's) or a tag file; neither: no validation."""

    masks: str | Path | None = None
    tags: str | Path | None = None
    value_map: dict | None = None

    def __bool__(self) -> bool:
        return bool(self.masks or self.tags)


class Validator:
    """Fixed validation tiles and their targets; ``evaluate(model)`` → {"metric", "score", "per_class", ...}."""

    def __init__(self, kind: str, images: list[torch.Tensor], targets: list, class_set: ClassSet, cfg: Config,
                 source: str) -> None:
        self.kind, self.images, self.targets = kind, images, targets
        self.class_set, self.cfg, self.source = class_set, cfg, source

    @property
    def metric(self) -> str:
        """The score's name: mIoU against masks, or tag mIoU (tile tags against the predicted classes)."""
        return "mIoU" if self.kind == "masks" else "tag mIoU"

    def evaluate(self, model: WSSS) -> dict:
        """Score ``model``'s decoder on the held-out tiles (``score``, ``metric``, ``per_class``, ``tiles``)."""
        preds = [predict_classes(model, img[None])[0] for img in self.images]
        return self._pixel(preds) if self.kind == "masks" else self._tags(preds)

    def _pixel(self, preds: list[np.ndarray]) -> dict:
        from ..raster.evaluate import confusion_matrix, metrics

        names = self.class_set.names
        conf = sum(confusion_matrix(p, g, len(names)) for p, g in zip(preds, self.targets))
        m = metrics(conf, names)  # type: ignore[arg-type]
        return {"metric": self.metric, "score": m["mIoU"],
                "per_class": {k: v["iou"] for k, v in m["per_class"].items()},
                "OA": m["OA"], "tiles": len(preds), "source": self.source}

    def _tags(self, preds: list[np.ndarray]) -> dict:
        c = self.class_set.num_classes
        tp, fp, fn = np.zeros(c), np.zeros(c), np.zeros(c)
        for pred, (labels, valid) in zip(preds, self.targets):
            n = max(1, int(valid.sum()))
            frac = np.bincount(pred[valid].ravel(), minlength=c + 1)[1 : c + 1] / n
            have = frac >= self.cfg.train.val_min_fraction
            tp += have & labels
            fp += have & ~labels
            fn += ~have & labels
        union = tp + fp + fn
        iou = np.where(union > 0, tp / np.maximum(union, 1), np.nan)
        names = self.class_set.names[1:]
        score = float(np.nanmean(iou)) if (union > 0).any() else None
        return {"metric": self.metric, "score": score, "tiles": len(preds), "source": self.source,
                "per_class": {n: (None if np.isnan(v) else float(v)) for n, v in zip(names, iou)}}


def _read(scene: Scene, win: Window) -> tuple[torch.Tensor, np.ndarray]:
    img, valid = scene.read(win)
    return torch.from_numpy(img), valid


def from_masks(mask_dir: str | Path, scenes: dict, class_set: ClassSet, cfg: Config,
               value_map: dict | None = None) -> Validator:
    """Masks named like the opened training ``scenes`` (path → Scene) in ``mask_dir``, on the same pixel grid."""
    from ..raster.io import open_dataset
    from ..raster.masks import code_table, read_mask
    from ..raster.tiles import TileGrid
    from ..raster.write import NODATA

    d = Path(mask_dir)
    if not d.is_dir():
        raise InputNotFound(f"--val-masks {d}: not a directory (give the folder of ground-truth masks)")
    table = code_table(class_set, value_map)
    found = {p.stem: p for p in sorted(d.iterdir()) if p.suffix.lower() in MASK_SUFFIXES}
    pairs = [(path, found[Path(path).stem]) for path in scenes if Path(path).stem in found]
    if not pairs:
        raise RsWsssError(f"--val-masks {d}: no mask named like a training scene "
                          f"({', '.join(Path(p).name for p in scenes)}); name each mask after its scene")
    t = cfg.raster.tile
    cand = []
    for path, mask in pairs:
        sc = scenes[path]
        cand += [(path, mask, w) for w in TileGrid(sc.width, sc.height, t).windows]
    images, targets = [], []
    for i in pick_evenly(len(cand), cfg.train.val_tiles):
        path, mask, w = cand[i]
        sc = scenes[path]
        win = Window(w.col_off, w.row_off, min(t, sc.width - w.col_off), min(t, sc.height - w.row_off))
        with open_dataset(mask) as ds:
            if (ds.width, ds.height) != (sc.width, sc.height):
                raise RsWsssError(f"--val-masks: {mask.name} is {ds.width}x{ds.height} px but {Path(path).name} is "
                                  f"{sc.width}x{sc.height}; a mask must be on its scene's pixel grid")
            gt = read_mask(ds, win, table)
        img, valid = _read(sc, win)
        gt[~valid] = NODATA
        images.append(img)
        targets.append(gt)
    return Validator("masks", images, targets, class_set, cfg, str(d))


def from_tags(tags_path: str | Path, class_set: ClassSet, cfg: Config,
              open_scene: Callable[[str], Scene]) -> Validator:
    """The rows of a tag file (images resolved from the file's folder); ``open_scene(path)`` → a Scene, kept open
    (and closed) by the caller."""
    from ..raster.tags import read_tags

    rows = read_tags(tags_path, [], class_set)
    if not rows:
        raise RsWsssError(f"--val-tags {tags_path}: no rows")
    images, targets = [], []
    for i in pick_evenly(len(rows), cfg.train.val_tiles):
        r = rows[i]
        img, valid = _read(open_scene(r.image), r.window)
        labels = np.zeros(class_set.num_classes, bool)
        for name in r.labels:
            labels[class_set.index(name) - 1] = True
        images.append(img)
        targets.append((labels, valid))
    return Validator("tags", images, targets, class_set, cfg, str(tags_path))
