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
from ..runner import cli_supports, run_cli
from .base import RsWsssAlgorithm, cli_label, is_temporary
from .clip import clip_to_vrt, raster_identity

DEVICES = ["auto", "cpu", "cuda"]
PRECISIONS = ["auto", "fp32", "bf16", "fp16"]  # auto: bf16 on CPUs with AMX/AVX512-BF16, autocast on CUDA
POLYGON_FORMATS = {"gpkg": "GeoPackage", "fgb": "FlatGeobuf", "parquet": "GeoParquet"}  # what the CLI writes


def polygon_extensions():
    """The polygon formats offered: those the CLI writes that this QGIS can also open (GeoParquet needs GDAL's
    Parquet driver, which QGIS 3.22 on Debian lacks)."""
    from qgis.core import QgsVectorFileWriter

    here = {e.lower() for e in QgsVectorFileWriter.supportedFormatExtensions()}
    return [e for e in POLYGON_FORMATS if e in here]


def choices_with_default(command, flag, choices, describe):
    """An enum whose first entry is 'as configured (…)' with the CLI's default in it."""
    from .base import cli_default

    default = cli_default(command, flag)
    return [f"as configured ({describe(default)})" if default is not None else "as configured", *choices]


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
        "polygons (GeoPackage, FlatGeobuf or GeoParquet, each styled), with a model from 'Train from tile tags', or "
        "zero-shot from a class set.\n"
        "Worked example:\n"
        "1. Load an orthophoto, e.g. a NAIP tile. Its bands are often tagged Gray/Undefined: set 'Bands as R,G,B' to "
        "1, 2, 3 (or 4, 3, 2 for a false-colour view you trained on).\n"
        "2. Leave Model empty and pick the class set landcover for zero-shot, or give model.pt (its own classes are "
        "used; the class set is then ignored).\n"
        "3. Set 'Backbone weights' to the folder holding the CLIP and DINOv2 files (its default is the provider "
        "setting); 'random (shows the mechanics only)' runs without them, with meaningless classes.\n"
        "4. Zoom to the area you need and, under 'Processing extent', choose 'Use Map Canvas Extent'; or give a "
        "polygon layer as Mask.\n"
        "5. For a fast first look set Scales to 1 and Dense CRF to off (3-6x faster than three scales).\n"
        "6. Run. The layers load in a group named after the scene and model, polygons above the class raster, "
        "see-through over the imagery; rerunning into the same files reloads them in place.\n"
        "Command line equivalent: rs-wsss segment scene.tif -o out.gpkg --zero-shot --classes landcover --scales 1 "
        "--no-crf --bands 1,2,3 --weights ~/weights. Empty options use the command line's defaults (its "
        "configuration's, shown in each label)."
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
                "CLASSES", self.tr("Class set (zero-shot; a model brings its own)"), self.class_set_choices(), defaultValue=self.default_class_set()
            )
        )
        self.add_weights()
        self.add_priors("segment", " (zero-shot; a model brings its own)")
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
                self.tr(cli_label("Scales, e.g. 1: 3-6x faster than three", "segment", "--scales")),
                optional=True,
            )
        )
        crf = choices_with_default("segment", "--crf", ["on", "off"], lambda v: "on" if v else "off")
        self.addParameter(QgsProcessingParameterEnum("CRF", self.tr("Dense CRF"), crf, defaultValue=0))
        self.addParameter(
            QgsProcessingParameterNumber(
                "MIN_AREA",
                self.tr(cli_label("Minimum area: smaller regions merge into their largest neighbour", "segment",
                                  "--min-area")),
                QgsProcessingParameterNumber.Double,
                minValue=0.0,
                optional=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                "SIMPLIFY",
                self.tr(cli_label("Simplify polygons: tolerance, shared edges stay shared", "segment",
                                  "--simplify")),
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
            QgsProcessingParameterNumber(
                "TILE", self.tr(cli_label("Tile size", "segment", "--tile")), minValue=32, optional=True
            )
        )
        self.add_advanced(
            QgsProcessingParameterNumber(
                "OVERLAP",
                self.tr(cli_label("Tile overlap", "segment", "--overlap")),
                QgsProcessingParameterNumber.Double,
                minValue=0.0,
                maxValue=0.9,
                optional=True,
            )
        )
        self.add_advanced(QgsProcessingParameterEnum("DEVICE", self.tr("Device"), DEVICES, defaultValue=0))
        precisions = choices_with_default("segment", "--precision", PRECISIONS, str)
        self.add_advanced(
            QgsProcessingParameterEnum("PRECISION", self.tr("Numeric precision"), precisions, defaultValue=0)
        )
        self.add_test_options()
        self.addParameter(QgsProcessingParameterRasterDestination("OUTPUT_RASTER", self.tr("Class raster")))
        self.addParameter(
            QgsProcessingParameterVectorDestination(
                "OUTPUT_VECTOR",
                self.tr(f"Class polygons ({', '.join(POLYGON_FORMATS[e] for e in polygon_extensions())})"),
                type=QgsProcessing.TypeVectorPolygon,
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
        vector = self.parameterAsOutputLayer(parameters, "OUTPUT_VECTOR", context)
        ext = os.path.splitext(vector)[1].lower().lstrip(".")
        if vector and not is_temporary(vector) and ext not in polygon_extensions():
            offered = ", ".join(f"{POLYGON_FORMATS[e]} (.{e})" for e in polygon_extensions())
            return False, self.tr(f"Class polygons: {os.path.basename(vector)} is not one of {offered}")
        return self.check_weights(parameters, context)

    def process(self, parameters, context, feedback):
        layer = self.parameterAsRasterLayer(parameters, "INPUT", context)
        scene = self.raster_file(layer, feedback)
        model = self.parameterAsFile(parameters, "MODEL", context)
        classes = (
            self.parameterAsFile(parameters, "CLASSES_FILE", context)
            or self.class_set(parameters, context)
        )
        raster_out = self.parameterAsOutputLayer(parameters, "OUTPUT_RASTER", context)
        vector_out = self.parameterAsOutputLayer(parameters, "OUTPUT_VECTOR", context)
        conf_out = self.parameterAsOutputLayer(parameters, "OUTPUT_CONFIDENCE", context)
        if os.path.splitext(vector_out)[1].lower().lstrip(".") not in POLYGON_FORMATS:  # a temporary output's default
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
        priors = self.prior_args(parameters, context, "segment")
        if model:
            args += ["--model", model]
            feedback.pushWarning(
                self.tr("a model is given: its own classes are used and the class set parameter is ignored")
            )
            if priors:  # the checkpoint records the priors it was trained on; segment uses those
                feedback.pushWarning(self.tr("a model is given: it brings its own priors; the prior choices are ignored"))
        else:
            args += ["--zero-shot", "--classes", classes, *priors]
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
            args += ["--precision", PRECISIONS[precision - 1]]
        if conf_out:
            args += ["--probs"]
        if not self.parameterAsBool(parameters, "WRITE_REPORT", context):
            args += ["--no-report"]
        # a checkpoint carries its architecture: the test-only tiny switch goes with zero-shot runs only
        args += self.weights_args(parameters, context) + ([] if model else self.test_option_args(parameters, context))
        run_cli(args, feedback)
        base = os.path.splitext(vector_out)[0]
        qml = base + ".qml"
        if os.path.abspath(base + ".tif") != os.path.abspath(raster_out):
            shutil.move(base + ".tif", raster_out)
            if os.path.isfile(base + ".tif.aux.xml"):  # class names and attribute table travel with the raster
                shutil.move(base + ".tif.aux.xml", raster_out + ".aux.xml")
            shutil.copy(qml, os.path.splitext(raster_out)[0] + ".qml")
        if conf_out and os.path.abspath(base + "_confidence.tif") != os.path.abspath(conf_out):
            shutil.move(base + "_confidence.tif", conf_out)
        title = self.run_title(scene, model, classes, raster_out)
        group = RunGroup(title)
        # polygons above the class raster, the confidence below and hidden (it is looked at on demand)
        ResultLayer.attach(context, vector_out, f"{title} · polygons", lambda l: style_classes_vector(l, qml), group, 0)
        ResultLayer.attach(context, raster_out, f"{title} · classes", lambda l: style_classes_raster(l, qml), group, 1)
        if conf_out:
            ResultLayer.attach(context, conf_out, f"{title} · confidence", style_confidence, group, 2, visible=False)
        result = {"OUTPUT_RASTER": raster_out, "OUTPUT_VECTOR": vector_out}
        if conf_out:
            result["OUTPUT_CONFIDENCE"] = conf_out
        if os.path.isfile(base + "_report.html"):  # the CLI's report, where it writes one: opens from Results Viewer
            result["REPORT"] = base + "_report.html"
            self.name_report(title)
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
