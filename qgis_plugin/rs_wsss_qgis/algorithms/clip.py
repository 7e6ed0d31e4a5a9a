"""Raster helpers run inside QGIS with its own GDAL (no rs-wsss import): a clipped VRT, a class raster's identity."""

import os
import tempfile

from osgeo import gdal
from qgis.core import QgsProcessingException


def clip_to_vrt(scene, extent=None, mask=None):
    """A VRT of ``scene`` cut to ``extent`` (xmin, ymin, xmax, ymax in the raster's CRS) and/or inside the polygons of
    ``mask`` (nodata outside); used only where the CLI has no --bounds/--aoi of its own. Pixels are not copied."""
    folder = tempfile.mkdtemp(prefix="rs_wsss_clip_")
    src = scene
    if extent is not None:
        xmin, ymin, xmax, ymax = extent
        out = os.path.join(folder, os.path.splitext(os.path.basename(scene))[0] + "_extent.vrt")
        if gdal.Translate(out, src, format="VRT", projWin=[xmin, ymax, xmax, ymin]) is None:
            raise QgsProcessingException(f"the processing extent does not overlap {os.path.basename(scene)}")
        src = out
    if mask is not None:
        out = os.path.join(folder, os.path.splitext(os.path.basename(scene))[0] + "_mask.vrt")
        ds = gdal.Open(src)
        nodata = ds.GetRasterBand(1).GetNoDataValue()
        ds = None
        if (
            gdal.Warp(
                out,
                src,
                format="VRT",
                cutlineDSName=mask,
                cropToCutline=True,
                dstNodata=0 if nodata is None else nodata,
            )
            is None
        ):
            raise QgsProcessingException(f"the mask does not overlap {os.path.basename(scene)}")
        src = out
    return src


def raster_identity(path):
    """The metadata rs-wsss writes into its class raster (MODEL, WEIGHTS, CLASS_SET …); {} when unreadable."""
    ds = gdal.Open(path) if path and os.path.isfile(path) else None
    return dict(ds.GetMetadata() or {}) if ds is not None else {}
