"""User errors are RsWsssError (exit 2) and also the matching builtin, so Python callers can catch either; importing
the raster layer changes nothing in the process; the CLI does not switch warnings off process-wide."""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest

from rs_wsss.errors import ConfigError, InputNotFound, OutputExists, RsWsssError, TrainingDiverged


def test_user_errors_are_also_builtins(tmp_path):
    from rs_wsss.model.checkpoint import load_checkpoint
    from rs_wsss.raster.io import open_dataset
    from rs_wsss.raster.write import check_output

    with pytest.raises(FileNotFoundError) as err:
        load_checkpoint(tmp_path / "none.pt")
    assert isinstance(err.value, InputNotFound) and isinstance(err.value, RsWsssError)
    with pytest.raises(FileNotFoundError):
        open_dataset(tmp_path / "none.tif")
    (tmp_path / "o.tif").write_text("x")
    with pytest.raises(FileExistsError) as err:
        check_output(tmp_path / "o.tif", overwrite=False)
    assert isinstance(err.value, OutputExists)
    assert issubclass(ConfigError, ValueError) and issubclass(TrainingDiverged, FloatingPointError)


def test_math_raises_value_error_and_the_model_checks_its_config():
    import torch

    from rs_wsss.classes import load_class_set
    from rs_wsss.config import tiny_config
    from rs_wsss.model import usr
    from rs_wsss.model.wsss import WSSS
    from rs_wsss.priors import build_priors

    with pytest.raises(ValueError, match="usr.n0") as err:
        usr.attention_filter(torch.ones(1, 2), n0=3)
    assert not isinstance(err.value, RsWsssError)  # a bug in a caller is not the user's to fix
    cfg = tiny_config(["usr.n0=9"])  # in range for the config, not for the tiny backbone's blocks
    clip, dino = build_priors(cfg.priors)
    with pytest.raises(ConfigError, match=r"usr.n0=9 is outside 1\.\.\d"):
        WSSS(cfg, load_class_set("landcover"), clip, dino)


def test_importing_the_raster_layer_leaves_the_environment_alone():
    code = ("import os; import rs_wsss.raster, rs_wsss.raster.io, rs_wsss.segment; "
            "from rs_wsss.raster.env import raster_env; from rasterio.env import getenv; "
            "print('GDAL_CACHEMAX' in os.environ)\n"
            "with raster_env():\n    print(getenv()['GDAL_CACHEMAX'])")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={"PATH": "/usr/bin"})
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["False", str(64 * 2**20)]


def test_cli_logging_routes_warnings_instead_of_ignoring_them():
    from rs_wsss_cli.common import setup_logging

    before = list(warnings.filters)
    try:
        setup_logging(0)
        assert warnings.filters == before  # no process-wide "ignore"
    finally:
        import logging

        logging.captureWarnings(False)
