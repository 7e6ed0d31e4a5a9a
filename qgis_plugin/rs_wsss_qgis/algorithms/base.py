import os
import tempfile

from qgis.core import (QgsProcessingAlgorithm, QgsProcessingException, QgsRasterFileWriter, QgsRasterPipe)
from qgis.PyQt.QtCore import QCoreApplication


class RsWsssAlgorithm(QgsProcessingAlgorithm):
    """Common plumbing: layers become files, the CLI runs as a subprocess (see runner.py)."""

    def tr(self, text):
        return QCoreApplication.translate("rs_wsss", text)

    def createInstance(self):  # noqa: N802
        return type(self)()

    def group(self):
        return self.tr(self.GROUP)

    def groupId(self):  # noqa: N802
        return self.GROUP.lower().replace(" ", "_")

    def displayName(self):  # noqa: N802
        return self.tr(self.TITLE)

    def raster_file(self, layer, feedback):
        """A raster layer's file; layers that are not plain files are exported to a temporary GeoTIFF first."""
        if layer is None:
            raise QgsProcessingException("no raster layer given")
        src = layer.source().split("|")[0]
        if layer.providerType() == "gdal" and os.path.isfile(src):
            return src
        path = os.path.join(tempfile.mkdtemp(prefix="rs_wsss_"), "layer.tif")
        feedback.pushInfo(f"exporting {layer.name()} to {path}")
        pipe = QgsRasterPipe()
        pipe.set(layer.dataProvider().clone())
        writer = QgsRasterFileWriter(path)
        if writer.writeRaster(pipe, layer.width(), layer.height(), layer.extent(), layer.crs()) != 0:
            raise QgsProcessingException(f"could not export {layer.name()} to a GeoTIFF")
        return path
