"""Mutation testing of the engine (``rs_wsss/model/``) with mutmut: ``make mutation`` or

    python scripts/mutation.py                      # every module below, one at a time
    python scripts/mutation.py cam usr              # some modules
    python scripts/mutation.py --survivors cam      # re-run only the last run's survivors (after adding tests)
    python scripts/mutation.py --report             # the score table of the last run, without running

Each module's mutants run against a fast selection of tests (the module's reference tests in tests/reference and
its equation tests), never the whole suite, through a small test server that keeps torch imported and forks a fresh
child per mutant (``--serve``; mutmut's runner is this script's ``--client``). mutmut mutates files in place, so the
run happens in a copy of the working tree (``--workdir``, default /tmp/rs_wsss_mutation): the checkout is never
touched. For ``wsss`` only the training-target and zero-shot paths are mutated (``--use-patch-file`` with those
functions' lines); the rest of that module is wiring that the engine and CLI tests cover.
Prints per module: mutants, killed, survived, timed out, score = (killed + timed out) / tested, then each survivor.
Not part of CI (minutes per module on two cores).
"""

from __future__ import annotations

import argparse
import ast
import os
import select
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
S = "tests/reference/test_reference_stages.py::"
PATH = "tests/reference/test_reference_path.py tests/reference/test_reference_zero_shot.py"
# the adapter and decoder: their module tests, the checkpoint-layout upgrade (train fast path) and their mutation tests
AD = ("tests/unit/test_engine_modules.py tests/unit/test_train_fast_path.py "
      "tests/reference/test_mutation_adapter_decoder.py")
TESTS = {  # module → its fast test selection (the reference tests of that stage + its equation tests)
    "tpe": f"{S}test_enrich_text_eq3_eq4 {S}test_kmeans_prototypes_are_the_means_of_known_clusters "
           "tests/unit/test_eq_tpe.py tests/reference/test_mutation_tpe.py",
    "cam": f"{S}test_initial_cam_eq9 {S}test_minmax_norm_default_axis_and_eps {S}test_background_rule_is_checked "
           "tests/unit/test_eq_cam.py",
    "usr": f"{S}test_usr_stages_eq11_to_eq14 {S}test_usr_refine_eq15 {S}test_usr_on_a_known_neighbourhood "
           f"{S}test_parameter_checks_name_the_key {S}test_transition_matrix_defaults_and_near_empty_columns "
           f"{S}test_vpe_off_normalisation_threshold_and_the_warm_up_n0_check tests/unit/test_eq_usr.py",
    "vpe": f"{S}test_vpe_seeds_eq16_eq17 {S}test_vpe_update_similarity_and_cam_eq18_to_eq20 "
           f"{S}test_parameter_checks_name_the_key {S}test_vpe_momentum_bounds_and_the_rank_reduction "
           f"{S}test_vpe_every_token_a_seed_at_k_one tests/unit/test_eq_vpe.py",
    "par": f"{S}test_par_against_the_reference {S}test_par_with_empty_and_constant_channels "
           "tests/unit/test_eq_par_losses.py tests/reference/test_mutation_par_losses.py",
    "losses": f"{S}test_pseudo_labels {S}test_affinity_labels_and_losses_eq21 "
              f"{S}test_band_rule_boundaries_and_loss_checks tests/unit/test_eq_par_losses.py "
              "tests/reference/test_mutation_par_losses.py",
    "multiscale": f"{S}test_multiscale_resize_and_averaging {S}test_multiscale_without_flip_and_its_check",
    "adapter": f"{S}test_adapter_and_decoder_against_the_reference {AD}",
    "decoder": f"{S}test_adapter_and_decoder_against_the_reference {AD}",
    "wsss": f"{PATH} tests/reference/test_mutation_wsss.py",
}
WSSS_FUNCTIONS = ("f_cd", "step_from_features", "refine_cam", "zero_shot", "_zero_shot_cam")
SOCKET = "mutation.sock"
RUNNING = "mutation.running"  # the pid of the run in progress in a workdir
HEAVY = ("torch", "numpy", "scipy.special", "sklearn.cluster", "PIL.Image", "open_clip", "timm", "yaml", "pytest")


