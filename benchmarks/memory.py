"""Peak RSS of `rs-wsss segment` on a large raster ÷ on a small one (issue 15: 24 Mpx ÷ 0.7 Mpx, goal ≤ 1.1).

Real-shaped ViT-B/16 decoder checkpoint through the real weights path (a random-valued file in open_clip's layout),
single scale, no CRF, ``--precision`` as given (default auto). Both rasters are VRT mosaics of the real NAIP scene;
each run is a fresh process; peak RSS from getrusage. With --stand-in the model is a cheap per-pixel function (no
torch model), isolating the raster layer's memory (e.g. --stand-in --large 9850 for 97 Mpx).
Usage: python benchmarks/memory.py [--large 4900] [--small 837] [--overlap 0] [--precision auto] [--stand-in]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from _common import (
    NAIP,
    cli,
    cpu_flags,
    machine,
    make_checkpoint,
    mosaic_vrt,
    peak_rss_of,
    real_shaped_weights,
)

STAND_IN = r'''
import sys, numpy as np
from pathlib import Path
from types import SimpleNamespace
from rs_wsss.classes import load_class_set
from rs_wsss.config import load_config
from rs_wsss.outputs import OutputSpec
from rs_wsss.segment import SceneRun, Segmenter, segment_scene
def predict(x, valid):
    g = x.mean(1, keepdims=True)
    return np.concatenate([g, 1 - g] + [np.zeros_like(g)] * 4, 1)
seg = Segmenter(predict, load_class_set("landcover"), load_config(), {"model": "stand-in"})
segment_scene(seg, sys.argv[1], Path(sys.argv[2]), OutputSpec(overwrite=True),
              SceneRun(tile=int(sys.argv[3]), overlap=float(sys.argv[4])))
'''


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--large", default="4900", help="N (N × N px) or WxH")
    ap.add_argument("--small", default="2048x342", help="N or WxH; the default is 0.7 Mpx one tile row deep, four "
                                                        "tiles "
                    "wide, so both rasters run the same batch of 4 and only raster-size-dependent memory differs")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--tile", type=int, default=512)
    ap.add_argument("--overlap", type=float, default=0.0)
    ap.add_argument("--stand-in", action="store_true")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="rsw-mem-"))
    rows = []
    ckpt = tmp / "model.pt"
    if not a.stand_in:
        weights = real_shaped_weights(tmp / "weights")
        make_checkpoint(ckpt, weights)
    for size in [v for v in (a.small, a.large) if v]:  # --large "" measures the small raster only
        sw, sh = (int(v) for v in (size.split("x") if "x" in size else (size, size)))
        scene = mosaic_vrt(NAIP, tmp / f"m{size}.vrt", sw, sh)
        out = tmp / f"o{size}.tif"
        if a.stand_in:
            cmd = [sys.executable, "-c", STAND_IN, str(scene), str(out), str(a.tile), str(a.overlap)]
        else:
            cmd = cli() + ["segment", str(scene), "-o", str(out), "--model", str(ckpt), "--weights", str(weights),
                           "--scales", "1", "--no-crf", "--tile", str(a.tile), "--overlap", str(a.overlap),
                           "--device", "cpu", "--overwrite", "--precision", a.precision]
        rss, wall = peak_rss_of(cmd)
        rows.append((f"{sw} × {sh} ({sw * sh / 1e6:.1f} Mpx)", rss, wall))
    print(machine())
    print(f"CPU: {cpu_flags()}")
    model = ("cheap per-pixel stand-in" if a.stand_in
             else f"real ViT-B/16 + adapter/decoder checkpoint, precision {a.precision}")
    print(f"model: {model}; tile {a.tile}, overlap {a.overlap}; real NAIP imagery mosaics")
    print("| raster | peak RSS MiB | wall s |\n|---|---|---|")
    for size, rss, wall in rows:
        print(f"| {size} | {rss:.0f} | {wall:.0f} |")
    if len(rows) == 2:
        print(f"| ratio large ÷ small | {rows[1][1] / rows[0][1]:.3f} | goal ≤ 1.1 |")


if __name__ == "__main__":
    main()
