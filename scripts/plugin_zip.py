"""Build qgis_plugin/rs_wsss_qgis.zip: the plugin folder plus the repository's README.md and LICENSE.

Usage: python scripts/plugin_zip.py [OUT.zip]"""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PLUGIN = REPO / "qgis_plugin" / "rs_wsss_qgis"


def build(out: Path) -> Path:
    """Write the ZIP (under a temporary name, then renamed); the repository's LICENSE wins over the plugin's copy."""
    tmp = out.with_name(out.name + ".part")
    extra = {name: REPO / name for name in ("README.md", "LICENSE") if (REPO / name).is_file()}
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        for f in sorted(PLUGIN.rglob("*")):
            rel = f.relative_to(PLUGIN)
            if f.is_dir() or "__pycache__" in rel.parts or f.suffix in (".pyc", ".zip") or rel.as_posix() in extra:
                continue
            z.write(f, f"rs_wsss_qgis/{rel.as_posix()}")
        for name, src in extra.items():
            z.write(src, f"rs_wsss_qgis/{name}")
    tmp.replace(out)
    return out


if __name__ == "__main__":
    print(build(Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "qgis_plugin" / "rs_wsss_qgis.zip"))
