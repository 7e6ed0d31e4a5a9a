import os
import tempfile

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingParameterBoolean,
    QgsProcessingUtils,
    QgsRasterFileWriter,
    QgsRasterPipe,
)
from qgis.PyQt.QtCore import QCoreApplication, QUrl

TEST_SWITCH = "RS_WSSS_QGIS_TEST"  # =1 shows the test-only options (random weights, tiny architecture)
WEB_PROVIDERS = {
    "wms": "WMS/WMTS/XYZ",
    "arcgismapserver": "ArcGIS MapServer",
    "wcs": "WCS",
    "arcgisfeatureserver": "ArcGIS",
}


def test_mode():
    return os.environ.get(TEST_SWITCH, "") not in ("", "0")


def web_layer_problem(layer):
    """A message for web layers (WMS/XYZ tiles are rendered pictures, not the scene's pixels on disk), else None."""
    kind = WEB_PROVIDERS.get(layer.providerType()) if layer is not None else None
    if kind is None:
        return None
    return (
        f"'{layer.name()}' is a {kind} web layer: rs-wsss reads the scene's own pixels from a file. Save it first "
        f"(right-click → Export → Save As…, GeoTIFF, at the resolution you want) and give that file"
    )


def is_temporary(path):
    """True for '[Save to temporary file]' outputs, which QGIS deletes when it closes."""
    tmp = os.path.normcase(os.path.abspath(QgsProcessingUtils.tempFolder()))
    return os.path.normcase(os.path.abspath(path)).startswith(tmp + os.sep)


def unique_path(folder, stem, ext):
    """folder/stem.ext, or stem_2.ext, stem_3.ext … so that nothing the user kept is overwritten."""
    path, n = os.path.join(folder, stem + ext), 2
    while os.path.exists(path):
        path, n = os.path.join(folder, f"{stem}_{n}{ext}"), n + 1
    return path


class RsWsssAlgorithm(QgsProcessingAlgorithm):
    """Common plumbing: layers become files, the CLI runs as a subprocess (see runner.py)."""

    HELP = ""

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

    def shortHelpString(self):  # noqa: N802
        return self.tr(self.HELP)

    def helpUrl(self):  # noqa: N802
        """The README (its QGIS section): bundled in the plugin ZIP, or the repository's in a checkout. The project
        has no public web address to point to."""
        here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        for readme in (
            os.path.join(here, "README.md"),
            os.path.join(os.path.dirname(os.path.dirname(here)), "README.md"),
        ):
            if os.path.isfile(readme):
                return QUrl.fromLocalFile(readme).toString()
        return ""

    def add_advanced(self, param):
        param.setFlags(param.flags() | param.FlagAdvanced)
        self.addParameter(param)

    def add_test_options(self):
        """The test-only options (random backbone weights, tiny architecture), shown only when test_mode() is on."""
        if not test_mode():
            return
        for key, label in (
            ("RANDOM_WEIGHTS", "Random backbone weights (testing only)"),
            ("TINY", "Tiny test architecture (testing only)"),
        ):
            self.add_advanced(QgsProcessingParameterBoolean(key, self.tr(label), defaultValue=False))

    def test_option_args(self, parameters, context):
        """The CLI arguments of the test-only options (none outside test_mode())."""
        if not test_mode():
            return []
        args = []
        if self.parameterAsBool(parameters, "RANDOM_WEIGHTS", context):
            args += ["--weights", "random"]
        if self.parameterAsBool(parameters, "TINY", context):
            args += ["--tiny"]
        return args

    def kept_output(self, path, beside, stem, ext, feedback):
        """What the user keeps (a checkpoint, a tag grid to edit) goes to a real file: a temporary output is replaced by
        ``stem + ext`` in the folder of the first of ``beside`` (the user's data) that is a real, writable place, else
        in ~/rs-wsss. Nothing existing is overwritten."""
        if path and not is_temporary(path):
            return path
        folders = [os.path.dirname(os.path.abspath(b)) for b in beside if b and not is_temporary(b)]
        folder = next((f for f in folders if os.access(f, os.W_OK)), None)
        if folder is None:
            folder = os.path.join(os.path.expanduser("~"), "rs-wsss")
            os.makedirs(folder, exist_ok=True)
        kept = unique_path(folder, stem, ext)
        feedback.pushInfo(
            f"writing {kept} (a real file rather than a temporary one, so that it is kept; choose the "
            f"output to put it elsewhere)"
        )
        return kept

    def raster_file(self, layer, feedback):
        """A raster layer's file; layers that are not plain files are exported to a temporary GeoTIFF first."""
        if layer is None:
            raise QgsProcessingException("no raster layer given")
        problem = web_layer_problem(layer)
        if problem:
            raise QgsProcessingException(problem)
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

    def check_rasters(self, layers):
        """(ok, message) for checkParameterValues: web layers are refused before anything runs."""
        for layer in layers:
            problem = web_layer_problem(layer)
            if problem:
                return False, problem
        return True, ""
