import os

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
from ..runner import listing, run_cli
from .base import RsWsssAlgorithm, cli_default, cli_label, is_temporary

def _rasters(alg, parameters, context, feedback):
    return [alg.raster_file(l, feedback) for l in alg.parameterAsLayerList(parameters, "RASTERS", context)]


def class_names(class_set):
    """The class names of a packaged set (background excluded), as the CLI lists them; [] if unknown."""
    found = next((s for s in (listing() or {}).get("class_sets", []) if s["name"] == class_set), None)
    return [c["name"] for c in found["classes"]] if found else []


class TagGridAlgorithm(RsWsssAlgorithm):
    GROUP, TITLE = "Tags", "Create tag grid"
    HELP = (
        "An editable grid of tiles over your rasters with an empty 'labels' field: the weak labels rs-wsss trains "
        "from. The grid is written beside the first raster (a real file, not a temporary one) as a GeoPackage and "
        "loads as yellow outlines labelled with each tile's classes.\n"
        "Worked example:\n"
        "1. Select your orthophotos as Rasters, the tile size, class set landcover. Run.\n"
        "2. Open the grid's attribute table, toggle editing, and for each tile pick what it contains from the list "
        "(building, road, building;road …; background only: leave it empty). Save the edits.\n"
        "3. Run 'Train from tile tags' with the grid as 'Tag grid layer'.\n"
        "Image paths in the grid are stored relative to the grid file, so the grid and the rasters can be moved "
        "together. Command line equivalent: rs-wsss tags template ortho/*.tif -o tags.gpkg"
    )

    def name(self):
        return "taggrid"

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterMultipleLayers("RASTERS", self.tr("Rasters"), QgsProcessing.TypeRaster))
        self.addParameter(
            QgsProcessingParameterEnum(
                "CLASSES", self.tr("Class set (the list to pick labels from)"), self.class_set_choices(), defaultValue=self.default_class_set()
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                "TILE", self.tr(cli_label("Tile size", "tags template", "--tile")),
                defaultValue=cli_default("tags template", "--tile"), minValue=32,
            )
        )
        self.addParameter(
            QgsProcessingParameterVectorDestination(
                "OUTPUT", self.tr("Tag grid (default: beside the first raster)"), type=QgsProcessing.TypeVectorPolygon
            )
        )

    def checkParameterValues(self, parameters, context):  # noqa: N802
        ok, msg = super().checkParameterValues(parameters, context)
        asked = self.parameterAsOutputLayer(parameters, "OUTPUT", context)
        if ok and asked and not is_temporary(asked) and not asked.lower().endswith(".gpkg"):
            return False, self.tr(f"Tag grid: {os.path.basename(asked)} must be a GeoPackage (.gpkg), which keeps "
                                  "the labels you type")
        return self.check_rasters(self.parameterAsLayerList(parameters, "RASTERS", context)) if ok else (ok, msg)

    def process(self, parameters, context, feedback):
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
        names = class_names(self.class_set(parameters, context))
        move_load(context, asked, out)  # a temporary output became a real file: QGIS must load that one instead
        name = f"{os.path.splitext(os.path.basename(out))[0]} (tag grid: fill in labels)"
        ResultLayer.attach(context, out, name, lambda l: style_tag_grid(l, names))
        return {"OUTPUT": out}


class TagsFromVectorAlgorithm(RsWsssAlgorithm):
    GROUP, TITLE = "Tags", "Tags from vector layer"
    HELP = (
        "Tile tags from existing polygons or points with a class field (any CRS): a tile gets a class when that "
        "class's features cover more than 'Minimum fraction' of it (any overlap when 0) or a point lies in it. The "
        "tags table loads in the project.\n"
        "Worked example: OpenStreetMap buildings saved as buildings.gpkg with a field 'building' whose values are "
        "yes/no: Rasters = your orthophotos, Labelled features = buildings.gpkg, Class field = building, Field "
        "values = yes=building, class set landcover → tags.csv, then 'Train from tile tags' with tags.csv.\n"
        "Command line equivalent: rs-wsss tags from-vector ortho/*.tif --labels buildings.gpkg --field building "
        "--value-map yes=building --classes landcover -o tags.csv"
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
        self.addParameter(QgsProcessingParameterEnum("CLASSES", self.tr("Class set"), self.class_set_choices(), defaultValue=self.default_class_set()))
        self.addParameter(
            QgsProcessingParameterNumber(
                "TILE", self.tr(cli_label("Tile size", "tags template", "--tile")),
                defaultValue=cli_default("tags template", "--tile"), minValue=32,
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                "MIN_FRACTION",
                self.tr("Minimum fraction of a tile (0: any overlap)"),
                QgsProcessingParameterNumber.Double,
                defaultValue=cli_default("tags from-vector", "--min-fraction"),
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

    def process(self, parameters, context, feedback):
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
                self.class_set(parameters, context),
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
