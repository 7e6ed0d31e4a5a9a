"""Run under QGIS's own Python (/usr/bin/python3): load the provider as QGIS does, exercise its setting and checks,
run algorithms with results loaded into a project as the Processing dialog would, and print what a user would see
as one JSON line. Arguments: qgis_plugin/ folder, a work folder, the shared data folder, the rs-wsss executable."""

import json
import os
import shutil
import sys

from qgis.core import (
    QgsApplication,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProject,
    QgsRasterLayer,
    QgsSettings,
    QgsVectorLayer,
)

QgsApplication.setPrefixPath("/usr", True)
app = QgsApplication([], False)
app.initQgis()
sys.path[:0] = [sys.argv[1], "/usr/share/qgis/python/plugins"]
plugin_dir, work, data, cli = sys.argv[1:5]
from processing.core.Processing import Processing  # noqa: E402
from processing.core.ProcessingConfig import ProcessingConfig  # noqa: E402

Processing.initialize()
import processing  # noqa: E402

facts, messages = {}, []
LANDCOVER = 1  # the listed class sets are isaid, landcover, loveda, potsdam (checked below)
QgsApplication.messageLog().messageReceived.connect(lambda msg, tag, level: messages.append((tag, msg)))

from rs_wsss_qgis.provider import RsWsssProvider  # noqa: E402
from rs_wsss_qgis.runner import SETTING, SETTING_KEY  # noqa: E402

# 1. the setting: a wrong path is reported when the provider loads; a right one (the venv folder) is used
os.environ.pop("RS_WSSS_CLI", None)
QgsSettings().setValue(SETTING_KEY, os.path.join(work, "no-such-rs-wsss"))
provider = RsWsssProvider()
QgsApplication.processingRegistry().addProvider(provider)
app.processEvents()
facts["setting_registered"] = (
    SETTING in ProcessingConfig.settings and ProcessingConfig.settings[SETTING].group == "rs-wsss"
)
facts["bad_setting_warning"] = provider.warningMessage()
facts["bad_setting_logged"] = any(tag == "rs-wsss" and "no-such-rs-wsss" in msg for tag, msg in messages)
ProcessingConfig.setSettingValue(SETTING, os.path.dirname(os.path.dirname(cli)))  # the venv folder
facts["good_setting_warning"] = provider.check_cli() and provider.warningMessage()
facts["cli_found_from_setting"] = provider.check_cli()

scene = os.path.join(work, "scene.tif")  # a copy: outputs written beside the raster must not land in the data pack
shutil.copy(os.path.join(data, "spacenet", "sample_geotiff.tif"), scene)
project = QgsProject.instance()


def check(alg_id, params):
    alg = QgsApplication.processingRegistry().createAlgorithmById(alg_id)
    context = QgsProcessingContext()
    context.setProject(project)
    ok, msg = alg.checkParameterValues(params, context)
    return msg if not ok else ""


# 2. checks before running
web = QgsRasterLayer("type=xyz&url=http://127.0.0.1:9/%7Bz%7D/%7Bx%7D/%7By%7D.png&zmax=19&zmin=0", "tiles", "wms")
project.addMapLayer(web)
facts["web_layer"] = check(
    "rs_wsss:segment", {"INPUT": web.id(), "OUTPUT_RASTER": "TEMPORARY_OUTPUT", "OUTPUT_VECTOR": "TEMPORARY_OUTPUT"}
)
facts["bad_scales"] = check(
    "rs_wsss:segment",
    {"INPUT": scene, "SCALES": "1,x", "OUTPUT_RASTER": "TEMPORARY_OUTPUT", "OUTPUT_VECTOR": "TEMPORARY_OUTPUT"},
)


def run(alg_id, params):
    feedback = QgsProcessingFeedback()
    log = []
    feedback.pushInfo = lambda text: log.append(text)
    feedback.pushWarning = lambda text: log.append("WARNING " + text)
    feedback.setProgressText = lambda text: log.append("PROGRESS " + text)  # Processing logs each one
    result = processing.runAndLoadResults(alg_id, params, feedback=feedback)
    return result, log


