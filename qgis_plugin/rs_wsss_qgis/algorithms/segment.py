import os
import shutil

from qgis.core import (
    QgsProcessing,
    QgsProcessingOutputHtml,
    QgsProcessingParameterBand,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorDestination,
)

from ..layers import ResultLayer, RunGroup, style_classes_raster, style_classes_vector, style_confidence
from ..runner import CLASS_SETS, cli_supports, run_cli
from .base import RsWsssAlgorithm
from .clip import clip_to_vrt, raster_identity

DEVICES = ["auto", "cpu", "cuda"]
CRF_CHOICES = ["as configured (on in the paper's configuration)", "on", "off"]
PRECISIONS = [
    "as configured (auto: bf16 on CPUs with AMX/AVX512-BF16, autocast on CUDA)",
    "auto",
    "fp32",
    "bf16",
    "fp16",
]


def parse_scales(text):
    """'0.75, 1, 1.25' → [0.75, 1.0, 1.25]; raises ValueError on anything else."""
    vals = [float(s) for s in text.replace(" ", "").split(",") if s]
    if not vals or any(v <= 0 for v in vals):
        raise ValueError(text)
    return vals


class SegmentAlgorithm(RsWsssAlgorithm):
    GROUP, TITLE = "Segmentation", "Segment raster"
    HELP = (
        "Segments a raster into a class raster (Cloud-Optimised GeoTIFF with class names and colours) and class "
        "polygons (GeoPackage), with a model from <i>Train from tile tags</i>, or zero-shot from a class set.<br><br>"
        "<b>Worked example</b><ol>"
        "<li>Load an orthophoto, e.g. a NAIP tile. Its bands are often tagged Gray/Undefined: set <i>Bands as "
        "R,G,B</i> to 1, 2, 3 (or 4, 3, 2 for a false-colour view you trained on).</li>"
        "<li>Leave <i>Model</i> empty and pick the class set <i>landcover</i> for zero-shot, or give model.pt "
        "(its own classes are used; the class set is then ignored).</li>"
        "<li>Zoom to the area you need and, under <i>Processing extent</i>, choose <i>Use Current Map Canvas "
        "Extent</i>; or give a polygon layer as <i>Mask</i>.</li>"
        "<li>For a fast first look set <i>Scales</i> to 1 and <i>Dense CRF</i> to off (3–6× faster than the "
        "three-scale default).</li>"
        "<li>Run. The layers load in a group named after the scene and model, see-through over the imagery.</li>"
        "</ol>Command line equivalent: <code>rs-wsss segment scene.tif -o out.gpkg --zero-shot --classes landcover "
        "--scales 1 --no-crf --bands 1,2,3</code>. Empty options use the command line's defaults (its "
        "configuration's)."
    )

    def name(self):
        return "segment"

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer("INPUT", self.tr("Raster")))
        self.addParameter(
            QgsProcessingParameterFile(
                "MODEL", self.tr("Model checkpoint (.pt); empty = zero-shot"), extension="pt", optional=True
            )
        )
        self.addParameter(
            QgsProcessingParameterEnum(
                "CLASSES", self.tr("Class set (zero-shot; a model brings its own)"), CLASS_SETS, defaultValue=0
            )
        )
        self.addParameter(
            QgsProcessingParameterBand(
                "BANDS",
                self.tr("Bands as R,G,B (empty: by colour interpretation)"),
                parentLayerParameterName="INPUT",
                optional=True,
                allowMultiple=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterExtent(
                "EXTENT", self.tr("Processing extent (empty: the whole raster)"), optional=True
            )
        )
        self.addParameter(
            QgsProcessingParameterFeatureSource(
                "MASK",
                self.tr("Mask: segment only inside these polygons"),
                [QgsProcessing.TypeVectorPolygon],
                optional=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterString(
                "SCALES",
                self.tr("Scales, e.g. 1 or 0.75,1,1.25 (empty: the configuration's 0.75,1,1.25; 1 is 3–6× faster)"),
                optional=True,
            )
        )
        self.addParameter(QgsProcessingParameterEnum("CRF", self.tr("Dense CRF"), CRF_CHOICES, defaultValue=0))
        self.addParameter(
            QgsProcessingParameterNumber(
                "MIN_AREA",
                self.tr("Drop polygons smaller than (CRS units², empty: keep all)"),
                QgsProcessingParameterNumber.Double,
                minValue=0.0,
                optional=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                "SIMPLIFY",
                self.tr("Simplify polygons, tolerance (CRS units, empty: none)"),
                QgsProcessingParameterNumber.Double,
                minValue=0.0,
                optional=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterBoolean(
                "WRITE_REPORT",
                self.tr("Write a report (quicklook PNG and HTML: areas per class, parameters, model)"),
                defaultValue=True,
            )
        )
        self.add_advanced(
            QgsProcessingParameterFile(
                "CLASSES_FILE", self.tr("Class set YAML (overrides the set above)"), extension="yaml", optional=True
            )
        )
        self.add_advanced(
            QgsProcessingParameterNumber("TILE", self.tr("Tile size (px, empty: 512)"), minValue=32, optional=True)
        )
        self.add_advanced(
            QgsProcessingParameterNumber(
                "OVERLAP",
                self.tr("Tile overlap (empty: 0.25)"),
                QgsProcessingParameterNumber.Double,
                minValue=0.0,
                maxValue=0.9,
                optional=True,
            )
        )
        self.add_advanced(QgsProcessingParameterEnum("DEVICE", self.tr("Device"), DEVICES, defaultValue=0))
        self.add_advanced(
            QgsProcessingParameterEnum("PRECISION", self.tr("Numeric precision"), PRECISIONS, defaultValue=0)
        )
        self.add_test_options()
        self.addParameter(QgsProcessingParameterRasterDestination("OUTPUT_RASTER", self.tr("Class raster")))
        self.addParameter(
            QgsProcessingParameterVectorDestination(
                "OUTPUT_VECTOR", self.tr("Class polygons"), type=QgsProcessing.TypeVectorPolygon
            )
        )
        self.addParameter(
            QgsProcessingParameterRasterDestination(
                "OUTPUT_CONFIDENCE", self.tr("Confidence raster"), optional=True, createByDefault=False
            )
        )
        self.addOutput(QgsProcessingOutputHtml("REPORT", self.tr("Report (areas per class, parameters, quicklook)")))

    def checkParameterValues(self, parameters, context):  # noqa: N802
        ok, msg = super().checkParameterValues(parameters, context)
        if not ok:
            return ok, msg
        layer = self.parameterAsRasterLayer(parameters, "INPUT", context)
        ok, msg = self.check_rasters([layer])
        if not ok:
            return ok, msg
        bands = self.parameterAsInts(parameters, "BANDS", context)
        if len(bands) not in (0, 1, 3):
            return False, self.tr(f"Bands as R,G,B: pick 3 bands (red, green, blue) or 1, not {len(bands)}")
        if layer is not None and any(b < 1 or b > layer.bandCount() for b in bands):
            return False, self.tr(
                f"Bands as R,G,B: {layer.name()} has bands 1..{layer.bandCount()}, not {','.join(map(str, bands))}"
            )
        scales = self.parameterAsString(parameters, "SCALES", context)
        if scales:
            try:
                parse_scales(scales)
            except ValueError:
                return False, self.tr(
                    f"Scales '{scales}': give positive numbers separated by commas, e.g. 1 or 0.75,1,1.25"
                )
        model = self.parameterAsFile(parameters, "MODEL", context)
        if model and not os.path.isfile(model):
            return False, self.tr(f"model checkpoint not found: {model}")
        return True, ""

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        layer = self.parameterAsRasterLayer(parameters, "INPUT", context)
        scene = self.raster_file(layer, feedback)
        model = self.parameterAsFile(parameters, "MODEL", context)
        classes = (
            self.parameterAsFile(parameters, "CLASSES_FILE", context)
            or CLASS_SETS[self.parameterAsEnum(parameters, "CLASSES", context)]
        )
        raster_out = self.parameterAsOutputLayer(parameters, "OUTPUT_RASTER", context)
        vector_out = self.parameterAsOutputLayer(parameters, "OUTPUT_VECTOR", context)
        conf_out = self.parameterAsOutputLayer(parameters, "OUTPUT_CONFIDENCE", context)
        if not vector_out.lower().endswith(".gpkg"):
            vector_out = os.path.splitext(vector_out)[0] + ".gpkg"
        run_scene, extra = self.area_args(parameters, context, layer, scene, feedback)
        args = [
            "segment",
            run_scene,
            "-o",
            vector_out,
            "--overwrite",
            "--device",
            DEVICES[self.parameterAsEnum(parameters, "DEVICE", context)],
            *extra,
        ]
        if model:
            args += ["--model", model]
            feedback.pushWarning(
                self.tr("a model is given: its own classes are used and the class set parameter is ignored")
            )
        else:
            args += ["--zero-shot", "--classes", classes]
        bands = self.parameterAsInts(parameters, "BANDS", context)
        if bands:
            args += ["--bands", ",".join(map(str, bands))]
        scales = self.parameterAsString(parameters, "SCALES", context)
        if scales:
            args += ["--scales", ",".join(map(str, parse_scales(scales)))]
        crf = self.parameterAsEnum(parameters, "CRF", context)
        if crf:
            args += ["--crf" if crf == 1 else "--no-crf"]
        for key, opt, as_num in (
            ("TILE", "--tile", self.parameterAsInt),
            ("OVERLAP", "--overlap", self.parameterAsDouble),
            ("MIN_AREA", "--min-area", self.parameterAsDouble),
            ("SIMPLIFY", "--simplify", self.parameterAsDouble),
        ):
            if parameters.get(key) not in (None, ""):
                args += [opt, as_num(parameters, key, context)]
        precision = self.parameterAsEnum(parameters, "PRECISION", context)
        if precision:
            args += ["--precision", PRECISIONS[precision]]
        if conf_out:
            args += ["--probs"]
        if not self.parameterAsBool(parameters, "WRITE_REPORT", context):
            args += ["--no-report"]
        args += self.test_option_args(parameters, context)
        run_cli(args, feedback)
        base = os.path.splitext(vector_out)[0]
        qml = base + ".qml"
        if os.path.abspath(base + ".tif") != os.path.abspath(raster_out):
            shutil.move(base + ".tif", raster_out)
            shutil.copy(qml, os.path.splitext(raster_out)[0] + ".qml")
        if conf_out and os.path.abspath(base + "_confidence.tif") != os.path.abspath(conf_out):
            shutil.move(base + "_confidence.tif", conf_out)
        title = self.run_title(scene, model, classes, raster_out)
        group = RunGroup(title)
        ResultLayer.attach(context, raster_out, f"{title} · classes", lambda l: style_classes_raster(l, qml), group)
        ResultLayer.attach(context, vector_out, f"{title} · polygons", lambda l: style_classes_vector(l, qml), group)
        if conf_out:
            ResultLayer.attach(context, conf_out, f"{title} · confidence", style_confidence, group)
        result = {"OUTPUT_RASTER": raster_out, "OUTPUT_VECTOR": vector_out}
        if conf_out:
            result["OUTPUT_CONFIDENCE"] = conf_out
        if os.path.isfile(base + "_report.html"):  # the CLI's report, where it writes one: opens from Results Viewer
            result["REPORT"] = base + "_report.html"
            feedback.pushInfo(f"report: {result['REPORT']}")
        return result

    def area_args(self, parameters, context, layer, scene, feedback):
        """The processing extent and mask: the CLI's --bounds/--aoi where it has them, else a clipped VRT."""
        extent, mask = None, None
        if parameters.get("EXTENT") not in (None, ""):
            e = self.parameterAsExtent(parameters, "EXTENT", context, layer.crs())
            if not e.isNull() and not e.isEmpty():
                extent = (e.xMinimum(), e.yMinimum(), e.xMaximum(), e.yMaximum())
        if parameters.get("MASK") not in (None, ""):
            mask = self.parameterAsCompatibleSourceLayerPath(
                parameters, "MASK", context, ["gpkg", "shp", "geojson"], "gpkg", feedback
            )
        extra = []
        if extent and cli_supports("segment", "--bounds"):
            extra += ["--bounds=" + ",".join(repr(v) for v in extent)]  # one token: a value may start with '-'
            extent = None
        if mask and cli_supports("segment", "--aoi"):
            extra += ["--aoi", mask]
            mask = None
        if extent or mask:
            scene = clip_to_vrt(scene, extent, mask)
            feedback.pushInfo(f"segmenting {scene} (the raster clipped to the extent/mask)")
        return scene, extra

    @staticmethod
    def run_title(scene, model, classes, raster_out):
        """'<scene> · <model>' and '(random weights)' when the class raster says so: names tell runs apart."""
        stem = os.path.splitext(os.path.basename(scene))[0]
        model_name = os.path.splitext(os.path.basename(model))[0] if model else f"zero-shot {os.path.basename(classes)}"
        title = f"{stem} · {model_name}"
        if raster_identity(raster_out).get("WEIGHTS") == "random-weights":
            title += " (random weights)"
        return title
