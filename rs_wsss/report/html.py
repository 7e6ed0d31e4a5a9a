"""Plain, self-contained HTML pages (inline CSS, PNGs embedded as data URIs) and atomic file writes.

No template engine and no server: a report is one file a user can mail or open from disk.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence
from html import escape
from pathlib import Path

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:1.5em;margin-bottom:4px} h2{font-size:1.15em;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:8px 0} td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums} th{background:#f3f3f3}
.banner{background:#c62828;color:#fff;font-weight:bold;padding:10px 14px;margin:10px 0;font-size:1.1em}
.swatch{display:inline-block;width:14px;height:14px;border:1px solid #555;vertical-align:middle;margin-right:6px}
.muted{color:#666;font-size:.9em} img{max-width:100%;border:1px solid #ccc}
"""

RANDOM_BANNER = ("RANDOM WEIGHTS: the backbones were not pretrained. These results show that the pipeline runs; "
                 "they say nothing about the scene.")


def write_atomic(path: str | Path, data: bytes | str) -> Path:
    """Write under a temporary name beside ``path``, then rename: a reader never sees a half-written file."""
    from ..atomic import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:  # PID-tagged: a killed writer's leftover is swept by the next run
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def hex_color(rgb: Sequence[int]) -> str:
    """The first three values of ``rgb`` as a CSS ``#rrggbb``."""
    return "#{:02x}{:02x}{:02x}".format(*(int(c) for c in rgb[:3]))


def swatch(rgb: Sequence[int]) -> str:
    """A small colour square (HTML) for a class's legend entry."""
    return f'<span class="swatch" style="background:{hex_color(rgb)}"></span>'


def table(headers: Sequence[str], rows: Iterable[Sequence], raw_cols: Sequence[int] = ()) -> str:
    """An HTML table; cells are escaped except the columns in ``raw_cols`` (already HTML, e.g. a swatch)."""
    head = "".join(f"<th>{escape(str(h))}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for i, v in enumerate(row):
            num = isinstance(v, (int, float)) and not isinstance(v, bool)
            text = v if i in raw_cols else escape(_fmt(v))
            cells.append(f'<td class="num">{text}</td>' if num else f"<td>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def key_values(items: dict) -> str:
    """A two-column key/value :func:`table`, values escaped and numbers formatted."""
    return table(["key", "value"], [(k, v) for k, v in items.items()])


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:,.4g}" if abs(v) < 1000 else f"{v:,.1f}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return "—" if v is None else str(v)


def img(png: bytes, alt: str) -> str:
    """An <img> with the PNG embedded, so the page stays one self-contained file."""
    return f'<img alt="{escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def page(title: str, sections: Sequence[tuple[str, str]], banner: str | None = None, subtitle: str = "") -> str:
    """A complete HTML document: a title, an optional red banner, then (heading, html) sections."""
    parts = [f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{escape(title)}</title>",
             f"<style>{CSS}</style></head><body><h1>{escape(title)}</h1>"]
    if subtitle:
        parts.append(f'<div class="muted">{escape(subtitle)}</div>')
    if banner:
        parts.append(f'<div class="banner" id="random-weights">{escape(banner)}</div>')
    for heading, body in sections:
        parts.append(f"<h2>{escape(heading)}</h2>{body}")
    parts.append("</body></html>\n")
    return "".join(parts)
