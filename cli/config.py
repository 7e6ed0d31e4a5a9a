"""``rs-wsss config``: the resolved configuration (the dataclass defaults in rs_wsss/config.py and what overrides
them)."""

from __future__ import annotations

import click

from .options import config_opt, set_opt, tiny_opt


@click.group("config")
def config() -> None:
    """Show the configuration a run would use."""


@config.command("show")
@click.option("--model", "model_path", type=click.Path(), help="A checkpoint: show the config it was trained with.")
@config_opt
@set_opt
@tiny_opt
@click.option("--changed", "only_changed", is_flag=True,
              help="Only the keys that differ from the defaults (a minimal --config file).")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON (the form drivers such as QGIS read).")
def show(model_path: str | None, config_path: str | None, overrides: tuple[str, ...], tiny: bool,
         only_changed: bool, as_json: bool) -> None:
    """Print the resolved config as YAML: defaults, then --tiny, --config FILE (or a checkpoint's), then --set.

    \b
    Examples:
      rs-wsss config show
      rs-wsss config show --set raster.tile=256 --set infer.crf=false
      rs-wsss config show --model model.pt --changed
      rs-wsss config show --changed --set usr.alpha=2 > mine.yaml && rs-wsss segment ... --config mine.yaml
    """
    from rs_wsss.build import ModelSpec, resolve_config
    from rs_wsss.config import changed, dump_yaml

    cfg, _ = resolve_config(ModelSpec(model_path, config_path=config_path, overrides=tuple(overrides), tiny=tiny))
    if as_json:
        import json

        click.echo(json.dumps(changed(cfg) if only_changed else cfg.to_dict(), indent=1))
        return
    if only_changed:
        click.echo(dump_yaml(changed(cfg)), nl=False)
    else:
        click.echo(cfg.to_yaml(), nl=False)
