"""The QGIS provider in a real QGIS (Debian's 3.22+, headless): algorithms run the rs-wsss CLI as a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import geopandas as gpd
import pytest
import rasterio

from rs_wsss.classes import packaged_class_sets

from ._long_run import long_segment_args
from ._qgis import CLI, QGIS_PROCESS, REPO, require_qgis

LANDCOVER, POTSDAM = packaged_class_sets().index("landcover"), packaged_class_sets().index("potsdam")  # as listed

require_qgis()

pytestmark = pytest.mark.qgis


@pytest.fixture(scope="module")
def qgis_env(tmp_path_factory):
    cfg = tmp_path_factory.mktemp("qgis_profile")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(
        QT_QPA_PLATFORM="offscreen",
        QGIS_CUSTOM_CONFIG_PATH=str(cfg),
        QGIS_PLUGINPATH=str(REPO / "qgis_plugin"),
        RS_WSSS_CLI=str(CLI),
        XDG_RUNTIME_DIR=str(cfg),
        RS_WSSS_QGIS_TEST="1",
    )
    p = subprocess.run(
        [str(QGIS_PROCESS), "plugins", "enable", "rs_wsss_qgis"], env=env, capture_output=True, text=True
    )
    assert p.returncode == 0, p.stdout + p.stderr
    return env


def qgis_run(env, alg, **params):
    args = [str(QGIS_PROCESS), "run", f"rs_wsss:{alg}", "--"]
    for k, v in params.items():  # a list is a multiple parameter: qgis_process takes it repeated
        args += [f"{k}={x}" for x in (v if isinstance(v, list) else [v])]
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)


def test_plugin_loads_with_its_algorithms_and_no_error(qgis_env):
    p = subprocess.run([str(QGIS_PROCESS), "list"], env=qgis_env, capture_output=True, text=True)
    assert p.returncode == 0
    for alg in ("segment", "train", "taggrid", "tagsfromvector", "evaluate"):
        assert f"rs_wsss:{alg}" in p.stdout
    v = subprocess.run([str(QGIS_PROCESS), "--version"], env=qgis_env, capture_output=True, text=True).stdout
    major, minor = (int(x) for x in v.split("QGIS ")[1].split(".")[:2])
    assert (major, minor) >= (3, 22)
    assert "Traceback" not in p.stderr and "rs_wsss" not in p.stderr


def test_test_only_options_appear_only_with_the_switch(qgis_env):
    helps = {}
    for switch in ("1", None):
        env = {k: v for k, v in qgis_env.items() if k != "RS_WSSS_QGIS_TEST" or switch}
        helps[switch] = subprocess.run(
            [str(QGIS_PROCESS), "help", "rs_wsss:segment"], env=env, capture_output=True, text=True
        ).stdout
    assert "TINY" in helps["1"] and "TINY" not in helps[None]
    assert "WEIGHTS: Backbone weights" in helps[None]  # the weights choice needs no test switch
    for param in (
        "BANDS",
        "EXTENT",
        "MASK",
        "SCALES",
        "CRF",
        "MIN_AREA",
        "SIMPLIFY",
        "OUTPUT_CONFIDENCE",
        "WRITE_REPORT",
    ):
        assert f"{param}:" in helps[None]
    assert "Worked example" in helps[None]


def test_segment_algorithm_on_a_real_geotiff_with_bands_extent_and_confidence(qgis_env, shared_data, tmp_path):
    scene = shared_data / "naip/m_4709963_se_14_1_20200831.tif"  # 4 bands tagged Gray/Undefined
    with rasterio.open(scene) as src:
        b, res = src.bounds, src.res[0]
        crs, n_bands = src.crs, src.count
    # the western half, on the pixel grid (xmin,xmax,ymin,ymax as QGIS writes extents)
    xmid = b.left + round((b.right - b.left) / 2 / res) * res
    p = qgis_run(
        qgis_env,
        "segment",
        INPUT=scene,
        CLASSES=LANDCOVER,
        TILE=256,
        WEIGHTS="random",
        TINY="true",
        BANDS=[4, 1, 2],
        SCALES="1",
        CRF=2,
        MIN_AREA=4,
        PRECISION=2,
        EXTENT=f"{b.left},{xmid},{b.bottom},{b.top}",
        OUTPUT_RASTER=tmp_path / "classes.tif",
        OUTPUT_VECTOR=tmp_path / "polys.gpkg",
        OUTPUT_CONFIDENCE=tmp_path / "conf.tif",
    )
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    command = next(l for l in p.stdout.splitlines() if l.startswith("$ "))
    for opt in (
        "--bands 4,1,2",
        "--scales 1.0",
        "--no-crf",
        "--min-area 4.0",
        "--probs",
        "--precision fp32",
        f"--bounds={float(b.left)!r},{float(b.bottom)!r},{float(xmid)!r},{float(b.top)!r}",
    ):
        assert opt in command
    assert f"REPORT:\t{tmp_path / 'polys_report.html'}" in p.stdout and (tmp_path / "polys_report.html").exists()
    assert "--crf " not in command and "--overlap" not in command  # unset options stay the CLI's defaults
    assert n_bands == 4
    with rasterio.open(tmp_path / "classes.tif") as o, rasterio.open(tmp_path / "conf.tif") as c:
        assert o.crs == crs and o.bounds.left == b.left and abs(o.bounds.right - xmid) < res / 2
        assert c.shape == o.shape and c.transform == o.transform
    g = gpd.read_file(tmp_path / "polys.gpkg")
    assert len(g) > 0 and g.crs == crs and g.total_bounds[2] <= xmid + res
    assert set(g.class_name) <= {"background", "building", "road", "vegetation", "water", "bare_land"}
    assert g.area.min() >= 4.0
    assert (tmp_path / "classes.qml").exists()


def test_tag_grid_and_train_and_evaluate_algorithms(qgis_env, shared_data, tmp_path):
    scene = shared_data / "spacenet/sample_geotiff.tif"
    p = qgis_run(qgis_env, "taggrid", RASTERS=scene, TILE=256, OUTPUT=tmp_path / "grid.gpkg")
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    grid = gpd.read_file(tmp_path / "grid.gpkg")
    assert len(grid) == 16 and "labels" in grid.columns and grid.crs == rasterio.open(scene).crs
    p = qgis_run(
        qgis_env,
        "tagsfromvector",
        RASTERS=scene,
        VECTOR=shared_data / "spacenet/geotiff_labels.geojson",
        FIELD="building",
        CLASSES=LANDCOVER,
        TILE=256,
        OUTPUT=tmp_path / "tags.csv",
    )
    assert p.returncode != 0 and "value-map" in (p.stdout + p.stderr)  # 'yes' is not a class: the CLI's one line shows
    grid["labels"] = "building"
    grid.to_file(tmp_path / "grid_filled.gpkg", driver="GPKG")
    p = qgis_run(
        qgis_env,
        "train",
        RASTERS=scene,
        TAGS_FILE=tmp_path / "grid_filled.gpkg",
        CLASSES=LANDCOVER,
        ITERS=3,
        WEIGHTS="random",
        TINY="true",
        OUTPUT="TEMPORARY_OUTPUT",
    )  # what the dialog passes by default
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    assert (tmp_path / "model.pt").stat().st_size > 0  # kept: beside the tags, not in QGIS's temporary folder
    assert f"OUTPUT:\t{tmp_path / 'model.pt'}" in p.stdout
    # a model brings its classes: the class set is said to be ignored
    with rasterio.open(scene) as src:
        b = src.bounds
    p = qgis_run(
        qgis_env,
        "segment",
        INPUT=scene,
        MODEL=tmp_path / "model.pt",
        CLASSES=POTSDAM,
        TILE=128,
        SCALES="1",
        CRF=2,
        WEIGHTS="random",
        TINY="true",
        EXTENT=f"{b.left},{b.left + 64},{b.top - 64},{b.top}",
        WRITE_REPORT="false",
        OUTPUT_RASTER=tmp_path / "m.tif",
        OUTPUT_VECTOR=tmp_path / "m.gpkg",
    )
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    assert "class set parameter is ignored" in p.stdout + p.stderr
    assert "--no-report" in p.stdout and not (tmp_path / "m_report.html").exists()
    assert set(gpd.read_file(tmp_path / "m.gpkg").class_name) <= {
        "background",
        "building",
        "road",
        "vegetation",
        "water",
        "bare_land",
    }
    mask = shared_data / "potsdam/masks/2_10_0_0_512_512.png"
    shutil.copy(mask, tmp_path / "gt.png")
    p = qgis_run(
        qgis_env, "evaluate", PREDICTION=mask, GROUND_TRUTH=tmp_path / "gt.png", CLASSES=POTSDAM, OUTPUT=tmp_path / "m.csv"
    )
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    rows = (tmp_path / "m.csv").read_text().splitlines()
    assert rows[0] == "class,iou,f1,gt_pixels" and rows[-1].startswith("mean,1.0")


def test_cancelling_stops_the_subprocess_quickly_and_leaves_no_output(qgis_env, shared_data, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    args = long_segment_args(shared_data / "naip/m_4709963_se_14_1_20200831.tif", out / "long.gpkg")
    script = Path(__file__).with_name("cancel_script.py")
    p = subprocess.run(
        ["/usr/bin/python3", str(script), str(REPO / "qgis_plugin"), *map(str, args)],
        env=qgis_env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
    assert lines, p.stdout[-2000:] + p.stderr[-3000:]
    res = json.loads(lines[-1])
    assert res["raised"] and 0 < res["progress"] < 100
    assert res["stop_seconds"] < 5.0, res
    assert list(out.iterdir()) == []  # no output, no temporary file
    assert (
        shutil.which("pgrep") is None or subprocess.run(["pgrep", "-f", str(out)], capture_output=True).returncode == 1
    )


def test_inside_qgis_setting_checks_and_the_layers_a_user_sees(qgis_env, shared_data, tmp_path):
    """One QGIS session (QGIS's own Python): the provider setting, the checks, and results loaded as the dialog does."""
    env = {k: v for k, v in qgis_env.items() if k != "RS_WSSS_CLI"}
    env["PATH"] = "/usr/bin:/bin"  # rs-wsss must come from the provider setting, not from PATH or the variable
    script = Path(__file__).with_name("inside_qgis.py")
    p = subprocess.run(
        ["/usr/bin/python3", str(script), str(REPO / "qgis_plugin"), str(tmp_path), str(shared_data), str(CLI)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
    assert p.returncode == 0 and lines, p.stdout[-2000:] + p.stderr[-3000:]
    f = json.loads(lines[-1])
    # the setting: registered under the provider's group; a wrong value named at load time; the venv folder works
    assert f["setting_registered"]
    assert "no-such-rs-wsss" in f["bad_setting_warning"] and f["bad_setting_logged"]
    assert f["good_setting_warning"] == "" and f["cli_found_from_setting"] == str(CLI)
    # checks before running
    assert "web layer" in f["web_layer"] and "Save As" in f["web_layer"]
    assert "Scales '1,x'" in f["bad_scales"]
    assert "Train needs tile tags" in f["train_no_tags"]
    assert "labels are empty (16 tiles)" in f["train_empty_labels"]
    assert "the same layer" in f["evaluate_same_layer"]
    # the mask without the CLI's --aoi: cut to the triangle's bounds, the scene's pixels inside, nodata outside
    m = f["mask_vrt"]
    assert m["size"] == [m["scene"][0] // 2, m["scene"][1]]
    assert m["inside"] == m["src_inside"] != m["nodata"] and m["outside"] == m["nodata"]
    # the tag grid: a real file beside the raster, outlines without fill, labelled, labels picked from a list
    assert f["grid_path"] == str(tmp_path / "scene_tags.gpkg") and (tmp_path / "scene_tags.gpkg").exists()
    grid = gpd.read_file(tmp_path / "scene_tags.gpkg")
    assert set(grid["image"]) == {"scene.tif"}  # relative to the grid: both can move together
    g = f["grid"]
    assert g["fill_alpha"] == 0 and g["brush"] == 0 and g["labels_on"] and g["label_field"] == "labels"
    assert "unsaved edits" in f["unsaved_edits"] and f["saved_edits"] == ""  # one tile labelled and saved: accepted
    assert g["widget"] == "ValueMap" and {"building", "road", "building;road", "(background only)"} <= set(g["choices"])
    # segment: progress log one line per stage; layers grouped, named after scene and model, see-through
    log = f["segment_log"]
    progress = [l for l in log if l.startswith("PROGRESS ")]  # one progress text per stage, none per tile
    assert progress[:3] == ["PROGRESS loading model", "PROGRESS segmenting (25 tiles)", "PROGRESS vectorizing"], progress
    assert progress[3:] == ["PROGRESS Loading resulting layers"]  # Processing's own, once
    assert not any("tile " in l for l in log if not l.startswith("$ "))
    command = next(l for l in log if l.startswith("$ "))
    assert "--bounds=" in command and f"--aoi {tmp_path / 'mask.gpkg'}" in command  # the CLI's own extent and mask
    # the triangle covers half the scene's western half: in the north-west quarter, 1/4 of the pixels are outside it
    assert 0.15 < f["classes_nodata_fraction"] < 0.35
    ((group, layers),) = f["groups"]
    assert group == "scene · zero-shot landcover (random weights)"
    assert layers == [f"{group} · {k}" for k in ("polygons", "classes", "confidence")]  # polygons above rasters
    r = f["classes_raster"]
    assert (
        r["type"] == "paletted"
        and 0 < r["opacity"] < 1
        and r["alphas"]["background"] == 0
        and r["alphas"]["building"] == 255
    )
    assert 0 < f["polygons"]["opacity"] < 1 and f["polygons"]["background_shown"] == [False]
    assert f["polygons"]["fill_alpha"] == 0  # class outlines only: the raster gives the fill
    c = f["confidence"]
    assert c["type"] == "singlebandpseudocolor" and (c["min"], c["max"]) == (0.0, 1.0) and 0 < c["opacity"] < 1
    # tags-from-vector's CSV and evaluate's table load as tables
    tables = dict(f["tables"])
    assert tables["tags (tile tags)"] == 16 and tables["metrics classes vs gt"] == 7
