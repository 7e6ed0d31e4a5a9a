"""Start the rs-wsss CLI of a separate environment as a subprocess (torch never runs inside QGIS's Python)."""

import json
import os
import re
import subprocess
import threading
import time

from qgis.core import QgsProcessingException, QgsSettings

from .cli_process import ProgressLines, clean_env, find_cli, popen_options, stop, user_error

SETTING = "RS_WSSS_CLI"  # Processing → Options → Providers → rs-wsss (processing's Setting, see provider.py)
SETTING_KEY = "Processing/Configuration/" + SETTING
WEIGHTS_SETTING = "RS_WSSS_WEIGHTS"  # the default of every algorithm's 'Backbone weights'
WEIGHTS_SETTING_KEY = "Processing/Configuration/" + WEIGHTS_SETTING
# realpath: a plugin folder symlinked into QGIS's profile still finds the repository it lives in (and its .venv)
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))


class Cancelled(QgsProcessingException):
    """The user pressed Cancel: the CLI stopped and left no output (reported as cancelled, not as a failure)."""


def locate_cli():
    """``(path, None)`` or ``(None, message)``: see cli_process.find_cli for the order."""
    return find_cli(QgsSettings().value(SETTING_KEY, "", type=str), os.environ, REPO)


def cli_path():
    path, problem = locate_cli()
    if path is None:
        raise QgsProcessingException(problem)
    return path


def default_weights():
    """The provider setting 'Default backbone weights' (a folder, a file or 'random'); '' when unset."""
    return QgsSettings().value(WEIGHTS_SETTING_KEY, "", type=str).strip()


def run_cli(args, feedback, poll=0.1, grace=5.0, first_stage=ProgressLines.START):
    """Run ``rs-wsss --progress-json ARGS``; progress lines drive the bar, other lines go to the log.

    The progress text says ``first_stage`` ("loading model"), then each stage as it starts ("segmenting (100
    tiles)"): Processing logs every progress text, so it changes once per stage, never per tile; the bar moves with
    each tile. Cancelling asks the process group to stop (the CLI removes its temporary outputs), then
    forces it after ``grace`` s. Returns stdout; raises QgsProcessingException with the CLI's own one-line error."""
    cmd = [cli_path(), "--progress-json"] + [str(a) for a in args]
    feedback.pushInfo("$ " + " ".join(cmd))
    if first_stage:
        feedback.setProgressText(first_stage)  # Processing logs each progress text: no pushInfo beside it
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(os.environ),
        **popen_options(),
    )
    errors, out, lines = [], [], ProgressLines()

    def read_stderr():
        for line in proc.stderr:
            line = line.rstrip()
            parsed = lines.parse(line)
            if parsed is not None:
                text, percent, log = parsed
                if log:  # the stage changed: a new progress text (Processing logs it), not one per tile
                    feedback.setProgressText(log)
                feedback.setProgress(percent)
            elif line:
                errors.append(line)
                if not user_error(line):  # the error itself is raised once, below, not also logged
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
            for t in threads:
                t.join(timeout=5)
            for f in (proc.stdin, proc.stdout, proc.stderr):
                f.close()
            raise Cancelled("cancelled: rs-wsss was stopped and left no output")
        time.sleep(poll)
    for t in threads:
        t.join(timeout=5)
    for f in (proc.stdin, proc.stdout, proc.stderr):
        f.close()
    if proc.returncode != 0:
        msg = next((e for e in reversed(errors) if user_error(e)), errors[-1] if errors else "")
        exc = QgsProcessingException(dialog_terms(msg) or f"rs-wsss failed (exit code {proc.returncode})")
        exc.stdout = "".join(out)  # what the command printed before failing (doctor's report)
        raise exc
    return "".join(out)


def dialog_terms(message):
    """The CLI's one-line error in the dialog's words: '--weights DIR' is the 'Backbone weights' parameter here."""
    text = message.split("rs-wsss: error: ", 1)[-1]
    if "weights" in text and "--weights" in text:
        cause = re.split(r": (?:put|pass) | \(or --weights", text)[0]
        named = re.search(r": put (\S+)", text)  # the file of the chosen prior, as the CLI names it
        held = named.group(1) if named else "the files of the chosen CLIP and DINOv2 priors"
        return (
            f"{cause}. Set 'Backbone weights' to the folder holding {held} (or to one weights file), or choose "
            "'random (shows the mechanics only)'; its default is Processing → Options → Providers → rs-wsss → "
            "Default backbone weights"
        )
    return text


_LISTING = {}


def listing():
    """What this rs-wsss offers, read once per executable at load time (``rs-wsss options --json``: every command's
    options with their defaults from the configuration and their units, the class sets, the formats); None when the
    command cannot be run. The plugin writes no default, unit or class-set name of its own."""
    path, _ = locate_cli()
    if path is None:
        return None
    if path not in _LISTING:
        try:
            p = subprocess.run(
                [path, "options", "--json"], capture_output=True, text=True, env=clean_env(os.environ), timeout=120
            )
            _LISTING[path] = json.loads(p.stdout) if p.returncode == 0 else None
        except (OSError, subprocess.SubprocessError, ValueError):
            _LISTING[path] = None
    return _LISTING[path]


def cli_option(command, flag):
    """The listing's entry of ``flag`` (e.g. '--tile') of ``command`` ('segment', 'tags template' …), or None."""
    found = listing() or {}
    for param in found.get("commands", {}).get(command, []):
        if flag in param["flags"] or flag in param["secondary"]:
            return param
    return None


def cli_supports(command, option):
    """Whether this rs-wsss has ``option`` for ``command``: the plugin may meet an older or newer command line."""
    return cli_option(command, option) is not None


def class_sets():
    """The packaged class-set names this rs-wsss knows (empty when it cannot be run)."""
    return [s["name"] for s in (listing() or {}).get("class_sets", [])]
