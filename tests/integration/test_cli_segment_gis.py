"""``rs-wsss segment`` GIS outputs through the command line: --bounds/--bounds-crs, --aoi, --src-nodata, --co, vector
format by extension, confidence COG, class categories, area summary and STAC sidecars (tiny zero-shot, random
weights)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import geopandas as gpd
import numpy as np
import rasterio
import shapely
from rasterio.transform import from_origin
from rasterio.warp import transform_bounds
from rasterio.windows import Window
from shapely.geometry import Point

from .conftest import run_cli

CHEAP = ("--zero-shot", "--classes", "landcover", "--tiny", "--weights", "random", "--scales", "1", "--no-crf",
         "--tile", "128")


def test_segment_bounds_in_lon_lat_to_flatgeobuf_with_sidecars(shared_data, tmp_path):
    scene = shared_data / "naip/m_4709963_se_14_1_20200831.tif"
    with rasterio.open(scene) as src:
        t, crs = src.transform, src.crs
        # a box a third of a pixel off the grid, given in lon/lat
        box_utm = (t.c + 100.3 * t.a, t.f + 300.6 * t.e, t.c + 350.2 * t.a, t.f + 100.7 * t.e)
    ll = transform_bounds(crs, "EPSG:4326", *box_utm)
    out = tmp_path / "naip.fgb"
    p = run_cli("segment", scene, "-o", out, *CHEAP, "--bounds", ",".join(map(str, ll)), "--bounds-crs", "EPSG:4326",
                "--probs", "--min-area", "200", "--co", "COMPRESS=LZW")
    assert p.returncode == 0, p.stderr
    with rasterio.open(tmp_path / "naip.tif") as o, rasterio.open(tmp_path / "naip_confidence.tif") as c:
        ot = o.transform
        col, row = (ot.c - t.c) / t.a, (ot.f - t.f) / t.e
        assert ot.a == t.a and ot.e == t.e and col == int(col) and row == int(row)  # input pixel grid kept
        assert 95 <= col <= 100 and 95 <= row <= 100 and 250 <= o.width <= 262 and 200 <= o.height <= 212
        assert o.compression.name == "lzw" and c.compression.name == "lzw"
        assert c.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG" and c.transform == ot and c.dtypes[0] == "float32"
        footprint = o.width * o.height * abs(t.a * t.e)
    cats = ET.parse(tmp_path / "naip.tif.aux.xml").getroot().find("PAMRasterBand/CategoryNames")
    assert [c.text for c in cats][:2] == ["background", "building"]
    g = gpd.read_file(out)
    assert np.isclose(g.area_m2.sum(), footprint) and np.isclose(shapely.union_all(g.geometry.values).area, footprint)
    assert 0 < g.mean_confidence.min() and g.mean_confidence.max() <= 1
    areas = json.loads((tmp_path / "naip_areas.json").read_text())
    assert np.isclose(areas["total_area_m2"], footprint)
    item = json.loads((tmp_path / "naip_stac.json").read_text())
    props = item["properties"]
    assert props["proj:code"] == "EPSG:26914" and props["proj:shape"] == [o.height, o.width]
    assert props["rs_wsss:model"] == "zero-shot" and props["rs_wsss:weights"] == "random-weights"
    assert props["rs_wsss:parameters"]["min_area_m2"] == 200.0 and props["rs_wsss:parameters"]["extent"]["bounds_crs"]
    assert item["links"][0]["href"] == str(scene) and item["assets"]["vector"]["href"] == "naip.fgb"
    assert item["bbox"][0] <= ll[0] + 1e-4 and item["bbox"][2] >= ll[2] - 1e-4


def test_segment_geographic_scene_with_aoi_and_collar_to_geoparquet(shared_data, tmp_path):
    # real pixels (a NAIP crop) on a synthetic EPSG:4326 grid, with an unflagged black collar
    with rasterio.open(shared_data / "naip/m_4709963_se_14_1_20200831.tif") as src:
        rgb = src.read([1, 2, 3], window=Window(200, 200, 240, 200))
    rgb[:, :, :40] = 0
    transform = from_origin(-97.5, 47.1, 5e-5, 5e-5)
    scene = tmp_path / "scene4326.tif"
    with rasterio.open(scene, "w", driver="GTiff", width=240, height=200, count=3, dtype="uint8", crs="EPSG:4326",
                       transform=transform) as dst:
        dst.write(rgb)
    centre = Point(*(transform * (120, 100)))
    gpd.GeoDataFrame(geometry=[centre.buffer(0.004)], crs="EPSG:4326").to_file(tmp_path / "aoi.gpkg")
    out = tmp_path / "geo.parquet"
    p = run_cli("segment", scene, "-o", out, *CHEAP, "--aoi", tmp_path / "aoi.gpkg", "--src-nodata", "0")
    assert p.returncode == 0, p.stderr
    with rasterio.open(tmp_path / "geo.tif") as o:
        cls, ot = o.read(1), o.transform
    assert o.crs.to_epsg() == 4326 and cls.shape == (160, 160)  # the AOI's bounding box: 0.008° / 5e-5° = 160 px
    rows, cols = np.indices(cls.shape)
    xs, ys = ot * (cols + 0.5, rows + 0.5)
    dist = np.hypot(xs - centre.x, ys - centre.y)
    collar = xs < transform.c + 40 * transform.a
    assert (cls[(dist > 0.004 + 1e-4) | collar] == 255).all() and (cls[(dist < 0.004 - 1e-4) & ~collar] != 255).all()
    g = gpd.read_parquet(out)
    assert g.crs.to_epsg() == 4326 and len(g) > 0
    # geographic CRS: m² from an equal-area projection, not degrees²; a 5e-5° pixel here is about 3.8 m × 5.6 m
    n_valid = (cls != 255).sum()
    assert 15 * n_valid < g.area_m2.sum() < 25 * n_valid
    areas = json.loads((tmp_path / "geo_areas.json").read_text())
    assert np.isclose(areas["total_area_m2"], g.area_m2.sum()) and "equal-area" in areas["area_method"]


def test_segment_refuses_bounds_outside_the_scene_before_building_a_model(shared_data, tmp_path):
    scene = shared_data / "spacenet/sample_geotiff.tif"
    p = run_cli("segment", scene, "-o", tmp_path / "o.gpkg", *CHEAP, "--bounds", "0,0,10,10")
    assert p.returncode == 2 and "do not overlap" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    p = run_cli("segment", scene, "-o", tmp_path / "o.gpkg", *CHEAP, "--co", "COMPRESS")
    assert p.returncode == 2 and "NAME=VALUE" in p.stderr
    assert not list(tmp_path.iterdir())
