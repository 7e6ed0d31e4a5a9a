"""The notebook API: ``import rs_wsss`` is light, ``train_from_tags`` writes log/report and keeps the best checkpoint
under validation, ``segment_raster`` returns the output paths (and a GeoDataFrame), and the CLI calls these
functions."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import geopandas as gpd
import pytest
import torch
from click.testing import CliRunner

import rs_wsss
from rs_wsss.classes import load_class_set
from rs_wsss.raster.tags import tags_from_raster, write_tags


@pytest.fixture(scope="module", autouse=True)
def _cache_dir(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:  # encoded knowledge bases go to a temporary cache, not ~/.cache
        mp.setenv("RS_WSSS_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


def test_import_is_light_and_exports_the_api():
    code = ("import sys, rs_wsss\nheavy=[m for m in ('torch','rasterio','matplotlib','geopandas') if m in "
            "sys.modules]\n"
            "assert not heavy, heavy\nfrom rs_wsss import segment_raster, train_from_tags\n"
            "assert segment_raster.__module__ == 'rs_wsss.api' == train_from_tags.__module__")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert p.returncode == 0, p.stderr
    with pytest.raises(AttributeError):
        rs_wsss.no_such_function  # noqa: B018


@pytest.fixture(scope="module")
def potsdam_tags(shared_data, tmp_path_factory):
    d = tmp_path_factory.mktemp("potsdam")
    img = str(shared_data / "potsdam/images/2_10_0_0_512_512.png")
    rows = tags_from_raster([img], [str(shared_data / "potsdam/masks/2_10_0_0_512_512.png")], load_class_set("potsdam"),
                            128, 0.0)
    write_tags(rows, d / "tags.csv")
    return img, d / "tags.csv"


@pytest.mark.parametrize("kind", ["masks", "tags"])
def test_train_from_tags_validates_and_keeps_best_and_last(shared_data, potsdam_tags, kind, tmp_path):
    img, tags = potsdam_tags
    val = {"val_masks": shared_data / "potsdam/masks"} if kind == "masks" else {"val_tags": tags}
    res = rs_wsss.train_from_tags(tags, [img], tmp_path / "model.pt", classes="potsdam", tiny=True, iters=5,
                                  device="cpu", overrides=["train.report_every=2", "train.val_tiles=4"], **val)
    assert res["checkpoint"] == str(tmp_path / "model.pt") and res["step"] == 5
    assert {Path(res[k]).name for k in ("best", "log", "report", "curves", "previews")} == {
        "model.best.pt", "model.log.csv", "model.report.html", "model.curves.png", "model.previews.png"}
    with open(res["log"]) as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4, 5]
    assert [v["step"] for v in res["validation"]] == [2, 4, 5]
    assert res["validation"][0]["metric"] == ("mIoU" if kind == "masks" else "tag mIoU")
    best = max(res["validation"], key=lambda v: v["score"])
    assert torch.load(res["best"], weights_only=True)["step"] == best["step"]
    assert torch.load(res["checkpoint"], weights_only=True)["step"] == 5  # the last one stays model.pt


def test_train_without_report_writes_only_the_checkpoint_and_its_model_card(potsdam_tags, tmp_path):
    img, tags = potsdam_tags
    rs_wsss.train_from_tags(tags, [img], tmp_path / "m.pt", classes="potsdam", tiny=True, iters=2, device="cpu",
                            report=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt", "m.pt.stac.json"]  # the card is not the report


def test_segment_raster_returns_paths_and_a_geodataframe(shared_data, trained_spacenet, tmp_path):
    scene = shared_data / "spacenet/sample_geotiff.tif"
    res = rs_wsss.segment_raster(scene, tmp_path / "out.gpkg", model=trained_spacenet / "model.pt", tile=256,
                                 device="cpu", return_gdf=True)
    assert isinstance(res, dict) and res["scene"] == str(scene)
    for key, name in {"tif": "out.tif", "vector": "out.gpkg", "quicklook": "out_quicklook.png",
                      "report": "out_report.html"}.items():
        assert res[key] == str(tmp_path / name) and Path(res[key]).exists()
    assert isinstance(res["gdf"], gpd.GeoDataFrame) and len(res["gdf"]) == res["polygons"] > 0
    assert res["gdf"].crs.to_epsg() == 32616
    many = rs_wsss.segment_raster([scene], tmp_path / "many", model=trained_spacenet / "model.pt", tile=256,
                                  device="cpu", report=False)  # a list in, a list out; a directory output
    assert isinstance(many, list) and Path(many[0]["vector"]) == tmp_path / "many/sample_geotiff.gpkg"
    assert "report" not in many[0] and not list((tmp_path / "many").glob("*.html"))
    with pytest.raises(TypeError):  # options are keyword-only
        rs_wsss.segment_raster(scene, tmp_path / "x.gpkg", trained_spacenet / "model.pt")


def test_cli_calls_the_api(monkeypatch, tmp_path):
    """The CLI only parses and prints: its options arrive unchanged at ``segment_raster`` / ``train_from_tags``."""
    import rs_wsss.api
    from rs_wsss_cli.main import cli

    calls = {}

    def fake(name, ret):
        def f(*args, **kwargs):
            calls[name] = (args, kwargs)
            return ret
        return f

    monkeypatch.setattr(rs_wsss.api, "segment_raster", fake("segment", {"scene": "a.tif"}))
    monkeypatch.setattr(rs_wsss.api, "train_from_tags", fake("train", {"losses": []}))
    r = CliRunner().invoke(cli, ["segment", "a.tif", "-o", "o.gpkg", "--model", "m.pt", "--scales", "1,2",
                                 "--no-report", "--bands", "3,2,1", "--tile", "64"])
    assert r.exit_code == 0, r.output
    args, kw = calls["segment"]
    assert args == ("a.tif", "o.gpkg") and kw["model"] == "m.pt" and kw["scales"] == [1.0, 2.0]
    assert kw["report"] is False and kw["bands"] == [3, 2, 1] and kw["tile"] == 64
    r = CliRunner().invoke(cli, ["train", "a.tif", "--tags", "t.csv", "-o", "m.pt", "--classes", "potsdam",
                                 "--val-masks", "gt", "--val-value-map", "255=building", "--iters", "3"])
    assert r.exit_code == 0, r.output
    args, kw = calls["train"]
    assert args == ("t.csv", ["a.tif"], "m.pt") and kw["val_masks"] == "gt" and kw["iters"] == 3
    assert kw["val_value_map"] == {255: "building"} and kw["report"] is True and kw["classes"] == "potsdam"
