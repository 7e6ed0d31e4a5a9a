"""Segment report cost against raster size: the quicklook reads are decimated (``out_shape`` ≤ 1024 px), so memory
stays flat; time grows only where GDAL has no overviews to serve the read from (the input mosaic here, a VRT).

Real imagery: the NAIP scene tiled edge to edge (a VRT, no copy) at N × N px; the class raster is a COG with
overviews (as `segment` writes it), its classes cut from the NAIP red band so every class is present.

    python benchmarks/report_quicklook.py [--sizes 934,4096,8192]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import NAIP, machine, mosaic_vrt, peak_rss_of


def class_cog(vrt: Path, out: Path) -> None:
    """A uint8 class COG on the mosaic's grid (6 classes from red-band sextiles), written block by block."""
    import numpy as np
    import rasterio
    import rasterio.shutil
    from rasterio.windows import Window

    with rasterio.open(vrt) as src:
        prof = {"driver": "GTiff", "width": src.width, "height": src.height, "count": 1, "dtype": "uint8",
                "nodata": 255, "crs": src.crs, "transform": src.transform, "tiled": True, "blockxsize": 512,
                "blockysize": 512}
        raw = out.with_suffix(".raw.tif")
        with rasterio.open(raw, "w", **prof) as dst:
            for top in range(0, src.height, 1024):
                win = Window(0, top, src.width, min(1024, src.height - top))
                red = src.read(1, window=win)
                dst.write(np.minimum(red // 43, 5).astype(np.uint8), 1, window=win)
    rasterio.shutil.copy(raw, out, driver="COG", overview_resampling="NEAREST")
    raw.unlink()


def one(size: int, folder: Path) -> None:
    """Child process: the report for one size; prints seconds for the RGB read, the class read and the whole report."""
    from rs_wsss.classes import load_class_set
    from rs_wsss.raster.env import raster_env
    from rs_wsss.report import quicklook
    from rs_wsss.report.segment_report import write_segment_report

    cs = load_class_set("landcover")
    vrt, cog = folder / f"m{size}.vrt", folder / f"m{size}.tif"
    t0 = time.perf_counter()
    with raster_env():  # as segment runs (GDAL block cache capped)
        rgb, _ = quicklook.read_rgb(vrt)
        t1 = time.perf_counter()
        quicklook.read_classes(cog, rgb.shape[:2])
    t2 = time.perf_counter()
    write_segment_report(vrt, cog, cs.names, cs.colors, {"model": "bench", "weights": "random-weights"}, {}, {},
                         paths={"quicklook": folder / f"q{size}.png", "report": folder / f"r{size}.html"})
    print(f"{t1 - t0:.2f} {t2 - t1:.2f} {time.perf_counter() - t2:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="934,4096,8192")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--dir", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        one(a.one, Path(a.dir))
        return
    print(machine())
    print("size px      | RGB read s (VRT, no overviews) | class read s (COG) | whole report s | peak RSS MiB")
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        for size in (int(s) for s in a.sizes.split(",")):
            vrt = mosaic_vrt(NAIP, folder / f"m{size}.vrt", size, size)
            class_cog(vrt, folder / f"m{size}.tif")
            import subprocess

            cmd = [sys.executable, __file__, "--one", str(size), "--dir", d]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.split()
            rss, _ = peak_rss_of(cmd)  # a second run, in a fresh wrapper: this child's peak alone
            print(f"{size}x{size:<7}| {out[0]:>30} | {out[1]:>18} | {out[2]:>14} | {rss:.0f}")


if __name__ == "__main__":
    main()