# the mask, where the CLI has no --aoi: a VRT cut to the polygons (a triangle over the western half), nodata outside
from osgeo import gdal, ogr, osr  # noqa: E402
from rs_wsss_qgis.algorithms.clip import clip_to_vrt  # noqa: E402

ds = gdal.Open(scene)
x0, dx, _, y0, _, dy = ds.GetGeoTransform()
x1, y1 = x0 + dx * ds.RasterXSize, y0 + dy * ds.RasterYSize
srs = osr.SpatialReference(wkt=ds.GetProjection())
mask_path = os.path.join(work, "mask.gpkg")
mask_ds = ogr.GetDriverByName("GPKG").CreateDataSource(mask_path)
mask_layer = mask_ds.CreateLayer("mask", srs, ogr.wkbPolygon)
feat = ogr.Feature(mask_layer.GetLayerDefn())
xm = (x0 + x1) / 2
feat.SetGeometry(ogr.CreateGeometryFromWkt(f"POLYGON(({x0} {y0},{xm} {y0},{x0} {y1},{x0} {y0}))"))
mask_layer.CreateFeature(feat)
mask_ds = mask_layer = feat = None
vrt = gdal.Open(clip_to_vrt(scene, None, mask_path))
band = vrt.GetRasterBand(1)
facts["mask_vrt"] = {
    "size": [vrt.RasterXSize, vrt.RasterYSize],
    "scene": [ds.RasterXSize, ds.RasterYSize],
    "nodata": band.GetNoDataValue(),
    "inside": float(band.ReadAsArray(2, 2, 1, 1)[0, 0]),
    "outside": float(band.ReadAsArray(vrt.RasterXSize - 3, vrt.RasterYSize - 3, 1, 1)[0, 0]),
    "src_inside": float(ds.GetRasterBand(1).ReadAsArray(2, 2, 1, 1)[0, 0]),
}
vrt = band = None

# 3. tag grid to a temporary output: a real file beside the raster, loaded as labelled outlines with a class list
result, log = run("rs_wsss:taggrid", {"RASTERS": [scene], "TILE": 256, "CLASSES": LANDCOVER, "OUTPUT": "TEMPORARY_OUTPUT"})
grid = [l for l in project.mapLayers().values() if isinstance(l, QgsVectorLayer) and "tag grid" in l.name()]
facts["grid_path"] = result["OUTPUT"]
facts["train_no_tags"] = check("rs_wsss:train", {"RASTERS": [scene], "OUTPUT": "TEMPORARY_OUTPUT"})
facts["train_empty_labels"] = check(
    "rs_wsss:train", {"RASTERS": [scene], "TAGS_FILE": result["OUTPUT"], "OUTPUT": "TEMPORARY_OUTPUT"}
)
facts["evaluate_same_layer"] = check(
    "rs_wsss:evaluate", {"PREDICTION": scene, "GROUND_TRUTH": scene, "OUTPUT": "TEMPORARY_OUTPUT"}
)
if grid:
    g = grid[0]
    sym = g.renderer().symbol().symbolLayer(0)
    widget = g.editorWidgetSetup(g.fields().indexOf("labels"))
    facts["grid"] = {
        "name": g.name(),
        "fill_alpha": sym.fillColor().alpha(),
        "brush": int(sym.brushStyle()),
        "labels_on": g.labelsEnabled(),
        "label_field": g.labeling().settings().fieldName,
        "widget": widget.type(),
        "choices": [list(m.keys())[0] for m in widget.config().get("map", [])],
    }

    # labels typed but not saved: rs-wsss reads the file, so training is refused until they are saved
    g.startEditing()
    g.changeAttributeValue(next(g.getFeatures()).id(), g.fields().indexOf("labels"), "building")
    train_params = {"RASTERS": [scene], "TAGS_LAYER": g.id(), "CLASSES": LANDCOVER, "OUTPUT": "TEMPORARY_OUTPUT"}
    facts["unsaved_edits"] = check("rs_wsss:train", train_params)
    g.commitChanges()
    facts["saved_edits"] = check("rs_wsss:train", train_params)

