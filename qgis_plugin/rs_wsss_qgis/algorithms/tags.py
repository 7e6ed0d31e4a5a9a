from qgis.core import (QgsProcessing, QgsProcessingParameterEnum, QgsProcessingParameterField,
                       QgsProcessingParameterFileDestination, QgsProcessingParameterMultipleLayers,
                       QgsProcessingParameterNumber, QgsProcessingParameterVectorDestination,
                       QgsProcessingParameterVectorLayer)

from ..runner import CLASS_SETS, run_cli
from .base import RsWsssAlgorithm


def _rasters(alg, parameters, context, feedback):
    return [alg.raster_file(l, feedback) for l in alg.parameterAsLayerList(parameters, "RASTERS", context)]


class TagGridAlgorithm(RsWsssAlgorithm):
    GROUP, TITLE = "Tags", "Create tag grid"

    def name(self):
        return "taggrid"

    def shortHelpString(self):  # noqa: N802
        return self.tr("An editable grid of tiles with an empty 'labels' field: type the classes present in each tile, "
                       "separated by ';'.")

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterMultipleLayers("RASTERS", self.tr("Rasters"), QgsProcessing.TypeRaster))
        self.addParameter(QgsProcessingParameterNumber("TILE", self.tr("Tile size (px)"), defaultValue=512, minValue=32))
        self.addParameter(QgsProcessingParameterVectorDestination("OUTPUT", self.tr("Tag grid"), type=QgsProcessing.TypeVectorPolygon))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        out = self.parameterAsOutputLayer(parameters, "OUTPUT", context)
        if not out.lower().endswith(".gpkg"):
            out = out.rsplit(".", 1)[0] + ".gpkg"
        run_cli(["tags", "template", *_rasters(self, parameters, context, feedback), "-o", out, "--overwrite",
                 "--tile", self.parameterAsInt(parameters, "TILE", context)], feedback)
        return {"OUTPUT": out}


class TagsFromVectorAlgorithm(RsWsssAlgorithm):
    GROUP, TITLE = "Tags", "Tags from vector layer"

    def name(self):
        return "tagsfromvector"

    def shortHelpString(self):  # noqa: N802
        return self.tr("Tile tags from polygons or points with a class field (any CRS).")

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterMultipleLayers("RASTERS", self.tr("Rasters"), QgsProcessing.TypeRaster))
        self.addParameter(QgsProcessingParameterVectorLayer("VECTOR", self.tr("Labelled features")))
        self.addParameter(QgsProcessingParameterField("FIELD", self.tr("Class field"), parentLayerParameterName="VECTOR"))
        self.addParameter(QgsProcessingParameterEnum("CLASSES", self.tr("Class set"), CLASS_SETS, defaultValue=0))
        self.addParameter(QgsProcessingParameterNumber("TILE", self.tr("Tile size (px)"), defaultValue=512, minValue=32))
        self.addParameter(QgsProcessingParameterFileDestination("OUTPUT", self.tr("Tags"), "CSV (*.csv);;GeoPackage (*.gpkg)"))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        vector = self.parameterAsCompatibleSourceLayerPath(parameters, "VECTOR", context, ["gpkg", "shp", "geojson"], "gpkg", feedback)
        out = self.parameterAsFileOutput(parameters, "OUTPUT", context)
        run_cli(["tags", "from-vector", *_rasters(self, parameters, context, feedback), "--labels", vector,
                 "--field", self.parameterAsString(parameters, "FIELD", context), "--classes",
                 CLASS_SETS[self.parameterAsEnum(parameters, "CLASSES", context)], "-o", out, "--overwrite",
                 "--tile", self.parameterAsInt(parameters, "TILE", context)], feedback)
        return {"OUTPUT": out}
