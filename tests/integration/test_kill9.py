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
import rasterio
import torch

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


def test_segment_killed_at_three_points_then_resumed_equals_an_uninterrupted_run(shared_data, tmp_path):
    scene = shared_data / SCENE
    ref = tmp_path / "ref" / "o.gpkg"
    ref.parent.mkdir()
    p = run_cli("segment", scene, "-o", ref, *ZS)  # whole-raster stitching, no blocks
    assert p.returncode == 0, p.stderr
    out = tmp_path / "run" / "o.gpkg"
    out.parent.mkdir()
    finals = [out, out.with_suffix(".tif"), out.with_suffix(".qml")]
    cmd = ["segment", scene, "-o", out, *ZS, "--block-size", "256", "--resume", "--overwrite"]  # 16 blocks
    rng = random.Random(1)
    k = rng.randint(2, 12)
    stops = [(f"stitching, block {k} of 16", lambda e: e["stage"] == "segment" and e["done"] >= k),
             ("vectorising", lambda e: e["stage"] == "vectorize" and e["done"] == 0),
             ("assembly and COG write", lambda e: e["stage"] == "segment" and e["done"] == e["total"])]
    log, blocks = [], out.parent / ".o.tif.blocks"
    for i, (name, stop) in enumerate(stops):
        code, events, lines = _run_until(cmd, stop)
        assert code == -signal.SIGKILL, (name, code, events[-3:])
        done = [e["done"] for e in events if e["stage"] == "segment"]
        log.append((name, done[-1] if done else 0, _valid_or_absent(finals)))
        if i == 0:
            written = len([f for f in blocks.glob("block_*.tif") if not f.name.endswith("_conf.tif")])
            assert written >= k  # each block file is renamed into place whole
        if i == 1:  # the run after the mid-stitching kill skipped what was written
            assert any(f"resuming: {written} of 16 blocks already written" in line for line in lines), lines
    assert blocks.is_dir()  # what --resume continues from
    p = run_cli(*cmd)
    assert p.returncode == 0, p.stderr
    assert "resuming: 16 of 16 blocks already written" in p.stderr  # the last kill came after all blocks
    assert sorted(q.name for q in out.parent.iterdir()) == sorted(q.name for q in ref.parent.iterdir())  # no leftovers
    with rasterio.open(ref.with_suffix(".tif")) as a, rasterio.open(out.with_suffix(".tif")) as b:
        assert np.array_equal(a.read(1), b.read(1)) and a.transform == b.transform
    assert len(gpd.read_file(ref)) == len(gpd.read_file(out))
    print("kill -9 points (stage, blocks done when killed, finals present):", log)


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
    assert [q.name for q in tmp_path.iterdir()] == ["m.pt"] or all(
        not q.name.startswith((".m.pt.", "m.pt.")) for q in tmp_path.iterdir())
    print("train kill -9: checkpoint steps seen after kills", seen)
