"""``rs-wsss train``: train the adapter + decoder from tile-level tags."""

from __future__ import annotations

import click

from .options import bands_opt, classes_opt, config_opt, device_opt, set_opt, tiny_opt, weights_opt


@click.command("train")
@click.argument("scenes", nargs=-1, required=True, type=click.Path())
@click.option("--tags", "tags_path", required=True, type=click.Path(), help="Tile tags: .csv or .gpkg grid.")
@click.option("-o", "--output", required=True, type=click.Path(), help="Checkpoint to write (model.pt).")
@classes_opt(required=True)
@config_opt
@click.option("--iters", type=click.IntRange(min=1), help="Training iterations (default: the config's train.iters).")
@click.option("--batch", type=click.IntRange(min=1), help="Batch size (default: the config's train.batch).")
@bands_opt
@weights_opt
@click.option("--resume", is_flag=True, help="Continue an interrupted run from its last checkpoint.")
@device_opt
@set_opt
@tiny_opt
@click.option("--cache-features", "cache_dir", type=click.Path(),
              help="Frozen-feature cache directory: backbones run once per view (train.cache_views fixed crops per tile).")
@click.option("--nproc", type=click.IntRange(min=1), default=1, show_default=True,
              help="Data-parallel processes (starts torchrun; gloo on CPU, nccl on GPU).")
@click.pass_context
def train_cmd(ctx: click.Context, scenes: tuple[str, ...], tags_path: str, output: str, class_set: str,
              config_path: str | None, iters: int | None, batch: int | None, bands: list[int] | None,
              weights: str | None, resume: bool, device: str, overrides: tuple[str, ...], tiny: bool,
              cache_dir: str | None, nproc: int) -> None:
    """Train from tile tags (frozen CLIP + DINOv2, trainable adapter + decoder).

    \b
    Example:
      rs-wsss tags from-vector ortho/*.tif --labels buildings.gpkg --class-name building -o tags.csv
      rs-wsss train --tags tags.csv ortho/*.tif -o model.pt --classes landcover --iters 2000
      rs-wsss train --tags tags.csv ortho/*.tif -o model.pt --classes landcover --iters 2000 --resume
    """
    if nproc > 1:  # this very command again under torchrun, one process per rank
        import sys

        from rs_wsss.distributed.launch import relaunch_under_torchrun, without_option

        raise SystemExit(relaunch_under_torchrun(nproc, without_option(sys.argv[1:], "--nproc")))
    from rs_wsss.classes import load_class_set
    import os

    from rs_wsss.config import load_config
    from rs_wsss.outputs import check_target, input_files
    from rs_wsss.raster.io import check_bands
    from rs_wsss.train.run import run_training

    from .common import check_inputs, log, pick_device, progress_of

    check_inputs(scenes)
    reads = [tags_path, config_path, weights, class_set, *input_files(list(scenes))]  # -o may be none of them
    check_target(output, overwrite=True, inputs=[p for p in reads if p and os.path.isfile(p)])  # an existing -o:
    # run_training's call (refused unless --resume)
    check_bands(list(scenes), bands)
    cs = load_class_set(class_set)
    settings = {k: v for k, v in {"train.iters": iters, "train.batch": batch, "raster.bands": bands}.items()
                if v is not None}
    cfg = load_config(config_path, overrides, tiny=tiny, settings=settings)
    res = run_training(tags_path, list(scenes), cs, cfg, output, weights, pick_device(device), resume,
                       progress_of(ctx), cache_dir)
    losses = res["losses"]
    if losses:
        log.info("trained steps %d → %d, loss %.4f → %.4f; checkpoint %s", res["start"], res["step"], losses[0],
                 losses[-1], output)
