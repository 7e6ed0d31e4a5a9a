"""A full disk during ``segment``: exit 2, one clear error line, no partial output and no temporaries left.

The disk is a small tmpfs mounted for the test (root); where mounting is impossible the test is skipped and says why.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from .conftest import run_cli


@pytest.fixture
def small_disk(tmp_path, request):
    mnt = tmp_path / "disk"
    mnt.mkdir()
    size = request.param
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)], capture_output=True,
                       text=True, check=False)
    if p.returncode != 0:
        pytest.skip(f"cannot mount a {size} tmpfs here ({p.stderr.strip() or 'not root'}); disk-full test not run")
    yield mnt
    subprocess.run(["umount", str(mnt)], check=True)


@pytest.mark.parametrize("small_disk", ["200k", "2m"], indirect=True)  # full while stitching / while vectorising
def test_segment_onto_a_full_disk_is_one_line_and_leaves_nothing(small_disk, shared_data):
    out = small_disk / "o.gpkg"
    p = run_cli("-q", "segment", shared_data / "spacenet/sample_geotiff.tif", "-o", out, "--zero-shot", "--classes",
                "landcover", "--tiny", "--tile", "64", "--probs")
    lines = [l for l in p.stderr.splitlines() if l.strip() and "RANDOM backbone weights" not in l]  # --tiny's warning
    assert p.returncode == 2, p.stderr
    assert len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
    assert lines[0].startswith("rs-wsss: error: no space left on the disk of") and "nothing was written" in lines[0]
    assert os.listdir(small_disk) == []  # no partial output, no temporaries, no block folder
