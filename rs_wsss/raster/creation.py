"""GDAL creation options checked against the driver's own option list (``DMD_CREATIONOPTIONLIST``) before any work:
GDAL itself only warns about an unknown name or value (``--co COMPRESS=NOPE`` then writes an uncompressed file), and
aborts the process on some malformed values (``BLOCKSIZE=abc``)."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import glob
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from ..errors import RsWsssError


@dataclass(frozen=True)
class CreationOption:
    """One entry of a driver's creation option list."""

    name: str
    kind: str  # GDAL's type: string, string-select, int, float, boolean
    values: tuple[str, ...] = ()  # string-select: the accepted values (aliases included)
    minimum: float | None = None
    maximum: float | None = None


def _gdal_library() -> ctypes.CDLL | None:
    """The GDAL library rasterio itself runs on (the wheel's bundled copy, else the system's)."""
    import rasterio

    here = os.path.dirname(rasterio.__file__)
    patterns = [os.path.join(here + ".libs", "libgdal*"), os.path.join(here, ".dylibs", "libgdal*"),
                os.path.join(here + ".libs", "gdal*.dll"), os.path.join(here, "gdal*.dll")]
    candidates = [p for pattern in patterns for p in sorted(glob.glob(pattern))]
    found = ctypes.util.find_library("gdal")
    for path in candidates + ([found] if found else []):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        lib.GDALGetDriverByName.restype, lib.GDALGetDriverByName.argtypes = ctypes.c_void_p, [ctypes.c_char_p]
        lib.GDALGetMetadataItem.restype = ctypes.c_char_p
        lib.GDALGetMetadataItem.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p]
        return lib
    return None


@functools.cache
def creation_options(driver: str) -> dict[str, CreationOption] | None:
    """Option name → its definition for ``driver`` (e.g. "COG"); None when GDAL's library cannot be reached."""
    import rasterio

    lib = _gdal_library()
    if lib is None:
        return None
    with rasterio.Env():  # rasterio's GDAL_DATA and error handler (the COG driver reads its tiling schemes)
        handle = lib.GDALGetDriverByName(driver.encode())
        text = lib.GDALGetMetadataItem(handle, b"DMD_CREATIONOPTIONLIST", None) if handle else None
    if not text:
        return None
    out = {}
    for opt in ET.fromstring(text.decode("utf-8", "replace")).iter("Option"):
        values = tuple(v for e in opt.iter("Value") for v in (e.text or "", e.get("alias")) if v)
        num = {k: float(opt.get(k)) for k in ("min", "max") if _is_number(opt.get(k))}  # type: ignore[arg-type]
        out[opt.get("name", "").upper()] = CreationOption(opt.get("name", "").upper(), opt.get("type", "string"),
                                                          values, num.get("min"), num.get("max"))
    return out


def _is_number(text: str | None) -> bool:
    try:
        float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return True


def check_creation_options(options: dict[str, str] | None, driver: str = "COG") -> None:
    """Refuse a creation option ``driver`` does not know, or a value outside its list, type or range.

    Raises:
        RsWsssError: one line naming the option, what the driver accepts and the GDAL version.
    """
    known = creation_options(driver) if options else None
    if not options or known is None:  # no options, or no GDAL library reachable: GDAL warns on its own
        return
    import rasterio

    gdal = f"GDAL {rasterio.__gdal_version__}"
    for name, value in options.items():
        opt = known.get(name.upper())
        if opt is None:
            raise RsWsssError(f"--co {name}={value}: {driver} has no creation option {name} ({gdal} knows "
                              f"{', '.join(sorted(known))})")
        if opt.kind == "string-select" and opt.values and value.upper() not in {v.upper() for v in opt.values}:
            raise RsWsssError(f"--co {name}={value}: {driver} accepts {name} = {', '.join(opt.values)} ({gdal})")
        if opt.kind in ("int", "float"):
            try:
                number = int(value) if opt.kind == "int" else float(value)
            except ValueError:
                raise RsWsssError(f"--co {name}={value}: {name} is {'an integer' if opt.kind == 'int' else 'a number'}"
                                  f" for {driver}, e.g. --co {name}={int(opt.minimum or 1)}") from None
            low, high = opt.minimum, opt.maximum
            if (low is not None and number < low) or (high is not None and number > high):
                span = f"≥ {low:g}" if high is None else f"in {low:g}..{high:g}" if low is not None else f"≤ {high:g}"
                raise RsWsssError(f"--co {name}={value}: {driver} takes {name} {span} ({gdal})")
        if opt.kind == "boolean" and value.upper() not in {"YES", "NO", "TRUE", "FALSE", "ON", "OFF", "1", "0"}:
            raise RsWsssError(f"--co {name}={value}: {name} is YES or NO for {driver}")

