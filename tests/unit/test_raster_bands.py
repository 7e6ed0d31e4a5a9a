"""Band selection: 2-band rasters are refused with the fix unless their second band is alpha (documented mapping)."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.enums import ColorInterp
from rasterio.transform import from_origin
from rasterio.windows import Window

from rs_wsss.config import RasterConfig
from rs_wsss.errors import RsWsssError
from rs_wsss.raster.io import open_scene


def _two_band(path, second=ColorInterp.undefined):
    rng = np.random.default_rng(1)
    data = rng.integers(1, 255, (2, 20, 30), dtype=np.uint8)
    if second == ColorInterp.alpha:
        data[1] = 255
        data[1, :, :10] = 0  # transparent left third
    alpha = {"alpha": "YES"} if second == ColorInterp.alpha else {}  # GTiff stores alpha as an ExtraSample
    with rasterio.open(path, "w", driver="GTiff", width=30, height=20, count=2, dtype="uint8",
                       transform=from_origin(0, 20, 1, 1), crs="EPSG:32614", **alpha) as ds:
        ds.write(data)
        ds.colorinterp = [ColorInterp.gray, second]
    return data


def test_two_bands_without_a_choice_are_refused_naming_the_fix(tmp_path):
    _two_band(tmp_path / "sar.tif")
    with pytest.raises(RsWsssError) as exc:
        open_scene(tmp_path / "sar.tif")
    assert "2 bands" in str(exc.value) and "--bands 1,1,2" in str(exc.value) and "--bands 1" in str(exc.value)


def test_the_suggested_choices_work(tmp_path):
    data = _two_band(tmp_path / "sar.tif")
    with open_scene(tmp_path / "sar.tif", RasterConfig(bands=[1, 1, 2])) as sc:
        img, valid = sc.read(Window(0, 0, 30, 20))
        assert sc.bands == [1, 1, 2] and valid.all()
        assert np.allclose(img[2] * 255, data[1], atol=1e-3) and np.allclose(img[0] * 255, data[0], atol=1e-3)
    with open_scene(tmp_path / "sar.tif", RasterConfig(bands=[1])) as sc:
        assert sc.bands == [1, 1, 1]


def test_grey_plus_alpha_is_grey_with_the_alpha_as_mask(tmp_path):
    data = _two_band(tmp_path / "ga.tif", ColorInterp.alpha)
    with open_scene(tmp_path / "ga.tif") as sc:
        img, valid = sc.read(Window(0, 0, 30, 20))
        assert sc.bands == [1, 1, 1]
        assert not valid[:, :10].any() and valid[:, 10:].all()
        assert np.allclose(img[0, :, 10:] * 255, data[0, :, 10:], atol=1e-3)


def test_an_all_nodata_8bit_scene_is_refused(tmp_path):
    path = tmp_path / "empty.tif"
    with rasterio.open(path, "w", driver="GTiff", width=30, height=20, count=3, dtype="uint8", nodata=0,
                       transform=from_origin(0, 20, 1, 1), crs="EPSG:32614") as ds:
        ds.write(np.zeros((3, 20, 30), np.uint8))
    with pytest.raises(RsWsssError, match="every pixel is nodata"):
        open_scene(path)
