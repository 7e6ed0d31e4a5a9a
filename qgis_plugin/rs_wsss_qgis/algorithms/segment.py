import os
import shutil
import xml.etree.ElementTree as ET

from qgis.core import (QgsCategorizedSymbolRenderer, QgsFillSymbol, QgsProcessing, QgsProcessingContext,
                       QgsProcessingLayerPostProcessorInterface, QgsProcessingParameterBoolean,
                       QgsProcessingParameterEnum, QgsProcessingParameterFile, QgsProcessingParameterNumber,
                       QgsProcessingParameterRasterDestination, QgsProcessingParameterRasterLayer,
                       QgsProcessingParameterVectorDestination, QgsRendererCategory)
from qgis.PyQt.QtGui import QColor

from ..runner import CLASS_SETS, run_cli
from .base import RsWsssAlgorithm

DEVICES = ["auto", "cpu", "cuda"]
_POST = []  # post-processors must outlive processAlgorithm


class StyleFromQml(QgsProcessingLayerPostProcessorInterface):
    """Style the outputs with the class names and colours rs-wsss wrote in its .qml."""

    def __init__(self, qml):
        super().__init__()
        self.qml = qml

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802
        if layer.type() == layer.RasterLayer:
            layer.loadNamedStyle(self.qml)
        else:
            cats = []
            for e in ET.parse(self.qml).iter("paletteEntry"):
                sym = QgsFillSymbol.createSimple({"color": e.get("color"), "outline_style": "no"})
                cats.append(QgsRendererCategory(e.get("label"), sym, e.get("label")))
            layer.setRenderer(QgsCategorizedSymbolRenderer("class_name", cats))
        layer.triggerRepaint()


class SegmentAlgorithm(RsWsssAlgorithm):
    GROUP, TITLE = "Segmentation", "Segment raster"

    def name(self):
        return "segment"

    def shortHelpString(self):  # noqa: N802
        return self.tr("Segments a raster with a trained rs-wsss checkpoint, or zero-shot with a class set, into a "
                       "class raster (COG, styled) and polygons (GeoPackage).")

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer("INPUT", self.tr("Raster")))
        self.addParameter(QgsProcessingParameterFile("MODEL", self.tr("Model checkpoint (.pt); empty = zero-shot"),
                                                     extension="pt", optional=True))
        self.addParameter(QgsProcessingParameterEnum("CLASSES", self.tr("Class set (zero-shot)"), CLASS_SETS, defaultValue=0))
        self.addParameter(QgsProcessingParameterFile("CLASSES_FILE", self.tr("Class set YAML (overrides the set above)"),
                                                     extension="yaml", optional=True))
        self.addParameter(QgsProcessingParameterNumber("TILE", self.tr("Tile size (px)"), defaultValue=512, minValue=32))
        self.addParameter(QgsProcessingParameterNumber("OVERLAP", self.tr("Tile overlap"), QgsProcessingParameterNumber.Double,
                                                       defaultValue=0.25, minValue=0.0, maxValue=0.9))
        self.addParameter(QgsProcessingParameterBoolean("CRF", self.tr("Dense CRF"), defaultValue=False))
        self.addParameter(QgsProcessingParameterEnum("DEVICE", self.tr("Device"), DEVICES, defaultValue=0))
        self.addParameter(QgsProcessingParameterBoolean("RANDOM_WEIGHTS", self.tr("Random backbone weights (testing only)"),
                                                        defaultValue=False))
        self.addParameter(QgsProcessingParameterBoolean("TINY", self.tr("Tiny test architecture (testing only)"),
                                                        defaultValue=False))
        self.addParameter(QgsProcessingParameterRasterDestination("OUTPUT_RASTER", self.tr("Class raster")))
        self.addParameter(QgsProcessingParameterVectorDestination("OUTPUT_VECTOR", self.tr("Class polygons"),
                                                                  type=QgsProcessing.TypeVectorPolygon))
        for name in ("TILE", "OVERLAP", "DEVICE", "RANDOM_WEIGHTS", "TINY", "CLASSES_FILE"):
            p = self.parameterDefinition(name)
            p.setFlags(p.flags() | p.FlagAdvanced)

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        scene = self.raster_file(self.parameterAsRasterLayer(parameters, "INPUT", context), feedback)
        model = self.parameterAsFile(parameters, "MODEL", context)
        classes = self.parameterAsFile(parameters, "CLASSES_FILE", context) or CLASS_SETS[self.parameterAsEnum(parameters, "CLASSES", context)]
        raster_out = self.parameterAsOutputLayer(parameters, "OUTPUT_RASTER", context)
        vector_out = self.parameterAsOutputLayer(parameters, "OUTPUT_VECTOR", context)
        if not vector_out.lower().endswith(".gpkg"):
            vector_out = os.path.splitext(vector_out)[0] + ".gpkg"
        args = ["segment", scene, "-o", vector_out, "--overwrite",
                "--tile", self.parameterAsInt(parameters, "TILE", context),
                "--overlap", self.parameterAsDouble(parameters, "OVERLAP", context),
                "--crf" if self.parameterAsBool(parameters, "CRF", context) else "--no-crf",
                "--device", DEVICES[self.parameterAsEnum(parameters, "DEVICE", context)]]
        args += ["--model", model] if model else ["--zero-shot", "--classes", classes]
        if self.parameterAsBool(parameters, "RANDOM_WEIGHTS", context):
            args += ["--weights", "random"]
        if self.parameterAsBool(parameters, "TINY", context):
            args += ["--tiny"]
        run_cli(args, feedback)
        base = os.path.splitext(vector_out)[0]
        qml = base + ".qml"
        if os.path.abspath(base + ".tif") != os.path.abspath(raster_out):
            shutil.move(base + ".tif", raster_out)
            shutil.copy(qml, os.path.splitext(raster_out)[0] + ".qml")
        for key, path, name in (("OUTPUT_RASTER", raster_out, "rs-wsss classes"), ("OUTPUT_VECTOR", vector_out, "rs-wsss polygons")):
            if context.willLoadLayerOnCompletion(path):
                post = StyleFromQml(qml)
                _POST.append(post)
                context.layerToLoadOnCompletionDetails(path).setPostProcessor(post)
        return {"OUTPUT_RASTER": raster_out, "OUTPUT_VECTOR": vector_out}
