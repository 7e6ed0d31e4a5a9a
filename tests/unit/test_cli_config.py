"""Every command that reads the config honours ``--config`` (and the checkpoint refuses one beside it)."""

from __future__ import annotations

import csv

from ..conftest import run_main_in_process

SPACENET = "spacenet/sample_geotiff.tif"


def _yaml(tmp_path, text: str):
    p = tmp_path / "mine.yaml"
    p.write_text(text)
    return str(p)


def test_weights_resolves_the_backbones_the_config_names(tmp_path, capfd, monkeypatch):
    monkeypatch.delenv("RS_WSSS_WEIGHTS_DIR", raising=False)
    code, _ = run_main_in_process(["weights", "--config", _yaml(tmp_path, "priors:\n  weights: random\n")], capfd)
    assert code == 0  # the config's priors.weights=random: nothing missing
    code, err = run_main_in_process(["weights", "--config", _yaml(tmp_path, "priors:\n  wieghts: random\n")], capfd)
    assert code == 2 and "unknown key 'priors.wieghts'" in err  # the file is read, not ignored


def test_tags_take_their_default_tile_from_the_config(tmp_path, capfd, shared_data):
    def rows(*extra: str) -> list[dict]:
        out = tmp_path / "t.csv"
        code, err = run_main_in_process(["tags", "template", str(shared_data / SPACENET), "-o", str(out),
                                         "--overwrite", *extra], capfd)
        assert code == 0, err
        with open(out, newline="") as f:
            return list(csv.DictReader(f))

    small = rows("--config", _yaml(tmp_path, "raster:\n  tile: 64\n"))
    default = rows()
    assert {r["width"] for r in small} == {"64"} and {r["width"] for r in default} == {"512"}
    assert len(small) > len(default)


def test_kb_build_reads_the_config(tmp_path, capfd):
    code, err = run_main_in_process(["kb", "build", "--classes", "landcover", "--tiny",
                                     "--config", _yaml(tmp_path, "tpe:\n  n_clusters: 0\n")], capfd)
    assert code == 2 and "tpe.n_clusters" in err  # its range check fired: the file was applied
