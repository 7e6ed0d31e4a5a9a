"""``rs-wsss weights``: the known priors, where each one's weights resolve from, and whether a file loads."""

from __future__ import annotations

import click

from .options import config_opt, prior_overrides, priors_opt, set_opt, tiny_opt, weights_opt


@click.command("weights")
@weights_opt
@priors_opt
@config_opt
@set_opt
@tiny_opt
@click.option("--check", "check_file", type=click.Path(), help="Verify that this file loads as the --backbone prior "
              "(the config's, or --clip-prior / --dino-prior).")
@click.option("--backbone", type=click.Choice(["clip", "dino"]), default="clip", show_default=True)
def weights_cmd(weights: str | None, clip_prior: str | None, dino_prior: str | None, config_path: str | None,
                overrides: tuple[str, ...], tiny: bool, check_file: str | None, backbone: str) -> None:
    """List the known priors (* = the ones the config uses): architecture, crop, licence, published files, where
    to download, and where their weights resolve from. Exits 2 when the config's priors are missing.

    \b
    Order: --weights → $RS_WSSS_WEIGHTS_DIR → hub cache → error. Examples:
      rs-wsss weights
      rs-wsss weights --weights ~/weights --clip-prior remoteclip-vit-b-32
      rs-wsss weights --check ~/weights/RemoteCLIP-ViT-B-32.pt --clip-prior remoteclip-vit-b-32
      rs-wsss weights --check ~/weights/dinov2_vitb14.safetensors --backbone dino
    """
    from rs_wsss.errors import RsWsssError, WeightsNotFound
    from rs_wsss.priors import check_weights_file, resolve
    from rs_wsss.priors.specs import KNOWN, crop_size, prior_specs, with_prior

    from .common import resolved_config

    # the backbones the config names
    cfg = resolved_config(config_path, (*overrides, *prior_overrides(clip_prior, dino_prior)), tiny).priors
    if check_file:
        n = check_weights_file(check_file, backbone, cfg)
        name = prior_specs(cfg)[backbone].name
        click.echo(f"OK: {check_file} loads as {name} ({n / 1e6:.2f} M parameters)")
        return
    chosen = prior_specs(cfg)
    specs = list(KNOWN.values()) + [s for s in chosen.values() if s.name not in KNOWN]  # open_clip:ARCH too
    failed = False
    for role, title in (("clip", "CLIP priors (--clip-prior, priors.clip)"),
                        ("dino", "DINOv2 priors (--dino-prior, priors.dino)")):
        click.echo(title)
        for spec in (s for s in specs if s.role == role):
            mine = chosen[role].name == spec.name
            this = with_prior(cfg, spec)
            act = "QuickGELU" if spec.activation == "quick_gelu" else "GELU"
            text = f", text {spec.context_length} positions" if role == "clip" and spec.context_length != 77 else ""
            size = crop_size(this, spec.role)
            click.echo(f"{'*' if mine else ' '} {spec.name}: {spec.arch}, {act}, patch {spec.patch}, width "
                       f"{spec.width}, {spec.blocks} blocks{text}; crop {size} px ({size // spec.patch}×"
                       f"{size // spec.patch} tokens); licence {spec.licence} — {spec.note}")
            click.echo(f"    files: {', '.join(spec.files) or 'any (give --weights FILE)'} "
                       f"({'; '.join(spec.layouts)}); from {spec.source}")
            try:
                click.echo(f"    weights: {resolve(role, this, weights).describe().split(': ', 1)[1]}")
            except WeightsNotFound as exc:
                click.echo(f"    weights: NOT FOUND{' — ' + str(exc) if mine else ''}")
                failed = failed or mine
    if failed:
        raise RsWsssError("some backbone weights are missing (see above)")
