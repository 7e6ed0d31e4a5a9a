"""What a GIS user meets in QGIS (issue 26), in a real QGIS 3.22+ (headless): through qgis_process and through the
provider's Python API (inside_qgis_gis_user.py). Labels and defaults are compared with rs_wsss.config itself."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from rs_wsss.classes import packaged_class_sets
from rs_wsss.config import Config

from ._qgis import CLI, QGIS_PROCESS, REPO, require_qgis

require_qgis()
pytestmark = pytest.mark.qgis
ALGORITHMS = ("segment", "train", "taggrid", "tagsfromvector", "evaluate", "doctor", "exportdeepness")


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    """QGIS's environment: no other Python on PATH, a private profile, the plugin from this checkout."""
    tmp.mkdir(exist_ok=True, mode=0o700)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(PATH="/usr/bin:/bin", QT_QPA_PLATFORM="offscreen", QGIS_CUSTOM_CONFIG_PATH=str(tmp),
               XDG_RUNTIME_DIR=str(tmp), QGIS_PLUGINPATH=str(REPO / "qgis_plugin"), RS_WSSS_CLI=str(CLI), **extra)
    env.pop("RS_WSSS_WEIGHTS_DIR", None)
    return env


@pytest.fixture(scope="module")
def qgis(tmp_path_factory):
    env = _env(tmp_path_factory.mktemp("profile"))
    p = subprocess.run([str(QGIS_PROCESS), "plugins", "enable", "rs_wsss_qgis"], env=env, capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    return env


def _run(env, alg, **params):
    args = [str(QGIS_PROCESS), "run", f"rs_wsss:{alg}", "--", *(f"{k}={v}" for k, v in params.items())]
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=900)


def test_help_has_no_raw_html_and_names_the_menu_item_as_qgis_does(qgis):
    for alg in ALGORITHMS:
        text = subprocess.run([str(QGIS_PROCESS), "help", f"rs_wsss:{alg}"], env=qgis, capture_output=True,
                              text=True, timeout=300).stdout
        assert "Description" in text and not re.search(r"</?(b|i|li|ol|br|code)\b", text), (alg, text[:400])
    seg = subprocess.run([str(QGIS_PROCESS), "help", "rs_wsss:segment"], env=qgis, capture_output=True, text=True,
                         timeout=300).stdout
    assert "Use Map Canvas Extent" in seg and "Use Current Map Canvas Extent" not in seg


def test_segment_writes_a_styled_flatgeobuf_where_asked(qgis, shared_data, tmp_path):
    scene = tmp_path / "scene.tif"
    scene.write_bytes((shared_data / "spacenet/sample_geotiff.tif").read_bytes())
    p = _run(qgis, "segment", INPUT=scene, CLASSES=packaged_class_sets().index("landcover"), WEIGHTS="random",
             TILE=128, SCALES=1, CRF=2, EXTENT=_corner(scene), OUTPUT_RASTER=tmp_path / "classes.tif",
             OUTPUT_VECTOR=tmp_path / "polys.fgb")
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    assert f"OUTPUT_VECTOR:\t{tmp_path / 'polys.fgb'}" in p.stdout and not (tmp_path / "polys.gpkg").exists()
    qml = (tmp_path / "polys.qml").read_text()  # QGIS's default style of polys.fgb
    assert 'renderer-v2 type="categorizedSymbol" attr="class_id"' in qml and 'label="water"' in qml
    assert (tmp_path / "classes.tif.aux.xml").exists()  # the class names travel with the moved raster
    log = p.stdout + p.stderr
    for stage in ("loading model", "vectorizing"):
        assert log.count(stage) == 1, (stage, log[-3000:])  # each progress text once, not also as a log line
    assert "tile 1/" not in log


def test_polygon_formats_are_only_those_the_cli_writes(qgis, shared_data, tmp_path):
    p = _run(qgis, "segment", INPUT=shared_data / "spacenet/sample_geotiff.tif", WEIGHTS="random",
             OUTPUT_RASTER=tmp_path / "c.tif", OUTPUT_VECTOR=tmp_path / "p.shp")
    assert p.returncode != 0 and "p.shp is not one of GeoPackage (.gpkg), FlatGeobuf (.fgb)" in p.stdout + p.stderr
    assert not list(tmp_path.iterdir())


def test_check_installation_runs_rs_wsss_doctor(qgis):
    p = _run(qgis, "doctor", WEIGHTS="random")
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    assert "USABLE:\ttrue" in p.stdout and "GDAL/PROJ: rasterio" in p.stdout and "precision:" in p.stdout
    p = _run(qgis, "doctor")  # no weights anywhere (offline): not usable, and the fix is named
    out = p.stdout + p.stderr
    assert p.returncode != 0 and "FAIL clip weights" in out and "not usable: clip weights. Set 'Backbone weights'" in out


def _corner(scene: Path) -> str:
    import rasterio

    with rasterio.open(scene) as src:
        b = src.bounds
    w = (b.right - b.left) / 6
    return f"{b.left},{b.left + w},{b.top - w},{b.top}"


