"""Property-based fuzzing of user inputs: tags CSV/GPKG, class-set YAML, --set, --bands, --scales.

Whatever the bytes, the parsers either succeed or raise the one user-facing error (RsWsssError, or click's usage
errors for options): never another exception (the CLI would exit 1 with "internal error"), never a message of more
than one line.
"""

from __future__ import annotations

import string

import numpy as np
import pytest
import rasterio
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rasterio.transform import from_origin

from rs_wsss.classes import load_class_set
from rs_wsss.errors import RsWsssError
from rs_wsss.raster.tags import read_tags

from ..conftest import run_main_in_process

FUZZ = settings(max_examples=int(__import__("os").environ.get("RS_WSSS_FUZZ_EXAMPLES", "60")), deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


def _one_line(exc: BaseException) -> None:
    assert "\n" not in str(exc) and "\r" not in str(exc), repr(str(exc))


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz")
    path = d / "x.tif"
    with rasterio.open(path, "w", driver="GTiff", width=64, height=48, count=3, dtype="uint8", crs="EPSG:32614",
                       transform=from_origin(500000, 5000000, 1, 1)) as ds:
        ds.write(np.random.default_rng(0).integers(0, 255, (3, 48, 64), dtype=np.uint8))
    return path


@pytest.fixture(scope="module")
def landcover():
    cs = load_class_set("landcover")
    return type("Quiet", (), {"__repr__": lambda self: "landcover", "__getattr__": lambda self, k: getattr(cs, k)})()


def _read(path, scene, class_set):
    try:
        rows = read_tags(path, [str(scene)], class_set)
    except RsWsssError as exc:
        _one_line(exc)
        return None
    assert all(r.window.width > 0 and r.window.height > 0 for r in rows)
    return rows


@FUZZ
@given(st.binary(max_size=300))
def test_tags_csv_any_bytes(tmp_path, scene, landcover, data):
    path = tmp_path / "t.csv"
    path.write_bytes(data)
    _read(path, scene, landcover)


@FUZZ
@given(st.binary(max_size=300))
def test_tags_gpkg_any_bytes(tmp_path, scene, landcover, data):
    path = tmp_path / "t.gpkg"
    path.write_bytes(data)
    _read(path, scene, landcover)


CELL = st.one_of(st.text(max_size=12), st.integers(-10**30, 10**30).map(str),
                 st.floats(allow_nan=True, allow_infinity=True).map(repr),
                 st.sampled_from(["x.tif", "./x.tif", "../x.tif", "", "nan", "inf", "-1", "1e400", "water;building",
                                  "building", ";;", "background", "x.tif\x00", "a" * 300, "WATER"]))


@FUZZ
@given(st.lists(st.lists(CELL, min_size=0, max_size=8), min_size=0, max_size=6),
       st.sampled_from(["image,col_off,row_off,width,height,labels", "image,labels", "",
                        "\ufeffimage,col_off,row_off,width,height,labels"]))
def test_tags_csv_structured(tmp_path, scene, landcover, rows, header):
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf)
    for r in rows:
        w.writerow(r)
    path = tmp_path / "t.csv"
    path.write_text(header + "\n" + buf.getvalue(), encoding="utf-8", errors="surrogatepass")
    (tmp_path / "x.tif").unlink(missing_ok=True)
    _read(path, scene, landcover)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(["x.tif", "nope.tif", "", "../x.tif"]), st.text(max_size=20),
                          st.sampled_from(["box", "empty", "none", "point", "far"])), min_size=1, max_size=4))
def test_tags_gpkg_structured(tmp_path, scene, landcover, feats):
    import geopandas as gpd
    from shapely.geometry import Point, Polygon, box

    geoms = {"box": box(500000, 4999960, 500030, 5000000), "empty": Polygon(), "none": None,
             "point": Point(500010, 4999990), "far": box(0, 0, 10, 10)}
    gdf = gpd.GeoDataFrame({"image": [f[0] for f in feats], "labels": [f[1] for f in feats]},
                           geometry=[geoms[f[2]] for f in feats], crs="EPSG:32614")
    path = tmp_path / "t.gpkg"
    gdf.to_file(path, driver="GPKG")
    import shutil

    shutil.copy(scene, tmp_path / "x.tif")
    _read(path, tmp_path / "x.tif", landcover)


def _load_set(path):
    try:
        cs = load_class_set(str(path))
    except RsWsssError as exc:
        _one_line(exc)
        return None
    assert cs.names[0] == cs.background.name and len(set(cs.names)) == len(cs.names)
    return cs


