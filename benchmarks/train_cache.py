"""Training step cost: frozen-feature cache vs recomputing the backbones, fp32 vs bf16, 1 and 2 threads, same run.

Real ViT-B architectures (random weights: timing does not depend on the values), paper crops (320 CLIP / 308 DINO),
batch 4, real NAIP tiles. Prints, per thread count and precision: CPU s and wall s per step (cached, recomputed),
the achieved GFLOP/s against the trainable step's FLOPs (counted by torch's FlopCounterMode over one step), the
paper schedule's projected hours (40 k steps × batch 4), the CPU flags, the operator profile of the cached step, and
(``--curve-steps``) the loss curves of fp32 and bf16 from the same initial weights over the same cached batches.
``--baseline REF`` also runs the benchmark script of git revision REF (the code before the fast path) in a temporary
worktree in the same session, so before and after come from one run. ``--device cuda`` prints the same rows on a GPU.

Usage: python benchmarks/train_cache.py [--steps 3] [--threads 1,2] [--curve-steps 200] [--baseline 0e18a0d^]
"""

from __future__ import annotations

import argparse
import atexit
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from _common import DATA, NAIP, REPO, cpu_flags, machine

PAPER_ITERS = 40000
_SCRATCH: list[Path] = []


def scratch(prefix: str) -> Path:
    """A fresh temporary directory, removed (with everything in it) when the script exits."""
    if not _SCRATCH:
        _SCRATCH.append(Path(tempfile.mkdtemp(prefix="rsw-train-bench-")))
        atexit.register(shutil.rmtree, _SCRATCH[0], True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=_SCRATCH[0]))


