import csv
import json

from qgis.core import (QgsProcessingOutputNumber, QgsProcessingParameterEnum, QgsProcessingParameterFileDestination,
                       QgsProcessingParameterRasterLayer)

from ..runner import CLASS_SETS, run_cli
from .base import RsWsssAlgorithm


class EvaluateAlgorithm(RsWsssAlgorithm):
    GROUP, TITLE = "Evaluation", "Evaluate"

    def name(self):
        return "evaluate"

    def shortHelpString(self):  # noqa: N802
        return self.tr("Per-class IoU and F1, mIoU and overall accuracy of a class raster against ground truth.")

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer("PREDICTION", self.tr("Predicted class raster")))
        self.addParameter(QgsProcessingParameterRasterLayer("GROUND_TRUTH", self.tr("Ground truth raster")))
        self.addParameter(QgsProcessingParameterEnum("CLASSES", self.tr("Class set"), CLASS_SETS, defaultValue=0))
        self.addParameter(QgsProcessingParameterFileDestination("OUTPUT", self.tr("Metrics table"), "CSV (*.csv)"))
        self.addOutput(QgsProcessingOutputNumber("MIOU", self.tr("mIoU")))
        self.addOutput(QgsProcessingOutputNumber("OA", self.tr("Overall accuracy")))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        pred = self.raster_file(self.parameterAsRasterLayer(parameters, "PREDICTION", context), feedback)
        gt = self.raster_file(self.parameterAsRasterLayer(parameters, "GROUND_TRUTH", context), feedback)
        res = json.loads(run_cli(["evaluate", pred, gt, "--classes",
                                  CLASS_SETS[self.parameterAsEnum(parameters, "CLASSES", context)], "--json"], feedback))
        out = self.parameterAsFileOutput(parameters, "OUTPUT", context)
        with open(out, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["class", "iou", "f1", "gt_pixels"])
            for name, m in res["per_class"].items():
                w.writerow([name, m["iou"], m["f1"], m["pixels"]])
            w.writerow(["mean", res["mIoU"], res["mF1"], res["pixels"]])
        feedback.pushInfo(f"mIoU {res['mIoU']}  OA {res['OA']}")
        return {"OUTPUT": out, "MIOU": res["mIoU"] or 0.0, "OA": res["OA"] or 0.0}
