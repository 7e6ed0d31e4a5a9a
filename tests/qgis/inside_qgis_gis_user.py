"""Run under QGIS's own Python (/usr/bin/python3): what a GIS user meets (issue 26), through the provider's Python
API. Prints one JSON line of facts. Arguments: a plugins folder holding a *symlink* to rs_wsss_qgis, a work folder,
the shared data folder, the rs-wsss executable."""

import json
import os
import shutil
import sys
import threading
import time

from qgis.core import (
    QgsApplication,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProject,
    QgsRasterLayer,
    QgsSettings,
    QgsVectorLayer,
)

QgsApplication.setPrefixPath("/usr", True)
app = QgsApplication([], False)
app.initQgis()
plugins, work, data, cli = sys.argv[1:5]
sys.path[:0] = [plugins, "/usr/share/qgis/python/plugins"]
from processing.core.Processing import Processing  # noqa: E402

Processing.initialize()
import processing  # noqa: E402
from rs_wsss_qgis import runner  # noqa: E402
from rs_wsss_qgis.provider import RsWsssProvider  # noqa: E402

facts = {"repo": runner.REPO}  # found through the symlinked plugin folder (realpath)
QgsSettings().setValue(runner.SETTING_KEY, cli)
QgsSettings().setValue(runner.WEIGHTS_SETTING_KEY, "random (shows the mechanics only)")
provider = RsWsssProvider()
QgsApplication.processingRegistry().addProvider(provider)
registry = QgsApplication.processingRegistry()

# 1. labels and defaults, read from the CLI's listing; the weights parameter and its default from the setting
params = {}
for alg_id in ("rs_wsss:segment", "rs_wsss:train", "rs_wsss:taggrid", "rs_wsss:tagsfromvector", "rs_wsss:doctor"):
    alg = registry.createAlgorithmById(alg_id)
    params[alg_id] = {
        p.name(): {"label": p.description(), "default": p.defaultValue(), "options": getattr(p, "options", lambda: None)()}
        for p in alg.parameterDefinitions()
    }
facts["params"] = params
facts["extensions"] = provider.supportedOutputVectorLayerExtensions()

scene = os.path.join(work, "scene.tif")
shutil.copy(os.path.join(data, "spacenet", "sample_geotiff.tif"), scene)
project = QgsProject.instance()
e = QgsRasterLayer(scene, "s").extent()
w = (e.xMaximum() - e.xMinimum()) / 8
corner = f"{e.xMinimum()},{e.xMinimum() + w},{e.yMaximum() - w},{e.yMaximum()}"
wider = f"{e.xMinimum()},{e.xMinimum() + 2 * w},{e.yMaximum() - w},{e.yMaximum()}"
LANDCOVER = registry.createAlgorithmById("rs_wsss:segment").default_class_set()


def seg(extent, vector, progress=None, feedback=None, **extra):
    feedback = feedback or QgsProcessingFeedback()
    if progress is not None:
        feedback.setProgressText = lambda text: progress.append(text)
    params = {"INPUT": scene, "CLASSES": LANDCOVER, "TILE": 64, "SCALES": "1", "CRF": 2, "TINY": True,
              "EXTENT": extent, "OUTPUT_RASTER": os.path.join(work, "classes.tif"),
              "OUTPUT_VECTOR": os.path.join(work, vector), "OUTPUT_CONFIDENCE": os.path.join(work, "conf.tif"),
              **extra}
    return processing.runAndLoadResults("rs_wsss:segment", params, feedback=feedback)


def tree():
    root = project.layerTreeRoot()
    out = []
    for n in root.children():
        if n.nodeType() == 0:
            out.append([n.name(), [[c.layer().name(), c.layer().source(), c.itemVisibilityChecked()]
                                   for c in n.findLayers()]])
        else:
            out.append(["(root)", [[n.layer().name(), n.layer().source(), True]]])
    return out


