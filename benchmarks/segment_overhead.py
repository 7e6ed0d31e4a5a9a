"""`rs-wsss segment` and the model's own forward ÷ the bound, on the same tiles in the same run.

The bound (every ratio's denominator): open_clip's own ViT-B/16 ``model.visual`` forward — float32, its fused attention,
warm, the same tiles segment predicts, the same batch size and torch threads — timed in this process. Measured in the
same run, interleaved round by round with:

- ``segment``: the whole ``rs-wsss segment`` process (start-up, weight loading, reads, stitching, COG) on a VRT mosaic
  of the real NAIP scene, a decoder checkpoint, single scale, no CRF, through the real weights path (a random-valued
  ViT-B/16 file in open_clip's published layout: timing does not depend on the values);
- ``model``: the model's own forward as segment runs it (CLIP taps + adapter + decoder, ``WSSS.predict``), warm.

Each row also at ``--precision`` bf16 (or whatever ``--precisions`` lists); the bound stays float32.

Seconds are CPU seconds (user + system, all threads; for ``segment`` the whole child process) with ``--threads``
torch/OpenMP threads everywhere (default 1): on a machine shared with other work, wall time swings by 2-4× between
two identical passes while CPU time does not; wall seconds are printed beside them. On CUDA the rows report wall
time and Mpx/s (tile pixels ÷ seconds) instead.
Usage: python benchmarks/segment_overhead.py [--size 1868x1446] [--rounds 2] [--precisions fp32,bf16] [--extras]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import (
    NAIP,
    bound_visual,
    cli,
    cpu_flags,
    machine,
    make_checkpoint,
    mosaic_vrt,
    read_tiles,
    real_shaped_weights,
    run_cpu,
)

CUDA = False


def _timed(fn, batches) -> tuple[float, float]:
    """(measure, wall): measure is CPU seconds of this process on CPU, wall seconds on CUDA."""
    c, t = time.process_time(), time.perf_counter()
    for x in batches:
        fn(x)
    wall = time.perf_counter() - t
    return (wall if CUDA else time.process_time() - c), wall


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="1868x1446", help="raster W x H (1868x1446 = 2.7 Mpx; 5600x4300 = 24 Mpx)")
    ap.add_argument("--tile", type=int, default=512)
    ap.add_argument("--overlap", type=float, default=0.25)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--device", default="cuda" if _cuda() else "cpu")
    ap.add_argument("--no-segment", action="store_true", help="in-process rows only (no whole-process runs)")
    ap.add_argument("--extras", action="store_true", help="also the model at 3 scales (0.75,1,1.25) and the dense CRF")
    a = ap.parse_args()
    import os

    os.environ["OMP_NUM_THREADS"] = str(a.threads)  # the segment children too
    import torch

    global CUDA
    CUDA = a.device == "cuda"
    torch.set_num_threads(a.threads)

    from rs_wsss.build import ModelSpec
    from rs_wsss.classes import load_class_set  # noqa: F401  (imports are not part of any timing below)
    from rs_wsss.model.checkpoint import load_checkpoint
    from rs_wsss.runtime import autocast, choose_precision
    from rs_wsss.segment import load_segmenter

    w, h = map(int, a.size.split("x"))
    tmp = Path(tempfile.mkdtemp(prefix="rsw-bench-"))
    scene = mosaic_vrt(NAIP, tmp / "mosaic.vrt", w, h)
    weights = real_shaped_weights(tmp / "weights")
    ckpt = tmp / "model.pt"
    make_checkpoint(ckpt, weights)
    tiles = read_tiles(scene, a.tile, a.overlap)
    dev = torch.device(a.device)
    batches = [torch.from_numpy(np.stack(tiles[i : i + a.batch])).to(dev) for i in range(0, len(tiles), a.batch)]
    mpx = len(tiles) * a.tile * a.tile / 1e6
    precisions = a.precisions.split(",")

    # in-process models: the bound, and the segment model at each precision (loaded exactly as segment loads it)
    models = {}
    for p in precisions:
        spec = ModelSpec(str(ckpt), overrides=(f"infer.precision={p}", "infer.scales=[1.0]"), weights=str(weights))
        seg = load_segmenter(spec, device=a.device)
        models[p] = seg.model
    visual = bound_visual(models[precisions[0]].clip, a.tile // 16).to(dev)
    assert load_checkpoint(ckpt)["random_weights"] is False  # the real weights path, not --weights random

    def bound(x):
        with torch.inference_mode():
            visual(x)
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def ours(p, scales=(1.0,)):
        model, dtype = models[p], choose_precision(p, dev)

        def run(x):
            with torch.inference_mode(), autocast(dev, dtype):
                return model.predict(x, scales=list(scales), flip=False)
            if dev.type == "cuda":
                torch.cuda.synchronize()
        return run

    for fn in [bound] + [ours(p) for p in precisions]:  # warm-up: one batch each
        fn(batches[0])
    base = cli() + ["segment", str(scene), "--model", str(ckpt), "--weights", str(weights), "--tile", str(a.tile),
                    "--overlap", str(a.overlap), "--device", a.device, "--overwrite", "--scales", "1", "--no-crf",
                    "--set", f"infer.batch={a.batch}"]
    runs = {} if a.no_segment else {f"segment, single scale, no CRF, {p}": ["--precision", p] for p in precisions}
    inproc = {f"model forward (CLIP taps + adapter + decoder), {p}": ours(p) for p in precisions}
    if a.extras:  # multi-scale and CRF in process: their cost beside the same bound, without start-up noise
        from rs_wsss.config import InferConfig
        from rs_wsss.model.crf import crf_refine_batch

        inproc |= {f"model forward, 3 scales (0.75, 1, 1.25), {p}": ours(p, (0.75, 1.0, 1.25)) for p in precisions}
        probs = {id(x): ours(precisions[0])(x).float().cpu().numpy() for x in batches}

        def crf(x):
            rgb = (x.cpu().numpy().transpose(0, 2, 3, 1) * 255).round().astype(np.uint8)
            crf_refine_batch(rgb, probs[id(x)], InferConfig(), workers=1)

        inproc["dense CRF alone (pydensecrf2, 10 iterations, in-process)"] = crf
    rows: dict[str, list[tuple[float, float, float, float]]] = {}  # (ours, ours wall, bound, bound wall)
    for _ in range(a.rounds):  # interleaved: one bound pass per round, beside that round's rows
        tb = _timed(bound, batches)
        for name, fn in inproc.items():
            rows.setdefault(name, []).append((*_timed(fn, batches), *tb))
        for name, extra in runs.items():
            wall, cpu = run_cpu(base + ["-o", str(tmp / "out.tif")] + extra)
            rows.setdefault(f"{name} (whole process)", []).append((wall if CUDA else cpu, wall, *tb))

    print(machine())
    print(f"CPU: {cpu_flags()}; torch threads {torch.get_num_threads()}")
    print(f"raster {w}x{h} px = {w * h / 1e6:.1f} Mpx (real NAIP imagery mosaic), {len(tiles)} tiles of {a.tile} px, "
          f"overlap {a.overlap}, batch {a.batch}, device {a.device}, {a.rounds} interleaved rounds")
    unit = "wall s" if CUDA else f"CPU s ({a.threads} thread{'s' * (a.threads > 1)})"
    print(f"| row | {unit} per round | bound {unit}, same round | ÷ bound (median) | wall s: row / bound |"
          + (" Mpx/s |" if CUDA else ""))
    print("|---|---|---|---|---|" + ("---|" if CUDA else ""))
    for name, vals in rows.items():
        ratio = statistics.median(t / b for t, _, b, _ in vals)
        extra = f" {mpx / statistics.median(v[1] for v in vals):.1f} |" if CUDA else ""
        print(f"| {name} | {', '.join(f'{v[0]:.1f}' for v in vals)} | {', '.join(f'{v[2]:.1f}' for v in vals)} | "
              f"{ratio:.3f} | {', '.join(f'{v[1]:.0f}/{v[3]:.0f}' for v in vals)} |{extra}")
    if CUDA:
        tb = statistics.median(v[3] for vals in rows.values() for v in vals)
        print(f"bound: {mpx / tb:.1f} Mpx/s")


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


if __name__ == "__main__":
    main()
