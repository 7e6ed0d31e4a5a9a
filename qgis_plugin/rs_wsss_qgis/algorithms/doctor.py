import json

from qgis.core import QgsProcessingException, QgsProcessingOutputBoolean, QgsProcessingOutputString

from ..runner import run_cli
from .base import RsWsssAlgorithm


class DoctorAlgorithm(RsWsssAlgorithm):
    GROUP, TITLE = "Set-up", "Check installation"
    HELP = (
        "Runs 'rs-wsss doctor' and lists what it finds: torch and CUDA (and why the GPU would not be used), the CPU "
        "and the precision 'auto' picks, GDAL/PROJ/rasterio, where each backbone's weights resolve from (with the "
        "Backbone weights given here, default: the provider setting), and whether the cache and temporary folders "
        "are writable.\n"
        "It fails, naming the fix, when rs-wsss cannot run; a machine without a GPU is usable.\n"
        "Command line equivalent: rs-wsss doctor --weights ~/weights"
    )

    def name(self):
        return "doctor"

    def initAlgorithm(self, config=None):  # noqa: N802
        self.add_weights()
        self.addOutput(QgsProcessingOutputBoolean("USABLE", self.tr("Usable")))
        self.addOutput(QgsProcessingOutputString("REPORT", self.tr("What was checked")))

    def checkParameterValues(self, parameters, context):  # noqa: N802
        ok, msg = super().checkParameterValues(parameters, context)
        return self.check_weights(parameters, context) if ok else (ok, msg)

    def process(self, parameters, context, feedback):
        args = ["doctor", "--json", *self.weights_args(parameters, context)]
        try:
            out = run_cli(args, feedback, first_stage="checking")
        except QgsProcessingException as exc:  # exit 2: the report is still on stdout, the fix in the error
            out, failure = getattr(exc, "stdout", ""), str(exc)
        else:
            failure = None
        report = json.loads(out) if out.strip().startswith("{") else {"usable": False, "checks": []}
        lines = []
        for c in report["checks"]:
            mark = "ok" if c["ok"] else ("FAIL" if c["required"] else "--")
            line = f"{mark:<5}{c['name']}: {c['found']}" + (f" → {c['fix']}" if not c["ok"] and c["fix"] else "")
            lines.append(line)
            (feedback.pushInfo if c["ok"] or not c["required"] else feedback.pushWarning)(line)
        if failure:
            raise QgsProcessingException(failure)
        return {"USABLE": bool(report["usable"]), "REPORT": "\n".join(lines)}
