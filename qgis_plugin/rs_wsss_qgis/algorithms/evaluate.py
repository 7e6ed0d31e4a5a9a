import csv
import json
import os

from qgis.core import (
    QgsProcessingOutputNumber,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterRasterLayer,
)

from ..layers import ResultLayer
from ..runner import run_cli
from .base import RsWsssAlgorithm


class EvaluateAlgorithm(RsWsssAlgorithm):
    GROUP, TITLE = "Evaluation", "Evaluate"
    HELP = (
        "Per-class IoU and F1, mIoU and overall accuracy of a predicted class raster against a ground-truth raster "
        "of the same area. The metrics table loads in the project; mIoU and OA are also outputs.\n"
        "Worked example: Predicted class raster = the class raster from 'Segment raster' (e.g. 'top_potsdam_2_10 · "
        "model · classes'), Ground truth raster = the scene's label image (colour-coded masks are decoded with the "
        "class set), class set potsdam → metrics.csv.\n"
        "Command line equivalent: rs-wsss evaluate pred.tif gt.tif --classes potsdam"
    )

    def name(self):
        return "evaluate"

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer("PREDICTION", self.tr("Predicted class raster")))
        self.addParameter(QgsProcessingParameterRasterLayer("GROUND_TRUTH", self.tr("Ground truth raster")))
        self.addParameter(QgsProcessingParameterEnum("CLASSES", self.tr("Class set"), self.class_set_choices(), defaultValue=self.default_class_set()))
        self.addParameter(QgsProcessingParameterFileDestination("OUTPUT", self.tr("Metrics table"), "CSV (*.csv)"))
        self.addOutput(QgsProcessingOutputNumber("MIOU", self.tr("mIoU")))
        self.addOutput(QgsProcessingOutputNumber("OA", self.tr("Overall accuracy")))

    def checkParameterValues(self, parameters, context):  # noqa: N802
        ok, msg = super().checkParameterValues(parameters, context)
        if not ok:
            return ok, msg
        pred = self.parameterAsRasterLayer(parameters, "PREDICTION", context)
        gt = self.parameterAsRasterLayer(parameters, "GROUND_TRUTH", context)
        ok, msg = self.check_rasters([pred, gt])
        if ok and pred is not None and gt is not None and pred.source() == gt.source():
            return False, self.tr(
                "the prediction and the ground truth are the same layer: pick the ground-truth "
                "labels as 'Ground truth raster'"
            )
        return ok, msg

    def process(self, parameters, context, feedback):
        pred = self.raster_file(self.parameterAsRasterLayer(parameters, "PREDICTION", context), feedback)
        gt = self.raster_file(self.parameterAsRasterLayer(parameters, "GROUND_TRUTH", context), feedback)
        res = json.loads(
            run_cli(
                [
                    "evaluate",
                    pred,
                    gt,
                    "--classes",
                    self.class_set(parameters, context),
                    "--json",
                ],
                feedback,
                first_stage="comparing",
            )
        )
        out = self.parameterAsFileOutput(parameters, "OUTPUT", context)
        with open(out, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["class", "iou", "f1", "gt_pixels"])
            for name, m in res["per_class"].items():
                w.writerow([name, m["iou"], m["f1"], m["pixels"]])
            w.writerow(["mean", res["mIoU"], res["mF1"], res["pixels"]])
        feedback.pushInfo(f"mIoU {res['mIoU']}  OA {res['OA']}")
        title = f"metrics {os.path.splitext(os.path.basename(pred))[0]} vs {os.path.splitext(os.path.basename(gt))[0]}"
        ResultLayer.load(context, out, title, lambda l: None)
        return {"OUTPUT": out, "MIOU": res["mIoU"] or 0.0, "OA": res["OA"] or 0.0}
