"""Class raster → polygons: seam-free strips, sieve (MMU in m²), coverage simplification, m² areas, formats, styles."""

from __future__ import annotations

import json
import sqlite3
import xml.etree.ElementTree as ET

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

import rs_wsss.raster.vectorize as vec
from rs_wsss.raster.areas import raster_class_areas
from rs_wsss.raster.styles import LAYER_STYLES_COLUMNS
from rs_wsss.raster.vectorize import polygonize, vectorize

NAMES = ["background", "a", "b", "c", "d"]
COLORS = [(0, 0, 0), (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]


def _write(path, arr, crs, transform, colors=True):
    with rasterio.open(path, "w", driver="GTiff", width=arr.shape[1], height=arr.shape[0], count=1, dtype="uint8",
                       nodata=255, crs=crs, transform=transform) as ds:
        ds.write(arr, 1)
        ds.update_tags(CLASS_NAMES=";".join(NAMES))
        if colors:
            ds.write_colormap(1, {i: (*c, 255) for i, c in enumerate(COLORS)})
    return path


def _naip_classes(shared_data, tmp_path, rows=None):
    """A real multi-class raster: NAIP red, smoothed (a class map is smoother than pixels), quantised into 4 classes,
    with a nodata corner, on NAIP's grid (EPSG:26914, 5 m)."""
    with rasterio.open(shared_data / "naip/m_4709963_se_14_1_20200831.tif") as src:
        red = ndimage.uniform_filter(src.read(1).astype(np.float32), 5)
        crs, transform = src.crs, src.transform
    arr = np.digitize(red, np.percentile(red, [25, 50, 75])).astype(np.uint8) + 1
    arr[:150, :200] = 255
    arr = arr[:rows]
    return _write(tmp_path / "naip_classes.tif", arr, crs, transform), arr, crs, transform


@pytest.mark.parametrize("res", [0.1, 0.3, 1 / 3])
@pytest.mark.parametrize("y0", [5_600_000.0, 4_123_456.7])
@pytest.mark.parametrize("shape_", [(16384, 4), (520, 16384)])
def test_one_class_tall_and_wide_rasters_give_one_polygon(tmp_path, res, y0, shape_):
    # tall: 8 strips of 2048 rows; wide: strips of 256 rows (STRIP_PIXELS). Before issue 14 (strips with their own
    # transforms: shared edges one ulp apart), 4 of the 6 tall and 3 of the 6 wide cases gave 2-4 polygons
    path = _write(tmp_path / "c.tif", np.ones(shape_, np.uint8), "EPSG:32617", from_origin(500_000.0, y0, res, res))
    assert vectorize(path, tmp_path / "c.gpkg") == 1
    g = gpd.read_file(tmp_path / "c.gpkg")
    assert g.geometry[0].geom_type == "Polygon" and len(g.geometry[0].interiors) == 0
    assert np.isclose(g.area_m2[0], shape_[0] * shape_[1] * res * res, rtol=1e-9)


def test_strips_give_the_polygons_of_one_whole_raster_polygonize(shared_data, tmp_path, monkeypatch):
    path, arr, crs, transform = _naip_classes(shared_data, tmp_path)
    monkeypatch.setattr(vec, "STRIP", 100)  # 8 strips
    ours = polygonize(path, NAMES)
    whole = [(int(v), shape(g)) for g, v in shapes(arr, mask=arr != 255, transform=transform)]
    assert len(ours) == len(whole) > 100
    for c in range(1, 5):
        mine = sorted(ours.geometry[ours.class_id == c], key=lambda g: (g.area, g.bounds))
        ref = sorted([g for v, g in whole if v == c], key=lambda g: (g.area, g.bounds))
        assert len(mine) == len(ref)
        for a, b in zip(mine, ref):
            assert a.is_valid and a.symmetric_difference(b).area < 1e-6  # 25 m² pixels: any pixel off would show


def _coverage_checks(gdf, arr, transform):
    union = shapely.union_all(gdf.geometry.values)
    footprint = shapely.union_all([shape(g) for g, v in shapes((arr != 255).astype(np.uint8), mask=arr != 255,
                                                               transform=transform)])
    assert np.isclose(gdf.area.sum(), union.area, rtol=1e-9)  # no overlaps
    assert union.symmetric_difference(footprint).area < 1e-6 * footprint.area  # no gaps, nothing outside the data
    assert gdf.geometry.is_valid.all()


def test_sieve_and_coverage_simplify_keep_a_gapless_coverage(shared_data, tmp_path):
    path, arr, crs, transform = _naip_classes(shared_data, tmp_path, rows=300)
    raw = polygonize(path, NAMES)
    mmu = polygonize(path, NAMES, min_area=500.0)  # 20 pixels of 25 m²
    both = polygonize(path, NAMES, min_area=500.0, simplify=5.0)
    assert len(mmu) < len(raw) / 2 and len(both) == len(mmu)
    touches_nodata = mmu.geometry.buffer(1).intersects(shapely.box(*transform * (0, 0), *transform * (200, 150)))
    assert (mmu.area_m2[~touches_nodata] >= 500.0).all()  # only islands against nodata have no neighbour to join
    assert raw.area_m2.min() == 25.0 and shapely.get_num_coordinates(both.geometry.values).sum() < \
        shapely.get_num_coordinates(mmu.geometry.values).sum()
    for g in (raw, mmu, both):
        _coverage_checks(g, arr, transform)
    # the sieve only relabels pixels: class areas of the three differ, their total does not
    assert np.isclose(raw.area_m2.sum(), both.area_m2.sum(), rtol=1e-9)


def test_areas_are_square_metres_in_a_geographic_crs(tmp_path):
    arr = np.full((200, 300), 1, np.uint8)
    arr[50:120, 100:250] = 2
    transform = from_origin(-84.5, 45.2, 0.0001, 0.0001)
    path = _write(tmp_path / "geo.tif", arr, "EPSG:4326", transform)
    g = polygonize(path, NAMES)
    geod = Geod(ellps="WGS84")
    for geom, m2 in zip(g.geometry, g.area_m2):
        assert np.isclose(abs(geod.geometry_area_perimeter(geom)[0]), m2, rtol=1e-6)
    assert np.isclose(g.area_ha.sum() * 1e4, g.area_m2.sum())
    by_raster = {r["class_id"]: r["area_m2"] for r in raster_class_areas(path)}
    assert by_raster.keys() == {1, 2}
    for c in (1, 2):
        assert np.isclose(by_raster[c], g.area_m2[g.class_id == c].sum(), rtol=1e-5)


def test_areas_convert_feet_to_metres(tmp_path):
    path = _write(tmp_path / "ft.tif", np.ones((10, 10), np.uint8), "EPSG:2264", from_origin(2e6, 7e5, 3, 3))
    g = polygonize(path, NAMES)
    assert np.isclose(g.area_m2[0], 100 * 9 * 0.3048006096**2, rtol=1e-9)


def test_gpkg_carries_its_style_in_layer_styles(shared_data, tmp_path):
    path, *_ = _naip_classes(shared_data, tmp_path)
    out = tmp_path / "o.gpkg"
    n = vectorize(path, out, summary=(tmp_path / "o_areas.csv", tmp_path / "o_areas.json"))
    with sqlite3.connect(out) as db:
        cols = [r[1] for r in db.execute("PRAGMA table_info(layer_styles)")]
        row = db.execute("SELECT f_table_name, f_geometry_column, styleQML, styleSLD, useAsDefault FROM layer_styles"
                         ).fetchone()
        geom_col = db.execute("SELECT column_name FROM gpkg_geometry_columns WHERE table_name='classes'").fetchone()[0]
        kind = db.execute("SELECT data_type FROM gpkg_contents WHERE table_name='layer_styles'").fetchone()[0]
    assert set(LAYER_STYLES_COLUMNS) <= set(cols) and kind == "attributes"
    assert row[0] == "classes" and row[1] == geom_col and row[4] == 1
    qml = ET.fromstring(row[2].split("\n", 1)[1])
    cats = qml.findall("./renderer-v2/categories/category")
    assert [c.get("label") for c in cats] == NAMES and qml.find("renderer-v2").get("attr") == "class_id"
    assert qml.findall(".//symbol")[2].find(".//Option[@name='color']").get("value") == "0,255,0,255"
    assert ET.fromstring(row[3].encode()).tag.endswith("StyledLayerDescriptor")
    summary = json.loads((tmp_path / "o_areas.json").read_text())
    g = gpd.read_file(out)
    assert len(g) == n and sum(c["polygons"] for c in summary["classes"]) == n
    assert np.isclose(summary["total_area_m2"], g.area_m2.sum()) and (tmp_path / "o_areas.csv").exists()


@pytest.mark.parametrize("ext", [".fgb", ".parquet"])
def test_other_vector_formats_by_extension(shared_data, tmp_path, ext):
    path, *_ = _naip_classes(shared_data, tmp_path)
    ref = polygonize(path, NAMES)
    out = tmp_path / f"o{ext}"
    assert vectorize(path, out) == len(ref)
    g = gpd.read_parquet(out) if ext == ".parquet" else gpd.read_file(out)
    assert g.crs == ref.crs and list(g.columns) == list(ref.columns)
    assert np.isclose(g.area_m2.sum(), ref.area_m2.sum())
    if ext == ".parquet":
        assert json.loads(__import__("pyarrow.parquet").parquet.read_schema(out).metadata[b"geo"])["version"]
