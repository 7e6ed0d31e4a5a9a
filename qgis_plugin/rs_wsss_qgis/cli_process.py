"""Find, start and stop the rs-wsss CLI, and turn its progress lines into what QGIS shows.

Plain Python with no QGIS import, so the platform-dependent parts (Windows vs POSIX) are unit-tested with the platform
faked (tests/qgis/test_cli_process.py)."""

import json
import os
import shutil
import signal
import subprocess

ENV_KEY = "RS_WSSS_CLI"
# Windows process-creation flags (subprocess defines the names only on Windows)
CREATE_NEW_PROCESS_GROUP = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0x00000200)
CREATE_NO_WINDOW = getattr(subprocess, "CREATE_NO_WINDOW", 0x08000000)
# what the engine's environment must not inherit from QGIS: its Python, Qt, and GDAL/PROJ data of another version
INHERITED_PREFIXES = ("PYTHON", "QGIS_", "QT_", "GDAL_DATA", "GDAL_DRIVER_PATH", "PROJ_LIB", "PROJ_DATA")
INSTALL_HINT = (
    "rs-wsss command not found: install rs-wsss in its own environment (git clone …; make install), then "
    "set its path (…/.venv/bin/rs-wsss, or …\\.venv\\Scripts\\rs-wsss.exe on Windows) under Processing → "
    "Options → Providers → rs-wsss → 'rs-wsss executable', or in the environment variable RS_WSSS_CLI"
)


def venv_executable(folder, os_name=None):
    """The rs-wsss launcher inside a virtual environment: bin/rs-wsss (POSIX) or Scripts\\rs-wsss.exe (Windows)."""
    os_name = os_name or os.name
    if os_name == "nt":
        return os.path.join(folder, "Scripts", "rs-wsss.exe")
    return os.path.join(folder, "bin", "rs-wsss")


def expand(path, os_name=None):
    """A setting may name the executable itself, its virtual environment or the repository holding ``.venv``."""
    out = [path, venv_executable(path, os_name), venv_executable(os.path.join(path, ".venv"), os_name)]
    if (os_name or os.name) == "nt" and not path.lower().endswith(".exe"):
        out.insert(1, path + ".exe")
    return out


def is_executable(path, os_name=None):
    if not path or not os.path.isfile(path):
        return False
    if (os_name or os.name) == "nt":  # no execute bit on Windows: the extension decides
        return path.lower().endswith((".exe", ".bat", ".cmd"))
    return os.access(path, os.X_OK)


def find_cli(setting, environ, repo, os_name=None, which=shutil.which):
    """The rs-wsss executable: provider setting → $RS_WSSS_CLI → PATH → a ``.venv`` in the plugin's repository.

    A setting or variable that names something that is not an executable is an error (the user asked for it), not a
    reason to fall through silently. Returns ``(path, None)`` or ``(None, message)``."""
    for source, value in (
        ("the provider setting 'rs-wsss executable'", setting),
        (f"${ENV_KEY}", environ.get(ENV_KEY, "")),
    ):
        value = (value or "").strip()
        if value:
            found = next((c for c in expand(value, os_name) if is_executable(c, os_name)), None)
            if found:
                return found, None
            return None, (
                f"{source} is '{value}', which is not an rs-wsss executable (nor a virtual environment "
                f"holding one); fix it or clear it. {INSTALL_HINT}"
            )
    on_path = which("rs-wsss") or ""
    if is_executable(on_path, os_name):
        return on_path, None
    for c in (venv_executable(os.path.join(repo, ".venv"), os_name),):
        if is_executable(c, os_name):
            return c, None
    return None, INSTALL_HINT


def user_error(line):
    """True for the CLI's one-line error (``rs-wsss: error: …``)."""
    return line.startswith("rs-wsss: error: ")


def clean_env(environ):
    """The environment for the CLI: QGIS's Python and Qt setup left out (its numpy would clash with the engine's)."""
    env = {
        k: v
        for k, v in environ.items()
        if not k.startswith(INHERITED_PREFIXES) and k not in ("LD_LIBRARY_PATH", ENV_KEY)
    }
    env["PYTHONUNBUFFERED"] = "1"
    return env


def popen_options(os_name=None):
    """Start the CLI in its own process group so that Cancel reaches it and every child it starts (torchrun, Dask).

    On Windows also without a console window (QGIS is a GUI program: a console would pop up); ``stop`` then asks
    through stdin, which the caller opens as a pipe."""
    if (os_name or os.name) == "nt":
        return {"creationflags": CREATE_NEW_PROCESS_GROUP | CREATE_NO_WINDOW}
    return {"start_new_session": True}


def stop(proc, grace, os_name=None, killpg=None):
    """Ask the CLI to stop (it removes its temporary outputs), then force it after ``grace`` seconds.

    POSIX: SIGTERM, then SIGKILL, to the whole process group. Windows, where QGIS has no console to send Ctrl-Break
    through: the line ``cancel`` on the CLI's stdin (it unwinds as on Ctrl-C), then ``terminate()``."""
    if (os_name or os.name) == "nt":
        try:
            proc.stdin.write("cancel\n")
            proc.stdin.flush()
            proc.wait(timeout=grace)
        except (subprocess.TimeoutExpired, OSError, ValueError, AttributeError):
            proc.terminate()
            proc.wait()
        return
    killpg = killpg or os.killpg
    try:
        killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        killpg(proc.pid, getattr(signal, "SIGKILL", signal.SIGTERM))
        proc.wait()
    except ProcessLookupError:
        pass


# stages the CLI reports with --progress-json, and how QGIS words them
STAGE_WORDS = {
    "segment": ("tile", "segmenting"),
    "train": ("step", "training"),
    "cache": ("view", "caching features"),
    "vectorize": (None, "vectorizing"),
}
# share of the bar for stages that follow each other in one command
STAGE_SPAN = {"segment": (0.0, 95.0), "vectorize": (95.0, 100.0)}


class ProgressLines:
    """Turns ``{"stage", "done", "total"}`` lines into a progress text, a percentage and, only when the stage changes,
    one log line (a large raster sends thousands of updates; the log must not repeat them)."""

    START = "loading model"

    def __init__(self):
        self.stage = None

    def parse(self, line):
        """``(text, percent, log_line_or_None)`` for a progress line; None for any other line."""
        if not line.startswith("{"):
            return None
        try:
            p = json.loads(line)
            stage, done, total = str(p["stage"]), int(p["done"]), max(1, int(p["total"]))
        except (ValueError, KeyError, TypeError):
            return None
        unit, verb = STAGE_WORDS.get(stage, (None, stage))
        text = f"{unit} {done}/{total}" if unit else verb
        lo, hi = STAGE_SPAN.get(stage, (0.0, 100.0))
        percent = lo + (hi - lo) * min(done, total) / total
        log = None
        if stage != self.stage:
            self.stage = stage
            log = f"{verb} ({total} {unit}s)" if unit else verb
        return text, percent, log
