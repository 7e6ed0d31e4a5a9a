"""Per-class IoU, mIoU, overall accuracy and F1 of a predicted class raster against ground truth (as the paper)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning
from rasterio.warp import Resampling, reproject
from rasterio.windows import Window

from ..classes import ClassSet
from ..errors import RsWsssError
from .io import open_dataset, preflight

if TYPE_CHECKING:
    from rasterio.io import DatasetReader
from .masks import class_raster_table, code_table, read_mask
from .write import NODATA


def confusion_matrix(pred: np.ndarray, gt: np.ndarray, num_classes: int, ignore_index: int = NODATA) -> np.ndarray:
    """conf[g, p] = pixels of ground-truth class g predicted as p; ignored GT and nodata predictions excluded."""
    ok = (gt != ignore_index) & (pred != ignore_index) & (gt < num_classes) & (pred < num_classes)
    idx = gt[ok].astype(np.int64) * num_classes + pred[ok].astype(np.int64)
    return np.bincount(idx, minlength=num_classes**2).reshape(num_classes, num_classes)


def metrics(conf: np.ndarray, class_names: list[str]) -> dict:
    """IoU = TP/(TP+FP+FN), F1 = 2TP/(2TP+FP+FN) per class; means over classes present in GT or prediction."""
    tp = np.diag(conf).astype(np.float64)
    fp = conf.sum(0) - tp
    fn = conf.sum(1) - tp
    union = tp + fp + fn
    present = union > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(present, tp / union, np.nan)
        f1 = np.where(present, 2 * tp / (2 * tp + fp + fn), np.nan)
    total = conf.sum()
    return {
        "per_class": {n: {"iou": _f(iou[i]), "f1": _f(f1[i]), "pixels": int(conf[i].sum())}
                      for i, n in enumerate(class_names)},
        "mIoU": _f(np.nanmean(iou)) if present.any() else None,  # type: ignore[arg-type]
        "mF1": _f(np.nanmean(f1)) if present.any() else None,  # type: ignore[arg-type]
        "OA": _f(tp.sum() / total) if total else None,
        "pixels": int(total),
    }


def _f(x: float) -> float | None:
    return None if np.isnan(x) else float(x)


def evaluate_rasters(pred_path: str | Path, gt_path: str | Path, class_set: ClassSet,
                     value_map: dict | None = None) -> dict:
    """Compare on the prediction's grid: a GT on the same grid (or without CRS but of the same size) is read as is,
    otherwise it is reprojected (nearest) onto the prediction grid. Read in row strips: memory stays bounded."""
    names = class_set.names
    conf = np.zeros((len(names), len(names)), np.int64)
    with open_dataset(pred_path) as pred, open_dataset(gt_path) as gt:
        preflight(pred, pred_path)  # a truncated file is refused by name, not counted as a few odd pixels
        preflight(gt, gt_path)
        # a class raster as the truth is read by its ids and class names, not by its colours
        table = (class_raster_table(gt, class_set) if value_map is None else None) or code_table(class_set, value_map)
        same = (gt.width, gt.height) == (pred.width, pred.height) and (
            gt.crs is None or pred.crs is None or (gt.crs == pred.crs and gt.transform.almost_equals(pred.transform)))
        if not same and (gt.crs is None or pred.crs is None):
            raise RsWsssError(f"{gt_path} and {pred_path} differ in size and one has no CRS: cannot align them")
        if not same:
            _check_overlap(pred, gt, pred_path, gt_path)
        decoded = None if same else read_mask(gt, None, table)  # decode once (RGB → ids), then warp the ids
        for top in range(0, pred.height, 1024):
            win = Window(0, top, pred.width, min(1024, pred.height - top))
            p = pred.read(1, window=win)
            if same:
                g = read_mask(gt, win, table)
            else:
                g = _reprojected_gt(decoded, gt, pred, win)  # type: ignore[arg-type]
            conf += confusion_matrix(p, g, len(names))
    if not conf.sum():
        raise RsWsssError(f"{pred_path} and {gt_path} share no pixel that is labelled in both (nodata or ignored "
                          "codes only); check the files and --value-map")
    out = metrics(conf, names)
    out.update(prediction=str(pred_path), ground_truth=str(gt_path), class_set=class_set.name)
    return out


def _check_overlap(pred: DatasetReader, gt: DatasetReader, pred_path: str | Path, gt_path: str | Path) -> None:
    """Refuse a ground truth whose footprint misses the prediction's (both georeferenced, any CRSs)."""
    from rasterio.warp import transform_bounds

    left, bottom, right, top = transform_bounds(gt.crs, pred.crs, *gt.bounds)
    p = pred.bounds
    if left >= p.right or right <= p.left or bottom >= p.top or top <= p.bottom:
        raise RsWsssError(f"{gt_path} does not overlap {pred_path} (ground truth {left:.6g}, {bottom:.6g}, "
                          f"{right:.6g}, {top:.6g}; prediction {p.left:.6g}, {p.bottom:.6g}, {p.right:.6g}, "
                          f"{p.top:.6g} in {pred.crs}); compare a prediction with the truth of the same area")


def _reprojected_gt(decoded: np.ndarray, gt: DatasetReader, pred: DatasetReader, win: Window) -> np.ndarray:
    out = np.full((int(win.height), int(win.width)), NODATA, np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        reproject(decoded, out, src_transform=gt.transform, src_crs=gt.crs,
                  dst_transform=rasterio.windows.transform(win, pred.transform),
                  dst_crs=pred.crs, resampling=Resampling.nearest, src_nodata=NODATA, dst_nodata=NODATA)
    return out
