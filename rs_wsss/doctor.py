"""``rs-wsss doctor``: whether this installation can run, and what to fix when not.

Each check is a :class:`Check` (name, ok, what was found, the fix). Checks marked ``required`` decide usability:
torch imports, the raster stack (GDAL, PROJ) reads and reprojects, the cache and temporary folders take a file,
and both backbones' weights resolve (or ``--weights random`` was asked for). The GPU and the precision are reported,
with the reason when the GPU would not be used, but a CPU-only machine is usable.
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from . import __version__

CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")


@dataclass
class Check:
    """One line of the doctor's report."""

    name: str
    ok: bool
    found: str
    fix: str = ""
    required: bool = True

    def to_dict(self) -> dict[str, Any]:
        """The check as plain values (``rs-wsss doctor --json``)."""
        return asdict(self)


def usable(checks: list[Check]) -> bool:
    """True when every required check passed."""
    return all(c.ok for c in checks if c.required)


def run_checks(weights: str | None = None, config_path: str | None = None, device: str = "auto") -> list[Check]:
    """Every check, in the order a user fixes them (software, raster stack, hardware, weights, folders).

    Args:
        weights: as ``--weights`` (a folder, a file or "random"); None: the config's, then $RS_WSSS_WEIGHTS_DIR.
        config_path: a config YAML (its ``priors`` section names the backbones).
        device: the ``--device`` a run would get ("auto", "cpu", "cuda").
    """
    checks = [Check("rs-wsss", True, f"{__version__} on Python {platform.python_version()} ({sys.executable})")]
    torch_check = _torch()
    checks.append(torch_check)
    checks += _raster_stack()
    if torch_check.ok:
        checks += _hardware(device)
    checks += _priors(weights, config_path)
    checks += _folders()
    return checks


def _torch() -> Check:
    try:
        import torch
    except ImportError as exc:  # a broken or missing wheel
        return Check("torch", False, f"does not import ({exc})", "pip install torch (see https://pytorch.org)")
    build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU-only build"
    return Check("torch", True, f"{torch.__version__} ({build}, {torch.get_num_threads()} threads)")


def _raster_stack() -> list[Check]:
    import pyogrio
    import rasterio
    from rasterio.crs import CRS
    from rasterio.errors import CRSError, RasterioError
    from rasterio.warp import transform

    proj = getattr(rasterio, "__proj_version__", "?")
    versions = (f"rasterio {rasterio.__version__}, GDAL {rasterio.__gdal_version__}, PROJ {proj}; "
                f"vectors: pyogrio GDAL {pyogrio.__gdal_version_string__}")
    try:
        with rasterio.Env():
            xs, _ = transform(CRS.from_epsg(4326), CRS.from_epsg(32614), [-99.0], [45.0])
        ok, found = abs(xs[0] - 500000.0) < 1e-3, versions
    except (CRSError, RasterioError, OSError, ValueError) as exc:  # PROJ's database missing or unreadable
        ok, found = False, f"{versions}; PROJ cannot reproject ({exc})"
    fix = "" if ok else "reinstall rasterio (pip install --force-reinstall rasterio) or unset PROJ_DATA/PROJ_LIB"
    return [Check("GDAL/PROJ", ok, found, fix)]


def _hardware(device: str) -> list[Check]:
    import torch

    from .runtime import choose_precision, cpu_flags

    flags = cpu_flags()
    have = [f for f in CPU_FLAGS if f in flags] if flags else ["(flags unknown on this system)"]
    cpu = Check("CPU", True, f"{platform.machine()}, {os.cpu_count()} cores; {' '.join(have) or 'no AVX2'}",
                required=False)
    gpu_ok, gpu_found, gpu_fix = _gpu(torch)
    gpu = Check("GPU", gpu_ok, gpu_found, gpu_fix, required=device.startswith("cuda"))
    chosen = ("cuda" if gpu_ok else "cpu") if device == "auto" else device
    if chosen.startswith("cuda") and not gpu_ok:
        return [cpu, gpu]
    dtype = str(choose_precision("auto", chosen)).removeprefix("torch.")
    why = ("native bf16 matrix units" if dtype == "bfloat16" and chosen == "cpu" else
           "no AMX/AVX512-BF16 on this CPU" if chosen == "cpu" else "autocast on the GPU")
    return [cpu, gpu, Check("precision", True, f"--device {device} runs on {chosen}; infer.precision auto → {dtype} "
                                               f"({why})", required=False)]


def _gpu(torch: Any) -> tuple[bool, str, str]:
    """(used, what was found, why not / the fix)."""
    if torch.version.cuda is None:
        return False, "not used: this torch is a CPU-only build", (
            "for a GPU install a CUDA build of torch: pip install torch --index-url https://download.pytorch.org/whl/cu124")
    hidden = os.environ.get("CUDA_VISIBLE_DEVICES")
    if hidden is not None and hidden.strip() in ("", "-1"):
        return False, f"not used: CUDA_VISIBLE_DEVICES={hidden!r} hides every GPU", "unset CUDA_VISIBLE_DEVICES"
    if not torch.cuda.is_available():
        return False, f"not used: torch (CUDA {torch.version.cuda}) finds no device", (
            "check the NVIDIA driver (nvidia-smi) matches CUDA " + str(torch.version.cuda))
    names = []
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        names.append(f"cuda:{i} {p.name} ({p.total_memory / 2**30:.0f} GiB, sm_{p.major}{p.minor})")
    return True, "used: " + "; ".join(names), ""


def _priors(weights: str | None, config_path: str | None) -> list[Check]:
    from .config import load_config
    from .errors import RsWsssError
    from .priors import resolve

    cfg = load_config(config_path).priors
    out = []
    for backbone, arch in (("clip", cfg.clip), ("dino", cfg.dino)):  # the registry names (priors/specs.py)
        try:
            found = resolve(backbone, cfg, weights).describe()
            out.append(Check(f"{backbone} weights", True, f"{arch}: {found}"))
        except RsWsssError as exc:
            out.append(Check(f"{backbone} weights", False, f"{arch}: {str(exc).split(': put ')[0]}",
                             "pass --weights DIR (or set $RS_WSSS_WEIGHTS_DIR), or --weights random to see the "
                             "mechanics only"))
    return out


def _folders() -> list[Check]:
    from .paths import cache_dir

    out = []
    for name, folder, fix in (("cache folder", cache_dir(), "set $RS_WSSS_CACHE to a writable folder"),
                              ("temporary folder", Path(tempfile.gettempdir()), "set $TMPDIR to a writable folder")):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=folder, prefix=".rs-wsss-doctor."):
                pass
            out.append(Check(name, True, f"{folder} (writable)"))
        except OSError as exc:
            out.append(Check(name, False, f"{folder}: {exc.strerror or exc}", fix))
    return out
