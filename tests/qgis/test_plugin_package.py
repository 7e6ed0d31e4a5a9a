"""The plugin ZIP a user installs: LICENSE and README inside, metadata with real fields, no build debris."""

from __future__ import annotations

import configparser
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_plugin_zip_carries_license_readme_and_real_metadata(tmp_path):
    out = tmp_path / "plugin.zip"
    subprocess.run([sys.executable, str(REPO / "scripts" / "plugin_zip.py"), str(out)], check=True, capture_output=True)
    with zipfile.ZipFile(out) as z:
        names = set(z.namelist())
        assert {
            "rs_wsss_qgis/LICENSE",
            "rs_wsss_qgis/README.md",
            "rs_wsss_qgis/metadata.txt",
            "rs_wsss_qgis/__init__.py",
            "rs_wsss_qgis/cli_process.py",
        } <= names
        assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
        assert "Apache License" in z.read("rs_wsss_qgis/LICENSE").decode()
        assert "## QGIS" in z.read("rs_wsss_qgis/README.md").decode()
        meta = configparser.ConfigParser()
        meta.read_string(z.read("rs_wsss_qgis/metadata.txt").decode())
    general = meta["general"]
    for key in ("name", "qgisMinimumVersion", "description", "about", "version", "author", "hasProcessingProvider"):
        assert general.get(key), key
    assert general["hasProcessingProvider"] == "yes"
    text = " ".join(general.values())
    assert "example" not in text and "invalid" not in text and "@" not in text  # no placeholder addresses
    assert "Processing → Options → Providers → rs-wsss" in general["about"]
