from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# One torch thread per CLI process: the tiny models gain nothing from threads, and on a shared 2-core machine OpenMP
# threads spinning against other processes make a tiny training run 3-4x slower.
ENV = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))


def run_cli(*args: str, cwd: Path | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """The real command line in a subprocess (exit codes, stderr and lazy imports are part of the contract)."""
    return subprocess.run([sys.executable, "-m", "rs_wsss_cli.main", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout, env=ENV)


@pytest.fixture(scope="session")
def trained_spacenet(shared_data, tmp_path_factory):
    """Tags from the SpaceNet building vectors → a tiny model trained a few steps (random weights, explicitly)."""
    d = tmp_path_factory.mktemp("spacenet")
    scene = shared_data / "spacenet/sample_geotiff.tif"
    p = run_cli("tags", "from-vector", scene, "--labels", shared_data / "spacenet/geotiff_labels.geojson",
                "--class-name", "building", "--classes", "landcover", "-o", d / "tags.csv", "--tile", "256")
    assert p.returncode == 0, p.stderr
    p = run_cli("train", "--tags", d / "tags.csv", scene, "-o", d / "model.pt", "--classes", "landcover", "--tiny",
                "--iters", "8", "--set", "train.checkpoint_every=4")
    assert p.returncode == 0, p.stderr
    return d
