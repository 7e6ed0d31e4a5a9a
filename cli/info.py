"""``rs-wsss info``: the model as the paper reports it — backbones and their weights, parameters, GFLOPs, classes."""

from __future__ import annotations

import click

from .options import config_opt, prior_overrides, priors_opt, set_opt, tiny_opt


@click.command("info")
@click.argument("artifact", required=False, type=click.Path())
@click.option("--classes", "class_set", help="Class set name or YAML (the packaged config).")
@click.option("--model", "model_path", type=click.Path(), help="A trained checkpoint (its config and classes).")
@click.option("--weights", help="Weights directory or file, or 'random' (explicit random backbones).")
@config_opt
@tiny_opt
@set_opt
@click.option("--size", type=int, help="Crop size for the FLOP count (default: the CLIP prior's crop, 320 for "
              "ViT-B/16).")
@priors_opt
def info_cmd(artifact: str | None, class_set: str | None, model_path: str | None, weights: str | None,
             config_path: str | None, tiny: bool, overrides: tuple[str, ...], size: int | None, clip_prior: str | None,
             dino_prior: str | None) -> None:
    """Backbones, where their weights resolve from, trainable/total parameters, GFLOPs per crop, class set, and
    the config values that differ from the defaults (the paper's reading).

    \b
    Examples:
      rs-wsss info --classes isaid --weights random     # the paper: 16.45 M trainable, 177.89 M, 194 GFLOPs
      rs-wsss info --model model.pt --weights ~/weights
      rs-wsss info model.onnx        # the model card (STAC MLM Item) of an export, or of a checkpoint
    """
    if artifact:
        import json

        from rs_wsss.export.card import card_of

        click.echo(json.dumps(card_of(artifact), indent=2))
        return
    from rs_wsss.build import ModelSpec, build
    from rs_wsss.errors import RsWsssError
    from rs_wsss.model.profile import PAPER, config_differences, crop_flops, param_counts
    from rs_wsss.priors.weights import resolve

    if (class_set is None) == (model_path is None):
        raise RsWsssError("give either --classes SET or --model CKPT")
    # both backbones, so that the totals are complete
    model = build(ModelSpec(model_path, class_set, config_path, (*overrides, *prior_overrides(clip_prior, dino_prior)),
                            tiny, weights=weights),
                  "describe").model.eval()
    cfg = model.cfg
    p = cfg.priors
    clip = model.clip
    tiny_note = " (tiny stand-in)" if p.tiny else ""
    click.echo(f"CLIP   {clip.spec.name}{tiny_note}: {clip.spec.arch}, {clip.num_blocks} blocks, width {clip.width}, "
               f"at {clip.size} px ({clip.size // clip.patch}×{clip.size // clip.patch} tokens) — "
               f"{resolve('clip', p, weights).describe()}")
    if model.dino is not None:
        d = model.dino
        click.echo(f"DINO   {d.spec.name}{tiny_note}: {d.num_blocks} blocks, width {d.width}, at {d.size} px, last "
                   f"{cfg.adapter.dino_levels} blocks — {resolve('dino', p, weights).describe()}")
    else:
        click.echo("DINO   off (usr.use_dino=false)")
    c = param_counts(model)
    m = 1e6
    click.echo(f"trainable {c['trainable'] / m:.2f} M   (paper {PAPER['trainable'] / m:.2f} M): CLIP adapter "
               f"{c['adapter'] / m:.2f} M, DINO adapter {c.get('dino_adapter', 0) / m:.2f} M, decoder "
               f"{c['decoder'] / m:.2f} M")
    click.echo(f"total {c['total_no_text'] / m:.2f} M without the CLIP text tower, {c['total'] / m:.2f} M with it "
               f"({c['text_tower'] / m:.2f} M)   (paper {PAPER['total'] / m:.2f} M)")
    fl = crop_flops(model, size)
    crop = size or clip.size
    g = fl.train_forward / 1e9
    click.echo(f"GFLOPs {g:.1f}   (paper {PAPER['gflops']:.0f}) per {crop}-px crop, training forward: CLIP "
               f"{fl.clip / 1e9:.1f} + DINO {fl.dino / 1e9:.1f} + adapters/decoder {fl.trainable / 1e9:.1f}"
               if g >= 1 else f"GFLOPs {g:.4f} per {crop}-px crop (tiny architecture)")
    click.echo("       counted by torch.utils.flop_counter.FlopCounterMode (2 FLOPs per multiply-add; matmul, conv, "
               "attention); not counted: text tower, CAM refinement (USR/VPE/PAR), losses")
    names = model.class_set.names
    click.echo(f"classes {model.class_set.name}: {len(names) - 1} + background ({', '.join(names[1:])})")
    diffs = config_differences(cfg)
    if not diffs:
        click.echo("config: the defaults (the paper's reading)")
    for key, value, default in diffs:
        click.echo(f"config {key} = {value!r}   (default {default!r})")
