"""GDAL options for one run, applied where work starts (CLI commands, the Python API, Dask tasks), never on import."""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import rasterio
import rasterio.env

P = ParamSpec("P")
R = TypeVar("R")
# GDAL's block cache defaults to 5 % of RAM and fills up on large rasters (it was most of the extra peak RSS of a
# 10 000² run over a 1 000² one); 64 MB is ample for windowed reads and strip writes. rasterio passes the value to
# GDALSetCacheMax64, so it is in bytes.
GDAL_DEFAULTS: dict[str, object] = {"GDAL_CACHEMAX": 64 * 2**20}


def raster_env(**options: object) -> contextlib.AbstractContextManager[object]:
    """A ``rasterio.Env`` with rs-wsss's GDAL defaults plus ``options``; an active Env, or the user's own environment
    variables, win (a GDAL_CACHEMAX in the environment is left alone)."""
    quiet_libtiff()
    if rasterio.env.hasenv():
        return contextlib.nullcontext()
    defaults = {k: v for k, v in GDAL_DEFAULTS.items() if k not in os.environ}
    return rasterio.Env(**(defaults | options))


def ensure_raster_env(func: Callable[P, R]) -> Callable[P, R]:
    """Run ``func`` inside :func:`raster_env` (rasterio's ``ensure_env``, for rs-wsss entry points)."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with raster_env():
            return func(*args, **kwargs)

    return wrapper


@functools.cache
def quiet_libtiff() -> None:
    """Unset libtiff's process-wide error handler, which prints lines such as "_tiffWriteProc: No space left on
    device." straight to stderr (around GDAL, whose own per-file handler still turns them into the exception rs-wsss
    reports in one line). Only rasterio's bundled libtiff is touched; without it (a system GDAL) nothing changes."""
    import ctypes
    import glob

    for lib in glob.glob(os.path.join(os.path.dirname(rasterio.__file__) + ".libs", "libtiff-*.so*")):
        with contextlib.suppress(OSError, AttributeError):
            tiff = ctypes.CDLL(lib)
            tiff.TIFFSetErrorHandler.restype = ctypes.c_void_p
            tiff.TIFFSetErrorHandler.argtypes = [ctypes.c_void_p]
            tiff.TIFFSetErrorHandler(None)
