"""``rs-wsss train``: train the adapter + decoder from tile-level tags."""

from __future__ import annotations

import click

from .options import (
    bands_opt,
    classes_opt,
    config_opt,
    device_opt,
    option,
    prior_overrides,
    priors_opt,
    set_opt,
    tiny_opt,
    weights_opt,
)


@click.command("train")
@click.argument("scenes", nargs=-1, required=True, type=click.Path())
@click.option("--tags", "tags_path", required=True, type=click.Path(), help="Tile tags: .csv or .gpkg grid.")
@click.option("-o", "--output", required=True, type=click.Path(), help="Checkpoint to write (model.pt).")
@classes_opt(required=True)
@config_opt
@option("--iters", type=click.IntRange(min=1), config_key="train.iters", unit="steps",
        help="Training iterations (default: the config's train.iters).")
@option("--batch", type=click.IntRange(min=1), config_key="train.batch", unit="crops",
        help="Batch size (default: the config's train.batch).")
@bands_opt
@weights_opt
@priors_opt
@click.option("--resume", is_flag=True, help="Continue an interrupted run from its last checkpoint.")
@device_opt
@set_opt
@tiny_opt
@click.option("--cache-features", "cache_dir", type=click.Path(),
              help="Frozen-feature cache directory: backbones run once per view (train.cache_views fixed crops per "
                   "tile).")
@click.option("--val-masks", type=click.Path(), help="Folder of ground-truth masks named like the scenes: mIoU "
              "every train.report_every steps; the best checkpoint is kept as MODEL.best.pt.")
@click.option("--val-tags", type=click.Path(),
              help="A tag file (.csv/.gpkg) for validation (tag mIoU), as --val-masks.")
@click.option("--val-value-map", multiple=True, metavar="CODE=CLASS[,…]",
              help="Mask code → class for --val-masks, e.g. 255=building,0=background.")
@click.option("--report/--no-report", default=True, show_default=True,
              help="Write MODEL.log.csv (per step) and MODEL.report.html (curves, previews, validation).")
@click.option("--nproc", type=click.IntRange(min=1), default=1, show_default=True,
              help="Data-parallel processes (starts torchrun; gloo on CPU, nccl on GPU).")
@click.pass_context
def train_cmd(ctx: click.Context, scenes: tuple[str, ...], tags_path: str, output: str, class_set: str,
              config_path: str | None, iters: int | None, batch: int | None, bands: list[int] | None,
              weights: str | None, resume: bool, device: str, overrides: tuple[str, ...], tiny: bool,
              cache_dir: str | None, val_masks: str | None, val_tags: str | None, val_value_map: tuple[str, ...],
              report: bool, nproc: int, clip_prior: str | None, dino_prior: str | None) -> None:
    """Train from tile tags (frozen CLIP + DINOv2, trainable adapter + decoder).

    \b
    Example:
      rs-wsss tags from-vector ortho/*.tif --labels buildings.gpkg --class-name building -o tags.csv
      rs-wsss train --tags tags.csv ortho/*.tif -o model.pt --classes landcover --iters 2000
      rs-wsss train --tags tags.csv ortho/*.tif -o model.pt --classes landcover --iters 2000 --resume
      rs-wsss train --tags tags.csv ortho/*.tif -o model.pt --classes potsdam --val-masks gt/
    """
    if nproc > 1:  # this very command again under torchrun, one process per rank
        import sys

        from rs_wsss.train.launch import relaunch_under_torchrun, without_option

        raise SystemExit(relaunch_under_torchrun(nproc, without_option(sys.argv[1:], "--nproc")))
    from rs_wsss.api import train_from_tags

    from .common import log, parse_value_map, progress_of

    res = train_from_tags(tags_path, list(scenes), output, classes=class_set, iters=iters, batch=batch, bands=bands,
                          weights=weights, device=device, resume=resume, config=config_path,
                          overrides=(*overrides, *prior_overrides(clip_prior, dino_prior)),
                          tiny=tiny, cache_features=cache_dir, val_masks=val_masks, val_tags=val_tags,
                          val_value_map=parse_value_map(val_value_map), report=report, progress=progress_of(ctx))
    losses = res["losses"]
    if losses:
        log.info("trained steps %d → %d, loss %.4f → %.4f; checkpoint %s", res["start"], res["step"], losses[0],
                 losses[-1], output)
    for key in ("best", "report", "log"):
        if key in res:
            log.info("%s: %s", key, res[key])
