"""Class styles stored inside outputs: a GeoPackage's ``layer_styles`` table (QGIS's own mechanism: QGIS loads the
row marked ``useAsDefault`` when the layer is opened, no plugin needed), holding a QML and an SLD of the classes."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import pandas as pd
import pyogrio

# the columns QGIS creates when it saves a style into a GeoPackage (QgsOgrProviderUtils / saveStyle)
LAYER_STYLES_COLUMNS = ("f_table_catalog", "f_table_schema", "f_table_name", "f_geometry_column", "styleName",
                        "styleQML", "styleSLD", "useAsDefault", "description", "owner", "ui", "update_time")


def _hex(c: Sequence[int]) -> str:
    return f"#{c[0]:02x}{c[1]:02x}{c[2]:02x}"


def raster_pipe(class_names: Sequence[str], colors: Sequence[Sequence[int]]) -> str:
    """The ``<pipe>`` of a QGIS raster style: paletted, class names as legend entries, nodata transparent."""
    entries = "\n".join(
        f'          <paletteEntry value="{i}" label={quoteattr(n)} color="{_hex(c)}" alpha="255"/>'
        for i, (n, c) in enumerate(zip(class_names, colors)))
    return f"""  <pipe>
    <rasterrenderer type="paletted" band="1" opacity="1" nodataColor="">
      <rasterTransparency/>
      <colorPalette>
{entries}
      </colorPalette>
    </rasterrenderer>
  </pipe>
"""


def class_qml(class_names: Sequence[str], colors: Sequence[Sequence[int]], class_ids: Sequence[int]) -> str:
    """One QML for the class raster *and* its polygons: ``OUT.qml`` is QGIS's default style of both ``OUT.tif`` and
    ``OUT.fgb``/``OUT.parquet`` (same base name), and each layer type reads only its own part (QGIS 3.22+)."""
    return vector_qml(class_names, colors, class_ids, raster=raster_pipe(class_names, colors))


def vector_qml(class_names: Sequence[str], colors: Sequence[Sequence[int]], class_ids: Sequence[int],
               field: str = "class_id", raster: str = "") -> str:
    """A QGIS categorized fill renderer on ``field``: one category per class, legend labels = class names
    (``raster``: a raster ``<pipe>`` to hold as well, see :func:`class_qml`)."""
    cats, syms = [], []
    for k, c in enumerate(class_ids):
        rgb = colors[c] if c < len(colors) else (128, 128, 128)
        label = class_names[c] if c < len(class_names) else str(c)
        cats.append(f'      <category value="{c}" label={quoteattr(label)} symbol="{k}" render="true"/>')
        syms.append(f"""      <symbol type="fill" name="{k}" alpha="1" clip_to_extent="1" force_rhr="0">
        <layer class="SimpleFill" enabled="1" locked="0" pass="0">
          <Option type="Map">
            <Option name="color" type="QString" value="{rgb[0]},{rgb[1]},{rgb[2]},255"/>
            <Option name="outline_color" type="QString" value="35,35,35,255"/>
            <Option name="outline_style" type="QString" value="solid"/>
            <Option name="outline_width" type="QString" value="0.1"/>
            <Option name="outline_width_unit" type="QString" value="MM"/>
            <Option name="style" type="QString" value="solid"/>
          </Option>
          <prop k="color" v="{rgb[0]},{rgb[1]},{rgb[2]},255"/>
          <prop k="outline_color" v="35,35,35,255"/>
          <prop k="outline_width" v="0.1"/>
          <prop k="style" v="solid"/>
        </layer>
      </symbol>""")
    nl = "\n"
    return f"""<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>
<qgis version="3.28" styleCategories="Symbology">
  <renderer-v2 type="categorizedSymbol" attr="{field}" symbollevels="0" enableorderby="0" forceraster="0">
    <categories>
{nl.join(cats)}
    </categories>
    <symbols>
{nl.join(syms)}
    </symbols>
  </renderer-v2>
{raster}  <layerGeometryType>2</layerGeometryType>
</qgis>
"""


def vector_sld(layer: str, class_names: Sequence[str], colors: Sequence[Sequence[int]], class_ids: Sequence[int],
               field: str = "class_id") -> str:
    """The same classes as an OGC SLD 1.1 (for GeoServer/MapServer and other SLD readers)."""
    rules = []
    for c in class_ids:
        rgb = colors[c] if c < len(colors) else (128, 128, 128)
        label = escape(class_names[c] if c < len(class_names) else str(c))
        rules.append(f"""      <se:Rule>
        <se:Name>{label}</se:Name>
        <ogc:Filter><ogc:PropertyIsEqualTo>
          <ogc:PropertyName>{field}</ogc:PropertyName><ogc:Literal>{c}</ogc:Literal>
        </ogc:PropertyIsEqualTo></ogc:Filter>
        <se:PolygonSymbolizer>
          <se:Fill><se:SvgParameter name="fill">{_hex(rgb)}</se:SvgParameter></se:Fill>
          <se:Stroke>
            <se:SvgParameter name="stroke">#232323</se:SvgParameter>
            <se:SvgParameter name="stroke-width">0.5</se:SvgParameter>
          </se:Stroke>
        </se:PolygonSymbolizer>
      </se:Rule>""")
    nl = "\n"
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<StyledLayerDescriptor xmlns="http://www.opengis.net/sld" xmlns:ogc="http://www.opengis.net/ogc"
    xmlns:se="http://www.opengis.net/se" version="1.1.0">
  <NamedLayer>
    <se:Name>{escape(layer)}</se:Name>
    <UserStyle>
      <se:Name>{escape(layer)}</se:Name>
      <se:FeatureTypeStyle>
{nl.join(rules)}
      </se:FeatureTypeStyle>
    </UserStyle>
  </NamedLayer>
</StyledLayerDescriptor>
"""


def write_gpkg_style(gpkg: str | Path, layer: str, class_names: Sequence[str], colors: Sequence[Sequence[int]],
                     class_ids: Sequence[int], geometry_column: str = "geom") -> None:
    """Add the class style of ``layer`` to the GeoPackage's ``layer_styles`` table as its default style."""
    ids = list(class_ids)
    row = {
        "f_table_catalog": "", "f_table_schema": "", "f_table_name": layer, "f_geometry_column": geometry_column,
        "styleName": layer, "styleQML": vector_qml(class_names, colors, ids),
        "styleSLD": vector_sld(layer, class_names, colors, ids), "useAsDefault": True,
        "description": "rs-wsss classes", "owner": "", "ui": None,
        "update_time": _dt.datetime.now(_dt.UTC).replace(tzinfo=None),
    }
    # written through OGR so the table is registered in gpkg_contents as an attributes table, as QGIS does
    pyogrio.write_dataframe(pd.DataFrame([row], columns=list(LAYER_STYLES_COLUMNS)), str(gpkg), layer="layer_styles",
                            driver="GPKG", append=False)
