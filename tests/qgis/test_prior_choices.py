"""The QGIS provider's CLIP and DINOv2 prior choices (issue 23): read from the CLI's listing, which reads the
registry (``rs_wsss/priors/specs.py``), and passed to the CLI's command line, where the run records them."""

from __future__ import annotations

import json
import subprocess

import geopandas as gpd
import pytest
import rasterio

from rs_wsss.config import PriorsConfig
from rs_wsss.priors.specs import KNOWN

from ._qgis import CLI, QGIS_PROCESS, REPO
from .test_qgis_provider import qgis_env, qgis_run  # noqa: F401  (the module fixture and helper of the provider tests)

pytestmark = pytest.mark.qgis

# the registry's names, computed here from the specs themselves (not through the helper the CLI uses)
CLIP_NAMES = [s.name for s in KNOWN.values() if s.role == "clip"]
DINO_NAMES = [s.name for s in KNOWN.values() if s.role == "dino"]


def _help(env, alg):
    p = subprocess.run([str(QGIS_PROCESS), "--json", "help", f"rs_wsss:{alg}"], env=env, capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    return json.loads(p.stdout)["parameters"]


def _command(p):
    return next(line for line in p.stdout.splitlines() if line.startswith("$ "))


@pytest.fixture(scope="module")
def filled_grid(shared_data, tmp_path_factory):
    """The CLI's tag grid of the real SpaceNet scene with every tile tagged 'building' (a run needs some tags)."""
    d = tmp_path_factory.mktemp("prior_grid")
    scene = shared_data / "spacenet/sample_geotiff.tif"
    p = subprocess.run([str(CLI), "tags", "template", str(scene), "--tile", "256", "-o", str(d / "grid.gpkg")],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    grid = gpd.read_file(d / "grid.gpkg")
    grid["labels"] = "building"
    grid.to_file(d / "tags.gpkg", driver="GPKG")
    return scene, d / "tags.gpkg"


def test_the_offered_priors_are_the_registrys_with_the_configured_default(qgis_env):  # noqa: F811
    cfg = PriorsConfig()
    for alg in ("train", "segment"):
        params = _help(qgis_env, alg)
        for key, names, default in (("CLIP_PRIOR", CLIP_NAMES, cfg.clip), ("DINO_PRIOR", DINO_NAMES, cfg.dino)):
            offered = params[key]["raw_definition"]["options"]
            assert offered == names, (alg, key)
            assert offered[params[key]["default_value"]] == default, (alg, key)
    assert len(CLIP_NAMES) >= 8 and len(DINO_NAMES) == 6 and cfg.dino != DINO_NAMES[0]  # a default not at index 0
    # no copy of the names in the plugin: they can only have come from `rs-wsss options --json`
    plugin = "".join(p.read_text() for p in (REPO / "qgis_plugin").rglob("*.py"))
    assert not any(n in plugin for n in CLIP_NAMES + DINO_NAMES)


def test_a_chosen_prior_reaches_the_cli_and_the_checkpoint_records_it(qgis_env, filled_grid, tmp_path):  # noqa: F811
    scene, tags = filled_grid
    clip, dino = "remoteclip-vit-b-32", "dinov2-vit-s-14"  # neither is the default
    p = qgis_run(qgis_env, "train", RASTERS=scene, TAGS_FILE=tags, ITERS=1, WEIGHTS="random", TINY="true",
                 WRITE_REPORT="false", CLIP_PRIOR=CLIP_NAMES.index(clip), DINO_PRIOR=DINO_NAMES.index(dino),
                 OUTPUT=tmp_path / "m.pt")
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    assert f"--clip-prior {clip} --dino-prior {dino}" in _command(p)
    card = json.loads((tmp_path / "m.pt.stac.json").read_text())["properties"]
    assert {q["prior"]: q["model"] for q in card["rs_wsss:priors"]} == {"clip": f"{clip}(tiny)", "dino": f"{dino}(tiny)"}
    # the configured default is left to the CLI's configuration: not passed, and the checkpoint has the default
    p = qgis_run(qgis_env, "train", RASTERS=scene, TAGS_FILE=tags, ITERS=1, WEIGHTS="random", TINY="true",
                 WRITE_REPORT="false", OUTPUT=tmp_path / "d.pt")
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    assert "--clip-prior" not in _command(p) and "--dino-prior" not in _command(p)
    card = json.loads((tmp_path / "d.pt.stac.json").read_text())["properties"]
    cfg = PriorsConfig()
    assert {q["prior"]: q["model"] for q in card["rs_wsss:priors"]} == {"clip": f"{cfg.clip}(tiny)",
                                                                       "dino": f"{cfg.dino}(tiny)"}


def test_zero_shot_segment_runs_on_the_chosen_prior(qgis_env, filled_grid, tmp_path):  # noqa: F811
    scene, _ = filled_grid
    clip = "georsclip-vit-b-32"
    with rasterio.open(scene) as src:
        b, res = src.bounds, src.res[0]
    p = qgis_run(qgis_env, "segment", INPUT=scene, TILE=128, SCALES="1", CRF=2, WEIGHTS="random", TINY="true",
                 CLIP_PRIOR=CLIP_NAMES.index(clip), EXTENT=f"{b.left},{b.left + 64 * res},{b.top - 64 * res},{b.top}",
                 WRITE_REPORT="false", OUTPUT_RASTER=tmp_path / "z.tif", OUTPUT_VECTOR=tmp_path / "z.gpkg")
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    command = _command(p)
    assert f"--zero-shot --classes landcover --clip-prior {clip}" in command and "--dino-prior" not in command
    item = json.loads((tmp_path / "z_stac.json").read_text())["properties"]
    assert item["rs_wsss:parameters"]["priors"] == {"clip": clip, "dino": PriorsConfig().dino}


def test_missing_weights_of_the_chosen_prior_name_its_file(qgis_env, filled_grid, tmp_path):  # noqa: F811
    scene, tags = filled_grid
    (tmp_path / "weights").mkdir()
    clip = "remoteclip-vit-b-32"
    p = qgis_run(qgis_env, "train", RASTERS=scene, TAGS_FILE=tags, ITERS=1, WEIGHTS=tmp_path / "weights",
                 CLIP_PRIOR=CLIP_NAMES.index(clip), OUTPUT=tmp_path / "m.pt")
    assert p.returncode != 0
    out = p.stdout + p.stderr
    assert f"no {clip} weights" in out and f"folder holding {KNOWN[clip].files[0]}" in out, out[-2000:]
    assert "open_clip_vit_b16_openai.bin" not in out and not (tmp_path / "m.pt").exists()