@FUZZ
@given(st.binary(max_size=300))
def test_class_set_any_bytes(tmp_path, data):
    path = tmp_path / "set.yaml"
    path.write_bytes(data)
    _load_set(path)


YAML_VALUE = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-300, 300), st.floats(allow_nan=False), st.text(max_size=10),
              st.sampled_from(["#3C1098", "#xyz", "3C1098", "a;b", "a\nb"])),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(
        st.sampled_from(["name", "color", "prompt", "codes", "descriptions", "classes", "background",
                         "ignore_codes", "x"]), inner, max_size=5)),
    max_leaves=20)
CLASS = st.fixed_dictionaries({"name": YAML_VALUE}, optional={
    "color": YAML_VALUE, "prompt": YAML_VALUE, "codes": YAML_VALUE, "descriptions": YAML_VALUE})
CLASS_SET = st.fixed_dictionaries({"classes": st.one_of(st.lists(CLASS, max_size=4), YAML_VALUE)}, optional={
    "name": YAML_VALUE, "background": st.one_of(CLASS, YAML_VALUE), "ignore_codes": YAML_VALUE})


@FUZZ
@given(CLASS_SET)
def test_class_set_structured(tmp_path, data):
    path = tmp_path / "set.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    _load_set(path)


@FUZZ
@given(st.text(alphabet=string.printable + "\u00e9\u2028", max_size=200))
def test_class_set_any_text(tmp_path, text):
    path = tmp_path / "set.yaml"
    path.write_text(text, encoding="utf-8")
    _load_set(path)


# ---- --set strings, --bands, --scales --------------------------------------------------------------------------
def _sections_and_keys() -> list[str]:
    from dataclasses import fields

    from rs_wsss.config import Config

    cfg = Config()
    return [f"{s.name}.{k.name}" for s in fields(cfg) for k in fields(getattr(cfg, s.name))]


SET_VALUE = st.one_of(st.text(max_size=15), st.integers().map(str), st.floats().map(repr),
                      st.sampled_from(["many", "1e-3", "[1, 2]", "{a: 1}", "null", "true", "-1", "0", "[]", "nan",
                                       "inf", "1e999", "'x'", "[[1]]", "!!python/object:os.system", "*a", "&a 1"]))


@FUZZ
@given(st.one_of(st.builds(lambda k, v: f"{k}={v}", st.sampled_from(_sections_and_keys()), SET_VALUE),
                 st.text(max_size=30)))
def test_set_strings_never_crash(item):
    from rs_wsss.config import load_config

    try:
        load_config(None, [item])
    except RsWsssError as exc:
        _one_line(exc)


@pytest.fixture(scope="module")
def seg_args(tmp_path_factory, scene):
    d = tmp_path_factory.mktemp("opts")
    (d / "o.gpkg").write_text("exists")  # every valid option set then stops at "output exists", before any model
    return [str(scene), "-o", str(d / "o.gpkg"), "--zero-shot", "--classes", "landcover", "--tiny"]


OPTION_TEXT = st.one_of(st.text(max_size=12), st.lists(st.integers(-3, 6).map(str), max_size=5).map(",".join),
                        st.lists(st.floats(allow_nan=True, allow_infinity=True).map(repr), max_size=4).map(",".join),
                        st.sampled_from(["", ",", "1,,2", " 1 , 2 ", "1e400", "0x10", "½", "١,٢,٣", "-0", "3,2,1"]))


@FUZZ
@given(opt=st.sampled_from(["--bands", "--scales", "-b"]), value=OPTION_TEXT)
def test_bands_and_scales_never_crash(seg_args, capfd, opt, value):
    code, err = run_main_in_process(["segment", *seg_args, opt, value], capfd)
    lines = [l for l in err.splitlines() if l.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, (code, err)


@pytest.mark.parametrize("argv", [["--bands", "\udcff"], ["--scales", "1,\x00"], ["--set", "usr.alpha=\udce9"],
                                  ["--set", "=\n="]])
def test_odd_bytes_in_options_through_a_real_process(seg_args, argv):
    import os
    import subprocess
    import sys

    env = dict(os.environ, OMP_NUM_THREADS="1")
    args = [a.encode("utf-8", "surrogateescape").replace(b"\x00", b"") for a in [*seg_args, *argv]]
    p = subprocess.run([sys.executable.encode(), b"-m", b"rs_wsss_cli.main", b"segment", *args], capture_output=True,
                       env=env, timeout=600, check=False)
    err = p.stderr.decode("utf-8", "replace")
    assert p.returncode == 2 and len([l for l in err.splitlines() if l.strip()]) == 1 and "Traceback" not in err, err
