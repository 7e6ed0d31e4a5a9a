"""Crash-safe writes: temporaries carry the writer's PID; a later run removes those of dead writers only; a save
killed with SIGKILL at any moment leaves the final path absent or complete."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import torch

from rs_wsss.atomic import atomic_path, pid_alive, sweep_stale, temp_path


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_sweep_removes_dead_writers_temporaries_only(tmp_path):
    target = tmp_path / "out.tif"
    dead, alive = _dead_pid(), os.getpid()
    assert not pid_alive(dead) and pid_alive(alive)
    stale = [tmp_path / f".out.tif.{dead}.raw.tif", tmp_path / f".out.{dead}.tmp.tif",  # current and older names
             tmp_path / f"out.tif.{dead}.tmp"]
    stale_dir = tmp_path / f".out.tif.{dead}.blocks"
    live = tmp_path / f".out.tif.{alive}.raw.tif"
    unrelated = [tmp_path / ".out.tif.notapid.tif", tmp_path / "out.tif", tmp_path / f".other.tif.{dead}.raw.tif"]
    for p in stale + [live] + unrelated:
        p.write_text("x")
    stale_dir.mkdir()
    (stale_dir / "block_0_0.tif").write_text("x")
    removed = sweep_stale(target)
    assert sorted(removed) == sorted(stale + [stale_dir])
    assert all(p.exists() for p in [live] + unrelated) and not any(p.exists() for p in stale + [stale_dir])


def test_atomic_path_renames_on_success_and_removes_on_failure(tmp_path):
    target = tmp_path / "a.gpkg"
    try:
        with atomic_path(target) as tmp:
            assert tmp.name.startswith(f".a.gpkg.{os.getpid()}.") and tmp.suffix == ".gpkg"
            tmp.write_text("half")
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert list(tmp_path.iterdir()) == []
    with atomic_path(target) as tmp:
        tmp.write_text("whole")
    assert target.read_text() == "whole" and list(tmp_path.iterdir()) == [target]
    assert temp_path(target, "raw").name == f".a.gpkg.{os.getpid()}.raw.gpkg"


WRITER = """
import sys, torch
from rs_wsss.atomic import atomic_path, sweep_stale
state = {"w": torch.randn(2_000_000), "step": 0}
for i in range(10_000):
    state["step"] = i
    sweep_stale(sys.argv[1])
    with atomic_path(sys.argv[1]) as tmp:
        torch.save(state, tmp)
    print(i, flush=True)
"""


def test_kill9_during_checkpoint_saves_leaves_nothing_or_a_whole_file(tmp_path):
    """A process saving an 8 MB checkpoint in a loop (the train loop's save path), killed at random moments."""
    path = tmp_path / "model.pt"
    rng = random.Random(0)
    steps = []
    for _ in range(5):
        p = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True,
                             env=dict(os.environ, OMP_NUM_THREADS="1"))
        p.stdout.readline()  # the first save is done: every later moment is inside or between saves
        time.sleep(rng.uniform(0.0, 0.4))
        p.send_signal(signal.SIGKILL)
        p.wait()
        state = torch.load(path, weights_only=True)  # always present and complete after the first save
        assert state["w"].shape == (2_000_000,)
        steps.append(state["step"])
    leftovers = [q for q in tmp_path.iterdir() if q != path]
    sweep_stale(path)  # what the next save does first
    assert [q for q in tmp_path.iterdir() if q != path] == []
    assert len(steps) == 5, (steps, leftovers)
    print("kill-9 during saves: steps", steps, "temporaries left by killed saves:", len(leftovers))
