"""Reading rasters: band selection, normalisation to [0, 1], nodata masks, windowed (and optionally resampled) reads.

Memory is independent of raster size: every read is a window; the percentile stretch of non-8-bit data is computed
once from a decimated read (GDAL serves it from overviews when the file has them).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import rasterio
import rasterio.windows
from rasterio.enums import ColorInterp, Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.windows import Window

from ..config import RasterConfig
from ..errors import InputNotFound, RsWsssError
from .extent import Extent, aoi_mask, read_aoi

if TYPE_CHECKING:
    from rasterio.io import DatasetReader
    from rasterio.vrt import WarpedVRT

DECIMATED = 1024  # long side of the read used for percentile statistics


@dataclass
class NormStats:
    """Per selected band: value mapped to 0 and to 1 (linear stretch, clipped)."""

    low: list[float]
    high: list[float]

    def to_dict(self) -> dict[str, Any]:
        """Plain floats for JSON (checkpoints, model cards)."""
        return {"low": [float(v) for v in self.low], "high": [float(v) for v in self.high]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NormStats:
        """The inverse of :meth:`to_dict`."""
        return cls(low=[float(v) for v in d["low"]], high=[float(v) for v in d["high"]])


def is_remote(path: str | Path) -> bool:
    """A GDAL virtual path or URL (/vsicurl/…, https://…, s3://…): not checked against the local file system."""
    s = str(path)
    return s.startswith("/vsi") or "://" in s


def open_dataset(path: str | Path) -> DatasetReader:
    """rasterio.open with one-line errors (missing, unreadable, not a raster); any path GDAL opens is accepted."""
    p = str(path) if is_remote(path) else Path(path)
    if not is_remote(path) and not p.exists():
        raise InputNotFound(f"raster not found: {p}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return rasterio.open(p)
    except (RasterioIOError, UnicodeDecodeError) as exc:  # GDAL quoting a damaged name is not UTF-8
        raise RsWsssError(f"cannot read raster {p}: {gdal_reason(exc)}") from None


def gdal_reason(exc: BaseException) -> str:
    """GDAL's own words for a failure: rasterio's "Read failed. See previous exception" hides them in the cause."""
    if isinstance(exc, UnicodeDecodeError):
        return "GDAL's message quotes bytes that are not UTF-8 (a damaged header or file name)"
    while "previous exception" in str(exc) and exc.__cause__ is not None:
        exc = exc.__cause__
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def preflight(ds: Any, path: str | Path) -> None:
    """Read the first block and the last row of every band, so a truncated file, a VRT whose source is missing or a
    corrupt compressed block fails now, naming the file and GDAL's reason, rather than after a model is built.

    Raises:
        RsWsssError: a block cannot be read.
    """
    from rasterio.errors import RasterioError

    for band, (bh, bw) in enumerate(ds.block_shapes, start=1):
        bh, bw = min(bh, ds.height), min(bw, ds.width)
        # the last row on its own: a PNG read whole returns a truncated image silently, a row of it fails
        last = Window(ds.width - bw, ds.height - 1, bw, 1)
        for window in {Window(0, 0, bw, bh), last}:
            try:
                ds.read(band, window=window)
            except (RasterioError, UnicodeDecodeError) as exc:  # GDAL quoting a damaged name is not UTF-8
                fix = ("a source file of the VRT is missing or unreadable (fix the paths in it)" if ds.driver == "VRT"
                       else "the file is damaged or incomplete (copy it again)")
                raise RsWsssError(f"cannot read raster {path}: {gdal_reason(exc).rstrip('.')}; {fix}") from None


def check_bands(paths: list[str], bands: list[int] | None) -> None:
    """Open and :func:`preflight` each raster (unreadable ones fail here, before a model is built) and check a band
    choice against it.

    Args:
        paths: rasters to check.
        bands: 1-based band numbers read as R,G,B (1 or 3 of them), or None for the default choice.

    Raises:
        RsWsssError: a raster cannot be read, ``bands`` is not 1 or 3 numbers within its band count, or there is no
            default choice (2 bands without alpha).
    """
    for path in paths:
        with open_dataset(path) as ds:
            preflight(ds, path)
            if bands and (len(bands) not in (1, 3) or not all(1 <= b <= ds.count for b in bands)):
                given = ",".join(map(str, bands))
                raise RsWsssError(f"{path}: --bands {given} invalid: give 1 or 3 band numbers in 1..{ds.count}")
            select_bands(ds, list(bands) if bands else None, path)  # the default choice may refuse (2 bands)


def check_extent(paths: list[str], extent: Extent | None) -> None:
    """Refuse, before a model is built, bounds or an AOI that miss a scene, or an AOI file that cannot be used."""
    if extent is None or not (extent.bounds or extent.aoi):
        return
    for path in paths:
        with open_dataset(path) as ds:
            extent.window(ds, read_aoi(extent.aoi, ds.crs) if extent.aoi else None)


def default_bands(src: DatasetReader | WarpedVRT) -> list[int]:
    """RGB by colour interpretation, else the first three bands; one band (or grey + alpha) is read as grey (band 1
    repeated). Any other 2-band raster (e.g. SAR VV/VH, two indices) has no natural RGB reading: refused, naming
    the fix, rather than silently dropping band 2."""
    ci = list(src.colorinterp)
    want = [ColorInterp.red, ColorInterp.green, ColorInterp.blue]
    if all(c in ci for c in want):
        return [ci.index(c) + 1 for c in want]
    if src.count == 2 and ci[1] != ColorInterp.alpha:
        raise RsWsssError(f"{Path(src.name).name} has 2 bands and no RGB reading: choose the bands to use as R,G,B "
                          "with "
                          "--bands (e.g. --bands 1,1,2, or --bands 1 for grey) or set raster.bands")
    return [1, 2, 3] if src.count >= 3 else [1, 1, 1]


def select_bands(src: DatasetReader | WarpedVRT, bands: list[int] | None, path: str | Path) -> list[int]:
    """The three band numbers read as R, G, B: ``bands`` (1 or 3 numbers in 1..count) or :func:`default_bands`."""
    if bands is None:
        return default_bands(src)
    bad = [b for b in bands if not 1 <= b <= src.count]
    if bad or len(bands) not in (1, 3):
        raise RsWsssError(f"{path}: bands {bands} invalid: give 1 or 3 band numbers in 1..{src.count}")
    return list(bands) * 3 if len(bands) == 1 else list(bands)


class Scene:
    """One raster opened for reading; ``read(window)`` → (float32 (3, h, w) in [0, 1], valid bool (h, w))."""

    def __init__(self, path: str | Path, raster: RasterConfig | None = None, norm: NormStats | None = None,
                 extent: Extent | None = None) -> None:
        raster = raster or RasterConfig()
        bands, gsd = raster.bands, raster.gsd
        self.path = str(path)
        self.dataset = open_dataset(path)
        self.src = self.dataset
        if gsd:
            self.src = _resampled(self.dataset, gsd)
        # the grid read and written: a pixel-aligned window of src (--bounds/--aoi); tiles still read real pixels
        # around it as context
        self.extent = extent or Extent()
        try:
            self.aoi = read_aoi(self.extent.aoi, self.src.crs) if self.extent.aoi else None
            self.window = self.extent.window(self.src, self.aoi)
            self.bands = select_bands(self.src, list(bands) if bands else None, path)
        except RsWsssError:
            self.close()  # no dataset leaks when the band choice or the extent is refused
            raise
        self.src_nodata = self.extent.src_nodata
        self.dtype = self.src.dtypes[self.bands[0] - 1]
        self.nodata = self.src.nodata
        self.norm = norm or compute_norm(self, raster.percentile)

    # grid properties of what is read (the resampled grid when gsd is set)
    width = property(lambda self: int(self.window.width))
    height = property(lambda self: int(self.window.height))
    crs = property(lambda self: self.src.crs)
    transform = property(lambda self: rasterio.windows.transform(self.window, self.src.transform))
    res = property(lambda self: self.src.res)

    def close(self) -> None:
        """Close the dataset and its resampled view (if any)."""
        if self.src is not self.dataset:
            self.src.close()
        self.dataset.close()

    def __enter__(self) -> Scene:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def read_raw(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        """Raw band values (3, h, w) float32 and validity (h, w) of a window; outside the raster: 0 and invalid."""
        h, w = int(window.height), int(window.width)
        data = np.zeros((3, h, w), np.float32)
        valid = np.zeros((h, w), bool)
        window = Window(window.col_off + self.window.col_off, window.row_off + self.window.row_off, w, h)  # src pixels
        full = Window(0, 0, self.src.width, self.src.height)
        inner = window.intersection(full) if _intersects(window, full) else None
        if inner is None or inner.width <= 0 or inner.height <= 0:
            return data, valid
        r0, c0 = int(inner.row_off - window.row_off), int(inner.col_off - window.col_off)
        ih, iw = int(inner.height), int(inner.width)
        uniq = sorted(set(self.bands))
        arr = self.src.read(uniq, window=inner).astype(np.float32)
        masks = self.src.read_masks(uniq, window=inner)
        ok = np.all(masks > 0, axis=0) & np.all(np.isfinite(arr), axis=0)
        if self.src_nodata is not None:  # an unflagged collar: every band read holds the value
            ok &= ~np.all(arr == np.float32(self.src_nodata), axis=0)
        for i, b in enumerate(self.bands):
            data[i, r0 : r0 + ih, c0 : c0 + iw] = arr[uniq.index(b)]
        valid[r0 : r0 + ih, c0 : c0 + iw] = ok
        if self.aoi is not None:
            valid &= aoi_mask(self.aoi, (h, w), rasterio.windows.transform(window, self.src.transform))
        return data, valid

    def read(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        """Normalised image (3, h, w) float32 in [0, 1] (:class:`NormStats` stretch, invalid pixels 0) and validity."""
        data, valid = self.read_raw(window)
        low = np.asarray(self.norm.low, np.float32)[:, None, None]
        high = np.asarray(self.norm.high, np.float32)[:, None, None]
        img = np.clip((data - low) / np.maximum(high - low, 1e-6), 0.0, 1.0)
        img[:, ~valid] = 0.0
        return img, valid


def _intersects(window: Window, full: Window) -> bool:
    return (window.col_off < full.width and window.row_off < full.height
            and window.col_off + window.width > 0 and window.row_off + window.height > 0)


def compute_norm(scene: Scene, percentile: Sequence[float]) -> NormStats:
    """8-bit data: 0–255 as is. Other types: per-band percentiles of the valid pixels of a decimated read. A scene
    without a valid pixel is refused (for 8-bit data too: its output would be nodata only)."""
    src = scene.src
    f = max(1.0, max(src.width, src.height) / DECIMATED)
    shape = (max(1, int(src.height / f)), max(1, int(src.width / f)))
    uniq = sorted(set(scene.bands))
    arr = src.read(uniq, out_shape=(len(uniq), *shape), resampling=Resampling.nearest).astype(np.float64)
    masks = src.read_masks(uniq, out_shape=(len(uniq), *shape), resampling=Resampling.nearest)
    ok = np.all(masks > 0, axis=0) & np.all(np.isfinite(arr), axis=0)
    if scene.src_nodata is not None:
        ok &= ~np.all(arr == np.float64(np.float32(scene.src_nodata)), axis=0)
    if not ok.any():
        raise RsWsssError(f"{scene.path}: every pixel is nodata; nothing to segment")
    if scene.dtype == "uint8":
        return NormStats([0.0] * 3, [255.0] * 3)
    low, high = [], []
    for b in scene.bands:
        lo, hi = np.percentile(arr[uniq.index(b)][ok], list(percentile))
        low.append(float(lo))
        high.append(float(hi) if hi > lo else float(lo) + 1.0)
    return NormStats(low, high)


def _resampled(src: DatasetReader, gsd: float) -> WarpedVRT:
    """A WarpedVRT of ``src`` at ``gsd`` CRS units per pixel (bilinear), same CRS and origin."""
    from rasterio.transform import Affine
    from rasterio.vrt import WarpedVRT

    if src.crs is None:
        raise RsWsssError(f"{src.name}: --gsd needs a georeferenced raster (this one has no CRS)")
    t = src.transform
    fx, fy = abs(t.a) / gsd, abs(t.e) / gsd
    transform = Affine(math.copysign(gsd, t.a), t.b, t.c, t.d, math.copysign(gsd, t.e), t.f)
    return WarpedVRT(src, crs=src.crs, transform=transform, width=max(1, round(src.width * fx)),
                     height=max(1, round(src.height * fy)), resampling=Resampling.bilinear)


def open_scene(path: str | Path, raster: RasterConfig | None = None, norm: NormStats | None = None,
               extent: Extent | None = None) -> Scene:
    """Open a scene for reading (see ``Scene``) as ``raster`` says (``raster.bands``, ``gsd``, ``percentile``; None:
    the defaults); ``norm``: known statistics (else computed); ``extent`` restricts it to --bounds/--aoi and adds
    --src-nodata."""
    return Scene(path, raster, norm, extent)


def scene_key(path: str | Path) -> str:
    """A file's identity for per-scene statistics stored in checkpoints: its size and a hash of its first and last
    MiB. Two scenes that share a base name (``a/x.tif``, ``b/x.tif``) get different keys; a scene moved or renamed
    keeps its key. Paths GDAL reads virtually (``/vsizip/…``, URLs) are keyed by the path itself."""
    import hashlib

    p = Path(path)
    try:
        size = p.stat().st_size
        with open(p, "rb") as fh:
            h = hashlib.sha256(fh.read(1 << 20))
            if size > 2 << 20:
                fh.seek(-(1 << 20), 2)
                h.update(fh.read(1 << 20))
    except OSError:
        return f"path:{path}"
    return f"id:{size}:{h.hexdigest()[:20]}"


def known_norm(norms: dict[str, Any], path: str | Path) -> NormStats | None:
    """The statistics stored for ``path`` by :func:`scene_key`; checkpoints written before keys were identities
    (base-name keys) are still read by base name."""
    found = norms.get(scene_key(path))
    if found is None and not any(k.startswith(("id:", "path:")) for k in norms):
        found = norms.get(Path(path).name)
    return NormStats.from_dict(found) if found else None
