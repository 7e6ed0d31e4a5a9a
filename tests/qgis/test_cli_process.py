"""The plugin's platform logic without QGIS: finding the CLI and stopping it on Windows and POSIX (platform faked),
and the progress lines the QGIS log gets."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ._long_run import long_segment_args

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "qgis_plugin"))
from rs_wsss_qgis import cli_process as cp  # noqa: E402


def make_file(path: Path, executable: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(path.stat().st_mode | (stat.S_IXUSR if executable else 0))
    return path


def no_path(_name):
    return None


def test_windows_finds_scripts_exe_in_a_venv_from_the_setting_and_in_the_repository(tmp_path):
    exe = make_file(tmp_path / "repo" / ".venv" / "Scripts" / "rs-wsss.exe", executable=False)  # no x bit on Windows
    for setting in (str(exe), str(tmp_path / "repo" / ".venv"), str(tmp_path / "repo")):
        assert cp.find_cli(setting, {}, "/nowhere", os_name="nt", which=no_path) == (str(exe), None)
    # nothing set: the plugin's own repository's .venv
    assert cp.find_cli("", {}, str(tmp_path / "repo"), os_name="nt", which=no_path) == (str(exe), None)
    # the POSIX layout is not what Windows looks for
    assert cp.find_cli("", {}, str(tmp_path / "repo"), os_name="posix", which=no_path)[0] is None


def test_posix_needs_bin_and_the_execute_bit(tmp_path):
    exe = make_file(tmp_path / "repo" / ".venv" / "bin" / "rs-wsss")
    assert cp.find_cli("", {}, str(tmp_path / "repo"), os_name="posix", which=no_path) == (str(exe), None)
    exe.chmod(0o644)
    path, problem = cp.find_cli("", {}, str(tmp_path / "repo"), os_name="posix", which=no_path)
    assert path is None and problem == cp.INSTALL_HINT and "Processing → Options → Providers" in problem


def test_order_setting_then_variable_then_path_then_repository(tmp_path):
    a, b, c = (make_file(tmp_path / n / "bin" / "rs-wsss") for n in "abc")
    d = make_file(tmp_path / "d" / ".venv" / "bin" / "rs-wsss")
    which = lambda _n: str(c)  # noqa: E731
    repo = str(tmp_path / "d")
    env = {cp.ENV_KEY: str(b)}
    assert cp.find_cli(str(a), env, repo, "posix", which)[0] == str(a)
    assert cp.find_cli("", env, repo, "posix", which)[0] == str(b)
    assert cp.find_cli("", {}, repo, "posix", which)[0] == str(c)
    assert cp.find_cli("", {}, repo, "posix", no_path)[0] == str(d)
    assert cp.find_cli("", {}, str(tmp_path), "posix", no_path)[0] is None


def test_a_wrong_setting_is_reported_not_skipped(tmp_path):
    good = make_file(tmp_path / "bin" / "rs-wsss")
    path, problem = cp.find_cli(str(tmp_path / "missing"), {}, "/nowhere", "posix", lambda _n: str(good))
    assert path is None
    assert "provider setting" in problem and str(tmp_path / "missing") in problem
    path, problem = cp.find_cli("", {cp.ENV_KEY: "/no/such/rs-wsss"}, "/nowhere", "posix", lambda _n: str(good))
    assert path is None and "$RS_WSSS_CLI" in problem


def test_process_group_options_per_platform():
    assert cp.popen_options("nt") == {"creationflags": 0x00000200 | 0x08000000}  # new group, no console window
    assert cp.popen_options("posix") == {"start_new_session": True}


def test_the_cli_environment_leaves_out_qgis_python_qt_and_gdal_data():
    env = cp.clean_env(
        {
            "PATH": "/usr/bin",
            "HOME": "/h",
            "PYTHONPATH": "/usr/share/qgis/python",
            "PYTHONHOME": "/q",
            "QGIS_PREFIX_PATH": "/usr",
            "QT_QPA_PLATFORM": "offscreen",
            "GDAL_DATA": "/q/gdal",
            "PROJ_LIB": "/q/proj",
            "LD_LIBRARY_PATH": "/q/lib",
            "RS_WSSS_CLI": "/x",
            "CUDA_VISIBLE_DEVICES": "0",
        }
    )
    assert env == {"PATH": "/usr/bin", "HOME": "/h", "CUDA_VISIBLE_DEVICES": "0", "PYTHONUNBUFFERED": "1"}


class FakeStdin:
    def __init__(self, broken: bool = False):
        self.written, self.broken = [], broken

    def write(self, text):
        if self.broken:
            raise OSError("broken pipe")
        self.written.append(text)

    def flush(self):
        pass


class FakeWindowsProcess:
    def __init__(self, stops_on_cancel: bool, broken_stdin: bool = False):
        self.pid, self.calls, self.stops_on_cancel = 4242, [], stops_on_cancel
        self.stdin = FakeStdin(broken_stdin)

    def wait(self, timeout=None):
        self.calls.append(("wait", timeout))
        if timeout is not None and not self.stops_on_cancel:
            raise subprocess.TimeoutExpired("rs-wsss", timeout)
        return 0

    def terminate(self):
        self.calls.append(("terminate",))


def test_windows_stop_asks_through_stdin_then_terminates_after_the_grace_period():
    def no_signals(pid, sig):
        raise AssertionError("no POSIX signals on Windows")

    polite = FakeWindowsProcess(stops_on_cancel=True)
    cp.stop(polite, 3.0, os_name="nt", killpg=no_signals)
    assert polite.stdin.written == ["cancel\n"] and polite.calls == [("wait", 3.0)]
    stubborn = FakeWindowsProcess(stops_on_cancel=False)
    cp.stop(stubborn, 0.5, os_name="nt", killpg=no_signals)
    assert stubborn.calls == [("wait", 0.5), ("terminate",), ("wait", None)]
    gone = FakeWindowsProcess(stops_on_cancel=True, broken_stdin=True)  # already exited: its stdin is closed
    cp.stop(gone, 1.0, os_name="nt", killpg=no_signals)
    assert gone.calls == [("terminate",), ("wait", None)]


def test_the_cli_unwinds_on_cancel_from_stdin_and_leaves_no_output(shared_data, tmp_path):
    """What Windows relies on, run for real here: 'cancel' on stdin stops rs-wsss cleanly (exit 130, no files)."""
    cli = Path(sys.executable).with_name("rs-wsss")
    out = tmp_path / "out"
    out.mkdir()
    cmd = [
        str(cli),
        "--progress-json",
        *long_segment_args(shared_data / "spacenet/sample_geotiff.tif", out / "long.gpkg"),
    ]
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    for line in proc.stderr:
        if line.startswith('{"stage": "segment"'):
            break
    t0 = time.perf_counter()
    cp.stop(proc, 10.0, os_name="nt")  # the Windows path: stdin first, terminate only after the grace period
    took = time.perf_counter() - t0
    rest = proc.stderr.read()
    proc.stderr.close()
    proc.stdin.close()
    assert proc.returncode == 130, rest[-500:]  # unwound (terminate() would only come after the 10 s grace)
    assert "rs-wsss: error: " in rest and took < 10.0
    assert list(out.iterdir()) == []


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); its state in /proc says it is gone
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


@pytest.mark.skipif(os.name != "posix", reason="real process groups are POSIX; Windows is covered with fakes above")
@pytest.mark.parametrize("ignores_term", [False, True])
def test_posix_stop_ends_the_whole_process_group(tmp_path, ignores_term):
    pidfile = tmp_path / "child.pid"
    trap = "trap '' TERM; " if ignores_term else ""
    script = f"{trap}sleep 60 & echo $! > {pidfile}; wait"
    proc = subprocess.Popen(["sh", "-c", script], **cp.popen_options("posix"))
    for _ in range(100):
        if pidfile.exists() and pidfile.read_text().strip():
            break
        time.sleep(0.05)
    child = int(pidfile.read_text())
    t0 = time.perf_counter()
    cp.stop(proc, 0.5, os_name="posix")
    assert proc.returncode is not None
    for _ in range(40):
        if not alive(child):
            break
        time.sleep(0.05)
    assert not alive(child), "the CLI's own children must stop with it"
    assert time.perf_counter() - t0 < 3.0


def test_progress_logs_one_line_per_stage_and_words_tiles():
    p = cp.ProgressLines()
    lines = ['{"stage": "segment", "done": %d, "total": 4}' % i for i in (1, 2, 3, 4)]
    lines += ['{"stage": "vectorize", "done": 0, "total": 1}', '{"stage": "vectorize", "done": 1, "total": 1}']
    parsed = [p.parse(l) for l in lines]
    logs = [log for _t, _pc, log in parsed if log]
    assert logs == ["segmenting (4 tiles)", "vectorizing"]
    assert [t for t, _pc, _l in parsed[:4]] == ["tile 1/4", "tile 2/4", "tile 3/4", "tile 4/4"]
    percents = [pc for _t, pc, _l in parsed]
    assert percents == sorted(percents) and percents[-1] == 100.0 and 0 < percents[0] < percents[3] <= 95.0
    assert p.parse("rs-wsss: error: something") is None and p.parse("{not json") is None
    t = cp.ProgressLines()
    assert t.parse('{"stage": "train", "done": 5, "total": 10}') == ("step 5/10", 50.0, "training (10 steps)")
