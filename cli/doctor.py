"""``rs-wsss doctor``: can this installation run, and what to fix when not."""

from __future__ import annotations

import json

import click

from .options import config_opt, weights_opt


@click.command("doctor")
@weights_opt
@config_opt
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="The device a run would ask for (cuda: a missing GPU is then a failure).")
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON (for QGIS and other drivers).")
def doctor_cmd(weights: str | None, config_path: str | None, device: str, as_json: bool) -> None:
    """Check torch and CUDA, the CPU and the precision `auto` picks, GDAL/PROJ/rasterio, where each backbone's
    weights resolve from, and the cache and temporary folders. Exit 0 when usable, 2 with the fix otherwise.

    \b
    Examples:
      rs-wsss doctor
      rs-wsss doctor --weights ~/weights --device cuda
      rs-wsss doctor --weights random --json
    """
    from rs_wsss.doctor import run_checks, usable
    from rs_wsss.errors import RsWsssError

    checks = run_checks(weights, config_path, device)
    ok = usable(checks)
    if as_json:
        click.echo(json.dumps({"usable": ok, "checks": [c.to_dict() for c in checks]}, indent=2))
    else:
        for c in checks:
            mark = "ok  " if c.ok else ("FAIL" if c.required else "--  ")
            click.echo(f"{mark} {c.name:<17}{c.found}")
    failed = [c for c in checks if c.required and not c.ok]
    if failed:
        raise RsWsssError(f"not usable: {failed[0].name}: {failed[0].fix}"
                          + (f" (and {len(failed) - 1} more, see above)" if len(failed) > 1 else ""))
