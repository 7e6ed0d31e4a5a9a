"""Run under QGIS's own Python: start a long rs-wsss job through the plugin's runner and cancel it from a QgsFeedback.
Prints one JSON line: seconds from cancel to return, and whether the runner raised."""

import json
import os
import sys
import threading
import time

from qgis.core import QgsApplication, QgsProcessingException, QgsProcessingFeedback

QgsApplication.setPrefixPath("/usr", True)
app = QgsApplication([], False)
app.initQgis()
sys.path.insert(0, sys.argv[1])  # qgis_plugin/
from rs_wsss_qgis.runner import run_cli  # noqa: E402

feedback = QgsProcessingFeedback()
cancelled_at = {}


def cancel_when_running():
    while feedback.progress() <= 0:  # wait until tiles are being segmented
        time.sleep(0.05)
    time.sleep(1.0)
    cancelled_at["t"] = time.perf_counter()
    feedback.cancel()


threading.Thread(target=cancel_when_running, daemon=True).start()
raised = False
try:
    run_cli(sys.argv[2:], feedback)
except QgsProcessingException:
    raised = True
print(
    json.dumps(
        {
            "stop_seconds": time.perf_counter() - cancelled_at.get("t", time.perf_counter()),
            "raised": raised,
            "progress": feedback.progress(),
        }
    ),
    flush=True,
)
app.exitQgis()
os._exit(0)