def lscpu_flags() -> str:
    """``lscpu``'s model name and the flags that pick the fast paths (the whole line is long)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    except OSError:
        return cpu_flags()
    info = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    flags = info.get("Flags", "").split()
    keep = [f for f in flags if f.startswith(("avx512", "amx")) or f in ("avx2", "fma")]
    return f"{info.get('Model name', '?').strip()}, {info.get('CPU(s)', '?').strip()} CPUs; flags: {' '.join(keep)}"


def baseline(ref: str, steps: int, tiles: int) -> dict[str, float]:
    """CPU s per step of git revision ``ref``'s own benchmark (1 thread, fp32), run now in a temporary worktree."""
    tmp = scratch("base-") / "tree"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(tmp), ref], check=True,
                   capture_output=True)
    try:
        env = {**os.environ, "PYTHONPATH": str(tmp), "RS_WSSS_SHARED_DATA": str(DATA), "OMP_NUM_THREADS": "1",
               "TMPDIR": str(scratch("tmp-"))}  # its cache goes with ours
        out = subprocess.run([sys.executable, "train_cache.py", "--steps", str(steps), "--tiles", str(tiles),
                              "--threads", "1"], cwd=tmp / "benchmarks", env=env, capture_output=True, text=True,
                             check=True).stdout
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tmp)], check=False,
                       capture_output=True)
    rows = {m.group(1): float(m.group(2)) for m in re.finditer(r"\| (recompute backbones|frozen-feature cache) "
                                                                 r"\| [\d.]+ \| ([\d.]+) \|", out)}
    return {"cached": rows["frozen-feature cache"], "recompute": rows["recompute backbones"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=3, help="timed steps per row (after one warm-up step)")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--tiles", type=int, default=8, help="tagged 512 px tiles of the NAIP scene used (cached views)")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--curve-steps", type=int, default=0, help="steps of the fp32 vs bf16 loss curves (0: none)")
    ap.add_argument("--curve-grid", type=int, default=0,
                    help="CLIP token grid of the loss-curve runs (DINO's one more; 0: the paper's 20/22)")
    ap.add_argument("--curves-only", action="store_true", help="only the loss curves (no timing rows)")
    ap.add_argument("--baseline", default="", help="git revision whose train_cache.py to run too (before/after)")
    ap.add_argument("--iters", type=int, default=PAPER_ITERS, help="schedule to project (the paper's: 40k × batch 4)")
    a = ap.parse_args()
    from rs_wsss.classes import load_class_set
    from rs_wsss.config import load_config
    from rs_wsss.model.wsss import WSSS
    from rs_wsss.priors import build_priors
    from rs_wsss.raster.io import open_scene
    from rs_wsss.raster.tags import TagRow, template_grid
    from rs_wsss.runtime import DTYPES
    from rs_wsss.train.batches import CachedBatches
    from rs_wsss.train.cache import FeatureCache
    from rs_wsss.train.loop import build_optimizer
    from rs_wsss.train.sampler import TileSampler

    dev = torch.device(a.device)
    cuda = dev.type == "cuda"
    before = baseline(a.baseline, a.steps, a.tiles) if a.baseline else None
    cs = load_class_set("landcover")
    grid = template_grid([str(NAIP)], 512, 0.0)
    rows = [TagRow(r.image, r.window, ("water", "vegetation"), r.row) for r in grid][: a.tiles]
    scenes = {str(NAIP): open_scene(NAIP)}

    def setup(extra: list[str]):
        """Model (seed 0), its initial trainable state and the filled cache, for the config + ``extra``."""
        cfg = load_config(overrides=[f"train.batch={a.batch}", "train.cache_views=1", *extra])
        clip, dino = build_priors(cfg.priors, "random")
        torch.manual_seed(0)
        model = WSSS(cfg, cs, clip, dino).to(dev).train()
        start = {k: v.detach().clone() for k, v in model.state_dict().items() if not k.startswith(("clip.", "dino."))}
        cache = FeatureCache(scratch("cache-"))
        batches = CachedBatches(TileSampler(rows, scenes, cs, cfg), cache)
        t = time.perf_counter()
        batches.fill(model)
        return cfg, model, start, cache, batches, time.perf_counter() - t

    precisions = [p for p in a.precisions.split(",") if p]
    if a.curves_only:
        curve_runs(a, setup, dev, precisions)
        return
    cfg, model, start, cache, batches, fill = setup([])
    opt, _ = build_optimizer(model, cfg.train)

    def one(step: int, cached: bool) -> None:
        b = batches(step).to(dev)
        out = model(b.images, b.tags, b.feats if cached else None)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    def timed(cached: bool) -> tuple[float, float]:
        """(CPU s, wall s) per step: this process, all threads, batch loading included; first step is warm-up."""
        cpu = wall = 0.0
        for step in range(a.steps + 1):
            sync()
            c, w = time.process_time(), time.perf_counter()
            one(step, cached)
            sync()
            if step:
                cpu, wall = cpu + time.process_time() - c, wall + time.perf_counter() - w
        return cpu / a.steps, wall / a.steps

    from torch.utils.flop_counter import FlopCounterMode

    model.train_dtype = torch.float32
    with FlopCounterMode(display=False) as fc:
        one(0, True)
    gflop = fc.get_total_flops() / 1e9  # trainable forward + backward (the frozen backbones are cached)
    res: dict[tuple[int, str], dict[str, tuple[float, float]]] = {}
    for threads in [int(x) for x in a.threads.split(",") if x]:
        torch.set_num_threads(threads)
        for prec in precisions:
            model.train_dtype = DTYPES[prec]
            res[threads, prec] = {"cached": timed(True), "recompute": timed(False)}
    model.train_dtype = torch.float32
    torch.set_num_threads(1)
    from torch.profiler import ProfilerActivity, profile

    profiles = {}
    for prec in precisions:
        model.train_dtype = DTYPES[prec]
        with profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])) as prof:
            one(1, True)
        profiles[prec] = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12,
                                                   max_name_column_width=40)

    print(machine())
    print(f"CPU: {lscpu_flags()}")
    print(f"bf16 matrix units: {cpu_flags()}; device {dev}")
    print(f"batch {a.batch}, crops 320/308, {len(batches.views)} cached views ({cache.size_bytes() / 1e6:.0f} MB, "
          f"{cache.size_bytes() / 1e6 / max(1, len(batches.views)):.1f} MB per view, filled in {fill:.0f} s wall)")
    print(f"trainable step (forward + backward, counted): {gflop:.1f} GFLOP")
    print("\n| threads | precision | cached CPU s/step | cached wall s/step | recompute CPU s/step | recompute wall "
          "s/step | cached ÷ recompute (CPU) | GFLOP/s (cached, per CPU s) | paper schedule, cached: CPU h / wall h |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (threads, prec), r in res.items():
        (cc, cw), (rc, rw) = r["cached"], r["recompute"]
        print(f"| {threads} | {prec} | {cc:.3f} | {cw:.3f} | {rc:.3f} | {rw:.3f} | {rc / cc:.2f} | "
              f"{gflop / cc:.0f} | {a.iters * cc / 3600:.1f} / {a.iters * cw / 3600:.1f} |")
    if before:
        after = res.get((1, "fp32"), {}).get("cached", (float("nan"),))[0]
        print(f"\nbefore ({a.baseline}, its own script, 1 thread, fp32, same session): cached "
              f"{before['cached']:.2f} CPU s/step, recompute {before['recompute']:.2f}; after: cached {after:.2f} "
              f"({before['cached'] / after:.2f}× faster)")
    for prec, table in profiles.items():
        print(f"\ncached step, {prec}, 1 thread, top operators by self CPU time:\n{table}")
    if a.curve_steps:
        curve_runs(a, setup, dev, precisions)


def curve_runs(a, setup, dev: torch.device, precisions: list[str]) -> None:
    """Loss curves from the same initial weights over the same cached batches: fp32 and bf16 with the paper's online
    targets (USR + VPE refine the pseudo labels from the features being trained), an fp32 control whose initial
    weights carry 1e-6 relative noise (how far the online loop alone drifts from a rounding-sized change), and fp32
    and bf16 on static targets (USR and VPE off: initial CAM + PAR, a fixed objective per view)."""
    from rs_wsss.config import load_config
    from rs_wsss.train.loop import train

    grids = [f"priors.clip_grid={a.curve_grid}", f"priors.dino_grid={a.curve_grid + 1}"] if a.curve_grid else []
    cfg, model, start, cache, batches, fill = setup(grids)
    print(f"\nloss curves: crops {model.clip.size}/{model.dino.size if model.dino else '-'} px, real ViT-B widths, "
          f"{len(batches.views)} cached views of real NAIP tiles, the same initial weights and batches")
    low = precisions[-1]
    runs = [("fp32", "fp32", True, 0.0), (low, low, True, 0.0), ("fp32, 1e-6 noise", "fp32", True, 1e-6),
            ("fp32 static", "fp32", False, 0.0), (f"{low} static", low, False, 0.0)]
    curves: dict[str, list[float]] = {}
    for name, prec, online, noise in runs:
        gen = torch.Generator().manual_seed(1)
        model.load_state_dict({k: v + noise * v.abs().mean() * torch.randn(v.shape, generator=gen)
                               if noise and v.is_floating_point() and k.split(".")[0] in ("adapter", "dino_adapter",
                                                                                          "decoder") else v
                               for k, v in start.items()}, strict=False)
        model.steps_done = 0
        model.cfg.usr.enabled = model.cfg.vpe.enabled = online
        c = load_config(overrides=[f"train.batch={a.batch}", "train.cache_views=1", f"train.iters={a.curve_steps}",
                                   f"train.precision={prec}", f"train.checkpoint_every={a.curve_steps}", *grids])
        out = scratch("curve-") / "m.pt"
        cpu = time.process_time()
        curves[name] = train(model, batches, c.train, out, device=dev)["losses"]
        print(f"curve {name}: {a.curve_steps} steps in {time.process_time() - cpu:.0f} CPU s")
    k = max(1, a.curve_steps // 10)

    def compare(x: str, y: str) -> str:
        u, v = torch.tensor(curves[x]), torch.tensor(curves[y])
        su, sv = (torch.nn.functional.avg_pool1d(t[None, None], k, 1)[0, 0] for t in (u, v))
        return (f"{x} vs {y}: per-step max |Δ| {float((u - v).abs().max()):.4f}, mean |Δ| "
                f"{float((u - v).abs().mean()):.4f}; {k}-step running means: max relative Δ "
                f"{float(((sv - su).abs() / su.abs()).max()):.2%}; last {k} steps mean {float(u[-k:].mean()):.4f} vs "
                f"{float(v[-k:].mean()):.4f}")

    print(f"\n{a.curve_steps} steps, same start and batches:")
    for x, y in (("fp32", low), ("fp32", "fp32, 1e-6 noise"), ("fp32 static", f"{low} static")):
        print(compare(x, y))
    names = [r[0] for r in runs]
    print("\nstep | " + " | ".join(names))
    for st in range(0, a.curve_steps, max(1, a.curve_steps // 20)):
        print(f"{st + 1} | " + " | ".join(f"{curves[n][st]:.4f}" for n in names))

if __name__ == "__main__":
    main()
