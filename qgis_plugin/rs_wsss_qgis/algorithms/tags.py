import os
import re

from qgis.core import (
    QgsProcessing,
    QgsProcessingParameterEnum,
    QgsProcessingParameterField,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorDestination,
    QgsProcessingParameterVectorLayer,
)

from ..layers import ResultLayer, move_load, style_tag_grid
from ..runner import CLASS_SETS, run_cli
from .base import RsWsssAlgorithm

CLASS_LINE = re.compile(r"^(\S+) \[#[0-9A-Fa-f]{6}\]")


def _rasters(alg, parameters, context, feedback):
    return [alg.raster_file(l, feedback) for l in alg.parameterAsLayerList(parameters, "RASTERS", context)]


def class_names(class_set, feedback):
    """The class names of a set (background excluded), from ``rs-wsss kb show``; [] if they cannot be read."""
    try:
        out = run_cli(["kb", "show", "--classes", class_set], feedback, first_stage=None)
    except Exception:  # noqa: BLE001 (the picking list is a convenience; typing the labels still works)
        return []
    return [m.group(1) for m in map(CLASS_LINE.match, out.splitlines()) if m]


class TagGridAlgorithm(RsWsssAlgorithm):
    GROUP, TITLE = "Tags", "Create tag grid"
    HELP = (
        "An editable grid of tiles over your rasters with an empty <i>labels</i> field: the weak labels rs-wsss "
        "trains from. The grid is written beside the first raster (a real file, not a temporary one) and loads as "
        "yellow outlines labelled with each tile's classes.<br><br>"
        "<b>Worked example</b><ol>"
        "<li>Select your orthophotos as <i>Rasters</i>, tile 512, class set <i>landcover</i>. Run.</li>"
        "<li>Open the grid's attribute table, toggle editing, and for each tile pick what it contains from the "
        "list (building, road, building;road …; background only: leave it empty). Save the edits.</li>"
        "<li>Run <i>Train from tile tags</i> with the grid as <i>Tag grid layer</i>.</li></ol>"
        "Image paths in the grid are stored relative to the grid file, so the grid and the rasters can be moved "
        "together. Command line equivalent: <code>rs-wsss tags template ortho/*.tif -o tags.gpkg --tile 512</code>"
    )

    def name(self):
        return "taggrid"

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterMultipleLayers("RASTERS", self.tr("Rasters"), QgsProcessing.TypeRaster))
        self.addParameter(
            QgsProcessingParameterEnum(
                "CLASSES", self.tr("Class set (the list to pick labels from)"), CLASS_SETS, defaultValue=0
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber("TILE", self.tr("Tile size (px)"), defaultValue=512, minValue=32)
        )
        self.addParameter(
            QgsProcessingParameterVectorDestination(
                "OUTPUT", self.tr("Tag grid (default: beside the first raster)"), type=QgsProcessing.TypeVectorPolygon
            )
        )

    def checkParameterValues(self, parameters, context):  # noqa: N802
        ok, msg = super().checkParameterValues(parameters, context)
        return self.check_rasters(self.parameterAsLayerList(parameters, "RASTERS", context)) if ok else (ok, msg)

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        rasters = _rasters(self, parameters, context, feedback)
        asked = self.parameterAsOutputLayer(parameters, "OUTPUT", context)
        stem = os.path.splitext(os.path.basename(rasters[0]))[0] + "_tags"
        out = self.kept_output(asked, rasters, stem, ".gpkg", feedback)
        if not out.lower().endswith(".gpkg"):
            out = out.rsplit(".", 1)[0] + ".gpkg"
        run_cli(
            [
                "tags",
                "template",
                *rasters,
                "-o",
                out,
                "--overwrite",
                "--tile",
                self.parameterAsInt(parameters, "TILE", context),
            ],
            feedback,
            first_stage="making the grid",
        )
        names = class_names(CLASS_SETS[self.parameterAsEnum(parameters, "CLASSES", context)], feedback)
        move_load(context, asked, out)  # a temporary output became a real file: QGIS must load that one instead
        name = f"{os.path.splitext(os.path.basename(out))[0]} (tag grid: fill in labels)"
        ResultLayer.attach(context, out, name, lambda l: style_tag_grid(l, names))
        return {"OUTPUT": out}


class TagsFromVectorAlgorithm(RsWsssAlgorithm):
    GROUP, TITLE = "Tags", "Tags from vector layer"
    HELP = (
        "Tile tags from existing polygons or points with a class field (any CRS): a tile gets a class when that "
        "class's features cover more than <i>Minimum fraction</i> of it (any overlap when 0) or a point lies in it. "
        "The tags table loads in the project.<br><br>"
        "<b>Worked example</b>: OpenStreetMap buildings saved as buildings.gpkg with a field <i>building</i> whose "
        "values are yes/no: <i>Rasters</i> = your orthophotos, <i>Labelled features</i> = buildings.gpkg, "
        "<i>Class field</i> = building, <i>Field values</i> = yes=building, class set landcover, tile 512 → "
        "tags.csv, then <i>Train from tile tags</i> with tags.csv.<br>Command line equivalent: <code>rs-wsss tags "
        "from-vector ortho/*.tif --labels buildings.gpkg --field building --value-map yes=building --classes "
        "landcover -o tags.csv</code>"
    )

    def name(self):
        return "tagsfromvector"

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterMultipleLayers("RASTERS", self.tr("Rasters"), QgsProcessing.TypeRaster))
        self.addParameter(QgsProcessingParameterVectorLayer("VECTOR", self.tr("Labelled features")))
        self.addParameter(
            QgsProcessingParameterField("FIELD", self.tr("Class field"), parentLayerParameterName="VECTOR")
        )
        self.addParameter(
            QgsProcessingParameterString(
                "VALUE_MAP",
                self.tr("Field values that are not class names → class, e.g. yes=building,no=background"),
                optional=True,
            )
        )
        self.addParameter(QgsProcessingParameterEnum("CLASSES", self.tr("Class set"), CLASS_SETS, defaultValue=0))
        self.addParameter(
            QgsProcessingParameterNumber("TILE", self.tr("Tile size (px)"), defaultValue=512, minValue=32)
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                "MIN_FRACTION",
                self.tr("Minimum fraction of a tile (0: any overlap)"),
                QgsProcessingParameterNumber.Double,
                defaultValue=0.0,
                minValue=0.0,
                maxValue=1.0,
            )
        )
        self.addParameter(
            QgsProcessingParameterFileDestination("OUTPUT", self.tr("Tags"), "CSV (*.csv);;GeoPackage (*.gpkg)")
        )

    def checkParameterValues(self, parameters, context):  # noqa: N802
        ok, msg = super().checkParameterValues(parameters, context)
        return self.check_rasters(self.parameterAsLayerList(parameters, "RASTERS", context)) if ok else (ok, msg)

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        vector = self.parameterAsCompatibleSourceLayerPath(
            parameters, "VECTOR", context, ["gpkg", "shp", "geojson"], "gpkg", feedback
        )
        out = self.parameterAsFileOutput(parameters, "OUTPUT", context)
        value_map = self.parameterAsString(parameters, "VALUE_MAP", context)
        run_cli(
            [
                "tags",
                "from-vector",
                *(["--value-map", value_map] if value_map else []),
                *_rasters(self, parameters, context, feedback),
                "--labels",
                vector,
                "--field",
                self.parameterAsString(parameters, "FIELD", context),
                "--classes",
                CLASS_SETS[self.parameterAsEnum(parameters, "CLASSES", context)],
                "-o",
                out,
                "--overwrite",
                "--tile",
                self.parameterAsInt(parameters, "TILE", context),
                "--min-fraction",
                self.parameterAsDouble(parameters, "MIN_FRACTION", context),
            ],
            feedback,
            first_stage="reading the features",
        )
        name = f"{os.path.splitext(os.path.basename(out))[0]} (tile tags)"
        ResultLayer.load(context, out, name, style_tag_grid if out.lower().endswith(".gpkg") else (lambda l: None))
        return {"OUTPUT": out}
