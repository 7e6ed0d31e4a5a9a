"""Each runtime × precision of `rs-wsss segment`, whole process, against the bound, with pixel agreement.

The bound (every ratio's denominator): open_clip's own ViT-B/16 ``model.visual`` forward — float32, fused attention,
warm, the same tiles segment predicts, the same batch size and threads — timed in this process, in the same run.
Rows are whole ``rs-wsss segment`` processes (start-up, imports, weight loading or graph compilation, reads,
stitching, COG) on a VRT mosaic of the real NAIP scene, single scale, no CRF, no report:

- ``torch`` fp32 / bf16: ``--model model.pt`` (a decoder checkpoint on real-shaped ViT-B/16 weights, random values in
  open_clip's published layout: timing does not depend on the values);
- ``onnxruntime`` fp32 / int8, ``openvino`` fp32 / bf16 / int8: ``--model model.onnx`` / ``model.int8.onnx`` made by
  ``rs-wsss export`` (int8: calibrated on tiles of the same scene). These never import torch or open_clip.

OpenVINO caches its compiled graph (``$RS_WSSS_CACHE/openvino``); one unmeasured warm-up run per OpenVINO row fills
it, as a first run would for a user. Agreement: share of pixels of each row's class raster equal to torch fp32's.
Seconds are CPU seconds (user + system of the child process) — on a shared machine wall time swings, CPU time much
less; wall seconds are printed beside them. lscpu flags are printed on every row.

Usage: python benchmarks/runtimes.py [--size 1868x1446] [--threads 1,2] [--rows torch:fp32,torch:bf16,...]
  24 Mpx: python benchmarks/runtimes.py --size 5600x4300
  a trained model's agreement: --scene SCENE --model model.pt --weights random --work DIR (one DIR per model)
"""

from __future__ import annotations

import argparse
import os
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

ROWS = "torch:fp32,torch:bf16,onnxruntime:fp32,onnxruntime:int8,openvino:fp32,openvino:bf16"


def lscpu_flags() -> str:
    """The lscpu flags that decide the fast paths, as lscpu prints them."""
    import subprocess

    out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    flags = next((ln.split(":", 1)[1].split() for ln in out.splitlines() if ln.startswith("Flags")), [])
    keep = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")
    return " ".join(f for f in keep if f in flags)


