"""``rs-wsss train``: train the adapter + decoder from tile-level tags."""

from __future__ import annotations

import click


@click.command("train")
@click.argument("scenes", nargs=-1, required=True, type=click.Path())
@click.option("--tags", "tags_path", required=True, type=click.Path(), help="Tile tags: .csv or .gpkg grid.")
@click.option("-o", "--output", required=True, type=click.Path(), help="Checkpoint to write (model.pt).")
@click.option("--classes", "class_set", required=True, help="Class set name (landcover, potsdam, isaid, loveda) or YAML.")
@click.option("--config", "config_path", type=click.Path(), help="A YAML overriding configs/model.yaml + train.yaml.")
@click.option("--iters", type=click.IntRange(min=1), help="Training iterations (paper: 40000).")
@click.option("--batch", type=click.IntRange(min=1), help="Batch size (paper: 4).")
@click.option("--tile", type=int, help="Not used for reading (tag windows are); kept for symmetry with segment.", hidden=True)
@click.option("--weights", help="Backbone weights directory/file, or 'random' (explicit, for smoke runs).")
@click.option("--resume", is_flag=True, help="Continue an interrupted run from its last checkpoint.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--set", "overrides", multiple=True, help="Config override section.key=value, e.g. usr.alpha=2 (repeatable).")
@click.option("--tiny", is_flag=True, help="Tiny test architecture with random weights (tests, smoke runs).")
@click.option("--cache-features", "cache_dir", type=click.Path(),
              help="Frozen-feature cache directory: backbones run once per view (train.cache_views fixed crops per tile).")
@click.option("--nproc", type=click.IntRange(min=1), default=1, show_default=True,
              help="Data-parallel processes (starts torchrun; gloo on CPU, nccl on GPU).")
@click.pass_context
def train_cmd(ctx, scenes, tags_path, output, class_set, config_path, iters, batch, tile, weights, resume, device,
              overrides, tiny, cache_dir, nproc) -> None:
    """Train from tile tags (frozen CLIP + DINOv2, trainable adapter + decoder).

    \b
    Example:
      rs-wsss tags from-vector ortho/*.tif --labels buildings.gpkg --class-name building -o tags.csv
      rs-wsss train --tags tags.csv ortho/*.tif -o model.pt --classes landcover --iters 2000
      rs-wsss train --tags tags.csv ortho/*.tif -o model.pt --classes landcover --iters 2000 --resume
    """
    if nproc > 1:  # re-run this very command under torchrun, one process per rank
        import os
        import subprocess
        import sys

        argv, skip = [], False
        for a in sys.argv[1:]:  # this command line without --nproc N / --nproc=N
            if skip or a.startswith("--nproc="):
                skip = False
                continue
            skip = a == "--nproc"
            if not skip:
                argv.append(a)
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
               "-m", "rs_wsss_cli.main", *argv]
        raise SystemExit(subprocess.run(cmd, env=dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))).returncode)
    from rs_wsss.classes import load_class_set
    from rs_wsss.config import load_config, tiny_config
    from rs_wsss.training import run_training

    from .common import check_inputs, check_output, log, pick_device, progress_of

    check_inputs(scenes)
    check_output(output, overwrite=True)  # directory exists and is writable; an existing file is run_training's call
    from rs_wsss.raster.io import open_dataset

    for s in scenes:
        open_dataset(s).close()
    cs = load_class_set(class_set)
    sets = list(overrides) + ([f"train.iters={iters}"] if iters is not None else []) + (
        [f"train.batch={batch}"] if batch is not None else [])
    cfg = tiny_config(sets) if tiny else load_config(config_path, sets)
    dev = pick_device(device)
    res = run_training(tags_path, list(scenes), cs, cfg, output, weights, dev, resume, progress_of(ctx), cache_dir)
    losses = res["losses"]
    if losses:
        log.info("trained steps %d → %d, loss %.4f → %.4f; checkpoint %s", res["start"], res["step"], losses[0], losses[-1], output)
