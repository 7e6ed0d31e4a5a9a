"""raster/formats.py is the one table of output formats: planning, writers, STAC, help texts and the plugin read it;
polygons in every vector format of the table are written by its writer and carry a style QGIS finds."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import pyogrio
import pytest

from rs_wsss.classes import load_class_set
from rs_wsss.errors import RsWsssError
from rs_wsss.outputs import output_paths
from rs_wsss.raster.formats import FORMATS, VECTOR_SUFFIXES, format_names, media_type, suffix_list, vector_format
from rs_wsss.raster.vectorize import vectorize

from ..conftest import spacenet_class_raster

CS = load_class_set("landcover")


@pytest.fixture(scope="module")
def class_tif(tmp_path_factory, shared_data):
    return spacenet_class_raster(shared_data, tmp_path_factory.mktemp("fmt"), CS)


@pytest.mark.parametrize("suffix", VECTOR_SUFFIXES)
def test_each_vector_format_is_written_by_its_driver_and_styled(class_tif, tmp_path, suffix):
    fmt = vector_format(f"x{suffix}")
    out = tmp_path / f"polys{suffix}"
    n = vectorize(class_tif, out)
    g = gpd.read_parquet(out) if fmt.writer == "geoparquet" else gpd.read_file(
        out, layer="classes" if fmt.style == "embedded" else None)
    assert len(g) == n > 0 and set(g.class_name) == {"building", "vegetation"}
    if fmt.writer == "ogr":
        assert pyogrio.read_info(out)["driver"] == fmt.driver
    else:  # GeoParquet: the geo metadata of the Parquet file
        import pyarrow.parquet as pq

        assert json.loads(pq.read_schema(out).metadata[b"geo"])["primary_column"] == "geometry"
    sidecar = out.with_suffix(".qml")
    if fmt.style == "embedded":
        assert not sidecar.exists()
        styles = gpd.read_file(out, layer="layer_styles")
        assert styles.styleName.tolist() == ["classes"] and 'attr="class_id"' in styles.styleQML[0]
    else:
        qml = sidecar.read_text()
        assert 'renderer-v2 type="categorizedSymbol" attr="class_id"' in qml  # the polygons' part
        assert 'rasterrenderer type="paletted"' in qml  # and the class raster's, for OUT.tif beside it
        for name, colour in zip(CS.names, CS.colors):
            assert f'label="{name}"' in qml and "{},{},{},255".format(*colour) in qml


def test_an_unknown_polygon_suffix_is_refused_with_the_table_s_list():
    with pytest.raises(RsWsssError, match=r"\.gpkg, \.fgb or \.parquet, not x\.shp"):
        vector_format("x.shp")
    with pytest.raises(RsWsssError, match=r"\.gpkg, \.fgb, \.parquet or \.tif"):
        output_paths(Path("x.kml"), None)


def test_planning_keys_the_polygons_by_role_not_by_format():
    for suffix in VECTOR_SUFFIXES:
        paths = output_paths(Path(f"out{suffix}"), None)
        assert paths["vector"] == Path(f"out{suffix}") and "gpkg" not in paths
    assert output_paths(Path("out.tif"), None)["vector"] is None
    assert output_paths(Path("out.tif"), True)["vector"] == Path("out.gpkg")  # the first vector format


def test_help_and_stac_come_from_the_table():
    from click.testing import CliRunner

    from rs_wsss_cli.main import cli

    names = format_names("vector")
    assert names == ", ".join(f"{f.name} ({f.suffix})" for f in FORMATS if f.kind == "vector")
    for command in ("segment", "vectorize"):
        text = " ".join(CliRunner().invoke(cli, [command, "--help"]).output.split())
        assert f"Polygons as {names}" in text
    assert {f.suffix: media_type(f"a{f.suffix.upper()}") for f in FORMATS} == {f.suffix: f.media_type for f in FORMATS}
    assert suffix_list("raster") == ".tif" and media_type("a.xyz") is None
