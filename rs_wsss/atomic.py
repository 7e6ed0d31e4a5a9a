"""Crash-safe outputs: write under a temporary name that carries the writer's PID, rename into place, and let the
next run remove what a killed writer (kill -9, power loss of the process) left behind.

A temporary of ``DIR/out.tif`` is ``DIR/.out.tif.<pid>.<tag>.tif``: hidden, beside its target (so the rename is
atomic on one file system), and attributable. :func:`sweep_stale` deletes those whose PID no longer runs on this
machine; a live writer's files are never touched.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

_COUNTER = itertools.count()


def temp_path(target: str | Path, tag: str = "tmp") -> Path:
    """``DIR/.NAME.<pid>.<tag>SUFFIX`` for ``DIR/NAME`` (the suffix kept, so GDAL and GeoPackage drivers still
    recognise the format from the name)."""
    target = Path(target)
    return target.with_name(f".{target.name}.{os.getpid()}.{tag}{target.suffix}")


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs here (one of another user counts as alive: never touch its files)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stale_pattern(target: Path) -> re.Pattern[str]:
    # current names (.NAME.<pid>.…) and those of earlier versions (.STEM.<pid>.…, NAME.<pid>.tmp)
    names = "|".join(re.escape(n) for n in {f".{target.name}", f".{target.stem}", target.name})
    return re.compile(rf"^(?:{names})\.(\d+)\.")


def sweep_stale(target: str | Path) -> list[Path]:
    """Remove the temporaries of ``target`` left by writers that are no longer running; returns what was removed."""
    target = Path(target)
    folder = target.parent if str(target.parent) else Path(".")
    pattern = _stale_pattern(target)
    removed: list[Path] = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    for entry in entries:
        m = pattern.match(entry.name)
        if not m or pid_alive(int(m.group(1))):
            continue
        with contextlib.suppress(OSError):
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
            removed.append(entry)
    return removed


def remove_quietly(*paths: Path | None) -> None:
    """Delete files (and their GDAL ``.aux.xml``) or folders if they exist; for ``finally`` clauses."""
    for p in paths:
        if p is None:
            continue
        for q in (Path(p), Path(f"{p}.aux.xml")):
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                shutil.rmtree(q) if q.is_dir() and not q.is_symlink() else q.unlink()


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds (else delete it)."""
    path = Path(path)
    tmp = temp_path(path, f"{next(_COUNTER)}tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        remove_quietly(tmp)


_FULL = ("no space left on device", "disk is full", "free disk space available", "disk quota exceeded")


def disk_full(exc: BaseException, folder: str | Path | None = None) -> bool:
    """Whether ``exc`` (or an exception it came from) is a full disk or quota, whichever library raised it (OSError
    ENOSPC/EDQUOT, GDAL/libtiff write errors, SQLite's "database or disk is full"). Some libraries lose the reason
    (pyogrio: "Failed to commit transaction"): an I/O-ish error while ``folder``'s disk has under 16 MiB free
    counts too (call this before removing the temporaries, which frees the space again)."""
    import errno
    import shutil as _shutil

    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, OSError) and cur.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(cur).lower()
        if any(s in text for s in _FULL) or "write error" in text and "tiff" in text:
            return True
        cur = cur.__cause__ or cur.__context__
    io_error = isinstance(exc, (OSError, RuntimeError)) or type(exc).__module__.startswith(("rasterio", "pyogrio"))
    if folder is not None and io_error:  # (GDAL errors: rasterio._err.CPLE_*, not OSError)
        with contextlib.suppress(OSError):
            return _shutil.disk_usage(folder).free < 16 * 2**20
    return False
