"""``rs-wsss export``: a checkpoint → one ONNX graph (CLIP tower + adapter + decoder + softmax) for QGIS Deepness,
ONNX Runtime or OpenVINO, with Deepness's metadata and a STAC model card (``MODEL.onnx.stac.json``)."""

from __future__ import annotations

import click

from .options import overwrite_opt, tile_opt, weights_opt


@click.command("export")
@click.argument("model_path", type=click.Path())
@click.option("-o", "--output", required=True, type=click.Path(), help="MODEL.onnx to write.")
@tile_opt
@click.option("--precision", type=click.Choice(["fp32", "int8"]), default="fp32", show_default=True,
              help="int8: post-training static quantisation calibrated on tiles of --scene.")
@click.option("--scene", "scenes", multiple=True, type=click.Path(), metavar="SCENE",
              help="A real scene (the training scenes) whose tiles calibrate int8 and feed --check (repeatable).")
@click.option("--check", is_flag=True,
              help="Run the written graph on ONNX Runtime beside the PyTorch model on tiles of --scene and print "
                   "the pixel agreement.")
@click.option("--resolution", "resolution_cm", type=click.FloatRange(min=0, min_open=True), metavar="CM",
              help="Ground resolution in cm/px for Deepness (default: the training scenes').")
@weights_opt
@overwrite_opt
def export_cmd(model_path: str, output: str, tile: int | None, precision: str, scenes: tuple[str, ...], check: bool,
               resolution_cm: float | None, weights: str | None, overwrite: bool) -> None:
    """Export a trained model to ONNX for QGIS Deepness (and segment --runtime onnxruntime|openvino).

    \b
    One graph: CLIP image tower + adapter + decoder + softmax, fixed tile, dynamic batch. Input [B,3,T,T] float32
    as Deepness feeds it (band values / 255, then its standardization_mean/std, written so that they equal the
    training scenes' stretch); output [B,K,T,T] probabilities. Multi-scale testing and the dense CRF stay in
    rs-wsss. Examples:
      rs-wsss export model.pt -o model.onnx --check --scene ortho/a.tif
      rs-wsss export model.pt -o model.int8.onnx --precision int8 --scene ortho/a.tif --scene ortho/b.tif --check
      rs-wsss segment scene.tif -o out.gpkg --model model.onnx        # no torch, no open_clip at start-up
    """
    from rs_wsss.export.run import export_model

    from .common import log

    res = export_model(model_path, output, tile=tile, precision=precision, scenes=scenes, check=check,
                       weights=weights, resolution_cm=resolution_cm, overwrite=overwrite)
    log.info("wrote %s (%s, %d-px tiles, classes %s) and its model card %s", res["onnx"], res["precision"],
             res["tile"], ", ".join(res["classes"]), res["card"])
    if "check" in res:
        c = res["check"]
        click.echo(f"check: {100 * c['pixels']:.3f} % of pixels have the same class as PyTorch float32 on "
                   f"{c['tiles']} tiles (max |Δp| {c['max_abs_prob']:.2g})")
