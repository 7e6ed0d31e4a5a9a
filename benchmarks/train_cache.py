"""Training iterations/s with the frozen-feature cache ÷ recomputing the backbones, same config, same run (goal ≥ 5).

Real ViT-B architectures (random weights), paper crop sizes (320 CLIP / 308 DINO), batch 4, real NAIP tiles.
Usage: python benchmarks/train_cache.py [--steps 6]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from _common import NAIP, cpu_flags, machine


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--tiles", type=int, default=8, help="tagged 512 px tiles of the NAIP scene used (cached views)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--iters", type=int, default=40000, help="schedule to project (the paper's: 40k × batch 4)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    from rs_wsss.classes import load_class_set
    from rs_wsss.config import load_config
    from rs_wsss.model.wsss import WSSS
    from rs_wsss.priors import build_priors
    from rs_wsss.raster.io import open_scene
    from rs_wsss.raster.tags import TagRow, template_grid
    from rs_wsss.train.batches import CachedBatches
    from rs_wsss.train.cache import FeatureCache
    from rs_wsss.train.loop import build_optimizer
    from rs_wsss.train.sampler import TileSampler

    cfg = load_config(overrides=[f"train.batch={a.batch}", "train.cache_views=1"])
    cs = load_class_set("landcover")
    grid = template_grid([str(NAIP)], 512, 0.0)
    rows = [TagRow(r.image, r.window, ("water", "vegetation"), r.row) for r in grid][: a.tiles]
    sampler = TileSampler(rows, {str(NAIP): open_scene(NAIP)}, cs, cfg)
    clip, dino = build_priors(cfg.priors, "random")
    model = WSSS(cfg, cs, clip, dino).train()
    opt, _ = build_optimizer(model, cfg.train)
    cache = FeatureCache(Path(tempfile.mkdtemp(prefix="rsw-cache-")))
    batches = CachedBatches(sampler, cache)
    t = time.perf_counter()
    batches.fill(model)
    fill = time.perf_counter() - t

    def one(b):
        out = model.step_from_features(b[2], b[0],
                                       b[1]) if len(b) > 2 and b[2] is not None else model.train_step(b[0], b[1])
        opt.zero_grad()
        out["loss"].backward()
        opt.step()

    def timed(batch_fn) -> float:
        """Steps per CPU second (this process, all threads; loading included): wall time on a shared machine swings
        with other work, CPU time does not."""
        times = []
        for step in range(a.steps + 1):
            c = time.process_time()
            one(batch_fn(step))
            times.append(time.process_time() - c)
        return a.steps / sum(times[1:])  # first step is warm-up

    def cached(step):
        b = batches(step)
        return b.images, b.tags, b.feats

    def recompute(step):
        b = batches(step)  # the same crops; the backbones run again on them
        return b.images, b.tags

    ips_cached = timed(cached)
    ips_recompute = timed(recompute)
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        one(cached(1))
    print(machine())
    print(f"CPU: {cpu_flags()}; torch threads {a.threads}; it/s below are steps per CPU second")
    print(f"batch {a.batch}, crops 320/308, {len(batches.views)} cached views ({cache.size_bytes() / 1e6:.0f} MB, "
          f"{cache.size_bytes() / 1e6 / max(1, len(batches.views)):.1f} MB per view, filled in {fill:.0f} s)")
    print("| mode | it/s | s/it |\n|---|---|---|")
    print(f"| recompute backbones | {ips_recompute:.3f} | {1 / ips_recompute:.2f} |")
    print(f"| frozen-feature cache | {ips_cached:.3f} | {1 / ips_cached:.2f} |")
    print(f"| ratio cache ÷ recompute | {ips_cached / ips_recompute:.2f} | goal ≥ 5 |")
    h = a.iters / ips_cached / 3600
    print(f"projected {a.iters} × batch {a.batch} with the cache: {h:.1f} h of CPU time at {a.threads} thread(s) "
          "(wall on an otherwise idle machine ≈ that ÷ the thread speed-up); recomputing: "
          f"{a.iters / ips_recompute / 3600:.1f} h")
    print("cached step, top operators by self CPU time:")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12, max_name_column_width=40))


if __name__ == "__main__":
    main()
