"""Training report figures and page: loss curves, preview grids, the self-contained ``MODEL.report.html``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from . import html
from .quicklook import png_bytes

if TYPE_CHECKING:
    from matplotlib.figure import Figure

IGNORE_RGB = (150, 150, 150)  # pseudo-label "ignore" pixels in previews


def curves_figure(rows: list[dict], val: list[dict]) -> Figure:
    """Loss (total, L_seg, L_aff), learning rate, pseudo-label fraction and validation score against the step."""
    from matplotlib.figure import Figure

    n_ax = 3 if val else 2
    fig = Figure(figsize=(10, 3.0 * n_ax), dpi=100, facecolor="white", layout="constrained")
    axes = fig.subplots(n_ax, 1, sharex=True)
    step = np.array([r["step"] for r in rows])
    ax = axes[0]
    for key, color in (("loss", "black"), ("L_seg", "tab:blue"), ("L_aff", "tab:orange")):
        y = np.array([r[key] for r in rows], float)
        ax.plot(step, y, color=color, lw=0.8, alpha=0.35 if len(y) > 50 else 1.0, label=key if len(y) <= 50 else None)
        if len(y) > 50:  # noisy per-step values: a moving average carries the trend
            k = max(5, len(y) // 50)
            ax.plot(step[k - 1 :], np.convolve(y, np.ones(k) / k, "valid"), color=color, lw=1.6, label=f"{key} (mean "
                                                                                                       f"of {k})")
    ax.set_ylabel("loss")
    ax.legend(loc="upper right", fontsize=8)
    ax.grid(alpha=0.3)
    ax = axes[1]
    ax.plot(step, [r["pseudo_fraction"] for r in rows], color="tab:green", lw=0.9)
    ax.set_ylabel("pixels with a\npseudo label", color="tab:green")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax2 = ax.twinx()
    ax2.plot(step, [r["lr"] for r in rows], color="tab:purple", lw=0.9)
    ax2.set_ylabel("learning rate", color="tab:purple")
    if val:
        ax = axes[2]
        ax.plot([v["step"] for v in val], [np.nan if v["score"] is None else v["score"] for v in val], "o-",
                color="tab:red")
        ax.set_ylabel(val[-1]["metric"])
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("step")
    return fig


def class_rgb(classes: np.ndarray, colors: Sequence[Sequence[int]]) -> np.ndarray:
    lut = np.zeros((256, 3), np.uint8)
    lut[:] = IGNORE_RGB
    for i, c in enumerate(colors):
        lut[i] = c[:3]
    return lut[classes]


def previews_figure(maps: dict[str, np.ndarray], names: Sequence[str], colors: Sequence[Sequence[int]],
                    step: int, tile_labels: Sequence[str] = ()) -> Figure:
    """One row per preview tile, one column per stage (image, initial CAM, refined map, pseudo labels, prediction)."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    cols = list(maps)
    n = len(maps["image"])
    fig = Figure(figsize=(2.2 * len(cols), 2.2 * n + 0.9), dpi=100, facecolor="white", layout="constrained")
    axes = np.atleast_2d(fig.subplots(n, len(cols)))
    for i in range(n):
        for j, key in enumerate(cols):
            ax = axes[i, j]
            ax.imshow(maps[key][i] if key == "image" else class_rgb(maps[key][i], colors), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(key, fontsize=10)
            if j == 0 and i < len(tile_labels):
                ax.set_ylabel(tile_labels[i], fontsize=7)
    handles = [Patch(facecolor=np.asarray(c[:3]) / 255, edgecolor="#333", label=nm) for nm, c in zip(names, colors)]  # type: ignore[arg-type]
    handles.append(Patch(facecolor=np.asarray(IGNORE_RGB) / 255, edgecolor="#333", label="ignore (pseudo labels)"))  # type: ignore[arg-type]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 5), fontsize=8, frameon=False)
    fig.suptitle(f"step {step}", fontsize=11)
    return fig


def render_html(title: str, meta: dict, summary: dict, curves_png: bytes | None, previews: list[tuple[int, bytes]],
                val: list[dict], params: dict, files: dict, banner: str | None) -> str:
    """The training report page: summary, curves, validation per step and class, previews, model and files."""
    sections = [("Summary", html.key_values(summary))]
    if curves_png:
        sections.append(("Curves", html.img(curves_png, "training curves")))
    if val:
        names = list(val[-1]["per_class"])
        rows = [(v["step"], v["score"], *[v["per_class"].get(n) for n in names]) for v in val]
        sections.append((f"Validation ({val[-1]['metric']} on {val[-1]['tiles']} tiles of {val[-1]['source']})",
                         f'<div id="validation">{html.table(["step", val[-1]["metric"], *names], rows)}</div>'))
    for step, png in previews:
        sections.append((f"Previews at step {step}", html.img(png, f"previews step {step}")))
    sections += [("Model and weights", html.key_values(meta)), ("Training parameters", html.key_values(params)),
                 ("Files", html.key_values(files))]
    return html.page(title, sections, banner)


__all__ = ["curves_figure", "png_bytes", "previews_figure", "render_html"]
