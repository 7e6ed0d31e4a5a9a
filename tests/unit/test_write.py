"""Self-describing rasters: class COG (colour table, categories + attribute table, MODE overviews), confidence COG,
GDAL creation options."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from rs_wsss.errors import RsWsssError
from rs_wsss.raster.write import (
    atomic_output,
    aux_path,
    finalize_class_raster,
    finalize_confidence_raster,
    parse_creation_options,
)

NAMES = ["background", "building", "water"]
COLORS = [(0, 0, 0), (255, 0, 0), (0, 0, 255)]


def _raw(path, arr, dtype="uint8", nodata=255):
    with rasterio.open(path, "w", driver="GTiff", width=arr.shape[1], height=arr.shape[0], count=1, dtype=dtype,
                       nodata=nodata, crs="EPSG:32617", transform=from_origin(500_000, 5_600_000, 0.5, 0.5),
                       tiled=True) as ds:
        ds.write(arr.astype(dtype), 1)
    return path


def test_class_cog_has_categories_attribute_table_and_mode_overviews(tmp_path):
    # in every 2×2 block pixel (0, 0) is water and the other three are building: GDAL's NEAREST overview picks pixel
    # (0, 0) (all water), only a majority (MODE) overview is all building
    arr = np.full((1024, 1024), 1, np.uint8)
    arr[0::2, 0::2] = 2
    raw = _raw(tmp_path / "raw.tif", arr)
    with atomic_output(tmp_path / "o.tif") as tmp:
        finalize_class_raster(raw, tmp, NAMES, COLORS, {"model": "m"})
    out = tmp_path / "o.tif"
    assert not list(tmp_path.glob(".o.*"))  # temporary file and sidecar moved, nothing left behind
    with rasterio.open(out) as ds:
        assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG" and ds.overviews(1) == [2]
        assert ds.colormap(1)[2][:3] == COLORS[2] and ds.tags()["CLASS_NAMES"] == ";".join(NAMES)
        ov = ds.read(1, out_shape=(512, 512))
        assert (ov == 1).all()
    band = ET.parse(aux_path(out)).getroot().find("PAMRasterBand")
    assert [c.text for c in band.find("CategoryNames")] == NAMES
    rat = band.find("GDALRasterAttributeTable")
    assert rat.get("tableType") == "thematic"
    rows = [[f.text for f in r.findall("F")] for r in rat.findall("Row")]
    assert rows[2] == ["2", "water", "0", "0", "255", "255"] and len(rows) == 3


def test_creation_options_reach_the_cog(tmp_path):
    raw = _raw(tmp_path / "raw.tif", np.ones((64, 64)))
    finalize_class_raster(raw, tmp_path / "a.tif", NAMES, COLORS)
    finalize_class_raster(raw, tmp_path / "b.tif", NAMES, COLORS, creation_options=parse_creation_options(
        ["compress=lzw", "BLOCKSIZE=256"]))
    with rasterio.open(tmp_path / "a.tif") as a, rasterio.open(tmp_path / "b.tif") as b:
        assert a.compression.name == "deflate" and b.compression.name == "lzw"
        assert a.block_shapes[0] == (512, 512) and b.block_shapes[0] == (256, 256)
    assert parse_creation_options(["level = 9"]) == {"LEVEL": "9"}
    with pytest.raises(RsWsssError, match="KEY=VALUE"):
        parse_creation_options(["ZSTD"])


def test_confidence_raster_is_a_cog(tmp_path):
    conf = np.random.default_rng(0).random((700, 700)).astype(np.float32)
    raw = _raw(tmp_path / "c.tif", conf, "float32", None)
    finalize_confidence_raster(raw, tmp_path / "conf.tif")
    with rasterio.open(tmp_path / "conf.tif") as ds:
        assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG" and ds.overviews(1) == [2]
        assert np.array_equal(ds.read(1), conf) and ds.descriptions[0] == "confidence"
