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
            f"python {platform.python_version()} | torch {torch.__version__} | device {dev} | "
            f"{time.strftime('%Y-%m-%d')}")


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
        parts.append(f'<VRTRasterBand dataType="{dtype}" '
                     f'band="{b}"><ColorInterp>{ci}</ColorInterp>{sources}</VRTRasterBand>')
    gt = f"{t.c}, {t.a}, {t.b}, {t.f}, {t.d}, {t.e}"
    out.write_text(f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}"><SRS>{crs}</SRS>'
                   f"<GeoTransform>{gt}</GeoTransform>{''.join(parts)}</VRTDataset>")
    return out


def run_cpu(cmd: list[str], env: dict | None = None) -> tuple[float, float]:
    """Run a command to completion; return (wall seconds, CPU seconds user + system of the child and its children)."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd[:4])} … failed: {proc.stderr[-2000:]}")
    return wall, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)


def run_measured(cmd: list[str], env: dict | None = None) -> tuple[float, float, int]:
    """Run a command; return (wall seconds, peak RSS MiB of the child, exit code)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)
    wall, rc = time.perf_counter() - t0, proc.returncode
    if rc:
        print(proc.stderr[-2000:], file=sys.stderr)
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


def real_shaped_weights(folder: Path) -> Path:
    """A random-valued ViT-B/16 (QuickGELU) state dict written in open_clip's published layout, so benchmarks take
    the real loading path (``--weights DIR``), not the explicit-random one. Timing does not depend on the values."""
    import torch

    from rs_wsss.config import load_config
    from rs_wsss.priors import build_priors

    folder.mkdir(parents=True, exist_ok=True)
    clip, _ = build_priors(load_config().priors, "random", need_dino=False)
    torch.save(clip.model.state_dict(), folder / "open_clip_vit_b16_openai.bin")
    return folder


def make_checkpoint(path: Path, weights: Path | str, tiny: bool = False) -> None:
    """A decoder checkpoint on the CLIP weights in ``weights`` (adapter/decoder untrained: timing only)."""
    from rs_wsss.classes import load_class_set
    from rs_wsss.config import load_config, tiny_config
    from rs_wsss.model.checkpoint import save_checkpoint
    from rs_wsss.model.wsss import WSSS
    from rs_wsss.priors import build_priors

    cfg = tiny_config() if tiny else load_config()
    clip, _ = build_priors(cfg.priors, "random" if tiny else str(weights), need_dino=False)
    dino_width = 64 if tiny else 768  # DINOv2-B/14 width: the checkpoint keeps its DINO adapter, inference skips it
    save_checkpoint(path, WSSS(cfg, load_class_set("landcover"), clip, None, dino_width=dino_width))


def read_tiles(scene: Path, tile: int, overlap: float) -> list:
    """The float32 tiles `segment` predicts for ``scene`` (same reader, same windows, same padding)."""
    import numpy as np

    from rs_wsss.raster.io import open_scene
    from rs_wsss.raster.stitch import _pad_reflect
    from rs_wsss.raster.tiles import tile_windows

    with open_scene(scene) as sc:
        reads = [sc.read(w) for w in tile_windows(sc.width, sc.height, tile, overlap)]
    return [_pad_reflect(img, valid).astype(np.float32) for img, valid in reads if valid.any()]


def bound_visual(clip, grid: int):
    """open_clip's own ``model.visual`` (a copy) with its positional embedding resized to ``grid`` × ``grid`` once, so
    its unmodified ``forward`` runs at the tile size: the bound in every speed ratio."""
    import copy

    import torch

    from rs_wsss.priors.clip import build_clip

    v = clip.model.visual
    if not type(v).__module__.startswith("open_clip"):  # a prior built for decoder inference (rs_wsss.priors.
        with torch.device("meta"):  # clip_tower): open_clip's own tower around the very same tensors
            own = build_clip(clip.config).visual
        own.load_state_dict(v.state_dict(), strict=True, assign=True)
        v = own
    v = copy.deepcopy(v).float().eval()
    v.positional_embedding = torch.nn.Parameter(clip._pos_embed(grid, grid).float().clone(), requires_grad=False)
    return v


def cpu_flags() -> str:
    """CPU model and the instruction-set flags that decide the fast paths (AVX-512, AVX512-BF16, AMX)."""
    model, flags = platform.processor(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and not model.startswith("Intel"):
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    keep = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16", "amx_fp16") if f in flags]
    return f"{model} [{' '.join(keep)}]"
