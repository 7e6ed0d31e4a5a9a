"""``rs-wsss vectorize`` through the command line on class rasters on real grids (SpaceNet UTM, NAIP, Landsat Albers)
and on an EPSG:4326 grid: a gapless, non-overlapping coverage, areas in m², summary and STAC sidecars, bad input."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from pyproj import Geod
from rasterio.features import shapes
from rasterio.transform import from_origin
from scipy import ndimage
from shapely.geometry import shape

from rs_wsss.classes import load_class_set

from .conftest import run_cli

CS = load_class_set("landcover")


def _class_raster(shared_data, tmp_path, kind):
    """A class raster on a real scene's grid: SpaceNet's building mask, or a scene's first band smoothed and
    quantised into 4 classes; 4326 is a synthetic geographic grid."""
    if kind == "4326":
        arr = np.ones((300, 400), np.uint8)
        arr[40:200, 50:300] = 4
        arr[250:, :] = 255
        crs, transform = "EPSG:4326", from_origin(-84.5, 45.2, 0.0001, 0.0001)
    else:
        rel = {"spacenet": "spacenet/sample_geotiff.tif", "naip": "naip/m_4709963_se_14_1_20200831.tif",
               "albers": "landsat_albers/sample_geotiff_custom_proj.tif"}[kind]
        with rasterio.open(shared_data / rel) as src:
            crs, transform = src.crs, src.transform
            band = ndimage.uniform_filter(src.read(1).astype(np.float32), 5)
        if kind == "spacenet":
            with rasterio.open(shared_data / "spacenet/sample_fp_mask_from_geojson.tif") as m:
                arr = (m.read(1) > 0).astype(np.uint8)  # 0 background, 1 building
        else:
            arr = np.digitize(band, np.percentile(band, [25, 50, 75])).astype(np.uint8) + 2
    path = tmp_path / f"{kind}.tif"
    with rasterio.open(path, "w", driver="GTiff", width=arr.shape[1], height=arr.shape[0], count=1, dtype="uint8",
                       nodata=255, crs=crs, transform=transform) as ds:
        ds.write(arr, 1)
    return path, arr, transform


@pytest.mark.parametrize("kind,ext", [("spacenet", ".gpkg"), ("naip", ".fgb"), ("albers", ".parquet"),
                                      ("4326", ".gpkg")])
def test_vectorize_cli_writes_a_clean_coverage_with_sidecars(shared_data, tmp_path, kind, ext):
    path, arr, transform = _class_raster(shared_data, tmp_path, kind)
    out = tmp_path / f"out{ext}"
    p = run_cli("vectorize", path, "-o", out, "--classes", "landcover", "--min-area", "200", "--simplify", "2")
    assert p.returncode == 0, p.stderr
    g = gpd.read_parquet(out) if ext == ".parquet" else gpd.read_file(out, layer="classes" if ext == ".gpkg" else None)
    with rasterio.open(path) as src:
        assert g.crs == src.crs
    union = shapely.union_all(g.geometry.values)
    footprint = shapely.union_all([shape(s) for s, _ in shapes((arr != 255).astype(np.uint8), mask=arr != 255,
                                                               transform=transform)])
    assert len(g) > 0 and np.isclose(g.area.sum(), union.area, rtol=1e-9)  # no overlaps
    assert union.symmetric_difference(footprint).area < 1e-9 * footprint.area  # no gaps
    assert set(g.class_name) <= set(CS.names) and (g.class_id.map(lambda i: CS.names[i]) == g.class_name).all()
    summary = json.loads((tmp_path / "out_areas.json").read_text())
    assert np.isclose(summary["total_area_m2"], g.area_m2.sum())
    assert sum(c["polygons"] for c in summary["classes"]) == len(g) == len(g.pixels)
    assert sum(c["pixels"] for c in summary["classes"]) == (arr != 255).sum() == g.pixels.sum()
    item = json.loads((tmp_path / "out_stac.json").read_text())
    assert item["type"] == "Feature" and item["assets"]["polygons"]["href"] == out.name
    assert item["properties"]["rs_wsss:parameters"]["min_area_m2"] == 200.0
    assert item["properties"]["proj:shape"] == list(arr.shape)
    lon, lat = shapely.geometry.shape(item["geometry"]).centroid.coords[0]
    assert -180 <= lon <= 180 and -90 <= lat <= 90 and item["bbox"][0] <= lon <= item["bbox"][2]
    if kind == "4326":  # geographic CRS: true ground areas
        geod = Geod(ellps="WGS84")
        for geom, m2 in zip(g.geometry, g.area_m2):
            assert np.isclose(abs(geod.geometry_area_perimeter(geom)[0]), m2, rtol=1e-5)
    else:
        assert np.allclose(g.area_m2, g.area, rtol=1e-12)  # metre CRSs: planar areas


def test_vectorize_cli_refuses_bad_input_in_one_line(shared_data, tmp_path):
    path, *_ = _class_raster(shared_data, tmp_path, "spacenet")
    for args, words in [((path, "-o", tmp_path / "o.shp"), ".gpkg, .fgb or .parquet"),
                        ((shared_data / "naip/m_4709963_se_14_1_20200831.tif", "-o", tmp_path / "o.gpkg"),
                         "not a class raster"),
                        ((tmp_path / "missing.tif", "-o", tmp_path / "o.gpkg"), "not found"),
                        ((path, "-o", tmp_path / "o.gpkg", "--classes", "nosuchset"), "nosuchset")]:
        p = run_cli("vectorize", *args)
        assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and words in p.stderr, p.stderr
    assert not list(tmp_path.glob("o*"))


def test_vectorize_cli_reads_gdal_virtual_paths(shared_data, tmp_path):
    # not a local file name: /vsizip/ here stands for /vsicurl/, https:// and s3://, which need a network
    import zipfile

    path, arr, _ = _class_raster(shared_data, tmp_path, "spacenet")
    with zipfile.ZipFile(tmp_path / "classes.zip", "w") as z:
        z.write(path, "classes.tif")
    p = run_cli("vectorize", f"/vsizip/{tmp_path / 'classes.zip'}/classes.tif", "-o", tmp_path / "z.fgb")
    assert p.returncode == 0, p.stderr
    g = gpd.read_file(tmp_path / "z.fgb")
    assert np.isclose(g.area_m2.sum(), (arr != 255).sum() * 0.25)  # 0.5 m pixels
