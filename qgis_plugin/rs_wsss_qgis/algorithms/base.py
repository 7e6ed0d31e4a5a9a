import os
import re
import tempfile

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingOutputHtml,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterString,
    QgsProcessingUtils,
    QgsRasterFileWriter,
    QgsRasterPipe,
)
from qgis.PyQt.QtCore import QCoreApplication, QUrl

from ..runner import Cancelled, class_sets, cli_option, default_weights

TEST_SWITCH = "RS_WSSS_QGIS_TEST"  # =1 shows the test-only option (tiny architecture)
RANDOM_CHOICE = "random (shows the mechanics only)"
WEIGHTS_LABEL = (
    "Backbone weights: a folder (CLIP + DINOv2 files) or a file, or " + RANDOM_CHOICE + "; empty: the provider "
    "setting, then $RS_WSSS_WEIGHTS_DIR"
)
# the frozen priors: parameter, CLI option, label; their names and default come from the CLI's listing (the registry)
PRIORS = (("CLIP_PRIOR", "--clip-prior", "CLIP prior"), ("DINO_PRIOR", "--dino-prior", "DINOv2 prior"))
_REPORT_TITLES = {}  # algorithm name → the Results Viewer name of its last report (see outputDefinitions)
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


def plain_text(html):
    """A help text without markup: line and list breaks become new lines, other tags go."""
    text = re.sub(r"<br\s*/?>|</?(p|ol|ul)>|</li>", "\n", html)
    text = re.sub(r"<li>", "- ", text)
    text = re.sub(r"<[^>]+>", "", text)
    return re.sub(r"\n{2,}", "\n", text).strip()


def weights_value(text):
    """The CLI's --weights value of the 'Backbone weights' text ('random …' → 'random'); None when empty."""
    text = (text or "").strip()
    if not text:
        return None
    return "random" if text.lower().startswith("random") else text


def cli_label(text, command, flag):
    """``text (UNIT; empty: DEFAULT)`` with the unit and the default the CLI lists for ``flag`` (no copy here)."""
    opt = cli_option(command, flag)
    if opt is None:
        return text
    default = opt["default"]
    if isinstance(default, list):
        default = ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in default)
    elif isinstance(default, bool):
        default = "on" if default else "off"
    elif isinstance(default, float):
        default = f"{default:g}"
    parts = [opt["unit"]] if opt.get("unit") else []
    if default not in (None, "", []):
        parts.append(f"empty: {default}")
    return f"{text} ({'; '.join(parts)})" if parts else text


def cli_default(command, flag):
    """The default the CLI lists for ``flag`` (the configuration's value), or None."""
    opt = cli_option(command, flag)
    return None if opt is None else opt["default"]


def prior_choices(command, flag):
    """(names, index of the default): the prior names the CLI lists for ``flag`` (``rs-wsss options --json``, read
    from its registry, priors/specs.py) and its configured default; ([], 0) where this rs-wsss has no such option."""
    opt = cli_option(command, flag) or {}
    names = list(opt.get("choices") or [])
    default = opt.get("default")
    return names, names.index(default) if default in names else 0


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
        """Plain text, one paragraph a line: the dialog makes each line a paragraph, and ``qgis_process help`` prints
        it as it is (no raw HTML tags, whatever markup a HELP text carries)."""
        return plain_text(self.tr(self.HELP))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        try:
            return self.process(parameters, context, feedback)
        except Cancelled as exc:  # a choice of the user, not a failure: said once, as a warning
            feedback.pushWarning(str(exc))
            return {}

    def process(self, parameters, context, feedback):
        raise NotImplementedError

    def outputDefinitions(self):  # noqa: N802 (Processing's dialog names Results Viewer entries after these)
        outs = super().outputDefinitions()
        title = _REPORT_TITLES.get(self.name())
        for out in outs:
            if title and isinstance(out, QgsProcessingOutputHtml):
                out.setDescription(title)
        return outs

    def name_report(self, title):
        """Name this run's report in the Results Viewer after the run (scene, model), not the algorithm."""
        _REPORT_TITLES[self.name()] = f"{title} · report"

    def class_set_choices(self):
        """The class sets the CLI lists (``rs-wsss options --json``), not a copy of them."""
        return class_sets() or ["(rs-wsss not found: set Processing → Options → Providers → rs-wsss)"]

    def default_class_set(self):
        """The general-purpose set (landcover) where the CLI has it, else its first."""
        choices = self.class_set_choices()
        return choices.index("landcover") if "landcover" in choices else 0

    def class_set(self, parameters, context, key="CLASSES"):
        return self.class_set_choices()[self.parameterAsEnum(parameters, key, context)]

    def add_weights(self):
        """'Backbone weights': a folder, a file or 'random …'; its default is the provider setting."""
        self.addParameter(
            QgsProcessingParameterString(
                "WEIGHTS", self.tr(WEIGHTS_LABEL), defaultValue=default_weights() or None, optional=True
            )
        )

    def weights_args(self, parameters, context):
        value = weights_value(self.parameterAsString(parameters, "WEIGHTS", context))
        return ["--weights", value] if value else []

    def add_priors(self, command, note=""):
        """'CLIP prior' and 'DINOv2 prior': the registry's names with the configured one selected, as the CLI lists
        them for ``command``; not offered where this rs-wsss has no such option."""
        for key, flag, text in PRIORS:
            names, default = prior_choices(command, flag)
            if names:
                self.addParameter(QgsProcessingParameterEnum(key, self.tr(text + note), names, defaultValue=default))

    def prior_args(self, parameters, context, command):
        """--clip-prior / --dino-prior for each prior chosen other than the configured one (which stays the CLI's)."""
        args = []
        for key, flag, _ in PRIORS:
            names, default = prior_choices(command, flag)
            if names and parameters.get(key) not in (None, ""):
                index = self.parameterAsEnum(parameters, key, context)
                if index != default:
                    args += [flag, names[index]]
        return args

    def check_weights(self, parameters, context):
        """(ok, message): a weights value that is neither random, a folder nor a file is named before running."""
        value = weights_value(self.parameterAsString(parameters, "WEIGHTS", context))
        if value and value != "random" and not os.path.exists(value):
            return False, self.tr(
                f"Backbone weights: '{value}' is neither a folder, a file nor '{RANDOM_CHOICE}'"
            )
        return True, ""

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
        """The test-only option (tiny architecture), shown only when test_mode() is on."""
        if test_mode():
            self.add_advanced(
                QgsProcessingParameterBoolean("TINY", self.tr("Tiny test architecture (testing only)"), defaultValue=False)
            )

    def test_option_args(self, parameters, context):
        """The CLI arguments of the test-only option (none outside test_mode())."""
        if test_mode() and self.parameterAsBool(parameters, "TINY", context):
            return ["--tiny"]
        return []

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
