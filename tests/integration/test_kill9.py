"""kill -9 at several points of ``segment`` (stitching, COG write, vectorising) and ``train`` (checkpoint writes):
the final paths hold nothing or a complete valid file, the next run cleans up what the killed one left, and
``segment --resume`` continues from the blocks already written with the same result as an uninterrupted run."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import xml.dom.minidom

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import torch

from ..conftest import REPO
from .conftest import ENV, run_cli

SCENE = "spacenet/sample_geotiff.tif"
ZS = ["--zero-shot", "--classes", "landcover", "--tiny", "--tile", "64"]


def _run_until(args: list[str], stop, cwd=None) -> tuple[int, list[dict], list[str]]:
    """Run ``rs-wsss --progress-json ARGS``; SIGKILL it as soon as ``stop(event)`` is true for a progress event."""
    p = subprocess.Popen([sys.executable, "-m", "rs_wsss_cli.main", "--progress-json", *map(str, args)],
                         stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=ENV, cwd=cwd)
    events, other = [], []
    for line in p.stderr:
        try:
            event = json.loads(line)
        except ValueError:
            other.append(line)
            continue
        events.append(event)
        if stop(event):
            p.send_signal(signal.SIGKILL)
            break
    p.wait(timeout=600)
    p.stderr.close()
    return p.returncode, events, other


def _valid_or_absent(paths) -> list[str]:
    """Each final output is absent or a complete file of its kind; returns those present."""
    present = []
    for p in paths:
        if not p.exists():
            continue
        present.append(p.suffix)
        if p.suffix == ".tif":
            with rasterio.open(p) as ds:
                assert ds.read(1).shape == (ds.height, ds.width)
        elif p.suffix == ".gpkg":
            assert len(gpd.read_file(p)) > 0
        else:
            xml.dom.minidom.parse(str(p))
    return present


def _killed_at(args: list, stage: str, done: int | str, seed: int | None = None) -> tuple[int, list[dict], list[str]]:
    """Run ``rs-wsss --progress-json ARGS``, which SIGKILLs itself right after reporting ``done`` of ``stage``
    (``"total"``: when the stage completes); ``seed`` shuffles its block order (tests/integration/_kill_at.py)."""
    cmd = [sys.executable, "-m", "tests.integration._kill_at", stage, str(done), *([str(seed)] if seed is not None
                                                                                   else []),
           "--", "--progress-json", *map(str, args)]
    p = subprocess.run(cmd, capture_output=True, text=True, env=ENV, cwd=REPO, timeout=600)
    events, other = [], []
    for line in p.stderr.splitlines(keepends=True):
        try:
            events.append(json.loads(line))
        except ValueError:
            other.append(line)
    return p.returncode, events, other


@pytest.fixture(scope="module")
def uninterrupted(shared_data, tmp_path_factory):
    """The reference: one uninterrupted run, whole-raster stitching (no blocks)."""
    ref = tmp_path_factory.mktemp("ref") / "o.gpkg"
    p = run_cli("segment", shared_data / SCENE, "-o", ref, *ZS)
    assert p.returncode == 0, p.stderr
    return ref


def _same_as(ref, out) -> None:
    with rasterio.open(ref.with_suffix(".tif")) as a, rasterio.open(out.with_suffix(".tif")) as b:
        x, y = a.read(1), b.read(1)
        assert a.transform == b.transform
        assert np.array_equal(x, y), f"{(x != y).sum()} of {x.size} pixels differ"
    assert len(gpd.read_file(ref)) == len(gpd.read_file(out))


def test_segment_killed_at_three_points_then_resumed_equals_an_uninterrupted_run(shared_data, tmp_path,
                                                                                  uninterrupted):
    ref = uninterrupted
    out = tmp_path / "o.gpkg"
    finals = [out, out.with_suffix(".tif"), out.with_suffix(".qml")]
    cmd = ["segment", shared_data / SCENE, "-o", out, *ZS, "--block-size", "256", "--resume", "--overwrite"]  # 16
    k = random.Random(1).randint(2, 12)
    stops = [(f"stitching, block {k} of 16", "segment", k), ("vectorising", "vectorize", 0),
             ("assembly and COG write", "segment", "total")]
    log, blocks = [], out.parent / ".o.tif.blocks"
    for i, (name, stage, done) in enumerate(stops):
        code, events, lines = _killed_at(cmd, stage, done)
        assert code == -signal.SIGKILL, (name, code, events[-3:], lines[-3:])
        done_events = [e["done"] for e in events if e["stage"] == "segment"]
        log.append((name, done_events[-1] if done_events else 0, _valid_or_absent(finals)))
        if i == 0:  # killed right after block k was renamed into place: exactly k block files, each whole
            assert len([f for f in blocks.glob("block_*.tif") if not f.name.endswith("_conf.tif")]) == k
        if i == 1:  # the run after the mid-stitching kill skipped what was written
            assert any(f"resuming: {k} of 16 blocks already written" in line for line in lines), lines
    assert blocks.is_dir()  # what --resume continues from
    p = run_cli(*cmd)
    assert p.returncode == 0, p.stderr
    assert "resuming: 16 of 16 blocks already written" in p.stderr  # the last kill came after all blocks
    assert sorted(q.name for q in out.parent.iterdir()) == sorted(q.name for q in ref.parent.iterdir())  # no leftovers
    _same_as(ref, out)
    print("kill -9 points (stage, blocks done when killed, finals present):", log)


@pytest.mark.parametrize("k, seed", [(1, None), (9, 5), (15, 2)])
def test_segment_killed_after_any_block_in_any_order_resumes_to_the_same_raster(shared_data, tmp_path, uninterrupted,
                                                                                k, seed):
    out = tmp_path / "o.gpkg"
    cmd = ["segment", shared_data / SCENE, "-o", out, *ZS, "--block-size", "256", "--resume", "--overwrite"]
    code, _, lines = _killed_at(cmd, "segment", k, seed)
    assert code == -signal.SIGKILL, lines[-3:]
    blocks = sorted(f.name for f in (tmp_path / ".o.tif.blocks").glob("block_*[0-9].tif"))
    assert len(blocks) == k
    # the resumed run stitches the other blocks in another order (seed + 1), as another worker layout would
    code, _, lines = _killed_at(cmd, "never", 0, None if seed is None else seed + 1)
    assert code == 0, lines[-3:]
    assert any(f"resuming: {k} of 16 blocks already written" in line for line in lines), lines
    _same_as(uninterrupted, out)


def test_a_changed_setting_does_not_resume_and_a_plain_run_discards_dead_blocks(shared_data, tmp_path):
    out = tmp_path / "o.tif"
    cmd = ["segment", shared_data / SCENE, "-o", out, *ZS, "--block-size", "256", "--resume"]
    code, _, _ = _run_until(cmd, lambda e: e["stage"] == "segment" and e["done"] >= 3)
    assert code == -signal.SIGKILL
    p = run_cli(*[a if a != "64" else "96" for a in map(str, cmd)])  # another tile size
    last = p.stderr.strip().splitlines()[-1]  # (after the random-weights warning of --tiny)
    assert p.returncode == 2 and last.startswith("rs-wsss: error: --resume") and "used other settings" in last
    assert "Traceback" not in p.stderr and (tmp_path / ".o.tif.blocks").is_dir()  # kept for the right command
    p = run_cli(*[a for a in map(str, cmd) if a != "--resume"])  # no --resume: start afresh, clean up
    assert p.returncode == 0, p.stderr
    assert not (tmp_path / ".o.tif.blocks").exists() and out.exists()


def test_train_killed_during_checkpoint_writes_then_resumed(trained_spacenet, shared_data, tmp_path):
    out = tmp_path / "m.pt"
    cmd = ["train", "--tags", trained_spacenet / "tags.csv", shared_data / SCENE, "-o", out, "--classes", "landcover",
           "--tiny", "--iters", "40", "--set", "train.checkpoint_every=1"]  # a save after every step
    rng = random.Random(2)
    seen = []
    for _ in range(2):
        k = rng.randint(2, 12)
        code, _, _ = _run_until(cmd + (["--resume"] if out.exists() else []),
                                  lambda e, k=k: e["stage"] == "train" and e["done"] >= k)
        assert code == -signal.SIGKILL
        if out.exists():  # complete and loadable, whenever the kill came
            state = torch.load(out, weights_only=True)
            seen.append(state["step"])
    assert seen, "no checkpoint was written before the kills"
    p = run_cli(*cmd, "--resume")
    assert p.returncode == 0, p.stderr
    assert torch.load(out, weights_only=True)["step"] == 40
    # the checkpoint, its model card and the training report; no temporaries (.m.pt.PID… / m.pt.…) left by the kills
    assert (tmp_path / "m.pt.stac.json").is_file()
    assert [q.name for q in tmp_path.iterdir() if q.name.startswith((".m.pt.", "m.pt."))] == ["m.pt.stac.json"]
    print("train kill -9: checkpoint steps seen after kills", seen)
