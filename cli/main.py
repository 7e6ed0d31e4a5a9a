"""``rs-wsss``: the command-line entry point. Commands are imported lazily so ``rs-wsss --help`` stays instant."""

from __future__ import annotations

import importlib
import os
import sys
from types import FrameType
from typing import NoReturn

import click

COMMANDS = {
    "tags": ("rs_wsss_cli.tags", "tags", "Make or convert tile-level tags (the weak labels)."),
    "train": ("rs_wsss_cli.train", "train_cmd", "Train the adapter + decoder from tile tags."),
    "segment": ("rs_wsss_cli.segment", "segment_cmd", "Segment rasters into a class COG + polygons."),
    "vectorize": ("rs_wsss_cli.vectorize", "vectorize_cmd", "Class raster → seam-free polygons with areas in m²."),
    "evaluate": ("rs_wsss_cli.evaluate", "evaluate_cmd", "Per-class IoU, mIoU, OA, F1 against ground truth."),
    "kb": ("rs_wsss_cli.kb", "kb", "Show or pre-encode a class set's description knowledge base."),
    "weights": ("rs_wsss_cli.weights", "weights_cmd", "Where the backbone weights resolve from."),
    "config": ("rs_wsss_cli.config", "config", "Show the resolved configuration as YAML (defaults + overrides)."),
    "info": ("rs_wsss_cli.info", "info_cmd", "Model size as the paper reports it: parameters, GFLOPs, classes."),
    "options": ("rs_wsss_cli.listing", "options_cmd", "Every command's options as data (for QGIS and other drivers)."),
    "doctor": ("rs_wsss_cli.doctor", "doctor_cmd", "Check the installation: torch, GPU, GDAL/PROJ, weights, folders."),
    "export": ("rs_wsss_cli.export", "export_cmd", "Export a model to ONNX for QGIS Deepness and CPU runtimes."),
}


class LazyGroup(click.Group):
    """The top-level group: subcommands are imported only when run, so ``--help`` stays instant."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Name every subcommand (from :data:`COMMANDS`, importing none)."""
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        """Import and return the command ``name``, or None for an unknown name (click then reports it)."""
        if name not in COMMANDS:
            return None
        module, attr, _ = COMMANDS[name]
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Write the commands' short help from :data:`COMMANDS`."""
        # short help without importing every command module
        with formatter.section("Commands"):
            formatter.write_dl([(n, h) for n, (_, _, h) in COMMANDS.items()])


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--progress-json", is_flag=True, help="Progress as JSON lines on stderr (for QGIS and other drivers).")
@click.option("-v", "--verbose", count=True, help="More logging (tracebacks on internal errors).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors.")
@click.version_option(package_name="rs-wsss")
@click.pass_context
def cli(ctx: click.Context, progress_json: bool, verbose: int, quiet: bool) -> None:
    """rs-wsss: weakly supervised semantic segmentation of remote-sensing rasters from tile-level tags.

    \b
      rs-wsss tags template ortho/*.tif -o tags.gpkg        # grid to label in QGIS
      rs-wsss train --tags tags.gpkg ortho/*.tif -o model.pt --classes landcover
      rs-wsss segment scene.tif -o out.gpkg --model model.pt
      rs-wsss segment scene.tif -o out.gpkg --zero-shot --classes landcover
    """
    from .common import Progress, setup_logging

    setup_logging(-1 if quiet else verbose)
    ctx.obj = {"progress": Progress(progress_json, quiet), "verbose": verbose}


def main(argv: list[str] | None = None) -> None:
    """Run the CLI: exit 0 ok, 2 bad input (one line, no traceback), 1 internal failure."""
    verbose = any(a in ("-v", "-vv", "--verbose") for a in (argv if argv is not None else sys.argv[1:]))
    import signal

    # SIGTERM (e.g. cancel in QGIS) unwinds like Ctrl-C: temporary outputs are removed
    def _terminate(signum: int, frame: FrameType | None) -> NoReturn:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    if hasattr(signal, "SIGBREAK"):  # Windows consoles: Ctrl-Break unwinds the same way
        signal.signal(signal.SIGBREAK, _terminate)
    if "--progress-json" in (argv if argv is not None else sys.argv[1:]):
        _cancel_on_stdin()
    try:
        cli.main(args=argv, prog_name="rs-wsss", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        _fail("aborted", 130, at_once=True)
    except click.ClickException as exc:  # usage errors: unknown option, missing argument …
        _fail(f"{exc.format_message()} (see rs-wsss --help)", 2)
    except KeyboardInterrupt:
        _fail("interrupted", 130, at_once=True)
    except Exception as exc:  # noqa: BLE001 — the one place that turns exceptions into exit codes
        from rs_wsss.errors import RsWsssError

        if isinstance(exc, RsWsssError):
            _fail(str(exc), 2)
        if _is_raster_error(exc):  # GDAL's message names the file and the reason (unreadable input, unwritable output)
            from rs_wsss.raster.io import gdal_reason

            why = gdal_reason(exc)
            _fail(f"raster I/O failed: {why} (check the path and its permissions)", 2)
        if verbose:
            import traceback

            traceback.print_exc()
        msg = str(exc).splitlines()[0] if str(exc) else ""
        _fail(f"internal error: {type(exc).__name__}: {msg} (run with -v for the traceback)", 1)


def _is_raster_error(exc: Exception) -> bool:
    # only if rasterio was imported at all (it is never imported for --help)
    errors, err = sys.modules.get("rasterio.errors"), sys.modules.get("rasterio._err")
    kinds = tuple(k for k in (getattr(errors, "RasterioError", None), getattr(err, "CPLE_BaseError", None)) if k)
    return bool(kinds) and isinstance(exc, kinds)


def _cancel_on_stdin() -> None:
    """A driver without signals (QGIS on Windows, whose CLI runs without a console) writes ``cancel`` on stdin: the
    run then unwinds like Ctrl-C, removing its temporary outputs."""
    import _thread
    import threading

    def watch() -> None:
        try:
            for line in sys.stdin:
                if line.strip() == "cancel":
                    _thread.interrupt_main()
                    return
        except (OSError, ValueError):  # stdin closed or not readable: nothing to watch
            return

    if sys.stdin is not None:
        threading.Thread(target=watch, name="rs-wsss-cancel", daemon=True).start()


def _fail(message: str, code: int, at_once: bool = False) -> None:
    from rs_wsss.errors import one_line  # a value echoed by click may hold line breaks or control characters

    sys.stderr.write(f"rs-wsss: error: {one_line(message)}\n")
    if at_once:
        # Interrupted (Ctrl-C, SIGTERM from QGIS's Cancel): temporary outputs were removed while unwinding; skip the
        # interpreter's final garbage collection of the model, which takes seconds on a loaded machine and would
        # outlast the caller's grace period (then SIGKILL).
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    main()
