"""Start the rs-wsss CLI of a separate environment as a subprocess (torch never runs inside QGIS's Python)."""

import os
import subprocess
import threading
import time

from qgis.core import QgsProcessingException, QgsSettings

from .cli_process import ProgressLines, clean_env, find_cli, popen_options, stop

SETTING = "RS_WSSS_CLI"  # Processing → Options → Providers → rs-wsss (processing's Setting, see provider.py)
SETTING_KEY = "Processing/Configuration/" + SETTING
CLASS_SETS = ["landcover", "potsdam", "isaid", "loveda"]
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def locate_cli():
    """``(path, None)`` or ``(None, message)``: see cli_process.find_cli for the order."""
    return find_cli(QgsSettings().value(SETTING_KEY, "", type=str), os.environ, REPO)


def cli_path():
    path, problem = locate_cli()
    if path is None:
        raise QgsProcessingException(problem)
    return path


def run_cli(args, feedback, poll=0.1, grace=5.0, first_stage=ProgressLines.START):
    """Run ``rs-wsss --progress-json ARGS``; progress lines drive the bar, other lines go to the log.

    The bar says ``first_stage`` ("loading model") until the first progress line, then "tile k/n"; the log gets one
    line per stage change. Cancelling asks the process group to stop (the CLI removes its temporary outputs), then
    forces it after ``grace`` s. Returns stdout; raises QgsProcessingException with the CLI's own one-line error."""
    cmd = [cli_path(), "--progress-json"] + [str(a) for a in args]
    feedback.pushInfo("$ " + " ".join(cmd))
    if first_stage:
        feedback.setProgressText(first_stage)
        feedback.pushInfo(first_stage)
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
                if log:
                    feedback.pushInfo(log)
                feedback.setProgressText(text)
                feedback.setProgress(percent)
            elif line:
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
            for t in threads:
                t.join(timeout=5)
            for f in (proc.stdin, proc.stdout, proc.stderr):
                f.close()
            raise QgsProcessingException("cancelled: rs-wsss was stopped and left no output")
        time.sleep(poll)
    for t in threads:
        t.join(timeout=5)
    for f in (proc.stdin, proc.stdout, proc.stderr):
        f.close()
    if proc.returncode != 0:
        msg = next(
            (e for e in reversed(errors) if "error" in e), errors[-1] if errors else f"exit code {proc.returncode}"
        )
        raise QgsProcessingException(msg)
    return "".join(out)


_HELP = {}


def cli_supports(command, option):
    """Whether this rs-wsss has ``option`` for ``command`` (read once from its --help): the plugin may meet an older
    or newer command line than the one it was written with."""
    key = (cli_path(), command)  # the setting may change within a session
    if key not in _HELP:
        try:
            p = subprocess.run(
                [key[0], command, "--help"], capture_output=True, text=True, env=clean_env(os.environ), timeout=60
            )
            _HELP[key] = p.stdout
        except (OSError, subprocess.SubprocessError):
            _HELP[key] = ""
    text = _HELP[key]
    return f"{option} " in text or f"{option}," in text or f"{option}\n" in text
