"""Training with 2 gloo processes (torchrun) on CPU: ranks stay identical and the loss matches one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).with_name("ddp_script.py")


def test_two_gloo_ranks_stay_identical_and_match_a_single_process(shared_data, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    single, multi = tmp_path / "single.json", tmp_path / "multi.json"
    p = subprocess.run([sys.executable, str(SCRIPT), str(single), str(shared_data)], env=env, capture_output=True,
                       text=True)
    assert p.returncode == 0, p.stderr[-3000:]
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                        str(SCRIPT),
                        str(multi), str(shared_data)], env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    a, b = json.loads(single.read_text()), json.loads(multi.read_text())
    assert b["identical"] == [True, True, True]  # weights + prototypes equal on both ranks after every step
    assert len(a["loss"]) == len(b["loss"]) == 3
    # same weights at step 1: the global-batch loss differs only by weighting (mean of per-rank means vs the mean
    # over all valid pixels); later steps add the effect of that weighting on the averaged gradients
    assert abs(a["loss"][0] - b["loss"][0]) <= 0.03 * a["loss"][0], (a["loss"], b["loss"])
    for la, lb in zip(a["loss"], b["loss"]):
        assert abs(la - lb) <= 0.15 * abs(la), (a["loss"], b["loss"])


def test_train_nproc_starts_torchrun_and_writes_one_checkpoint(shared_data, tmp_path):
    scene = shared_data / "spacenet/sample_geotiff.tif"
    tags = tmp_path / "tags.csv"
    tags.write_text(f"image,col_off,row_off,width,height,labels\n{scene},0,0,256,256,building\n{scene},256,256,256,256,\n")
    p = subprocess.run([sys.executable, "-m", "rs_wsss_cli.main", "train", "--tags", str(tags), str(scene), "-o",
                        str(tmp_path / "m.pt"), "--classes", "landcover", "--tiny", "--iters", "2", "--nproc", "2"],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    import torch

    assert torch.load(tmp_path / "m.pt", weights_only=True)["step"] == 2
    # one checkpoint and its model card, and rank 0's training log and report (no per-rank copies, no temporaries)
    assert sorted(x.name for x in tmp_path.iterdir()) == ["m.curves.png", "m.log.csv", "m.previews.png", "m.pt",
                                                           "m.pt.stac.json", "m.report.html", "tags.csv"]
    assert (tmp_path / "m.log.csv").read_text().count("\n") == 1 + 2  # header + one row per step