# 4. segment, zero-shot, random tiny weights, extent = the north-west quarter: grouped, named, see-through
e = QgsRasterLayer(scene, "s").extent()
extent = f"{e.xMinimum()},{(e.xMinimum() + e.xMaximum()) / 2},{(e.yMinimum() + e.yMaximum()) / 2},{e.yMaximum()}"
result, log = run(
    "rs_wsss:segment",
    {
        "INPUT": scene,
        "CLASSES": LANDCOVER,
        "TILE": 128,
        "SCALES": "1",
        "CRF": 2,
        "EXTENT": extent, "MASK": mask_path,
        "WEIGHTS": "random (shows the mechanics only)",
        "TINY": True,
        "OUTPUT_RASTER": os.path.join(work, "classes.tif"),
        "OUTPUT_VECTOR": os.path.join(work, "polys.gpkg"),
        "OUTPUT_CONFIDENCE": os.path.join(work, "conf.tif"),
    },
)
facts["segment_log"] = log
cls = gdal.Open(os.path.join(work, "classes.tif"))
arr = cls.GetRasterBand(1).ReadAsArray()
facts["classes_nodata_fraction"] = float((arr == cls.GetRasterBand(1).GetNoDataValue()).mean())
cls = None
root = project.layerTreeRoot()
groups = [(n.name(), [c.layer().name() for c in n.findLayers()]) for n in root.children() if n.nodeType() == 0]
facts["groups"] = groups
for l in project.mapLayers().values():
    if l.name().endswith("· classes"):
        r = l.renderer()
        facts["classes_raster"] = {
            "opacity": r.opacity(),
            "type": r.type(),
            "alphas": {c.label: c.color.alpha() for c in r.classes()},
        }
    elif l.name().endswith("· polygons"):
        cats = l.renderer().categories()
        facts["polygons"] = {
            "opacity": l.opacity(),
            "background_shown": [c.renderState() for c in cats if c.value() == "background"],
            "fill_alpha": max(
                c.symbol().symbolLayer(0).fillColor().alpha() * (c.symbol().symbolLayer(0).brushStyle() != 0)
                for c in cats
            ),
        }
    elif l.name().endswith("· confidence"):
        r = l.renderer()
        facts["confidence"] = {
            "type": r.type(),
            "min": r.classificationMin(),
            "max": r.classificationMax(),
            "opacity": r.opacity(),
        }

# 5. tags from vector and evaluate load their tables
labels = os.path.join(work, "labels.geojson")
shutil.copy(os.path.join(data, "spacenet", "geotiff_labels.geojson"), labels)
result, log = run(
    "rs_wsss:tagsfromvector",
    {
        "RASTERS": [scene],
        "VECTOR": labels,
        "FIELD": "building",
        "VALUE_MAP": "yes=building",
        "CLASSES": LANDCOVER,
        "TILE": 256,
        "OUTPUT": os.path.join(work, "tags.csv"),
    },
)
facts["tables"] = []
shutil.copy(os.path.join(work, "classes.tif"), os.path.join(work, "gt.tif"))
result, log = run(
    "rs_wsss:evaluate",
    {
        "PREDICTION": os.path.join(work, "classes.tif"),
        "GROUND_TRUTH": os.path.join(work, "gt.tif"),
        "CLASSES": LANDCOVER,
        "OUTPUT": os.path.join(work, "metrics.csv"),
    },
)
facts["tables"] = [
    (l.name(), l.featureCount())
    for l in project.mapLayers().values()
    if isinstance(l, QgsVectorLayer) and not l.isSpatial()
]
print(json.dumps(facts, default=str), flush=True)
app.exitQgis()
os._exit(0)
