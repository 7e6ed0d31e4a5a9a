import csv
import os

from qgis.core import (
    QgsProcessing,
    QgsProcessingOutputHtml,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterVectorLayer,
    QgsVectorLayer,
)

from ..runner import run_cli
from .base import RsWsssAlgorithm, cli_label

DEVICES = ["auto", "cpu", "cuda"]
NO_TAGS = (
    "Train needs tile tags: give a tags CSV/GPKG file or a tag grid layer. Make one with 'Create tag grid' (then "
    "type the classes of each tile, e.g. building;road, into its labels field) or 'Tags from vector layer'"
)


def tag_labels(tags_file, tags_layer):
    """The 'labels' values of a tags CSV, a tag grid file or layer; None when there is no 'labels' column."""
    if tags_file and tags_file.lower().endswith(".csv"):
        with open(tags_file, newline="") as fh:
            reader = csv.DictReader(fh)
            if "labels" not in (reader.fieldnames or []):
                return None
            return [row.get("labels") or "" for row in reader]
    layer = tags_layer if tags_layer is not None else QgsVectorLayer(tags_file, "tags", "ogr")
    if not layer.isValid() or layer.fields().indexOf("labels") < 0:
        return None
    return [f["labels"] for f in layer.getFeatures()]


def empty_label(value):
    text = "" if value is None else str(value)
    return text.strip().strip("{}").strip() in ("", "NULL")


