"""``rs-wsss options``: every command's options as data (type, default, unit, help, choices, range), with the resolved
configuration and the packaged class sets: what the QGIS plugin reads at load time instead of scraping ``--help`` or
writing defaults of its own."""

from __future__ import annotations

import json
from typing import Any

import click

from .options import ConfigOption, config_opt


@click.command("options")
@config_opt
@click.option("--json", "as_json", is_flag=True, help="Print as JSON (the form drivers such as QGIS read).")
def options_cmd(config_path: str | None, as_json: bool) -> None:
    """List every command's options: type, default (the config's where an option overrides a config key), unit,
    help, choices and range.

    \b
    Examples:
      rs-wsss options
      rs-wsss options --json --config mine.yaml
    """
    listing = option_listing(config_path)
    if as_json:
        click.echo(json.dumps(listing, indent=1))
        return
    for path, params in listing["commands"].items():
        click.echo(path)
        for p in params:
            unit = f" [{p['unit']}]" if p["unit"] else ""
            click.echo(f"  {p['flags'][0] if p['flags'] else p['name']:<20}{p['type']:<8} default "
                       f"{json.dumps(p['default'])}{unit}")


def option_listing(config_path: str | None = None) -> dict[str, Any]:
    """``{"version", "config": {section: {key: value}}, "class_sets": [...], "formats": [...], "commands":
    {"segment": [param, …], "tags template": […], …}}``; a param's default is the config's value when the option
    overrides a config key."""
    from rs_wsss import __version__
    from rs_wsss.config import load_config
    from rs_wsss.raster.formats import FORMATS

    from .kb import class_set_listing
    from .main import cli

    cfg = load_config(config_path).to_dict()
    commands: dict[str, list[dict[str, Any]]] = {}
    ctx = click.Context(cli)
    for name in cli.list_commands(ctx):
        _walk(cli.get_command(ctx, name), name, cfg, commands)
    return {"version": __version__, "config": cfg, "class_sets": class_set_listing(),
            "formats": [f.to_dict() for f in FORMATS], "commands": commands}


def _walk(cmd: click.Command | None, path: str, cfg: dict[str, Any], out: dict[str, list[dict[str, Any]]]) -> None:
    if isinstance(cmd, click.Group):
        for name, sub in cmd.commands.items():
            _walk(sub, f"{path} {name}", cfg, out)
    elif cmd is not None:
        out[path] = [_param(p, cfg) for p in cmd.params if p.name != "help"]


def _param(p: click.Parameter, cfg: dict[str, Any]) -> dict[str, Any]:
    key = p.config_key if isinstance(p, ConfigOption) else None
    info = p.to_info_dict()  # click's own description (UNSET defaults as None)
    default = info.get("default")
    if key:
        section, name = key.split(".")
        default = cfg[section][name]
    t = p.type
    kinds = ((click.Choice, "choice"), (click.types.IntParamType, "int"), (click.types.FloatParamType, "float"),
             (click.Path, "path"), (click.types.BoolParamType, "bool"))
    kind = "flag" if info.get("is_flag") else next((k for cls, k in kinds if isinstance(t, cls)), "text")
    return {
        "name": p.name, "flags": list(p.opts), "secondary": list(p.secondary_opts), "type": kind,
        "argument": isinstance(p, click.Argument), "required": p.required, "multiple": p.multiple,
        "default": _plain(default), "config_key": key, "unit": getattr(p, "unit", None), "help": info.get("help"),
        # a free-text option's known values (the priors' registry names) are listed as its choices too
        "choices": list(t.choices) if isinstance(t, click.Choice) else getattr(p, "known", None),
        "min": getattr(t, "min", None), "max": getattr(t, "max", None),
    }


def _plain(value: Any) -> Any:
    """A default as JSON (click keeps tuples for multiple options)."""
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value if value is None or isinstance(value, (bool, int, float, str)) else str(value)