def serve(workdir: Path, limit_s: int = 120) -> None:
    """Test server: imports the heavy third-party libraries once, then for each request forks a child that runs
    pytest on the request's arguments (importing rs_wsss afresh from the files as mutmut left them) and answers its
    exit code. Saves the interpreter and torch start-up per mutant (seconds on a loaded machine). A child running
    longer than ``limit_s`` (a mutant that hangs) is killed and counts as a failure; so is one whose client went
    away (mutmut's own timeout killed it: the next mutant must not queue behind a dead one); the server lives on.

    The answer is 0 (tests pass: the mutant survived) or 1 (killed) — never pytest's own code: mutmut 2.5.1 counts
    only exit code 1 as killed, so a mutant that breaks collection (pytest exits 2) or crashes the child (a signal)
    would otherwise count as a survivor."""
    import importlib
    import signal
    import time

    for mod in HEAVY:
        try:
            importlib.import_module(mod)
        except ImportError:
            pass
    # the children must import rs_wsss from the mutated copy, never the checkout (the editable install points there)
    assert not any(m == "rs_wsss" or m.startswith("rs_wsss.") for m in sys.modules), "rs_wsss imported before fork"
    sys.path.insert(0, str(workdir))
    os.chdir(workdir)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    path = workdir / SOCKET
    path.unlink(missing_ok=True)
    sock.bind(str(path))
    sock.listen(4)
    while True:
        conn, _ = sock.accept()
        with conn:
            conn.settimeout(30)
            try:
                args = conn.makefile().readline().split()
            except OSError:
                continue
            if not args:  # a client that went away before asking: never run the whole suite
                continue
            pid = os.fork()
            if pid == 0:
                sock.close()
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, 1)
                os.dup2(devnull, 2)
                import pytest

                os._exit(int(pytest.main(args)))
            t0, code = time.monotonic(), None
            while code is None:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    code = os.waitstatus_to_exitcode(status)
                elif time.monotonic() - t0 > limit_s or client_gone(conn):
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                    code = 1
                else:
                    time.sleep(0.02)
            try:
                conn.sendall(bytes([0 if code == 0 else 1]))
            except OSError:
                pass  # mutmut timed the client out already


def client_gone(conn: socket.socket) -> bool:
    """True once the client's end of ``conn`` is closed (readable with nothing to read)."""
    if not select.select([conn], [], [], 0)[0]:
        return False
    try:
        return conn.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


def client(workdir: Path, args: list[str]) -> int:
    """What mutmut runs per mutant: ask the server to run pytest on ``args``; its exit code is ours."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(600)  # never wait forever on a server that went away
    sock.connect(str(workdir / SOCKET))
    sock.sendall((" ".join(args) + "\n").encode())
    reply = sock.recv(1)
    return 0 if reply == b"\x00" else 1  # mutmut 2.5.1 counts exit code 1, and only 1, as killed


def copy_tree(dest: Path) -> None:
    """The working tree's tracked and untracked-but-not-ignored files → dest (the mutmut cache kept)."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split()
    for rel in files:
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def wsss_patch(workdir: Path) -> Path:
    """A unified diff that 'adds' the lines of WSSS_FUNCTIONS, so mutmut mutates those lines only."""
    path = workdir / "rs_wsss/model/wsss.py"
    lines = path.read_text().splitlines()
    keep: set[int] = set()
    for node in ast.walk(ast.parse("\n".join(lines))):
        if isinstance(node, ast.FunctionDef) and node.name in WSSS_FUNCTIONS:
            keep.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    body = [f"@@ -{n},0 +{n},1 @@\n+{lines[n - 1]}\n" for n in sorted(keep)]
    patch = workdir / "wsss_paths.patch"
    patch.write_text("--- a/rs_wsss/model/wsss.py\n+++ b/rs_wsss/model/wsss.py\n" + "".join(body))
    return patch


def runner_for(workdir: Path, name: str) -> str:
    return (f"{sys.executable} {Path(__file__).resolve()} --client --workdir {workdir} -- "
            f"-x -q -p no:cacheprovider --tb=no {TESTS[name]}")


def run_module(workdir: Path, name: str) -> None:
    runner = runner_for(workdir, name)
    cmd = [sys.executable, "-m", "mutmut", "run", "--paths-to-mutate", f"rs_wsss/model/{name}.py",
           "--runner", runner, "--simple-output", "--no-progress"]
    if name == "wsss":
        cmd += ["--use-patch-file", str(wsss_patch(workdir))]
    env = dict(os.environ, OMP_NUM_THREADS="1", RS_WSSS_SHARED_DATA=str(ROOT.parent / "shared" / "data"))
    print(f"== {name}: mutating rs_wsss/model/{name}.py against {TESTS[name]}", flush=True)
    subprocess.run(cmd, cwd=workdir, env=env, stdout=subprocess.DEVNULL)


def rerun_survivors(workdir: Path, name: str) -> None:
    cache = workdir / ".mutmut-cache"
    if not cache.exists():
        return
    ids = [r[0] for r in sqlite3.connect(cache).execute(
        """select m.id from Mutant m join Line l on m.line = l.id join SourceFile f on l.sourcefile = f.id
           where f.filename = ? and m.status in ('bad_survived', 'untested')""", (f"rs_wsss/model/{name}.py",))]
    env = dict(os.environ, OMP_NUM_THREADS="1", RS_WSSS_SHARED_DATA=str(ROOT.parent / "shared" / "data"))
    runner = runner_for(workdir, name)
    for mid in ids:
        subprocess.run([sys.executable, "-m", "mutmut", "run", str(mid), "--paths-to-mutate",
                        f"rs_wsss/model/{name}.py", "--runner", runner, "--simple-output", "--no-progress"],
                       cwd=workdir, env=env, stdout=subprocess.DEVNULL)


