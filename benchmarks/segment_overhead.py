"""`rs-wsss segment` overhead over the bare CLIP ViT-B/16 forward on the same tiles (goal ≤ 1.05).

Real imagery (a VRT mosaic of the NAIP scene), the real ViT-B architectures (random weights: timing does not depend on
the weight values), a decoder checkpoint, single scale, CRF off; then the extra cost of multi-scale and of the CRF.
Usage: python benchmarks/segment_overhead.py [--size 2802x2169] [--extras]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import NAIP, cli, machine, mosaic_vrt, run_measured


def make_checkpoint(path: Path) -> None:
    from rs_wsss.classes import load_class_set
    from rs_wsss.config import load_config
    from rs_wsss.model.checkpoint import save_checkpoint
    from rs_wsss.model.wsss import WSSS
    from rs_wsss.priors import build_priors

    cfg = load_config()
    clip, dino = build_priors(cfg.priors, "random")
    save_checkpoint(path, WSSS(cfg, load_class_set("landcover"), clip, dino))


def bare_forward(scene: Path, tile: int, overlap: float, batch: int) -> tuple[float, int]:
    """CLIP ViT-B/16 forward alone over the tiles segment reads (reads excluded from the timing)."""
    import rasterio
    import torch

    from rs_wsss.config import load_config
    from rs_wsss.priors import build_priors
    from rs_wsss.raster.tiles import tile_windows

    clip, _ = build_priors(load_config().priors, "random", need_dino=False)
    with rasterio.open(scene) as ds:
        wins = tile_windows(ds.width, ds.height, tile, overlap)
        tiles = [ds.read([1, 2, 3], window=w, boundless=True).astype(np.float32) / 255 for w in wins]
    total = 0.0
    with torch.inference_mode():
        clip(torch.from_numpy(np.stack(tiles[:1])))  # warm-up
        for i in range(0, len(tiles), batch):
            x = torch.from_numpy(np.stack(tiles[i : i + batch]))
            t = time.perf_counter()
            clip(x)
            total += time.perf_counter() - t
    return total, len(tiles)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="2802x2169")
    ap.add_argument("--tile", type=int, default=512)
    ap.add_argument("--overlap", type=float, default=0.25)
    ap.add_argument("--extras", action="store_true", help="also time multi-scale (0.75,1,1.25) and the CRF")
    a = ap.parse_args()
    w, h = map(int, a.size.split("x"))
    tmp = Path(tempfile.mkdtemp(prefix="rsw-bench-"))
    scene = mosaic_vrt(NAIP, tmp / "mosaic.vrt", w, h)
    ckpt = tmp / "model.pt"
    make_checkpoint(ckpt)
    base = cli() + ["segment", str(scene), "--model", str(ckpt), "--weights", "random", "--tile", str(a.tile),
                    "--overlap", str(a.overlap), "--device", "cpu", "--overwrite"]
    fwd, n = bare_forward(scene, a.tile, a.overlap, 4)
    runs = {"single scale, no CRF": ["--scales", "1", "--no-crf"]}
    if a.extras:
        runs |= {"3 scales, no CRF": ["--scales", "0.75,1,1.25", "--no-crf"], "single scale + CRF": ["--scales", "1", "--crf"]}
    print(machine())
    print(f"raster {w}x{h} px (real NAIP imagery mosaic), {n} tiles of {a.tile} px, overlap {a.overlap}")
    print(f"| run | wall s | ÷ bare CLIP forward ({fwd:.1f} s) |\n|---|---|---|")
    for name, extra in runs.items():
        wall, _, rc = run_measured(base + ["-o", str(tmp / "out.tif")] + extra)
        assert rc == 0, f"segment failed ({name})"
        print(f"| segment, {name} | {wall:.1f} | {wall / fwd:.3f} |")


if __name__ == "__main__":
    main()
