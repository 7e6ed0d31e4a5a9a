"""Cost of each prior: segment (decoder inference) per tile and one training step, per architecture, beside the
ViT-B/16 bound (open_clip's own ``model.visual`` forward, fp32, warm, on the same tiles, in the same run).

Real-size architectures with random values (timing does not depend on them), built through the registry
(``--clip-prior`` / ``--dino-prior`` names), the same real NAIP tiles for every prior, fp32, one thread by default.
CLIP priors are timed with the paper's DINOv2 ViT-B/14; DINO priors with the paper's CLIP ViT-B/16 (DINO is not run
by decoder inference, so only the training step and the counts change). CPU seconds (``time.process_time``: this
process, all threads) because the machine is shared; wall seconds beside them.

Usage: python benchmarks/priors.py [--tiles 2] [--steps 1] [--batch 1]
       [--clip openai-vit-b-16,remoteclip-vit-b-32,remoteclip-vit-l-14] [--dino dinov2-vit-s-14,...]
"""

from __future__ import annotations

import argparse
import time

import torch
from _common import NAIP, bound_visual, cpu_flags, machine, read_tiles

CLIPS = "openai-vit-b-16,remoteclip-vit-b-32,remoteclip-vit-l-14"
DINOS = "dinov2-vit-s-14,dinov2-vit-b-14,dinov2-vit-l-14,dinov2-vit-b-14-reg"


def timed(fn, repeat: int = 1) -> tuple[float, float]:
    """(CPU s, wall s) of ``repeat`` calls of ``fn`` after one warm-up call."""
    fn()
    c, w = time.process_time(), time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.process_time() - c) / repeat, (time.perf_counter() - w) / repeat


def build(clip_name: str, dino_name: str, batch: int):
    from rs_wsss.classes import load_class_set
    from rs_wsss.config import load_config
    from rs_wsss.model.wsss import WSSS
    from rs_wsss.priors import build_priors

    cfg = load_config(overrides=[f"priors.clip={clip_name}", f"priors.dino={dino_name}", f"train.batch={batch}"])
    clip, dino = build_priors(cfg.priors, "random")
    return WSSS(cfg, load_class_set("landcover"), clip, dino)


def measure(model, tiles: list, batch: int, steps: int) -> dict:
    """Segment per tile (model's predict, single scale, no flip), one training step, counts and GFLOPs."""
    from rs_wsss.model.profile import crop_flops, param_counts
    from rs_wsss.train.loop import build_optimizer

    x = torch.stack([torch.from_numpy(t) for t in tiles])
    model.eval()

    def segment():
        with torch.no_grad():
            for i in range(len(tiles)):
                model.predict(x[i : i + 1], scales=[1.0], flip=False)

    seg_cpu, seg_wall = timed(segment)
    model.train()
    opt, _ = build_optimizer(model, model.cfg.train)
    crops = torch.nn.functional.interpolate(x[:1].expand(batch, -1, -1, -1), size=(model.clip.size,) * 2,
                                            mode="bilinear", align_corners=False)
    tags = torch.zeros(batch, model.class_set.num_classes)
    tags[:, 0] = 1

    def step():
        out = model.train_step(crops, tags)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()

    step_cpu, step_wall = timed(step, steps)
    model.eval()
    c = param_counts(model)
    return {"seg": seg_cpu / len(tiles), "seg_wall": seg_wall / len(tiles), "step": step_cpu, "step_wall": step_wall,
            "trainable": c["trainable"] / 1e6, "gflops": crop_flops(model).train_forward / 1e9}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tiles", type=int, default=2, help="real 512 px NAIP tiles per segment measurement")
    ap.add_argument("--steps", type=int, default=1, help="timed training steps (after one warm-up step)")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--clip", default=CLIPS)
    ap.add_argument("--dino", default=DINOS)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print(machine())
    print(cpu_flags())
    tiles = read_tiles(NAIP, 512, 0.0)[: a.tiles]
    rows = []
    bound = None
    for clip_name in a.clip.split(","):
        model = build(clip_name, "dinov2-vit-b-14", a.batch)
        visual = bound_visual(model.clip, _grid(model.clip.patch))
        x = torch.stack([torch.from_numpy(t) for t in tiles])
        x = torch.nn.functional.interpolate(x, size=(_grid(model.clip.patch) * model.clip.patch,) * 2,
                                            mode="bilinear", align_corners=False)
        x = (x - model.clip.mean) / model.clip.std

        def forward(v=visual, x=x):
            with torch.no_grad():
                for i in range(x.shape[0]):
                    v(x[i : i + 1])

        own_cpu, _ = timed(forward)
        own = own_cpu / len(tiles)
        if bound is None:  # the first CLIP prior is ViT-B/16: its own forward is the bound
            bound = own
        rows.append((clip_name, "dinov2-vit-b-14", own, measure(model, tiles, a.batch, a.steps), _sizes(model)))
        del model, visual
    for dino_name in a.dino.split(","):
        if dino_name == "dinov2-vit-b-14":
            continue  # already measured beside every CLIP prior
        model = build("openai-vit-b-16", dino_name, a.batch)
        rows.append(("openai-vit-b-16", dino_name, None, measure(model, tiles, a.batch, a.steps), _sizes(model)))
        del model
    assert bound is not None
    print(f"\nbound: open_clip ViT-B/16 model.visual fp32 forward, 512 px tiles: {bound:.2f} CPU s per tile")
    print("| CLIP prior | DINO prior | crops CLIP/DINO | tokens per 512 px tile | trainable M | GFLOPs per crop "
          "(train fwd) | own visual fwd CPU s/tile (÷ bound) | segment CPU s/tile (÷ bound) | train step CPU s "
          "(÷ ViT-B/16 step) |")
    print("|---|---|---|---|---|---|---|---|---|")
    base_step = rows[0][3]["step"]
    for clip_name, dino_name, own, m, (patch, csize, dsize) in rows:
        g = _grid(patch)
        own_txt = f"{own:.2f} ({own / bound:.2f})" if own is not None else "—"
        print(f"| {clip_name} | {dino_name} | {csize}/{dsize} | {g}×{g} | {m['trainable']:.2f} | "
              f"{m['gflops']:.0f} | {own_txt} | {m['seg']:.2f} ({m['seg'] / bound:.2f}) | "
              f"{m['step']:.2f} ({m['step'] / base_step:.2f}) |")


def _sizes(model) -> tuple[int, int, int]:
    """(CLIP patch, CLIP crop, DINO crop) of a built model."""
    return model.clip.patch, model.clip.size, model.dino.size if model.dino is not None else 0


def _grid(patch: int) -> int:
    """Tokens per side of a 512 px tile at single scale (segment rounds the tile to a multiple of the patch)."""
    return max(1, round(512 / patch))


if __name__ == "__main__":
    main()
