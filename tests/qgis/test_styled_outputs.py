"""Outputs open styled in a real QGIS without the plugin (GeoPackage ``layer_styles``), and GDAL itself reads the class
COG's category names and attribute table (Debian's QGIS and its GDAL Python bindings, headless)."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from rs_wsss.classes import load_class_set
from rs_wsss.raster.vectorize import vectorize

from ..conftest import spacenet_class_raster
from ._qgis import SYSTEM_PYTHON, require_qgis

require_qgis()

pytestmark = pytest.mark.qgis

SCRIPT = r"""
import json, sys
from osgeo import gdal
from qgis.core import QgsApplication, QgsVectorLayer
app = QgsApplication([], False); app.initQgis()
lyr = QgsVectorLayer(sys.argv[1] + "|layername=classes", "classes", "ogr")
r = lyr.renderer()
out = {"valid": lyr.isValid(), "renderer": r.type(), "attr": r.classAttribute() if hasattr(r, "classAttribute") else None,
       "categories": [[c.value(), c.label(), c.symbol().color().name()] for c in r.categories()]
                     if hasattr(r, "categories") else []}
ds = gdal.Open(sys.argv[2])  # kept: a band outlives a dropped dataset only as a dangling pointer
band = ds.GetRasterBand(1)
rat = band.GetDefaultRAT()
out["gdal_categories"] = band.GetCategoryNames()
out["rat_names"] = [rat.GetValueAsString(i, 1) for i in range(rat.GetRowCount())] if rat else None
print(json.dumps(out), flush=True)
import os
os._exit(0)  # QGIS 3.22's exitQgis can crash at teardown; the answer is out
"""


def test_gpkg_opens_categorized_and_cog_has_categories(shared_data, tmp_path):
    cs = load_class_set("landcover")
    spacenet_class_raster(shared_data, tmp_path, cs)
    vectorize(tmp_path / "c.tif", tmp_path / "c.gpkg")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(QT_QPA_PLATFORM="offscreen", QGIS_CUSTOM_CONFIG_PATH=str(tmp_path), XDG_RUNTIME_DIR=str(tmp_path))
    (tmp_path / "run.py").write_text(SCRIPT)
    p = subprocess.run([str(SYSTEM_PYTHON), str(tmp_path / "run.py"), str(tmp_path / "c.gpkg"), str(tmp_path / "c.tif")],
                       capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["valid"] and out["renderer"] == "categorizedSymbol" and out["attr"] == "class_id"
    cats = {int(v): (label, colour) for v, label, colour in out["categories"]}
    assert cats[1] == ("building", "#{:02x}{:02x}{:02x}".format(*cs.colors[1]))
    assert [cats[i][0] for i in sorted(cats)] == cs.names
    assert out["gdal_categories"] == cs.names and out["rat_names"] == cs.names
