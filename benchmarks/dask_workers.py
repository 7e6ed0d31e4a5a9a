"""Segment wall time with 1 vs 2 Dask workers on a multi-scene job (real rasters from ../shared/data).

On this 2-core machine little gain is expected: one worker already keeps both cores busy in torch's intra-op threads,
and two single-threaded workers split the same two cores. On a cluster the blocks of every scene are independent
tasks, so wall time falls with the number of worker machines until the driver's COG assembly and vectorising
(single-process, I/O bound) dominate.
Usage: python benchmarks/dask_workers.py [--tiny]
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

from _common import DATA, cli, machine

SCENES = ["naip/m_4709963_se_14_1_20200831.tif", "spacenet/sample_geotiff.tif",
          "landsat_albers/sample_geotiff_custom_proj.tif"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tiny", action="store_true", help="tiny architecture (fast); default: real ViT-B, random weights")
    a = ap.parse_args()
    rows = []
    for workers in (1, 2):
        out = Path(tempfile.mkdtemp(prefix="rsw-dask-"))
        cmd = cli() + ["segment", *[str(DATA / s) for s in SCENES], "-o", str(out), "--zero-shot", "--classes",
                       "landcover", "--weights", "random", "--scales", "1", "--no-crf", "--tile", "256",
                       "--dask", f"local:{workers}", "--block-size", "512", "--set", "usr.use_dino=false"]
        cmd += ["--tiny"] if a.tiny else []
        t = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        rows.append((workers, time.perf_counter() - t))
    print(machine())
    print(f"{len(SCENES)} real scenes, tile 256, blocks 512 px, {'tiny' if a.tiny else 'ViT-B/16'} zero-shot (CLIP "
          "path)")
    print("| Dask workers | wall s |\n|---|---|")
    for w, s in rows:
        print(f"| {w} | {s:.1f} |")
    print(f"| speed-up 2 vs 1 | {rows[0][1] / rows[1][1]:.2f} |")


if __name__ == "__main__":
    main()