def running(workdir: Path) -> int | None:
    """The pid of the run in progress in ``workdir`` (its RUNNING file names a live process), else None."""
    try:
        pid = int((workdir / RUNNING).read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def report(workdir: Path, names: list[str]) -> None:
    cache = workdir / ".mutmut-cache"
    if not cache.exists():
        print(f"no mutation run in {workdir}")
        return
    # `mutmut show` re-registers the lines of the file it reads: during a run that file is mutated, and the run then
    # cannot record its next result (mutmut stops with "Attribute Mutant.line is required" and hangs)
    busy = running(workdir)
    db = sqlite3.connect(cache)
    rows = db.execute("""select f.filename, m.id, m.status, l.line_number, l.line from Mutant m
                         join Line l on m.line = l.id join SourceFile f on l.sourcefile = f.id""").fetchall()
    print(f"{'module':12s} {'mutants':>7s} {'killed':>7s} {'survived':>8s} {'timeout':>7s} {'score':>7s}")
    survivors = []
    for name in names:
        mine = [r for r in rows if r[0] == f"rs_wsss/model/{name}.py"]
        if not mine:
            continue
        killed = sum(r[2] in ("ok_killed", "ok_suspicious") for r in mine)  # suspicious: killed, but slowly
        timeout = sum(r[2] == "bad_timeout" for r in mine)  # the mutant hung: detected too
        surv = [r for r in mine if r[2] == "bad_survived"]
        untested = sum(r[2] == "untested" for r in mine)
        tested = len(mine) - untested
        score = f"{100 * (killed + timeout) / tested:.1f}%" if tested else "—"
        print(f"{name:12s} {len(mine):7d} {killed:7d} {len(surv):8d} {timeout:7d} {score:>7s}"
              + (f"  ({untested} untested)" if untested else ""))
        survivors += surv
    if busy is not None:
        print(f"a run (pid {busy}) is in progress in {workdir}: scores so far, survivors' diffs left out")
        return
    for fname, mid, _, ln, text in survivors:
        print(f"survivor {mid}: {fname}:{ln}: {text.strip()}")
        diff = subprocess.run([sys.executable, "-m", "mutmut", "show", str(mid)], cwd=workdir,
                              capture_output=True, text=True).stdout
        print("".join(f"    {x}\n" for x in diff.splitlines() if x.startswith(("+", "-"))
                      and not x.startswith(("+++", "---"))), end="")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("modules", nargs="*", default=list(TESTS), help=f"any of {', '.join(TESTS)}")
    ap.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/rs_wsss_mutation"))
    ap.add_argument("--report", action="store_true", help="print the last run's scores only")
    ap.add_argument("--survivors", action="store_true",
                    help="re-run only the last run's survivors (after adding tests) and any mutant a stopped run left "
                         "untested, then print the scores")
    if "--client" in sys.argv:  # mutmut's runner: everything after "--" goes to pytest
        i = sys.argv.index("--")
        wd = Path(sys.argv[sys.argv.index("--workdir") + 1])
        return client(wd, sys.argv[i + 1:])
    a = ap.parse_args()
    if a.serve:
        serve(a.workdir)
        return 0
    bad = [m for m in a.modules if m not in TESTS]
    if bad:
        print(f"unknown module(s) {', '.join(bad)}; choose from {', '.join(TESTS)}")
        return 2
    if not a.report:
        if shutil.which("mutmut") is None and subprocess.run([sys.executable, "-m", "mutmut", "--help"],
                                                             capture_output=True).returncode != 0:
            print("mutmut is not installed: pip install -e '.[mutation]' (make mutation does it)")
            return 2
        a.workdir.mkdir(parents=True, exist_ok=True)
        if (busy := running(a.workdir)) is not None:
            print(f"a run (pid {busy}) is in progress in {a.workdir}: wait for it or pass another --workdir")
            return 2
        (a.workdir / RUNNING).write_text(str(os.getpid()))
        copy_tree(a.workdir)
        env = dict(os.environ, OMP_NUM_THREADS="1", RS_WSSS_SHARED_DATA=str(ROOT.parent / "shared" / "data"))
        (a.workdir / SOCKET).unlink(missing_ok=True)
        server = subprocess.Popen([sys.executable, __file__, "--serve", "--workdir", str(a.workdir)], env=env)
        try:
            for _ in range(600):  # the server is up once its socket exists
                if (a.workdir / SOCKET).exists():
                    break
                time.sleep(0.1)
            for name in a.modules:
                if a.survivors:
                    rerun_survivors(a.workdir, name)
                else:
                    run_module(a.workdir, name)
        finally:
            server.terminate()
            server.wait()
            (a.workdir / RUNNING).unlink(missing_ok=True)
    report(a.workdir, a.modules)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
