"""The segment report: ``OUT_quicklook.png`` and ``OUT_report.html`` beside a segmented scene's outputs.

The HTML is self-contained (the quicklook embedded): legend, per-class areas (m², ha, %), parameters, model and
weights identity (random weights in a red banner), timings.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ..raster.env import ensure_raster_env
from . import html, quicklook

RANDOM = "random-weights"


def class_areas(class_tif: str | Path, names: list[str]) -> dict[str, Any]:
    """Every class's pixels, m², ha (``raster.areas``: true ground areas in any CRS) and % of the classified
    (non-nodata) pixels; m² and ha are None for a raster without CRS (its pixels have no ground size)."""
    from ..raster.areas import raster_class_areas
    from ..raster.io import open_dataset

    with open_dataset(class_tif) as ds:
        crs, size = ds.crs, (ds.width, ds.height)
    found = {r["class_id"]: r for r in raster_class_areas(class_tif, names)}
    valid = sum(r["pixels"] for r in found.values())
    rows = []
    for i, name in enumerate(names):
        r = found.get(i, {"pixels": 0, "area_m2": 0.0})
        m2 = float(r["area_m2"]) if crs is not None else None
        rows.append({"class": name, "pixels": int(r["pixels"]), "m2": m2, "ha": m2 / 1e4 if m2 is not None else None,
                     "percent": 100.0 * r["pixels"] / valid if valid else 0.0})
    total = sum(r["m2"] for r in rows) if crs is not None else None  # type: ignore[misc]
    return {"classes": rows, "total_m2": total, "valid_pixels": valid, "nodata_pixels": size[0] * size[1] - valid,
            "size": size, "crs": crs.to_string() if crs else None}


@ensure_raster_env  # GDAL's block cache capped: the decimated reads of a large raster must not fill RAM
def write_segment_report(scene_path: str | Path, class_tif: str | Path, names: list[str],
                         colors: list[tuple[int, int, int]], meta: dict[str, str], params: dict[str, Any],
                         timings: dict[str, float], read: dict[str, Any] | None = None,
                         outputs: dict[str, str] | None = None, *, paths: dict[str, Path]) -> dict[str, str]:
    """Write the quicklook PNG and the HTML report (atomically) for one segmented scene; returns their paths.

    ``read``: how the scene was read for segmentation (bands, norm, gsd, percentile), so the quicklook shows
    the same pixels the model saw. ``paths``: ``{"quicklook": PNG, "report": HTML}``
    (``rs_wsss.outputs.output_paths(..., report=True)`` names them beside the class raster)."""
    t0 = time.perf_counter()
    random_weights = meta.get("weights") == RANDOM
    banner = html.RANDOM_BANNER if random_weights else None
    areas = class_areas(class_tif, names)
    percents = [r["percent"] for r in areas["classes"]]
    rgb, _ = quicklook.read_rgb(scene_path, max_side=quicklook.MAX_SIDE, **(read or {}))
    classes = quicklook.read_classes(class_tif, rgb.shape[:2])
    title = f"{Path(scene_path).name} — {meta.get('model', '?')}"
    fig = quicklook.build_figure(rgb, classes, names, colors, title, percents,
                                 "RANDOM WEIGHTS — not a real result" if random_weights else None)
    png = quicklook.png_bytes(fig)
    html.write_atomic(paths["quicklook"], png)
    timings = {**timings, "report": time.perf_counter() - t0}
    html.write_atomic(paths["report"], render_html(scene_path, areas, colors, meta, params, timings, png, rgb.shape,
                                                    outputs or {}, banner))
    return {k: str(v) for k, v in paths.items()}


def render_html(scene_path: str | Path, areas: dict, colors: list[tuple[int, int, int]], meta: dict, params: dict,
                timings: dict, png: bytes, ql_shape: tuple, outputs: dict, banner: str | None) -> str:
    """The segmentation report page: quicklook, legend, areas per class, model, parameters, timings, outputs."""
    have_m2 = areas["total_m2"] is not None
    rows = [(html.swatch(colors[i]), r["class"], r["pixels"], r["m2"], r["ha"], r["percent"])
            for i, r in enumerate(areas["classes"])]
    total_m2 = areas["total_m2"]
    rows.append(("", "total", areas["valid_pixels"], total_m2, total_m2 / 1e4 if have_m2 else None,
                 100.0 if areas["valid_pixels"] else 0.0))
    w, h = areas["size"]
    note = (f"Ground areas in {areas['crs']}. " if have_m2 else "No CRS: areas in pixels only. ")
    note += f"{w}×{h} px; {areas['nodata_pixels']:,} nodata pixels are not counted."
    legend = "".join(f"<div>{html.swatch(c)}{html.escape(n)}</div>" for n,
                     c in zip([r["class"] for r in areas["classes"]], colors))
    sections = [
        ("Quicklook", html.img(png, "quicklook") + f'<div class="muted">read at {ql_shape[1]}×{ql_shape[0]} px '
         f"(decimated); background is not overlaid</div>"),
        ("Legend", f'<div id="legend">{legend}</div>'),
        ("Area per class", (f'<div id="areas">{html.table(["", "class", "pixels", "m²", "ha", "%"], rows, (0,))}'
                            f'</div><div class="muted">{html.escape(note)}</div>')),
        ("Model and weights", html.key_values(meta)),
        ("Parameters", html.key_values(params)),
        ("Timings (s)", html.key_values({k: round(v, 2) for k, v in timings.items()})),
        ("Outputs", html.key_values(outputs)),
    ]
    return html.page(f"rs-wsss segment: {Path(scene_path).name}", sections, banner, subtitle=str(scene_path))
