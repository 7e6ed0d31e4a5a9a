"""Quicklook PNG: the input RGB with the class overlay and a legend, read at ≤ ``MAX_SIDE`` px.

Reads are decimated (``out_shape``): GDAL serves them from overviews when the file has them (the class COG always
does), so time and memory stay bounded whatever the raster size.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from rasterio.enums import Resampling

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ..config import RasterConfig
    from ..raster.extent import Extent

MAX_SIDE = 1024  # long side of the quicklook, px
ALPHA = 0.5  # overlay opacity: the imagery stays readable under the classes
LEGEND_PX = 330  # width of the legend column


def quicklook_shape(width: int, height: int, max_side: int = MAX_SIDE) -> tuple[int, int]:
    """(rows, cols) of the decimated read: the raster's shape scaled so its long side is at most ``max_side``."""
    f = max(1.0, max(width, height) / max_side)
    return max(1, round(height / f)), max(1, round(width / f))


def read_rgb(scene_path: str | Path, raster: RasterConfig | None = None, norm: dict | None = None,
             extent: Extent | None = None, max_side: int = MAX_SIDE) -> tuple[np.ndarray, np.ndarray]:
    """The scene as segmented (same bands, stretch, grid and extent: ``raster`` as read, None: the defaults) at
    quicklook size: uint8 (h, w, 3) and valid (h, w)."""
    from ..raster.io import NormStats, open_scene

    with open_scene(scene_path, raster, NormStats.from_dict(norm) if norm else None, extent) as sc:
        shape = quicklook_shape(sc.width, sc.height, max_side)
        uniq = sorted(set(sc.bands))
        win = sc.window  # the whole raster, or the --bounds/--aoi part that was segmented
        arr = sc.src.read(uniq, window=win, out_shape=(len(uniq), *shape),
                          resampling=Resampling.average).astype(np.float32)
        masks = sc.src.read_masks(uniq, window=win, out_shape=(len(uniq), *shape), resampling=Resampling.nearest)
        low, high = np.asarray(sc.norm.low, np.float32), np.asarray(sc.norm.high, np.float32)
        rgb = np.stack([arr[uniq.index(b)] for b in sc.bands], axis=-1)
    valid = np.all(masks > 0, axis=0) & np.all(np.isfinite(rgb), axis=-1)
    img = np.clip((np.nan_to_num(rgb) - low) / np.maximum(high - low, 1e-6), 0, 1)
    img[~valid] = 0
    return (img * 255).round().astype(np.uint8), valid


def read_classes(class_tif: str | Path, shape: tuple[int, int]) -> np.ndarray:
    """The class raster at ``shape`` (nearest: class ids stay ids); served from the COG's overviews."""
    from ..raster.io import open_dataset

    with open_dataset(class_tif) as ds:
        return ds.read(1, out_shape=shape, resampling=Resampling.nearest)


def blend(rgb: np.ndarray, classes: np.ndarray, colors: Sequence[Sequence[int]], alpha: float = ALPHA,
          skip: Sequence[int] = (0,)) -> np.ndarray:
    """RGB with each class's colour blended in at ``alpha``; classes in ``skip`` (the background) and ids without
    a colour (nodata 255) are left as the image."""
    lut = np.zeros((256, 3), np.float32)
    on = np.zeros(256, bool)
    for i, c in enumerate(colors):
        if i not in skip:
            lut[i], on[i] = c[:3], True
    a = (on[classes] * alpha)[..., None]
    return (rgb.astype(np.float32) * (1 - a) + lut[classes] * a).round().astype(np.uint8)


def build_figure(rgb: np.ndarray, classes: np.ndarray, names: Sequence[str], colors: Sequence[Sequence[int]],
                 title: str, percents: Sequence[float] | None = None, banner: str | None = None) -> Figure:
    """A matplotlib Figure (no pyplot, no global backend): the blended image at 1:1 pixels, a legend at the right
    (class colour, name, share of the area), the title and an optional red banner on top."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    h, w = classes.shape
    dpi = 100
    top = 60 if banner else 34  # px above the image for title (+ banner)
    fig_w, fig_h = w + LEGEND_PX, max(h, 40 + 24 * len(names)) + top
    fig = Figure(figsize=(fig_w / dpi, fig_h / dpi), dpi=dpi, facecolor="white")
    ax = fig.add_axes((0, (fig_h - top - h) / fig_h, w / fig_w, h / fig_h))
    ax.imshow(blend(rgb, classes, colors), interpolation="nearest")
    ax.set_axis_off()
    fig.text(6 / fig_w, 1 - 20 / fig_h, title, fontsize=12, weight="bold", va="center")
    if banner:
        fig.text(6 / fig_w, 1 - 46 / fig_h, banner, fontsize=11, weight="bold", color="white", va="center",
                 bbox={"facecolor": "#c62828", "edgecolor": "none", "pad": 3})
    handles = []
    for i, (name, c) in enumerate(zip(names, colors)):
        label = name if percents is None else f"{name}  {percents[i]:.1f} %"
        if i == 0:
            label += " (no overlay)"
        handles.append(Patch(facecolor=np.asarray(c[:3]) / 255, edgecolor="#333", label=label))  # type: ignore[arg-type]
    fig.legend(handles=handles, loc="upper left", bbox_to_anchor=((w + 8) / fig_w, 1 - top / fig_h), frameon=False,
               fontsize=10, title="classes", title_fontsize=11, alignment="left")
    return fig


def png_bytes(fig: Figure) -> bytes:
    """``fig`` rendered as PNG at its own dpi and background."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi, facecolor=fig.get_facecolor())
    return buf.getvalue()


def legend_texts(fig: Figure) -> list[str]:
    """The legend entries as drawn (what the tests check, besides the pixels)."""
    return [t.get_text() for leg in fig.legends for t in leg.get_texts()]
