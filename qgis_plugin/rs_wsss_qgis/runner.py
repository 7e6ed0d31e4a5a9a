"""Start the rs-wsss CLI of a separate environment as a subprocess (torch never runs inside QGIS's Python)."""

import json
import os
import shutil
import signal
import subprocess
import threading
import time

from qgis.core import QgsProcessingException, QgsSettings

SETTINGS_KEY = "rs_wsss/cli_path"
ENV_KEY = "RS_WSSS_CLI"
INSTALL_HINT = ("rs-wsss command not found: install rs-wsss in its own environment (git clone …; make install) and "
                "set its path (…/.venv/bin/rs-wsss) in the environment variable RS_WSSS_CLI or the QGIS setting "
                "'rs_wsss/cli_path'")
CLASS_SETS = ["landcover", "potsdam", "isaid", "loveda"]


def find_cli():
    """Plugin setting → $RS_WSSS_CLI → PATH → a .venv next to the plugin's repository."""
    candidates = [QgsSettings().value(SETTINGS_KEY, "", type=str), os.environ.get(ENV_KEY, ""), shutil.which("rs-wsss") or ""]
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    candidates.append(os.path.join(repo, ".venv", "bin", "rs-wsss"))
    for c in candidates:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    raise QgsProcessingException(INSTALL_HINT)


def clean_env():
    """The subprocess must not inherit QGIS's Python or Qt setup (its numpy would clash with the engine's)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "QGIS_", "QT_", "GDAL_DRIVER_PATH", "PROJ_LIB")) and k != "LD_LIBRARY_PATH"}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_cli(args, feedback, poll=0.1, grace=5.0):
    """Run ``rs-wsss --progress-json ARGS``; progress lines drive the feedback bar, other lines go to the log.

    Cancelling terminates the process (it cleans its temporary outputs on SIGTERM), then kills it after ``grace`` s.
    Returns stdout; raises QgsProcessingException with the CLI's own one-line error on failure."""
    cmd = [find_cli(), "--progress-json"] + [str(a) for a in args]
    feedback.pushInfo("$ " + " ".join(cmd))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env(),
                            start_new_session=True)
    errors, out = [], []

    def read_stderr():
        for line in proc.stderr:
            line = line.rstrip()
            if line.startswith("{"):
                try:
                    p = json.loads(line)
                    feedback.setProgressText(p["stage"])
                    feedback.setProgress(100.0 * p["done"] / max(1, p["total"]))
                    continue
                except (ValueError, KeyError):
                    pass
            if line:
                errors.append(line)
                feedback.pushInfo(line)

    def read_stdout():
        for line in proc.stdout:
            out.append(line)

    threads = [threading.Thread(target=read_stderr, daemon=True), threading.Thread(target=read_stdout, daemon=True)]
    for t in threads:
        t.start()
    while proc.poll() is None:
        if feedback.isCanceled():
            stop(proc, grace)
            raise QgsProcessingException("cancelled: rs-wsss was stopped and left no output")
        time.sleep(poll)
    for t in threads:
        t.join(timeout=5)
    if proc.returncode != 0:
        msg = next((e for e in reversed(errors) if "error" in e), errors[-1] if errors else f"exit code {proc.returncode}")
        raise QgsProcessingException(msg)
    return "".join(out)


def stop(proc, grace):
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass
