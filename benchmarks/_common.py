"""Helpers shared by the benchmark scripts: machine description, real-imagery mosaics, peak-RSS subprocess runs."""

from __future__ import annotations

import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("RS_WSSS_SHARED_DATA", REPO.parent / "shared" / "data"))
NAIP = DATA / "naip/m_4709963_se_14_1_20200831.tif"


def machine() -> str:
    import torch

    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    return (f"{platform.node()} | {platform.processor() or platform.machine()} x{os.cpu_count()} | "
            f"python {platform.python_version()} | torch {torch.__version__} | device {dev} | {time.strftime('%Y-%m-%d')}")


def mosaic_vrt(src: Path, out: Path, width: int, height: int) -> Path:
    """A VRT of ``width`` × ``height`` px tiling a real scene edge to edge (real imagery at any size, no copy)."""
    import rasterio

    with rasterio.open(src) as ds:
        w, h, t, crs = ds.width, ds.height, ds.transform, ds.crs.to_wkt()
        bands = min(3, ds.count)
        dtype = {"uint8": "Byte", "uint16": "UInt16"}[ds.dtypes[0]]
    parts = []
    for b in range(1, bands + 1):
        sources = "".join(
            f'<SimpleSource><SourceFilename relativeToVRT="0">{src}</SourceFilename><SourceBand>{b}</SourceBand>'
            f'<SrcRect xOff="0" yOff="0" xSize="{min(w, width - x)}" ySize="{min(h, height - y)}"/>'
            f'<DstRect xOff="{x}" yOff="{y}" xSize="{min(w, width - x)}" ySize="{min(h, height - y)}"/></SimpleSource>'
            for y in range(0, height, h) for x in range(0, width, w))
        ci = ["Red", "Green", "Blue"][b - 1]
        parts.append(f'<VRTRasterBand dataType="{dtype}" band="{b}"><ColorInterp>{ci}</ColorInterp>{sources}</VRTRasterBand>')
    gt = f"{t.c}, {t.a}, {t.b}, {t.f}, {t.d}, {t.e}"
    out.write_text(f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}"><SRS>{crs}</SRS>'
                   f"<GeoTransform>{gt}</GeoTransform>{''.join(parts)}</VRTDataset>")
    return out


def run_measured(cmd: list[str], env: dict | None = None) -> tuple[float, float, int]:
    """Run a command; return (wall seconds, peak RSS MiB of the child, exit code)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    rc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE).returncode
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return wall, max(peak, before) / 1024, rc


def peak_rss_of(cmd: list[str]) -> tuple[float, float]:
    """Peak RSS (MiB) of one command, measured in a fresh wrapper process so earlier children don't count."""
    code = ("import resource, subprocess, sys, time; t=time.perf_counter(); "
            "rc=subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode; "
            "w=time.perf_counter()-t; print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss/1024, w, rc)")
    out = subprocess.run([sys.executable, "-c", code, *cmd], capture_output=True, text=True, check=True).stdout.split()
    if out[2] != "0":
        raise RuntimeError(f"{' '.join(cmd)} failed")
    return float(out[0]), float(out[1])


def cli() -> list[str]:
    return [sys.executable, "-m", "rs_wsss_cli.main"]
