"""``rs-wsss weights``: where each backbone's weights resolve from, and whether a file loads."""

from __future__ import annotations

import click


@click.command("weights")
@click.option("--weights", help="A weights directory or file to check instead of the default resolution.")
@click.option("--check", "check_file", type=click.Path(), help="Verify that this file loads into --backbone.")
@click.option("--backbone", type=click.Choice(["clip", "dino"]), default="clip", show_default=True)
def weights_cmd(weights, check_file, backbone) -> None:
    """Print where CLIP and DINOv2 weights come from (or why not).

    \b
    Order: --weights → $RS_WSSS_WEIGHTS_DIR → hub cache → error. Examples:
      rs-wsss weights
      rs-wsss weights --check ~/weights/dinov2_vitb14.safetensors --backbone dino
    """
    from rs_wsss.config import load_config
    from rs_wsss.errors import RsWsssError, WeightsNotFound
    from rs_wsss.priors.weights import resolve

    cfg = load_config().priors
    if check_file:
        from pathlib import Path

        from rs_wsss.priors.weights import ResolvedWeights

        path = Path(check_file)
        if not path.is_file():
            raise RsWsssError(f"weights file not found: {path}")
        rw = ResolvedWeights(backbone, path, "explicit")
        try:
            if backbone == "clip":
                from rs_wsss.priors.clip import ClipPrior as Prior
            else:
                from rs_wsss.priors.dino import DinoPrior as Prior
            model = Prior(cfg, rw)
        except Exception as exc:  # a wrong or corrupt file: say so in one line
            raise RsWsssError(f"{path} does not load as {backbone} ({cfg.clip_model if backbone == 'clip' else cfg.dino_model}): {type(exc).__name__}: {str(exc).splitlines()[0][:160]}") from None
        n = sum(p.numel() for p in model.parameters())
        click.echo(f"OK: {path} loads as {backbone} ({n / 1e6:.2f} M parameters)")
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
