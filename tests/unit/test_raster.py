"""The raster layer on real rasters: reading, seamless stitching, georeferenced outputs, vectorising, evaluation."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from rasterio.windows import Window
from shapely.geometry import box

from rs_wsss.classes import load_class_set
from rs_wsss.config import RasterConfig
from rs_wsss.errors import RsWsssError
from rs_wsss.raster.evaluate import confusion_matrix, evaluate_rasters, metrics
from rs_wsss.raster.io import open_scene
from rs_wsss.raster.stitch import stitch
from rs_wsss.raster.tiles import TileGrid, tile_windows
from rs_wsss.raster.vectorize import vectorize
from rs_wsss.raster.write import atomic_output, finalize_class_raster, write_qml

from ..conftest import spacenet_class_raster

CS = load_class_set("landcover")
K = CS.num_classes + 1


def colour_model(batch: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """A translation-equivariant stand-in: class probabilities as a per-pixel function of colour."""
    w = np.linspace(-3, 3, K * 3).reshape(K, 3).astype(np.float32)
    logits = np.einsum("kc,bchw->bkhw", w, batch) + np.arange(K, dtype=np.float32)[None, :, None, None] * 0.37
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _segment(path, tmp_path, tile, overlap, name="o"):
    raw, out = tmp_path / f"{name}_raw.tif", tmp_path / f"{name}.tif"
    with open_scene(path) as sc:
        stitch(sc, colour_model, K, TileGrid(sc.width, sc.height, tile, overlap), raw, batch=3,
               conf_path=tmp_path / f"{name}_conf.tif")
    finalize_class_raster(raw, out, CS.names, CS.colors, {"model": "test"})
    return out


def test_tiles_cover_everything_edge_tiles_included():
    for w, h, t, o in [(900, 900, 256, 0.25), (934, 723, 200, 0.0), (100, 50, 256, 0.5), (512, 512, 512, 0.25)]:
        cover = np.zeros((h, w), int)
        for win in tile_windows(w, h, t, o):
            assert win.width == t and win.height == t
            cover[int(win.row_off) : int(win.row_off) + t, int(win.col_off) : int(win.col_off) + t] += 1
        assert cover.min() >= 1


@pytest.mark.parametrize("tile,overlap", [(128, 0.0), (200, 0.25), (256, 0.5), (1024, 0.25)])
def test_stitching_is_seamless_equal_to_the_whole_image(shared_data, tmp_path, tile, overlap):
    path = shared_data / "naip/m_4709963_se_14_1_20200831.tif"
    out = _segment(path, tmp_path, tile, overlap)
    with open_scene(path) as sc:
        img, valid = sc.read(Window(0, 0, sc.width, sc.height))
    whole = colour_model(img[None], valid[None])[0]
    with rasterio.open(out) as o, rasterio.open(tmp_path / "o_conf.tif") as c:
        assert np.array_equal(o.read(1), np.argmax(whole, 0).astype(np.uint8))
        assert np.allclose(c.read(1), whole.max(0), atol=1e-5)


@pytest.mark.parametrize("rel", ["spacenet/sample_geotiff.tif", "naip/m_4709963_se_14_1_20200831.tif",
                                 "landsat_albers/sample_geotiff_custom_proj.tif"])
def test_outputs_keep_the_input_grid_and_vectorise_inside_bounds(shared_data, tmp_path, rel):
    path = shared_data / rel
    out = _segment(path, tmp_path, 256, 0.25)
    with rasterio.open(out) as o, rasterio.open(path) as i:
        assert o.crs == i.crs and o.transform == i.transform and (o.width, o.height) == (i.width, i.height)
        assert o.nodata == 255 and o.dtypes[0] == "uint8"
        assert o.overviews(1) or max(o.width, o.height) <= 512  # COG: overviews once larger than a block
        assert o.tags()["CLASS_NAMES"].split(";") == CS.names and o.colormap(1)[1][:3] == CS.colors[1]
        assert o.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        bounds = box(*i.bounds)
    n = vectorize(out, tmp_path / "o.gpkg", CS.names, tmp_path / "o_conf.tif")
    g = gpd.read_file(tmp_path / "o.gpkg")
    assert len(g) == n > 0 and g.crs == rasterio.open(path).crs
    assert set(g.class_name) <= set(CS.names) and (g.class_id.map(lambda i: CS.names[i]) == g.class_name).all()
    assert g.geometry.within(bounds.buffer(1e-6)).all()
    assert np.isclose(g.area.sum(), bounds.area, rtol=1e-9)  # every valid pixel is in one polygon
    assert ((g.mean_confidence > 0) & (g.mean_confidence <= 1)).all()
    write_qml(tmp_path / "o.qml", CS.names, CS.colors)
    assert 'label="bare_land"' in (tmp_path / "o.qml").read_text()


def test_polygons_are_not_cut_at_strip_borders(shared_data, tmp_path, monkeypatch):
    import rs_wsss.raster.vectorize as vec

    out = _segment(shared_data / "spacenet/sample_geotiff.tif", tmp_path, 256, 0.25)
    whole = vectorize(out, tmp_path / "a.gpkg", CS.names)
    monkeypatch.setattr(vec, "STRIP", 100)  # 9 strips
    strips = vectorize(out, tmp_path / "b.gpkg", CS.names)
    a, b = gpd.read_file(tmp_path / "a.gpkg"), gpd.read_file(tmp_path / "b.gpkg")
    assert whole == strips
    assert np.allclose(sorted(a.area), sorted(b.area))


def test_nodata_pixels_are_nodata_in_the_output(shared_data, tmp_path):
    path = shared_data / "nc_landsat/lsat7_2000_10.tif"
    out = _segment(path, tmp_path, 128, 0.25)
    with rasterio.open(path) as i, rasterio.open(out) as o:
        invalid = i.read_masks(1) == 0
        cls = o.read(1)
    assert invalid.any() and (cls[invalid] == 255).all() and (cls[~invalid] != 255).all()


def test_sixteen_bit_and_float_are_stretched_by_percentiles(shared_data):
    with open_scene(shared_data / "spacenet/sample_geotiff.tif") as sc:
        assert sc.bands == [1, 1, 1] and sc.dtype == "uint16"
        img, valid = sc.read(Window(0, 0, 300, 300))
        assert valid.all() and 0 <= img.min() and img.max() <= 1 and 0.01 < (img == 1).mean() < 0.2
    with open_scene(shared_data / "opengeos_lidar/hag.tif") as sc:
        img, valid = sc.read(Window(-10, -10, 64, 64))  # boundless: outside is invalid
        assert not valid[:10].any() and valid[10:, 10:].any()
    with open_scene(shared_data / "naip/m_4709963_se_14_1_20200831.tif") as sc:
        assert sc.bands == [1, 2, 3] and sc.norm.high == [255.0] * 3
    with pytest.raises(RsWsssError):
        open_scene(shared_data / "naip/m_4709963_se_14_1_20200831.tif", RasterConfig(bands=[5, 1, 2]))
    with pytest.raises(RsWsssError):
        open_scene(shared_data / "MANIFEST.md")


def test_resampling_to_a_target_gsd(shared_data):
    with open_scene(shared_data / "naip/m_4709963_se_14_1_20200831.tif", RasterConfig(gsd=10.0)) as sc:
        assert sc.res == (10.0, 10.0) and abs(sc.width - 934 / 2) <= 1


def test_metrics_equal_hand_computed_values():
    gt = np.array([[0, 0, 1, 1], [1, 1, 2, 255]])
    pred = np.array([[0, 1, 1, 1], [1, 0, 2, 2]])
    conf = confusion_matrix(pred, gt, 3)
    assert conf.tolist() == [[1, 1, 0], [1, 3, 0], [0, 0, 1]]
    m = metrics(conf, ["a", "b", "c"])
    assert m["per_class"]["a"]["iou"] == pytest.approx(1 / 3) and m["per_class"]["b"]["iou"] == pytest.approx(3 / 5)
    assert m["per_class"]["c"]["iou"] == 1.0 and m["mIoU"] == pytest.approx((1 / 3 + 3 / 5 + 1) / 3)
    assert m["OA"] == pytest.approx(5 / 7) and m["per_class"]["b"]["f1"] == pytest.approx(6 / 8)


def test_evaluate_rasters_on_the_real_spacenet_mask(shared_data, tmp_path):
    gt = shared_data / "spacenet/sample_fp_mask_from_geojson.tif"  # not georeferenced, pixel aligned
    with rasterio.open(shared_data / "spacenet/sample_geotiff.tif") as src:
        prof = src.profile | {"dtype": "uint8", "count": 1, "nodata": 255}
    with rasterio.open(gt) as g:
        ids = (g.read(1) == 255).astype(np.uint8)
    perfect = tmp_path / "perfect.tif"
    with rasterio.open(perfect, "w", **prof) as dst:
        dst.write(ids[None])
    res = evaluate_rasters(perfect, gt, CS, {255: "building", 0: "background"})
    assert res["mIoU"] == 1.0 and res["OA"] == 1.0 and res["per_class"]["building"]["pixels"] == int(ids.sum())


def test_a_class_raster_as_truth_is_read_by_its_ids_and_names_not_its_colours(shared_data, tmp_path):
    """A class COG of landcover (its display colours differ from the set's mask codes) against itself: every pixel
    counts, mIoU 1 (decoded through the palette, no pixel would match a code)."""
    spacenet_class_raster(shared_data, tmp_path, CS)
    with rasterio.open(tmp_path / "c.tif") as c:
        ids = c.read(1)
    res = evaluate_rasters(tmp_path / "c.tif", tmp_path / "c.tif", CS)
    assert res["mIoU"] == 1.0 and res["pixels"] == ids.size
    assert res["per_class"]["vegetation"]["pixels"] == int((ids == 3).sum())


def test_atomic_output_never_leaves_partial_files(tmp_path):
    target = tmp_path / "x.tif"
    target.write_text("old")
    with pytest.raises(RsWsssError):
        with atomic_output(target):
            pass
    with pytest.raises(ZeroDivisionError):
        with atomic_output(target, overwrite=True) as tmp:
            tmp.write_text("new")
            raise ZeroDivisionError
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["x.tif"]


def test_wide_rasters_are_stitched_in_column_blocks_with_the_same_result(shared_data, tmp_path):
    from rs_wsss.config import load_config
    from rs_wsss.outputs import OutputSpec
    from rs_wsss.segment import SceneRun, Segmenter, segment_scene

    seg = Segmenter(colour_model, CS, load_config(overrides=["infer.batch=3"]), {"model": "stand-in"})
    scene = str(shared_data / "naip/m_4709963_se_14_1_20200831.tif")
    segment_scene(seg, scene, tmp_path / "whole.tif", OutputSpec(probs=True), SceneRun(tile=128, overlap=0.25))
    # force 4 column blocks of 288 px
    seg = Segmenter(colour_model, CS, load_config(overrides=["infer.batch=3", "raster.max_strip_width=300",
                                                             "raster.block=300"]), {"model": "stand-in"})
    segment_scene(seg, scene, tmp_path / "blocks.tif", OutputSpec(probs=True), SceneRun(tile=128, overlap=0.25))
    with rasterio.open(tmp_path / "whole.tif") as a, rasterio.open(tmp_path / "blocks.tif") as b:
        assert a.transform == b.transform and np.array_equal(a.read(1), b.read(1))
    with rasterio.open(tmp_path / "whole_confidence.tif") as a, rasterio.open(tmp_path / "blocks_confidence.tif") as b:
        assert np.allclose(a.read(1), b.read(1), atol=1e-6)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
