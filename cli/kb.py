"""``rs-wsss kb``: a class set's description knowledge base (TPE, eq 1)."""

from __future__ import annotations

import click

from .options import config_opt, prior_overrides, priors_opt, set_opt, tiny_opt


@click.group()
def kb() -> None:
    """Show or pre-encode a class set's description knowledge base."""


@kb.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON (the form drivers such as QGIS read).")
def list_cmd(as_json: bool) -> None:
    """List the packaged class sets with their classes and colours.

    \b
    Example:
      rs-wsss kb list --json
    """
    import json

    sets = class_set_listing()
    if as_json:
        click.echo(json.dumps(sets, indent=1))
        return
    for s in sets:
        click.echo(f"{s['name']:<10} {len(s['classes'])} classes + {s['background']['name']}: "
                   f"{', '.join(c['name'] for c in s['classes'])}")


def class_set_listing() -> list[dict]:
    """Every packaged class set: name, background and classes (name, prompt, colour #RRGGBB, descriptions count)."""
    from rs_wsss.classes import color_hex, load_class_set, packaged_class_sets

    out = []
    for name in packaged_class_sets():
        cs = load_class_set(name)
        entry = lambda c: {"name": c.name, "prompt": c.prompt, "color": color_hex(c.color),  # noqa: E731
                           "descriptions": len(c.descriptions)}
        out.append({"name": cs.name, "background": entry(cs.background), "classes": [entry(c) for c in cs.classes]})
    return out


@kb.command("show")
@click.option("--classes", "class_set", required=True, help="Class set name or YAML.")
def show(class_set: str) -> None:
    """List the descriptions of every class.

    \b
    Example:
      rs-wsss kb show --classes potsdam
    """
    from rs_wsss.classes import color_hex, load_class_set

    cs = load_class_set(class_set)
    click.echo(f"class set {cs.name} ({cs.source}), knowledge-base hash {cs.kb_hash()}")
    for c in cs.classes:
        click.echo(f"\n{c.name} [{color_hex(c.color)}] prompt '{c.prompt}', {len(c.descriptions)} descriptions")
        for d in c.descriptions:
            click.echo(f"  - {d}")


@kb.command("build")
@click.option("--classes", "class_set", required=True, help="Class set name or YAML.")
@click.option("--weights", help="Weights directory or file, or 'random'.")
@priors_opt
@config_opt
@set_opt
@tiny_opt
def build(class_set: str, weights: str | None, clip_prior: str | None, dino_prior: str | None,
          config_path: str | None, overrides: tuple[str, ...], tiny: bool) -> None:
    """Encode the knowledge base with the CLIP prior's text encoder into the cache ($RS_WSSS_CACHE), keyed by the
    prior and its weights file.

    \b
    Example:
      rs-wsss kb build --classes isaid --weights ~/weights
    """
    from rs_wsss.classes import load_class_set
    from rs_wsss.model.tpe import encode_knowledge_base
    from rs_wsss.paths import cache_dir
    from rs_wsss.priors import build_priors

    from .common import resolved_config

    cs = load_class_set(class_set)
    cfg = resolved_config(config_path, (*overrides, *prior_overrides(clip_prior, dino_prior)), tiny)
    clip, _ = build_priors(cfg.priors, weights, need_dino=False)
    emb = encode_knowledge_base(cs, clip.encode_text, cache_dir(), clip.identifier)
    click.echo(f"encoded {emb.shape[0]} descriptions of {cs.name} ({emb.shape[1]}-d, {clip.spec.name}) into "
               f"{cache_dir()}")