def bound_seconds(visual, tiles: list, batch: int) -> float:
    """CPU seconds of open_clip's fp32 ``model.visual`` over ``tiles`` (warm: one batch first)."""
    import torch

    batches = [torch.from_numpy(np.stack(tiles[i : i + batch])) for i in range(0, len(tiles), batch)]
    with torch.inference_mode():
        visual(batches[0])
        c = time.process_time()
        for x in batches:
            visual(x)
    return time.process_time() - c


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="1868x1446", help="raster W x H (1868x1446 = 2.7 Mpx; 5600x4300 = 24 Mpx)")
    ap.add_argument("--tile", type=int, default=512)
    ap.add_argument("--overlap", type=float, default=0.25)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--rows", default=ROWS)
    ap.add_argument("--work", default=None, help="folder for weights, checkpoint and graphs (kept between runs)")
    ap.add_argument("--scene", type=Path, default=NAIP, help="the real scene the mosaic repeats (default: NAIP)")
    ap.add_argument("--model", type=Path, default=None,
                    help="a trained checkpoint to run instead of the untrained real-shaped stand-in")
    ap.add_argument("--weights", default=None,
                    help="the priors of --model: a folder, or 'random' (default: real-shaped random-valued files)")
    a = ap.parse_args()
    import torch

    work = Path(a.work or tempfile.mkdtemp(prefix="rsw-runtimes-"))
    work.mkdir(parents=True, exist_ok=True)
    w, h = map(int, a.size.split("x"))
    scene = mosaic_vrt(a.scene, work / f"mosaic_{a.scene.stem}_{w}x{h}.vrt", w, h)
    weights = Path(a.weights) if a.weights not in (None, "random") else work / "weights"
    if a.weights is None and not (weights / "open_clip_vit_b16_openai.bin").exists():
        real_shaped_weights(weights)
    weights_arg = "random" if a.weights == "random" else str(weights)
    ckpt = a.model or work / "model.pt"
    if not ckpt.exists():
        make_checkpoint(ckpt, weights_arg)
    rows = [r.split(":") for r in a.rows.split(",")]
    graphs = {"fp32": work / f"model_{a.tile}.onnx", "int8": work / f"model_{a.tile}.int8.onnx"}
    needed = {"int8" if p == "int8" else "fp32" for r, p in rows if r != "torch"}  # graphs only for the graph rows
    for precision, path in graphs.items():
        if precision in needed and not path.exists():
            run_cpu(cli() + ["export", str(ckpt), "-o", str(path), "--weights", weights_arg, "--tile", str(a.tile),
                             "--resolution", "60", "--precision", precision, "--scene", str(a.scene)])
    tiles = read_tiles(scene, a.tile, a.overlap)
    from rs_wsss.build import ModelSpec, build

    clip = build(ModelSpec(model_path=str(ckpt), weights=weights_arg), "predict").clip
    visual = bound_visual(clip, a.tile // clip.patch)
    flags = lscpu_flags()
    print(machine())
    print(f"CPU: {cpu_flags()}")
    print(f"model {ckpt} (priors: {weights_arg})")
    print(f"raster {w}x{h} px = {w * h / 1e6:.1f} Mpx (a mosaic of the real scene {a.scene.name}), "
          f"{len(tiles)} tiles of {a.tile} px, "
          f"overlap {a.overlap}, batch {a.batch}; whole processes, CPU s (wall s)")
    print("| runtime | precision | threads | segment CPU s (wall) | bound CPU s | ÷ bound | agreement vs torch fp32 "
          "| lscpu flags |")
    print("|---|---|---|---|---|---|---|---|")
    for threads in [int(t) for t in a.threads.split(",")]:
        os.environ["OMP_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)
        bound = bound_seconds(visual, tiles, a.batch)
        env = dict(os.environ, OMP_NUM_THREADS=str(threads))
        ref = None
        for runtime, precision in rows:
            model = ckpt if runtime == "torch" else graphs["int8" if precision == "int8" else "fp32"]
            out = work / f"out_{a.scene.stem}_{w}x{h}_{runtime}_{precision}_{threads}.tif"
            cmd = cli() + ["segment", str(scene), "-o", str(out), "--model", str(model), "--runtime", runtime,
                           "--precision", precision, "--tile", str(a.tile), "--overlap", str(a.overlap),
                           "--scales", "1", "--no-crf", "--no-report", "--overwrite", "--set",
                           f"infer.batch={a.batch}"] + (["--weights", weights_arg] if runtime == "torch" else [])
            if runtime == "openvino":
                run_cpu(cmd, env)  # fills OpenVINO's compiled-graph cache, as a user's first run does
            wall, cpu = run_cpu(cmd, env)
            import rasterio

            with rasterio.open(out) as ds:
                classes = ds.read(1)
            if ref is None and (runtime, precision) == ("torch", "fp32"):
                ref = classes
            earlier = work / f"out_{a.scene.stem}_{w}x{h}_torch_fp32_{threads}.tif"  # same scene and size only
            if ref is None and earlier.exists():  # an earlier run's reference
                with rasterio.open(earlier) as ds:
                    ref = ds.read(1)
            agree = f"{100 * (classes == ref).mean():.2f} %" if ref is not None else "—"
            print(f"| {runtime} | {precision} | {threads} | {cpu:.1f} ({wall:.0f}) | {bound:.1f} | {cpu / bound:.3f} | "
                  f"{agree} | {flags} |", flush=True)


if __name__ == "__main__":
    main()
