"""Segment quicklook and report on a real SpaceNet scene: the PNG shows the image with the class colours and a named
legend; the HTML's area table adds up to the raster's area; random weights raise a banner."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
import rasterio
from PIL import Image

from rs_wsss.classes import load_class_set
from rs_wsss.outputs import output_paths
from rs_wsss.raster.write import NODATA
from rs_wsss.report import quicklook
from rs_wsss.report.segment_report import class_areas, write_segment_report

CS = load_class_set("landcover")


@pytest.fixture(scope="module")
def class_tif(shared_data, tmp_path_factory):
    """A class raster on the SpaceNet scene's grid: building where the SpaceNet footprint mask is set, background
    elsewhere, nodata where the scene is nodata."""
    scene = shared_data / "spacenet/sample_geotiff.tif"
    with rasterio.open(scene) as src, rasterio.open(shared_data / "spacenet/sample_fp_mask_from_geojson.tif") as m:
        classes = (m.read(1) > 0).astype(np.uint8)
        classes[src.read_masks(1) == 0] = NODATA
        profile = {"driver": "GTiff", "width": src.width, "height": src.height, "count": 1, "dtype": "uint8",
                   "nodata": NODATA, "crs": src.crs, "transform": src.transform, "tiled": True, "blockxsize": 256,
                   "blockysize": 256}
    out = tmp_path_factory.mktemp("seg") / "scene.tif"
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(classes, 1)
    return scene, out, classes


def test_quicklook_shape_is_bounded():
    assert quicklook.quicklook_shape(900, 900) == (900, 900)
    assert quicklook.quicklook_shape(40000, 20000) == (512, 1024)
    assert max(quicklook.quicklook_shape(5000, 123, 256)) == 256


def test_read_rgb_decimates(class_tif):
    scene, _, _ = class_tif
    rgb, valid = quicklook.read_rgb(scene, max_side=300)
    assert rgb.shape == (300, 300, 3) and rgb.dtype == np.uint8
    assert rgb[valid].std() > 10  # real image content, stretched
    assert (rgb[..., 0] == rgb[..., 1]).all()  # a 1-band scene is shown as grey, as it is segmented


def test_blend_colours_only_foreground():
    rgb = np.full((2, 3, 3), 100, np.uint8)
    classes = np.array([[0, 1, 2], [NODATA, 1, 0]], np.uint8)
    out = quicklook.blend(rgb, classes, [(0, 0, 0), (200, 0, 0), (0, 0, 250)], alpha=0.5)
    assert out[0, 0].tolist() == [100, 100, 100] and out[1, 0].tolist() == [100, 100, 100]  # background, nodata
    assert out[0, 1].tolist() == [150, 50, 50] and out[0, 2].tolist() == [50, 50, 175]


def test_quicklook_png_shows_overlay_and_legend(class_tif):
    scene, tif, classes = class_tif
    rgb, _ = quicklook.read_rgb(scene)
    cls = quicklook.read_classes(tif, rgb.shape[:2])
    assert (cls == classes).all()  # same size: read as is
    fig = quicklook.build_figure(rgb, cls, CS.names, CS.colors, "title", [50.0] * len(CS.names))
    texts = quicklook.legend_texts(fig)
    for name in CS.names:
        assert any(t.startswith(name) for t in texts), (name, texts)
    png = np.asarray(Image.open(io.BytesIO(quicklook.png_bytes(fig))).convert("RGB")).astype(int)
    assert png.std() > 20  # not blank
    # building pixels carry the building colour blended at ALPHA over the grey image: R−B matches the colour's R−B
    c = np.array(CS.colors[1])
    diff = png[..., 2] - png[..., 0]  # building colour #3C1098 is much bluer than red; grey has diff 0
    want = round(quicklook.ALPHA * (c[2] - c[0]))
    assert (np.abs(diff - want) <= 2).sum() > 0.5 * (classes == 1).sum()


def test_class_areas_sum_to_raster_area(class_tif):
    _, tif, classes = class_tif
    a = class_areas(tif, CS.names)
    assert a["total_m2"] == pytest.approx(int((classes != NODATA).sum()) * 0.25)  # 0.5 m pixels, UTM metres
    valid = int((classes != NODATA).sum())
    assert a["valid_pixels"] == valid and a["nodata_pixels"] == classes.size - valid
    assert sum(r["m2"] for r in a["classes"]) == pytest.approx(valid * 0.25)
    assert sum(r["ha"] for r in a["classes"]) == pytest.approx(valid * 0.25 / 1e4)
    assert sum(r["percent"] for r in a["classes"]) == pytest.approx(100.0)
    assert a["classes"][1]["pixels"] == int((classes == 1).sum()) > 0


@pytest.mark.parametrize("weights", ["random-weights", "clip:ViT-B-16:abc"])
def test_segment_report_contents(class_tif, weights, tmp_path):
    scene, tif, classes = class_tif
    names = output_paths(tif, None, report=True)
    assert names["quicklook"].name == "scene_quicklook.png" and names["report"].name == "scene_report.html"
    paths = {k: tmp_path / names[k].name for k in ("quicklook", "report")}
    meta = {"model": "checkpoint:1234", "weights": weights, "class_set": "landcover"}
    out = write_segment_report(scene, tif, CS.names, CS.colors, meta, {"tile": 512, "scales": "1.0"},
                               {"segment": 1.5}, paths=paths)
    assert set(out) == {"quicklook", "report"} and all(p.exists() for p in paths.values())
    assert sorted(x.name for x in tmp_path.iterdir()) == sorted(p.name for p in paths.values())  # no temporaries
    page = paths["report"].read_text()
    assert ('id="random-weights"' in page) == (weights == "random-weights")
    for name in CS.names:
        assert f"{name}</td>" in page
    table = page.split('id="areas"')[1].split("</table>")[0]
    total = re.search(r"<td>total</td><td class=\"num\">([\d,]+)</td><td class=\"num\">([\d,.]+)</td>", table)
    valid = int((classes != NODATA).sum())
    assert int(total.group(1).replace(",", "")) == valid
    assert float(total.group(2).replace(",", "")) == pytest.approx(valid * 0.25, rel=1e-3)
    assert "data:image/png;base64," in page and "checkpoint:1234" in page and "segment" in page
    assert Image.open(paths["quicklook"]).size[0] > 900  # image + legend column