def _expected_label(cfg: Config, key: str) -> str:
    section, name = key.split(".")
    value = getattr(getattr(cfg, section), name)
    return ",".join(f"{v:g}" for v in value) if isinstance(value, (list, tuple)) else f"{value:g}"


def test_through_the_provider_api(tmp_path, shared_data):
    """One QGIS session: labels vs the config, FlatGeobuf styling, layer order, rerun in place, the tag grid's place,
    the weights error in the dialog's terms (once), a cancel as a warning, the realpath fallback."""
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "rs_wsss_qgis").symlink_to(REPO / "qgis_plugin" / "rs_wsss_qgis")  # a plugin linked into a profile
    work = tmp_path / "work"
    work.mkdir()
    env = _env(tmp_path / "profile", RS_WSSS_QGIS_TEST="1", HF_HUB_OFFLINE="1")
    p = subprocess.run(["/usr/bin/python3", str(Path(__file__).with_name("inside_qgis_gis_user.py")), str(plugins),
                        str(work), str(shared_data), str(CLI)], env=env, capture_output=True, text=True, timeout=900)
    lines = [line for line in p.stdout.splitlines() if line.startswith("{")]
    assert lines, p.stdout[-2000:] + p.stderr[-3000:]
    f = json.loads(lines[-1])
    assert f["repo"] == str(REPO)  # realpath: the symlinked plugin still finds its repository (and .venv)

    # labels and defaults: the config's values and the CLI's units, never the plugin's own
    cfg, seg, train = Config(), f["params"]["rs_wsss:segment"], f["params"]["rs_wsss:train"]
    for params, name, key, unit in ((seg, "TILE", "raster.tile", "px"), (seg, "OVERLAP", "raster.overlap", None),
                                    (seg, "SCALES", "infer.scales", None), (train, "ITERS", "train.iters", None),
                                    (train, "BATCH", "train.batch", None)):
        label = params[name]["label"]
        assert f"empty: {_expected_label(cfg, key)}" in label, (name, label)
        assert unit is None or f"({unit};" in label, (name, label)
    assert "(m²;" in seg["MIN_AREA"]["label"] and "merge" in seg["MIN_AREA"]["label"]
    assert "(m;" in seg["SIMPLIFY"]["label"] and "CRS units" not in json.dumps(f["params"])
    assert f["params"]["rs_wsss:taggrid"]["TILE"]["default"] == cfg.raster.tile
    assert seg["CRF"]["options"][0] == f"as configured ({'on' if cfg.infer.crf else 'off'})"
    for alg in ("rs_wsss:segment", "rs_wsss:train", "rs_wsss:taggrid", "rs_wsss:tagsfromvector"):
        assert f["params"][alg]["CLASSES"]["options"] == packaged_class_sets()
    for alg in ("rs_wsss:segment", "rs_wsss:train", "rs_wsss:doctor"):  # the weights choice, default = the setting
        assert f["params"][alg]["WEIGHTS"]["default"] == "random (shows the mechanics only)"
    assert f["extensions"] == ["gpkg", "fgb"] or f["extensions"] == ["gpkg", "fgb", "parquet"]

    # FlatGeobuf: written where asked, opened styled by QGIS without the plugin; progress once per stage
    assert f["fgb_result"].endswith("polys.fgb")
    assert f["fgb_plain"]["valid"] and f["fgb_plain"]["renderer"] == "categorizedSymbol"
    assert f["fgb_plain"]["categories"][1:3] == ["building", "road"]
    assert f["progress_texts"][:3] == ["loading model", "segmenting (9 tiles)", "vectorizing"]

    # one group, polygons above the class raster, confidence last and hidden; the report named after the run
    ((group, layers),) = f["tree_first"]
    assert [name.rsplit(" · ", 1)[1] for name, _, _ in layers] == ["polygons", "classes", "confidence"]
    assert [visible for _, _, visible in layers] == [True, True, False]
    assert f["report_name"] == f"{group} · report"

    # rerun into the same files: the same group and layers, reloaded (the new, wider raster is what is loaded)
    assert f["tree_rerun"] == f["tree_first"]
    assert f["widths"][1] > f["widths"][0] and f["loaded_widths"] == [f["widths"][1]]
    assert all(layers for _, layers in f["tree_after_grid"])  # no empty group
    assert f["tree_after_grid"][0][0] == "(root)" and "tag grid" in f["tree_after_grid"][0][1][0][0]

    # no weights: the dialog's terms, raised once, not also logged
    err = f["weights_error"]
    assert err and "Backbone weights" in err and "random (shows the mechanics only)" in err and "--weights" not in err
    assert f["weights_error_logged"] == []

    # a cancel: a warning, no error, nothing raised, nothing left
    c = f["cancel"]
    assert c["raised"] is False and c["result"] == {} and c["errors"] == [] and c["left"] == []
    assert c["warnings"] == ["cancelled: rs-wsss was stopped and left no output"]
