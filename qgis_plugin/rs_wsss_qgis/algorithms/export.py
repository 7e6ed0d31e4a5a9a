from qgis.core import (
    QgsProcessingParameterBoolean,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
)

from ..runner import run_cli
from .base import RsWsssAlgorithm


class ExportDeepnessAlgorithm(RsWsssAlgorithm):
    """``rs-wsss export``: a checkpoint → an ONNX file that the Deepness plugin loads (no PyTorch inside QGIS)."""

    GROUP, TITLE = "Training", "Export model for Deepness"
    HELP = (
        "Writes a trained checkpoint as one ONNX graph (CLIP image tower + adapter + decoder + softmax, fixed tile, "
        "dynamic batch) with the metadata the <b>Deepness</b> plugin reads: model type Segmentor, class names, tile "
        "size, overlap, resolution (cm/px, the training scenes') and the standardisation that reproduces rs-wsss's "
        "band stretch. A STAC model card (MODEL.onnx.stac.json) is written beside it. Multi-scale testing and the "
        "dense CRF stay in rs-wsss.<br>In Deepness: model type <i>Segmentor</i> → model file = the .onnx → "
        "<i>Load default parameters</i>, map the input channels to the raster's R, G, B bands, run.<br><br>"
        "<b>Worked example</b>: <i>Model checkpoint</i> = model.pt from <i>Train from tile tags</i>, "
        "<i>Check on this raster</i> = one of the training rasters (prints the pixel agreement of the exported "
        "graph with PyTorch) → model.onnx.<br>"
        "Command line equivalent: <code>rs-wsss export model.pt -o model.onnx --check --scene ortho.tif</code>"
    )

    def name(self):
        return "exportdeepness"

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterFile("MODEL", self.tr("Model checkpoint (.pt)"), extension="pt"))
        self.addParameter(
            QgsProcessingParameterRasterLayer(
                "CHECK_RASTER", self.tr("Check on this raster (a training raster; also calibrates int8)"), optional=True
            )
        )
        self.add_advanced(
            QgsProcessingParameterNumber("TILE", self.tr("Tile size in px (empty: the model's)"), optional=True,
                                         minValue=32)
        )
        self.add_advanced(
            QgsProcessingParameterNumber(
                "RESOLUTION",
                self.tr("Resolution in cm/px (empty: the training scenes')"),
                QgsProcessingParameterNumber.Double,
                optional=True,
                minValue=0.001,
            )
        )
        self.add_advanced(
            QgsProcessingParameterBoolean("INT8", self.tr("int8 graph (needs the check raster)"), defaultValue=False)
        )
        self.addParameter(QgsProcessingParameterFileDestination("OUTPUT", self.tr("ONNX model"), "ONNX (*.onnx)"))

    def checkParameterValues(self, parameters, context):  # noqa: N802
        ok, msg = super().checkParameterValues(parameters, context)
        if not ok:
            return ok, msg
        raster = self.parameterAsRasterLayer(parameters, "CHECK_RASTER", context)
        if self.parameterAsBool(parameters, "INT8", context) and raster is None:
            return False, self.tr("an int8 graph is calibrated on real tiles: choose a training raster to check on")
        return self.check_rasters([raster]) if raster is not None else (True, "")

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        model = self.parameterAsFile(parameters, "MODEL", context)
        out = self.kept_output(
            self.parameterAsFileOutput(parameters, "OUTPUT", context), [model], "model", ".onnx", feedback
        )
        args = ["export", model, "-o", out, "--overwrite"]  # QGIS asked before replacing a chosen file
        raster = self.parameterAsRasterLayer(parameters, "CHECK_RASTER", context)
        if raster is not None:
            args += ["--check", "--scene", self.raster_file(raster, feedback)]
        if parameters.get("TILE") not in (None, ""):
            args += ["--tile", self.parameterAsInt(parameters, "TILE", context)]
        if parameters.get("RESOLUTION") not in (None, ""):
            args += ["--resolution", self.parameterAsDouble(parameters, "RESOLUTION", context)]
        if self.parameterAsBool(parameters, "INT8", context):
            args += ["--precision", "int8"]
        stdout = run_cli(args, feedback, first_stage="exporting")
        for line in stdout.splitlines():
            feedback.pushInfo(line)
        return {"OUTPUT": out}