class TrainAlgorithm(RsWsssAlgorithm):
    GROUP, TITLE = "Training", "Train from tile tags"
    HELP = (
        "Trains the rs-wsss adapter and decoder (the CLIP and DINOv2 backbones stay frozen) from tile-level tags: "
        "which classes are present in each tile, not where.\n"
        "Worked example:\n"
        "1. Run 'Create tag grid' on your orthophotos. The grid is written beside the first raster and loads as "
        "outlines.\n"
        "2. Open its attribute table, toggle editing, and pick the classes present in each tile in the 'labels' "
        "field (building, road, …; leave background-only tiles empty). Save.\n"
        "3. Run this algorithm with the same rasters, Tag grid layer = the grid, class set = the one used for the "
        "grid, Iterations = 2000, Backbone weights = the folder of the CLIP and DINOv2 files. The checkpoint "
        "(model.pt) is written beside the tags.\n"
        "4. Give the checkpoint to 'Segment raster'.\n"
        "Command line equivalent: rs-wsss train --tags tags.gpkg ortho/*.tif -o model.pt --classes landcover "
        "--iters 2000 --weights ~/weights. A remote-sensing CLIP (RemoteCLIP, GeoRSCLIP, SkyCLIP, FarSLIP) is a choice of "
        "'CLIP prior' (--clip-prior), with its file in the weights folder. Empty options use the configuration's values (shown in each label)."
    )

    def name(self):
        return "train"

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterMultipleLayers("RASTERS", self.tr("Rasters"), QgsProcessing.TypeRaster))
        self.addParameter(
            QgsProcessingParameterVectorLayer(
                "TAGS_LAYER", self.tr("Tag grid layer"), [QgsProcessing.TypeVectorPolygon], optional=True
            )
        )
        self.addParameter(
            QgsProcessingParameterFile(
                "TAGS_FILE", self.tr("…or a tags file (CSV or GPKG)"), optional=True, fileFilter="Tags (*.csv *.gpkg)"
            )
        )
        self.addParameter(
            QgsProcessingParameterEnum("CLASSES", self.tr("Class set"), self.class_set_choices(), defaultValue=self.default_class_set())
        )
        self.add_weights()
        self.add_priors("train", " (frozen; rs-wsss weights lists each one's files)")
        self.addParameter(
            QgsProcessingParameterNumber(
                "ITERS", self.tr(cli_label("Iterations", "train", "--iters")), minValue=1, optional=True
            )
        )
        self.addParameter(
            QgsProcessingParameterBoolean(
                "WRITE_REPORT", self.tr("Write the training log and report (loss curves, previews)"), defaultValue=True
            )
        )
        self.add_advanced(
            QgsProcessingParameterNumber(
                "BATCH", self.tr(cli_label("Batch size", "train", "--batch")), minValue=1, optional=True
            )
        )
        self.add_advanced(QgsProcessingParameterEnum("DEVICE", self.tr("Device"), DEVICES, defaultValue=0))
        self.add_test_options()
        self.addParameter(
            QgsProcessingParameterFileDestination(
                "OUTPUT", self.tr("Checkpoint (default: model.pt beside the tags)"), "rs-wsss checkpoint (*.pt)"
            )
        )
        self.addOutput(QgsProcessingOutputHtml("REPORT", self.tr("Training report (loss curves, previews)")))

    def tags_inputs(self, parameters, context):
        tags_file = self.parameterAsFile(parameters, "TAGS_FILE", context)
        layer = self.parameterAsVectorLayer(parameters, "TAGS_LAYER", context)
        return tags_file, layer

    def checkParameterValues(self, parameters, context):  # noqa: N802
        ok, msg = super().checkParameterValues(parameters, context)
        if not ok:
            return ok, msg
        ok, msg = self.check_rasters(self.parameterAsLayerList(parameters, "RASTERS", context))
        if not ok:
            return ok, msg
        ok, msg = self.check_weights(parameters, context)
        if not ok:
            return ok, msg
        tags_file, layer = self.tags_inputs(parameters, context)
        if not tags_file and layer is None:
            return False, self.tr(NO_TAGS)
        if tags_file and not os.path.isfile(tags_file):
            return False, self.tr(f"tags file not found: {tags_file}")
        if not tags_file and layer.isEditable() and layer.isModified():
            # rs-wsss reads the file: labels typed but not saved would be silently missing
            return False, self.tr(
                f"the tag grid '{layer.name()}' has unsaved edits: save them (Toggle Editing → Save "
                "Layer Edits), then run again"
            )
        labels = tag_labels(tags_file, None if tags_file else layer)
        if labels is None:
            return False, self.tr(
                "the tags have no 'labels' field: make them with 'Create tag grid' or 'Tags from vector layer'"
            )
        if all(empty_label(v) for v in labels):
            return False, self.tr(
                f"every tile's labels are empty ({len(labels)} tiles): training would learn "
                "background only. Type the classes present in each tile (e.g. building;road) into the "
                "labels field of the tag grid, save it, and run again"
            )
        return True, ""

    def process(self, parameters, context, feedback):
        rasters = [self.raster_file(l, feedback) for l in self.parameterAsLayerList(parameters, "RASTERS", context)]
        tags, layer = self.tags_inputs(parameters, context)
        if not tags:
            tags = self.parameterAsCompatibleSourceLayerPath(
                parameters, "TAGS_LAYER", context, ["gpkg"], "gpkg", feedback
            )
        out = self.kept_output(
            self.parameterAsFileOutput(parameters, "OUTPUT", context), [tags, *rasters], "model", ".pt", feedback
        )
        args = [
            "train",
            "--tags",
            tags,
            *rasters,
            "-o",
            out,
            "--classes",
            self.class_set(parameters, context),
            "--device",
            DEVICES[self.parameterAsEnum(parameters, "DEVICE", context)],
        ]
        if not self.parameterAsBool(parameters, "WRITE_REPORT", context):
            args += ["--no-report"]
        for key, opt in (("ITERS", "--iters"), ("BATCH", "--batch")):
            if parameters.get(key) not in (None, ""):
                args += [opt, self.parameterAsInt(parameters, key, context)]
        args += self.prior_args(parameters, context, "train")
        args += self.weights_args(parameters, context) + self.test_option_args(parameters, context)
        run_cli(args, feedback)
        result = {"OUTPUT": out}
        report = os.path.splitext(out)[0] + ".report.html"
        if os.path.isfile(report):  # the CLI's training report, where it writes one: opens from Results Viewer
            result["REPORT"] = report
            self.name_report(f"{os.path.splitext(os.path.basename(out))[0]} · training")
            feedback.pushInfo(f"report: {report}")
        return result
