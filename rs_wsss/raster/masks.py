"""Ground-truth class rasters: decoding index- or RGB-coded masks (palette PNGs included) into class ids."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from rasterio.windows import Window

if TYPE_CHECKING:
    from rasterio.io import DatasetReader

from ..classes import ClassSet
from ..errors import RsWsssError
from .write import NODATA


def code_table(class_set: ClassSet, value_map: dict | None = None) -> dict:
    """Code (int or RGB tuple) → class id (255 = ignore). ``value_map`` (code → class name) replaces the set's codes."""
    table: dict = {}
    if value_map:
        for code, name in value_map.items():
            table[code] = class_set.index(name) if str(name) != "ignore" else NODATA
        return table
    for code in class_set.background.codes:
        table[code] = 0
    for i, c in enumerate(class_set.classes, start=1):
        for code in c.codes:
            table[code] = i
    for code in class_set.ignore_codes:
        table.setdefault(code, NODATA)
    if not table:
        raise RsWsssError(f"class set '{class_set.name}' has no ground-truth codes: pass --value-map CODE=CLASS ...")
    return table


def class_raster_table(src: DatasetReader, class_set: ClassSet) -> dict | None:
    """Id → class id for a class raster rs-wsss wrote (its CLASS_NAMES tag), matched by class name: its ids are the
    truth, whatever colours its palette shows (they need not be the set's mask codes). None for any other raster."""
    names = [n for n in (src.tags().get("CLASS_NAMES") or "").split(";") if n]
    if src.count != 1 or not names:
        return None
    return {i: class_set.names.index(n) if n in class_set.names else NODATA for i, n in enumerate(names)}


def wants_rgb(table: dict) -> bool:
    """Whether a code table holds only RGB colour codes, so the mask must be read as three bands."""
    return any(isinstance(k, tuple) for k in table) and not any(isinstance(k, int) for k in table)


def read_mask(src: DatasetReader, window: Window | None, table: dict) -> np.ndarray:
    """Read a mask window and decode it to class ids (uint8, 255 = ignore or unknown code).

    A 3-band mask is RGB-coded whenever the table has colour codes, even if it also has index codes (the iSAID set
    holds both: colours for *_instance_color_RGB.png, devkit ids for index masks)."""
    rgb_codes = any(isinstance(k, tuple) for k in table)
    if wants_rgb(table) or (rgb_codes and src.count >= 3):
        if src.count >= 3:
            rgb = src.read([1, 2, 3], window=window)
        else:  # palette PNG: decode through its own palette (the order differs per file)
            try:
                cmap = src.colormap(1)
            except ValueError:
                raise RsWsssError(f"{src.name}: a 1-band mask without palette cannot match RGB class codes") from None
            lut = np.zeros((256, 3), np.uint8)
            for k, v in cmap.items():
                lut[k] = v[:3]
            rgb = lut[src.read(1, window=window)].transpose(2, 0, 1)
        return decode(rgb, table)
    return decode(src.read(1, window=window), table)


def decode(arr: np.ndarray, table: dict) -> np.ndarray:
    """(H, W) integer codes or (3, H, W) RGB → class ids via ``table``; unknown codes → 255."""
    if arr.ndim == 3:
        key = (arr[0].astype(np.int64) << 16) | (arr[1].astype(np.int64) << 8) | arr[2].astype(np.int64)
        lut = {(k[0] << 16) | (k[1] << 8) | k[2]: v for k, v in table.items() if isinstance(k, tuple)}
    else:
        key = arr.astype(np.int64)
        lut = {k: v for k, v in table.items() if isinstance(k, int)}
    uniq, inv = np.unique(key, return_inverse=True)
    mapped = np.array([lut.get(int(u), NODATA) for u in uniq], np.uint8)
    return mapped[inv].reshape(key.shape)
