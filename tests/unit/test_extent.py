"""--bounds / --aoi / --src-nodata: pixel-aligned output grids, AOI masks and unflagged collars on real rasters."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from rasterio.windows import Window
from shapely.geometry import Point, box

from rs_wsss.errors import RsWsssError
from rs_wsss.raster.extent import Extent, parse_bounds
from rs_wsss.raster.io import open_scene
from rs_wsss.raster.stitch import stitch
from rs_wsss.raster.tiles import TileGrid

NAIP = "naip/m_4709963_se_14_1_20200831.tif"
K = 4


def colour_model(batch: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Per-pixel class probabilities from colour: a crop of its output is its output on the crop."""
    w = np.linspace(-3, 3, K * 3).reshape(K, 3).astype(np.float32)
    logits = np.einsum("kc,bchw->bkhw", w, batch)
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _classes(path, tmp_path, extent=None, name="o"):
    out = tmp_path / f"{name}.tif"
    with open_scene(path, extent=extent) as sc:
        stitch(sc, colour_model, K, TileGrid(sc.width, sc.height, 128, 0.25), out, batch=4)
        transform, shape = sc.transform, (sc.height, sc.width)
    with rasterio.open(out) as o:
        assert o.transform == transform and o.shape == shape
        return o.read(1), o.transform


def test_bounds_give_a_pixel_aligned_crop_of_the_full_result(shared_data, tmp_path):
    path = shared_data / NAIP
    full, ft = _classes(path, tmp_path, name="full")
    with rasterio.open(path) as src:
        t = src.transform
        # bounds inside pixels (a third of a pixel in): rounded outward to whole pixels
        b = (t.c + 100.3 * t.a, t.f + 420.6 * t.e, t.c + 350.2 * t.a, t.f + 200.7 * t.e)
    crop, ct = _classes(path, tmp_path, Extent(bounds=b), name="crop")
    assert crop.shape == (421 - 200, 351 - 100)
    assert ct.a == ft.a and ct.e == ft.e and ct.c == ft.c + 100 * ft.a and ct.f == ft.f + 200 * ft.e
    assert np.array_equal(crop, full[200:421, 100:351])  # tiles still read real pixels around the window


def test_bounds_in_another_crs_and_outside_the_raster(shared_data):
    path = shared_data / NAIP
    with rasterio.open(path) as src:
        from rasterio.warp import transform_bounds

        ll = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
    lon0, lat0, lon1, lat1 = ll
    inner = (lon0 + (lon1 - lon0) * 0.25, lat0 + (lat1 - lat0) * 0.25, lon0 + (lon1 - lon0) * 0.5,
             lat0 + (lat1 - lat0) * 0.5)
    with open_scene(path, extent=Extent(bounds=inner, bounds_crs="EPSG:4326")) as sc:
        assert 0.2 < sc.width / sc.src.width < 0.3 and 0.2 < sc.height / sc.src.height < 0.3
    with pytest.raises(RsWsssError, match="do not overlap"):
        open_scene(path, extent=Extent(bounds=(0, 0, 1, 1)))
    assert parse_bounds("1,2,3,4") == (1.0, 2.0, 3.0, 4.0)
    for bad in ("1,2,3", "3,2,1,4", "a,b,c,d"):
        with pytest.raises(RsWsssError, match="xmin,ymin,xmax,ymax"):
            parse_bounds(bad)


def test_aoi_polygon_masks_outside_pixels_as_nodata(shared_data, tmp_path):
    path = shared_data / NAIP
    with rasterio.open(path) as src:
        centre = Point(*(src.transform * (467, 361)))
        crs = src.crs
    disc = centre.buffer(600)  # 120 px radius at 5 m
    gpd.GeoDataFrame(geometry=[disc], crs=crs).to_crs("EPSG:4326").to_file(tmp_path / "aoi.geojson")
    cls, t = _classes(path, tmp_path, Extent(aoi=str(tmp_path / "aoi.geojson")))
    assert abs(cls.shape[0] - 240) <= 2 and abs(cls.shape[1] - 240) <= 2
    rows, cols = np.indices(cls.shape)
    xs, ys = t * (cols + 0.5, rows + 0.5)
    inside = np.hypot(xs - centre.x, ys - centre.y) < 600 - 5
    outside = np.hypot(xs - centre.x, ys - centre.y) > 600 + 5
    assert (cls[inside] != 255).all() and (cls[outside] == 255).all()
    gpd.GeoDataFrame(geometry=[box(0, 0, 1, 1)], crs="EPSG:4326").to_file(tmp_path / "far.geojson")
    with pytest.raises(RsWsssError, match="do not overlap"):
        open_scene(path, extent=Extent(aoi=str(tmp_path / "far.geojson")))


def test_src_nodata_turns_an_unflagged_collar_into_nodata(shared_data, tmp_path):
    with rasterio.open(shared_data / NAIP) as src:
        data = src.read([1, 2, 3], window=Window(300, 300, 200, 160))
        profile = dict(driver="GTiff", width=200, height=160, count=3, dtype="uint8", crs=src.crs,
                       transform=src.window_transform(Window(300, 300, 200, 160)))
    data[:, :, :30] = 0  # a black collar, not flagged as nodata
    data[0, 50:60, 50:60] = 0  # a pixel dark in one band only stays data
    with rasterio.open(tmp_path / "collar.tif", "w", **profile) as dst:
        dst.write(data)
    plain, _ = _classes(tmp_path / "collar.tif", tmp_path, name="plain")
    flagged, _ = _classes(tmp_path / "collar.tif", tmp_path, Extent(src_nodata=0), name="flagged")
    assert (plain != 255).all()
    assert (flagged[:, :30] == 255).all() and (flagged[:, 30:] != 255).all()
