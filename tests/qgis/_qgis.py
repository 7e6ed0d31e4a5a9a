"""What the QGIS tests share: where QGIS and the rs-wsss command are, and the refusal to run without QGIS (a skip
here, an error on CI, which installs it)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
QGIS_PROCESS = Path("/usr/bin/qgis_process.bin")
SYSTEM_PYTHON = Path("/usr/bin/python3")  # QGIS's own Python
CLI = Path(sys.executable).with_name("rs-wsss")


def require_qgis() -> None:
    """Skip the calling test module where QGIS is not installed (CI installs it: a failure there)."""
    if QGIS_PROCESS.exists():
        return
    if os.environ.get("CI"):
        raise RuntimeError("QGIS is not installed (CI installs it in .ci/run: apt-get install qgis)")
    pytest.skip("QGIS not installed here (apt-get install -y qgis); CI installs it and runs these",
                allow_module_level=True)
