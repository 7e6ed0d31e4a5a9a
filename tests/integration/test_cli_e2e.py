"""End to end on real GeoTIFFs: tags → train → segment → evaluate; zero-shot on 4-band NAIP; resume after a kill."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys

import geopandas as gpd
import rasterio
import torch

from rs_wsss.raster.io import scene_key

from .conftest import ENV, run_cli


def test_spacenet_tags_train_segment_evaluate(shared_data, trained_spacenet, tmp_path):
    scene = shared_data / "spacenet/sample_geotiff.tif"
    rows = list(csv.DictReader(open(trained_spacenet / "tags.csv")))
    assert len(rows) == 16 and any(r["labels"] == "building" for r in rows)
    state = torch.load(trained_spacenet / "model.pt", weights_only=True)
    assert state["step"] == 8 and state["random_weights"] and scene_key(scene) in state["extra"]["norms"]  # by identity
    out = tmp_path / "out.gpkg"
    p = run_cli("--progress-json", "segment", scene, "-o", out, "--model", trained_spacenet / "model.pt", "--tile",
                "256")
    assert p.returncode == 0, p.stderr
    progress = [json.loads(l) for l in p.stderr.splitlines() if l.startswith("{")]
    assert progress and progress[-1]["stage"] in ("segment", "vectorize") and {"done", "total"} <= set(progress[0])
    with rasterio.open(tmp_path / "out.tif") as o, rasterio.open(scene) as i:
        assert o.crs == i.crs and o.transform == i.transform and o.shape == i.shape
        assert o.tags()["WEIGHTS"] == "random-weights" and o.tags()["MODEL"].startswith("checkpoint:")
    g = gpd.read_file(out)
    names = ["background", "building", "road", "vegetation", "water", "bare_land"]
    assert len(g) > 0 and set(g.class_name) <= set(names) and (tmp_path / "out.qml").exists()
    page = (tmp_path / "out_report.html").read_text()  # the report is on by default
    assert 'id="random-weights"' in page and all(f"{n}</td>" in page for n in names)
    assert (tmp_path / "out_quicklook.png").stat().st_size > 10_000
    log_rows = list(csv.DictReader(open(trained_spacenet / "model.log.csv")))
    assert [int(r["step"]) for r in log_rows] == list(range(1, 9))  # the training log: one row per step
    p = run_cli("evaluate", tmp_path / "out.tif", shared_data / "spacenet/sample_fp_mask_from_geojson.tif",
                "--classes", "landcover", "--value-map", "255=building,0=background", "--json")
    assert p.returncode == 0, p.stderr
    m = json.loads(p.stdout)
    assert 0 <= m["mIoU"] <= 1 and m["pixels"] == 900 * 900 and m["per_class"]["building"]["pixels"] > 0


def test_naip_four_band_zero_shot_and_template(shared_data, tmp_path):
    scene = shared_data / "naip/m_4709963_se_14_1_20200831.tif"
    p = run_cli("tags", "template", scene, "-o", tmp_path / "grid.gpkg", "--tile", "256")
    assert p.returncode == 0, p.stderr
    grid = gpd.read_file(tmp_path / "grid.gpkg")
    assert len(grid) == 12 and (grid.labels == "").all() and grid.crs.to_epsg() == 26914
    p = run_cli("segment", scene, "-o", tmp_path / "z.gpkg", "--zero-shot", "--classes", "landcover", "--tiny",
                "--tile", "256", "--bands", "4,1,2", "--probs", "--no-report")
    assert p.returncode == 0, p.stderr
    assert not list(tmp_path.glob("z_*.png")) and not list(tmp_path.glob("z_*.html"))  # --no-report
    with rasterio.open(tmp_path / "z.tif") as o, rasterio.open(scene) as i:
        assert o.crs.to_epsg() == 26914 and o.transform == i.transform and o.shape == i.shape
        assert o.tags()["MODEL"] == "zero-shot" and o.tags()["WEIGHTS"] == "random-weights"
    with rasterio.open(tmp_path / "z_confidence.tif") as c:
        conf = c.read(1)
        assert conf.max() <= 1.0 and conf.min() > 0
    landcover = {"background", "building", "road", "vegetation", "water", "bare_land"}
    assert set(gpd.read_file(tmp_path / "z.gpkg").class_name) <= landcover


def test_several_scenes_give_one_output_each_in_their_own_crs(shared_data, tmp_path):
    scenes = [shared_data / "naip/m_4709963_se_14_1_20200831.tif", shared_data / "spacenet/sample_geotiff.tif"]
    out = tmp_path / "results"  # created by the command, once every check has passed
    p = run_cli("segment", *scenes, "-o", out, "--zero-shot", "--classes", "landcover", "--tiny", "--tile", "256")
    assert p.returncode == 0, p.stderr
    for scene in scenes:
        with rasterio.open(out / f"{scene.stem}.tif") as o, rasterio.open(scene) as i:
            assert o.crs == i.crs and o.transform == i.transform and o.shape == i.shape
            epsg = i.crs.to_epsg()
        assert gpd.read_file(out / f"{scene.stem}.gpkg").crs.to_epsg() == epsg  # 26914 and 32616
        assert (out / f"{scene.stem}.qml").exists()
    # a bad input after the directory check leaves no empty directory behind
    p = run_cli("segment", *scenes, "-o", tmp_path / "never", "--zero-shot", "--classes", "nosuch", "--tiny")
    assert p.returncode == 2 and not (tmp_path / "never").exists()


ITERS, EVERY = 16, 4


def _train_cmd(d, shared_data, out):
    return [sys.executable, "-m", "rs_wsss_cli.main", "--progress-json", "train", "--tags", str(d / "tags.csv"),
            str(shared_data / "spacenet/sample_geotiff.tif"), "-o", str(out), "--classes", "landcover", "--tiny",
            "--iters", str(ITERS), "--set", f"train.checkpoint_every={EVERY}"]


def test_interrupted_training_resumes_to_the_same_step_and_loss(shared_data, trained_spacenet, tmp_path):
    full = tmp_path / "full.pt"
    assert subprocess.run(_train_cmd(trained_spacenet, shared_data, full), capture_output=True, env=ENV).returncode == 0
    cut = tmp_path / "cut.pt"
    # SIGKILL (no clean-up possible) as soon as the progress stream shows a step past the first checkpoint
    proc = subprocess.Popen(_train_cmd(trained_spacenet, shared_data, cut), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True, env=ENV)
    for line in proc.stderr:
        if line.startswith("{") and json.loads(line)["stage"] == "train" and json.loads(line)["done"] > EVERY:
            os.killpg(proc.pid, signal.SIGKILL)
            break
    proc.wait()
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL  # it was killed, it did not finish on its own
    killed_at = torch.load(cut, weights_only=True)["step"]
    assert EVERY <= killed_at < ITERS and killed_at % EVERY == 0
    p = subprocess.run(_train_cmd(trained_spacenet, shared_data, cut) + ["--resume"], capture_output=True, text=True,
                       env=ENV)
    assert p.returncode == 0, p.stderr
    assert f"at step {killed_at} of {ITERS}" in p.stderr  # it continued from the checkpoint, not from scratch
    a, b = torch.load(full, weights_only=True), torch.load(cut, weights_only=True)
    assert a["step"] == b["step"] == ITERS
    assert abs(a["extra"]["last_loss"] - b["extra"]["last_loss"]) < 1e-3 * max(1.0, a["extra"]["last_loss"])
    assert torch.allclose(a["prototypes"], b["prototypes"], atol=1e-4)
    rows = list(csv.DictReader(open(tmp_path / "cut.log.csv")))  # steps redone after the kill are logged once
    assert [int(r["step"]) for r in rows] == list(range(1, ITERS + 1))


def test_help_is_fast_and_imports_no_torch():
    code = ("import sys; from rs_wsss_cli.main import main; sys.argv=['rs-wsss','--help']\n"
            "try: main()\nexcept SystemExit: pass\n"
            "heavy=[m for m in ('torch','rasterio','geopandas','open_clip','timm') if m in sys.modules]\n"
            "sys.stderr.write(str(heavy)); sys.exit(1 if heavy else 0)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    for sub in (["segment"], ["train"], ["tags", "template"], ["tags", "from-vector"], ["tags", "from-raster"],
                ["evaluate"], ["kb", "show"], ["kb", "build"], ["weights"]):
        q = run_cli(*sub, "--help")
        assert q.returncode == 0 and "Example" in q.stdout, (sub, q.stderr)


def test_a_tag_grid_with_every_label_empty_warns_that_training_sees_background_only(shared_data, tmp_path):
    scene = shared_data / "spacenet/sample_geotiff.tif"
    grid = tmp_path / "tags.csv"
    p = run_cli("tags", "template", scene, "-o", grid, "--tile", "256")  # every label empty, as a new user leaves it
    assert p.returncode == 0, p.stderr
    p = run_cli("train", "--tags", grid, scene, "-o", tmp_path / "m.pt", "--classes", "landcover", "--tiny",
                "--iters", "1")
    assert p.returncode == 0, p.stderr
    assert "empty labels" in p.stderr and "background only" in p.stderr
    # one filled-in row is enough to silence it
    rows = list(csv.DictReader(open(grid)))
    rows[0]["labels"] = "building"
    with open(grid, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    p = run_cli("train", "--tags", grid, scene, "-o", tmp_path / "m2.pt", "--classes", "landcover", "--tiny",
                "--iters", "1")
    assert p.returncode == 0, p.stderr
    assert "empty labels" not in p.stderr
