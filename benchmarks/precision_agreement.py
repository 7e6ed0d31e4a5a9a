"""Agreement of ``--precision bf16`` (or fp16) with fp32 on the real-shaped model and real tiles.

Loads the same decoder checkpoint twice through ``load_segmenter`` (exactly as ``segment`` does) and predicts the same
NAIP tiles: pixel agreement of the arg-max class, max and mean |Δp| of the class probabilities, and the relative L2
error of CLIP's final joint-space tokens (the backbone's own error, independent of the untrained decoder).
The weights are random-valued (timing/agreement mechanics only); a trained decoder is sharper, so its arg-max is
less sensitive to the same probability error.
Usage: python benchmarks/precision_agreement.py [--tiles 4] [--precision bf16]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from _common import (
    NAIP,
    cpu_flags,
    machine,
    make_checkpoint,
    mosaic_vrt,
    read_tiles,
    real_shaped_weights,
)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tiles", type=int, default=4)
    ap.add_argument("--precision", default="bf16")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    import torch

    from rs_wsss.build import ModelSpec
    from rs_wsss.segment import load_segmenter

    torch.set_num_threads(a.threads)
    tmp = Path(tempfile.mkdtemp(prefix="rsw-prec-"))
    scene = mosaic_vrt(NAIP, tmp / "mosaic.vrt", 1868, 1446)
    weights = real_shaped_weights(tmp / "weights")
    ckpt = tmp / "model.pt"
    make_checkpoint(ckpt, weights)
    tiles = np.stack(read_tiles(scene, 512, 0.25)[: a.tiles])
    valid = np.ones((len(tiles), 512, 512), bool)
    out, joint = {}, {}
    for p in ("fp32", a.precision):
        sets = (f"infer.precision={p}", "infer.scales=[1.0]", "infer.crf=false")
        seg = load_segmenter(ModelSpec(str(ckpt), overrides=sets, weights=str(weights)))
        out[p] = np.concatenate([seg.predict(tiles[i : i + 1], valid[i : i + 1]) for i in range(len(tiles))])
        with torch.inference_mode():
            joint[p] = torch.cat([seg.model.clip(torch.from_numpy(tiles[i : i + 1]), need_attn=False).joint
                                  for i in range(len(tiles))])
    lo, hi = out[a.precision], out["fp32"]
    agree = (lo.argmax(1) == hi.argmax(1)).mean()
    d = np.abs(lo - hi)
    rel = ((joint[a.precision] - joint["fp32"]).norm() / joint["fp32"].norm()).item()
    print(machine())
    print(f"CPU: {cpu_flags()}; {len(tiles)} NAIP tiles of 512 px, real-shaped ViT-B/16 + decoder (random values)")
    print(f"| {a.precision} vs fp32 | pixel agreement {agree:.4%} | max |Δp| {d.max():.4f} | mean |Δp| {d.mean():.5f} "
          "| "
          f"CLIP joint tokens rel. L2 error {rel:.4f} | decoder max p (fp32) mean {hi.max(1).mean():.3f} |")


if __name__ == "__main__":
    main()
