"""``rs-wsss weights``: where each backbone's weights resolve from, and whether a file loads."""

from __future__ import annotations

import click

from .options import config_opt, set_opt, tiny_opt, weights_opt


@click.command("weights")
@weights_opt
@config_opt
@set_opt
@tiny_opt
@click.option("--check", "check_file", type=click.Path(), help="Verify that this file loads into --backbone.")
@click.option("--backbone", type=click.Choice(["clip", "dino"]), default="clip", show_default=True)
def weights_cmd(weights: str | None, config_path: str | None, overrides: tuple[str, ...], tiny: bool,
                check_file: str | None, backbone: str) -> None:
    """Print where CLIP and DINOv2 weights come from (or why not).

    \b
    Order: --weights → $RS_WSSS_WEIGHTS_DIR → hub cache → error. Examples:
      rs-wsss weights
      rs-wsss weights --check ~/weights/dinov2_vitb14.safetensors --backbone dino
    """
    from rs_wsss.errors import RsWsssError, WeightsNotFound
    from rs_wsss.priors import check_weights_file, resolve

    from .common import resolved_config

    cfg = resolved_config(config_path, overrides, tiny).priors  # the backbones the config names
    if check_file:
        n = check_weights_file(check_file, backbone, cfg)
        click.echo(f"OK: {check_file} loads as {backbone} ({n / 1e6:.2f} M parameters)")
        return
    failed = False
    for b in ("clip", "dino"):
        try:
            click.echo(resolve(b, cfg, weights).describe())
        except WeightsNotFound as exc:
            click.echo(f"{b}: NOT FOUND — {exc}")
            failed = True
    if failed:
        raise RsWsssError("some backbone weights are missing (see above)")
