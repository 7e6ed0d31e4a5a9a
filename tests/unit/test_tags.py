"""Tile-level tags: CSV/GPKG round trips, generators on real data, validation listing every problem."""

from __future__ import annotations

import geopandas as gpd
import pytest
import rasterio
from rasterio.windows import bounds as window_bounds
from shapely.geometry import box

from rs_wsss.classes import load_class_set
from rs_wsss.errors import RsWsssError
from rs_wsss.raster.tags import TagRow, read_tags, tags_from_raster, tags_from_vector, template_grid, write_tags

CS = load_class_set("landcover")


def test_tags_from_the_spacenet_building_vectors_match_hand_geometry(shared_data):
    scene = str(shared_data / "spacenet/sample_geotiff.tif")
    labels = shared_data / "spacenet/geotiff_labels.geojson"
    rows = tags_from_vector([scene], labels, None, CS, 128, 0.0, min_fraction=0.02, constant_class="building")
    bld = gpd.read_file(labels).to_crs(rasterio.open(scene).crs).union_all()
    with rasterio.open(scene) as ds:
        extent = box(*ds.bounds)
        for r in rows:
            fp = box(*window_bounds(r.window, ds.transform)).intersection(extent)
            frac = bld.intersection(fp).area / fp.area
            assert (("building",) == r.labels) == (frac >= 0.02), (r.window, frac)
    assert any(r.labels for r in rows) and not all(r.labels for r in rows)
    # any overlap at min_fraction 0
    any_rows = tags_from_vector([scene], labels, None, CS, 128, 0.0, constant_class="building")
    assert sum(bool(r.labels) for r in any_rows) >= sum(bool(r.labels) for r in rows)


def test_vector_layer_without_crs_and_field_values(shared_data, caplog):
    scene = str(shared_data / "landsat_albers/sample_geotiff_custom_proj.tif")
    layer = shared_data / "landsat_albers/geotiff_custom_proj_labels.geojson"  # no crs member, Albers coordinates
    with caplog.at_level("WARNING", logger="rs_wsss"):
        rows = tags_from_vector([scene], layer, None, CS, 256, 0.0, constant_class="vegetation")
    assert "no CRS" in caplog.text and any("vegetation" in r.labels for r in rows)
    with pytest.raises(RsWsssError, match="value-map"):
        tags_from_vector([str(shared_data / "nc_landsat/lsat7_2000_10.tif")],
                         shared_data / "nc_landsat/landsat96_polygons.shp",
                         "label", CS, 128, 0.0)


def test_tags_from_ground_truth_rasters_decode_palette_and_rgb_masks(shared_data):
    imgs = [str(shared_data / f"dubai/images/tile_{t}_image_part_001.jpg") for t in (1, 2)]
    masks = [str(shared_data / f"dubai/masks/tile_{t}_image_part_001.png") for t in (1, 2)]  # tile 2: palette PNG
    rows = tags_from_raster(imgs, masks, CS, 256, 0.0)
    assert {r.image for r in rows} == set(imgs)
    assert all(set(r.labels) <= set(CS.names[1:]) for r in rows) and sum(len(r.labels) for r in rows) > len(rows)


def test_csv_and_gpkg_round_trip(shared_data, tmp_path):
    scene = str(shared_data / "naip/m_4709963_se_14_1_20200831.tif")
    grid = template_grid([scene], 256, 0.0)
    rows = [TagRow(r.image, r.window, ("water",) if i % 2 else (), r.row) for i, r in enumerate(grid)]
    for name in ("t.csv", "t.gpkg"):
        write_tags(rows, tmp_path / name)
        back = read_tags(tmp_path / name, [scene], CS)
        assert [(r.window, r.labels) for r in back] == [(r.window, r.labels) for r in rows]
    with pytest.raises(RsWsssError, match="exists"):
        write_tags(rows, tmp_path / "t.csv")


def test_validation_lists_every_problem_with_row_numbers(shared_data, tmp_path):
    a = str(shared_data / "naip/m_4709963_se_14_1_20200831.tif")
    b = str(shared_data / "spacenet/sample_geotiff.tif")
    csv = tmp_path / "bad.csv"
    csv.write_text("image,col_off,row_off,width,height,labels\n"
                   f"{a},0,0,256,256,building;rooof\n"      # 1 unknown class
                   f"{a},5000,0,256,256,water\n"            # 2 outside
                   f"{a},0,0,256,256,road\n"                # 3 duplicate of 1
                   "missing.tif,0,0,256,256,road\n")        # 4 missing image
    with pytest.raises(RsWsssError) as exc:
        read_tags(csv, [a, b], CS)
    msg = str(exc.value)
    assert "\n" not in msg and "5 problems" in msg
    for part in ("row 1: unknown class 'rooof'", "row 2: window", "row 3: duplicate of row 1", "row 4: image "
                                                                                               "'missing.tif'",
                 "scene sample_geotiff.tif has no rows"):
        assert part in msg


def test_stored_image_paths_are_relative_or_absolute_when_no_relative_path_exists(tmp_path, monkeypatch):
    from rs_wsss.raster import tags as tags_mod

    assert tags_mod._stored_path(str(tmp_path / "a" / "s.tif"), tmp_path / "a") == "s.tif"

    def other_drive(path, start):  # what os.path.relpath raises on Windows across drives
        raise ValueError("path is on mount 'D:', start on mount 'C:'")

    monkeypatch.setattr(tags_mod.os.path, "relpath", other_drive)
    assert tags_mod._stored_path(str(tmp_path / "a" / "s.tif"), tmp_path / "b") == str(tmp_path / "a" / "s.tif")


def test_isaid_rgb_masks_decode_by_colour_although_the_set_also_has_index_codes(shared_data):
    # the iSAID set holds colours and devkit ids; its 3-band *_instance_color_RGB.png masks must decode by colour
    import numpy as np
    from PIL import Image

    isaid = load_class_set("isaid")
    mask = shared_data / "isaid/masks/P0005_instance_color_RGB.png"
    rows = tags_from_raster([str(shared_data / "isaid/images/P0005.png")], [str(mask)], isaid, 512, 0.0)
    rgb = np.asarray(Image.open(mask).convert("RGB"))
    for r in rows:
        w = r.window
        win = rgb[w.row_off : w.row_off + w.height, w.col_off : w.col_off + w.width].reshape(-1, 3)
        colours = {tuple(int(v) for v in c) for c in np.unique(win, axis=0)}
        want = {n for n, c in (("small_vehicle", (0, 0, 127)), ("large_vehicle", (0, 127, 127))) if c in colours}
        assert set(r.labels) == want and want, (w, r.labels)
