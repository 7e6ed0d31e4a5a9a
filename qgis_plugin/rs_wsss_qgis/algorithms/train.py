from qgis.core import (QgsProcessing, QgsProcessingParameterBoolean, QgsProcessingParameterEnum,
                       QgsProcessingParameterFile, QgsProcessingParameterFileDestination,
                       QgsProcessingParameterMultipleLayers, QgsProcessingParameterNumber,
                       QgsProcessingParameterVectorLayer)

from ..runner import CLASS_SETS, run_cli
from .base import RsWsssAlgorithm


class TrainAlgorithm(RsWsssAlgorithm):
    GROUP, TITLE = "Training", "Train from tile tags"

    def name(self):
        return "train"

    def shortHelpString(self):  # noqa: N802
        return self.tr("Trains the rs-wsss adapter and decoder from tile-level tags (a CSV or a tag grid layer).")

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterMultipleLayers("RASTERS", self.tr("Rasters"), QgsProcessing.TypeRaster))
        self.addParameter(QgsProcessingParameterFile("TAGS_FILE", self.tr("Tags CSV or GPKG"), optional=True))
        self.addParameter(QgsProcessingParameterVectorLayer("TAGS_LAYER", self.tr("Tag grid layer"), optional=True))
        self.addParameter(QgsProcessingParameterEnum("CLASSES", self.tr("Class set"), CLASS_SETS, defaultValue=0))
        self.addParameter(QgsProcessingParameterNumber("ITERS", self.tr("Iterations"), defaultValue=2000, minValue=1))
        self.addParameter(QgsProcessingParameterBoolean("RANDOM_WEIGHTS", self.tr("Random backbone weights (testing only)"), defaultValue=False))
        self.addParameter(QgsProcessingParameterBoolean("TINY", self.tr("Tiny test architecture (testing only)"), defaultValue=False))
        self.addParameter(QgsProcessingParameterFileDestination("OUTPUT", self.tr("Checkpoint"), "rs-wsss checkpoint (*.pt)"))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        rasters = [self.raster_file(l, feedback) for l in self.parameterAsLayerList(parameters, "RASTERS", context)]
        tags = self.parameterAsFile(parameters, "TAGS_FILE", context)
        if not tags:
            tags = self.parameterAsCompatibleSourceLayerPath(parameters, "TAGS_LAYER", context, ["gpkg"], "gpkg", feedback)
        out = self.parameterAsFileOutput(parameters, "OUTPUT", context)
        args = ["train", "--tags", tags, *rasters, "-o", out, "--classes",
                CLASS_SETS[self.parameterAsEnum(parameters, "CLASSES", context)],
                "--iters", self.parameterAsInt(parameters, "ITERS", context)]
        if self.parameterAsBool(parameters, "RANDOM_WEIGHTS", context):
            args += ["--weights", "random"]
        if self.parameterAsBool(parameters, "TINY", context):
            args += ["--tiny"]
        run_cli(args, feedback)
        return {"OUTPUT": out}
