"""The listings drivers read instead of scraping --help: ``rs-wsss options --json``, ``config show --json`` and
``kb list --json``. Defaults come from the config (a --config file changes them), units from the options."""

from __future__ import annotations

import json

from rs_wsss.classes import color_hex, load_class_set, packaged_class_sets
from rs_wsss.config import Config
from rs_wsss.priors.specs import KNOWN
from rs_wsss.raster.formats import FORMATS

from ..conftest import run_main_in_process


def _json(capfd, *argv: str):
    from rs_wsss_cli.main import main

    capfd.readouterr()
    try:
        main(list(argv))
    except SystemExit as exc:
        assert exc.code in (0, None), capfd.readouterr().err
    return json.loads(capfd.readouterr().out)


def _by_flag(params):
    return {p["flags"][-1] if p["flags"] else p["name"]: p for p in params}


def test_options_listing_takes_defaults_from_the_config_and_units_from_the_options(capfd, tmp_path):
    listing = _json(capfd, "options", "--json")
    cfg = Config()
    seg = _by_flag(listing["commands"]["segment"])
    assert seg["--tile"]["default"] == cfg.raster.tile and seg["--tile"]["unit"] == "px"
    assert seg["--overlap"]["default"] == cfg.raster.overlap
    assert seg["--scales"]["default"] == list(cfg.infer.scales) and seg["--crf"]["default"] == cfg.infer.crf
    assert seg["--crf"]["secondary"] == ["--no-crf"]
    assert seg["--min-area"]["unit"] == "m²" and seg["--simplify"]["unit"] == "m"
    assert seg["--device"]["choices"] == ["auto", "cpu", "cuda"] and seg["--tile"]["min"] == 32
    train = _by_flag(listing["commands"]["train"])
    assert train["--iters"]["default"] == cfg.train.iters and train["--batch"]["default"] == cfg.train.batch
    # the priors are free text (open_clip:ARCH too) but list the registry's names as choices, for QGIS
    for flag, role, default in (("--clip-prior", "clip", cfg.priors.clip), ("--dino-prior", "dino", cfg.priors.dino)):
        assert train[flag]["choices"] == [s.name for s in KNOWN.values() if s.role == role]
        assert train[flag]["default"] == default and train[flag]["config_key"] == f"priors.{role[:4]}"
    assert listing["config"] == cfg.to_dict()
    assert [s["name"] for s in listing["class_sets"]] == packaged_class_sets()
    assert [f["suffix"] for f in listing["formats"]] == [f.suffix for f in FORMATS]
    assert {"segment", "train", "tags template", "kb build", "doctor"} <= set(listing["commands"])
    # every option that overrides a config key lists that key's value, for every command
    for params in listing["commands"].values():
        for p in params:
            if p["config_key"]:
                section, key = p["config_key"].split(".")
                value = getattr(getattr(cfg, section), key)
                assert p["default"] == (list(value) if isinstance(value, tuple) else value), p


def test_a_config_file_changes_the_listed_defaults(capfd, tmp_path):
    (tmp_path / "mine.yaml").write_text("raster:\n  tile: 256\ntrain:\n  iters: 100\n")
    listing = _json(capfd, "options", "--json", "--config", str(tmp_path / "mine.yaml"))
    assert _by_flag(listing["commands"]["segment"])["--tile"]["default"] == 256
    assert _by_flag(listing["commands"]["train"])["--iters"]["default"] == 100


def test_config_show_and_kb_list_as_json(capfd):
    assert _json(capfd, "config", "show", "--json") == Config().to_dict()
    assert _json(capfd, "config", "show", "--json", "--changed", "--set", "usr.alpha=2") == {"usr": {"alpha": 2.0}}
    sets = {s["name"]: s for s in _json(capfd, "kb", "list", "--json")}
    cs = load_class_set("landcover")
    assert [c["name"] for c in sets["landcover"]["classes"]] == cs.names[1:]
    assert [c["color"] for c in sets["landcover"]["classes"]] == [color_hex(c.color) for c in cs.classes]
    code, _ = run_main_in_process(["options"], capfd)  # the text form runs too
    assert code == 0