# 2. FlatGeobuf polygons, written as .fgb, styled by the .qml QGIS reads beside them; layer order and visibility
progress = []
result = seg(corner, "polys.fgb", progress)  # the weights: the provider setting ('random …')
facts["fgb_result"] = result.get("OUTPUT_VECTOR")
facts["progress_texts"] = progress
fresh = QgsVectorLayer(os.path.join(work, "polys.fgb"), "plain", "ogr")  # as QGIS opens it without the plugin
r = fresh.renderer()
facts["fgb_plain"] = {"valid": fresh.isValid(), "renderer": r.type(),
                      "categories": [c.label() for c in r.categories()] if hasattr(r, "categories") else []}
facts["tree_first"] = tree()
first_width = QgsRasterLayer(os.path.join(work, "classes.tif"), "w").width()
report_alg = registry.createAlgorithmById("rs_wsss:segment")
facts["report_name"] = [o.description() for o in report_alg.outputDefinitions() if o.name() == "REPORT"][0]

# 3. rerun into the same files with a wider extent: the layers reload in place, no new or empty group
seg(wider, "polys.fgb")
facts["tree_rerun"] = tree()
facts["widths"] = [first_width, QgsRasterLayer(os.path.join(work, "classes.tif"), "w").width()]
facts["loaded_widths"] = [l.width() for l in project.mapLayers().values()
                          if isinstance(l, QgsRasterLayer) and l.source().endswith("classes.tif")]

# 4. the tag grid goes to the top of the tree, not into the last run's group
processing.runAndLoadResults("rs_wsss:taggrid", {"RASTERS": [scene], "CLASSES": LANDCOVER,
                                                  "OUTPUT": os.path.join(work, "grid.gpkg")})
facts["tree_after_grid"] = tree()

# 5. no weights anywhere: the error in the dialog's terms, raised once and not also logged
QgsSettings().setValue(runner.WEIGHTS_SETTING_KEY, "")
fb = QgsProcessingFeedback()
logged = []
fb.pushInfo = lambda text: logged.append(text)
fb.reportError = lambda text, fatal=False: logged.append("ERROR " + text)
try:
    seg(corner, "noweights.gpkg", feedback=fb, TINY=False, WEIGHTS="")
    facts["weights_error"] = None
except QgsProcessingException as exc:
    facts["weights_error"] = str(exc)
facts["weights_error_logged"] = [l for l in logged if "weights" in l.lower() and not l.startswith("$ ")]

# 6. a cancel is a warning, not an error: nothing raised, nothing reported as failed, no output left
fb = QgsProcessingFeedback()
said = {"warnings": [], "errors": []}
fb.pushWarning = lambda text: said["warnings"].append(text)
fb.reportError = lambda text, fatal=False: said["errors"].append(text)


def cancel_soon():
    while fb.progress() <= 0:
        time.sleep(0.05)
    fb.cancel()


threading.Thread(target=cancel_soon, daemon=True).start()
alg = registry.createAlgorithmById("rs_wsss:segment")
context = QgsProcessingContext()
context.setProject(project)
cancel_dir = os.path.join(work, "cancel")
os.makedirs(cancel_dir)
params = {"INPUT": scene, "CLASSES": LANDCOVER, "TILE": 64, "OVERLAP": 0.75, "SCALES": "1", "CRF": 2, "TINY": True,
          "WEIGHTS": "random", "OUTPUT_RASTER": os.path.join(cancel_dir, "c.tif"),
          "OUTPUT_VECTOR": os.path.join(cancel_dir, "c.gpkg")}
try:
    res = alg.processAlgorithm(params, context, fb)
    facts["cancel"] = {"raised": False, "result": res, **said, "left": os.listdir(cancel_dir)}
except QgsProcessingException as exc:
    facts["cancel"] = {"raised": str(exc), **said, "left": os.listdir(cancel_dir)}

print(json.dumps(facts, default=str), flush=True)
os._exit(0)  # QGIS 3.22's exitQgis can crash at teardown; the answer is out
