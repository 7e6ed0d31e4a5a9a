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
@click.option("--json", "as_json", is_flag=True, help="The list as JSON (every registry field, the crop, where the "
              "weights resolve from): what the QGIS plugin reads.")
def weights_cmd(weights: str | None, clip_prior: str | None, dino_prior: str | None, config_path: str | None,
                overrides: tuple[str, ...], tiny: bool, check_file: str | None, backbone: str, as_json: bool) -> None:
    """List the known priors (* = the ones the config uses): architecture, crop, licence, published files, where
    to download, and where their weights resolve from. Exits 2 when the config's priors are missing.

    \b
    Order: --weights → $RS_WSSS_WEIGHTS_DIR → hub cache → error. Examples:
      rs-wsss weights
      rs-wsss weights --weights ~/weights --clip-prior remoteclip-vit-b-32
      rs-wsss weights --check ~/weights/RemoteCLIP-ViT-B-32.pt --clip-prior remoteclip-vit-b-32
      rs-wsss weights --check ~/weights/dinov2_vitb14.safetensors --backbone dino
    """
    import dataclasses
    import json

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
    rows: list[dict] = []
    failed = False
    for spec in specs:
        this = with_prior(cfg, spec)
        row = {**dataclasses.asdict(spec), "crop": crop_size(this, spec.role),
               "chosen": chosen[spec.role].name == spec.name}
        try:
            rw = resolve(spec.role, this, weights)
            row.update(weights=str(rw.path) if rw.path else "random", resolved_from=rw.source)
        except WeightsNotFound as exc:
            row.update(weights=None, resolved_from=None, missing=str(exc))
            failed = failed or row["chosen"]
        rows.append(row)
    if as_json:
        click.echo(json.dumps(rows, indent=1))
    for role, title in (("clip", "CLIP priors (--clip-prior, priors.clip)"),
                        ("dino", "DINOv2 priors (--dino-prior, priors.dino)")):
        if not as_json:
            click.echo(title)
            for r in (r for r in rows if r["role"] == role):
                click.echo(_describe(r))
    if failed:
        raise RsWsssError("some backbone weights are missing (see above)")


def _describe(r: dict) -> str:
    """Three lines for one prior: what it is, its files, where its weights come from."""
    act = "QuickGELU" if r["activation"] == "quick_gelu" else "GELU"
    text = f", text {r['context_length']} positions" if r["role"] == "clip" and r["context_length"] != 77 else ""
    g = r["crop"] // r["patch"]
    if r["weights"] is None:
        where = "NOT FOUND" + (f" — {r['missing']}" if r["chosen"] else "")
    else:
        random = r["weights"] == "random"
        where = "random weights (explicit)" if random else f"{r['weights']} (from {r['resolved_from']})"
    return (f"{'*' if r['chosen'] else ' '} {r['name']}: {r['arch']}, {act}, patch {r['patch']}, width {r['width']}, "
            f"{r['blocks']} blocks{text}; crop {r['crop']} px ({g}×{g} tokens); licence {r['licence']} — {r['note']}\n"
            f"    files: {', '.join(r['files']) or 'any (give --weights FILE)'} ({'; '.join(r['layouts'])}); "
            f"from {r['source']}\n    weights: {where}")
