"""Shared CLI plumbing: logging, progress reporting (tqdm or JSON lines), option parsing helpers, device choice."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterable
from typing import Any

import click

log = logging.getLogger("rs_wsss")


def setup_logging(verbosity: int) -> None:
    """rs-wsss's own log on stderr (-1 quiet, 0 info, ≥1 debug); libraries' logs and Python warnings only with -v.

    Warnings are routed into logging (the ``py.warnings`` logger) rather than filtered: nothing is switched off
    process-wide, and ``-v`` shows them."""
    level = logging.DEBUG if verbosity > 0 else logging.WARNING if verbosity < 0 else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("rs-wsss: %(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(level)
    log.propagate = False
    # libraries log to the root logger (e.g. open_clip on random init); keep their chatter out unless -v
    root = logging.getLogger()
    root.handlers[:] = [logging.NullHandler()] if verbosity <= 0 else [handler]
    logging.captureWarnings(True)  # → the "py.warnings" logger, which reaches the root handler (only with -v)


class Progress:
    """progress(stage, done, total): one JSON object per line on stderr, or a tqdm bar per stage."""

    def __init__(self, as_json: bool, quiet: bool = False) -> None:
        self.as_json, self.quiet = as_json, quiet
        self.bars: dict = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        """Report ``done`` of ``total`` units of ``stage``; a bar closes when its stage completes."""
        if self.as_json:
            sys.stderr.write(json.dumps({"stage": stage, "done": done, "total": total}) + "\n")
            sys.stderr.flush()
            return
        if self.quiet:
            return
        from tqdm import tqdm

        bar = self.bars.get(stage)
        if bar is None:
            bar = self.bars[stage] = tqdm(total=total, desc=stage, unit="step" if stage == "train" else "tile",
                                          file=sys.stderr, leave=False)
        bar.update(done - bar.n)
        if done >= total:
            bar.close()
            self.bars.pop(stage, None)

    def close(self) -> None:
        """Close every open bar (an interrupted run leaves some unfinished)."""
        for bar in self.bars.values():
            bar.close()


def progress_of(ctx: click.Context) -> Callable[[str, int, int], None]:
    """The progress callback the top-level group stored (tqdm bars when the command runs without the group)."""
    obj = ctx.find_root().obj or {}
    return obj.get("progress") or Progress(False)


def parse_value_map(items: tuple[str, ...]) -> dict | None:
    """``255=building,0=background`` or repeated options → {code: class}; codes: int, #RRGGBB, or text."""
    from rs_wsss.classes import parse_color
    from rs_wsss.errors import RsWsssError

    out: dict = {}
    for item in items:
        for part in filter(None, (p.strip() for p in item.split(","))):
            if "=" not in part:
                raise RsWsssError(f"--value-map '{part}': expected CODE=CLASS, e.g. 255=building")
            code, name = (s.strip() for s in part.split("=", 1))
            if code.lstrip("-").isdigit():
                out[int(code)] = name
            elif code.startswith("#"):
                out[parse_color(code, "--value-map")] = name
            else:
                out[code] = name
    return out or None


def resolved_config(config_path: str | None = None, overrides: Iterable[str] = (), tiny: bool = False) -> Any:
    """The config a command runs with (defaults → ``--tiny`` → ``--config`` → ``--set``), through the one factory."""
    from rs_wsss.build import ModelSpec, resolve_config

    return resolve_config(ModelSpec(config_path=config_path, overrides=tuple(overrides), tiny=tiny))[0]


def pick_device(name: str) -> str:
    """``auto`` → cuda when available, else cpu (``rs_wsss.api.pick_device``, the one place for the rule)."""
    from rs_wsss.api import pick_device as pick

    return pick(name)


def check_inputs(paths: Iterable[str]) -> None:
    """Every input file exists (a one-line error naming the first missing one)."""
    from pathlib import Path

    from rs_wsss.errors import InputNotFound
    from rs_wsss.paths import refuse_link_loop

    for p in paths:
        if str(p).startswith("/vsi") or "://" in str(p):  # GDAL virtual paths and URLs: GDAL checks them on open
            continue
        refuse_link_loop(p)
        if not Path(p).is_file():
            raise InputNotFound(f"input not found: {p} (check the path)")
