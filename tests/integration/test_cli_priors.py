"""--clip-prior / --dino-prior through the real command line on a real GeoTIFF: train records the priors, segment with
that checkpoint builds them and refuses others in one line, zero-shot runs with a remote-sensing prior (tiny
stand-ins of the named priors, random weights explicitly: the real sizes do not fit CI)."""

from __future__ import annotations

import torch

from .conftest import run_cli


def test_train_then_segment_keep_the_checkpoints_priors(shared_data, tmp_path):
    scene = shared_data / "spacenet/sample_geotiff.tif"
    grid = tmp_path / "tags.csv"
    p = run_cli("tags", "from-vector", scene, "--labels", shared_data / "spacenet/geotiff_labels.geojson",
                "--class-name", "building", "--classes", "landcover", "-o", grid, "--tile", "256")
    assert p.returncode == 0, p.stderr
    p = run_cli("train", "--tags", grid, scene, "-o", tmp_path / "m.pt", "--classes", "landcover", "--tiny",
                "--iters", "1", "--clip-prior", "skyclip-vit-b-32", "--dino-prior", "dinov2-vit-s-14-reg")
    assert p.returncode == 0, p.stderr
    state = torch.load(tmp_path / "m.pt", weights_only=True)
    assert state["config"]["priors"]["clip"] == "skyclip-vit-b-32"
    assert state["backbones"]["dino"].startswith("dinov2-vit-s-14-reg(tiny)|")
    p = run_cli("segment", scene, "-o", tmp_path / "out.tif", "--model", tmp_path / "m.pt", "--no-report")
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "out.tif").is_file()
    p = run_cli("segment", scene, "-o", tmp_path / "other.tif", "--model", tmp_path / "m.pt", "--clip-prior",
                "remoteclip-vit-b-32", "--no-report")
    assert p.returncode == 2 and not (tmp_path / "other.tif").exists()
    assert "trained on the CLIP prior skyclip-vit-b-32" in p.stderr and "--clip-prior skyclip-vit-b-32" in p.stderr
    errors = [line for line in p.stderr.splitlines() if "RANDOM backbone weights" not in line and line.strip()]
    assert len(errors) == 1 and "Traceback" not in p.stderr  # one line (beside the random-weights warning)


def test_zero_shot_with_a_remote_sensing_prior_and_a_bad_name(shared_data, tmp_path):
    scene = shared_data / "spacenet/sample_geotiff.tif"
    p = run_cli("segment", scene, "-o", tmp_path / "z.tif", "--zero-shot", "--classes", "landcover", "--tiny",
                "--clip-prior", "farslip-vit-b-16", "--no-report")
    assert p.returncode == 0, p.stderr
    p = run_cli("segment", scene, "-o", tmp_path / "y.tif", "--zero-shot", "--classes", "landcover", "--tiny",
                "--clip-prior", "farslip-vit-b-32")
    assert p.returncode == 2 and "unknown clip prior 'farslip-vit-b-32'" in p.stderr and "Traceback" not in p.stderr
