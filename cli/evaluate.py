"""``rs-wsss evaluate``: compare a predicted class raster with ground truth."""

from __future__ import annotations

import json

import click


@click.command("evaluate")
@click.argument("prediction", type=click.Path())
@click.argument("ground_truth", type=click.Path())
@click.option("--classes", "class_set", required=True, help="Class set name or YAML (the prediction's classes).")
@click.option("--value-map", multiple=True, help="GT value → class, e.g. 255=building,0=background (default: the set's "
                                                 "codes).")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
def evaluate_cmd(prediction: str, ground_truth: str, class_set: str, value_map: tuple[str, ...], as_json: bool) -> None:
    """Per-class IoU, mIoU, overall accuracy and F1.

    \b
    Example:
      rs-wsss evaluate out.tif spacenet/sample_fp_mask_from_geojson.tif --classes landcover \\
          --value-map 255=building,0=background
    """
    from rs_wsss.classes import load_class_set
    from rs_wsss.raster.evaluate import evaluate_rasters

    from .common import check_inputs, parse_value_map

    check_inputs([prediction, ground_truth])
    res = evaluate_rasters(prediction, ground_truth, load_class_set(class_set), parse_value_map(value_map))
    if as_json:
        click.echo(json.dumps(res, indent=2))
        return
    pct = lambda v: "   -  " if v is None else f"{100 * v:6.2f}"  # noqa: E731
    click.echo(f"{'class':<22}{'IoU %':>8}{'F1 %':>8}{'GT px':>12}")
    for name, m in res["per_class"].items():
        click.echo(f"{name:<22}{pct(m['iou']):>8}{pct(m['f1']):>8}{m['pixels']:>12}")
    click.echo(f"mIoU {pct(res['mIoU'])}   OA {pct(res['OA'])}   mF1 {pct(res['mF1'])}   ({res['pixels']} pixels)")
