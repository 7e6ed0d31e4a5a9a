"""One source of defaults (the dataclasses), YAML files that hold only what differs, and typed, range-checked values
from YAML files and --set overrides."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from rs_wsss.build import ModelSpec, resolve_config
from rs_wsss.config import (
    Config,
    apply_override,
    changed,
    load_config,
    packaged_config,
    set_value,
    tiny_config,
)
from rs_wsss.errors import ConfigError, RsWsssError

KEYS = [(s.name, f.name) for s in dataclasses.fields(Config) for f in dataclasses.fields(getattr(Config(), s.name))]


def test_the_packaged_yaml_holds_only_what_differs_from_the_dataclasses():
    folder = packaged_config("")
    assert sorted(p.name for p in folder.glob("*.yaml")) == ["tiny.yaml"]  # no mirrored copy of the defaults
    data = yaml.safe_load(packaged_config("tiny.yaml").read_text())
    defaults = Config().to_dict()
    same = [f"{s}.{k}" for s, values in data.items() for k, v in values.items() if defaults[s][k] == v]
    assert not same, f"tiny.yaml repeats defaults: {same}"
    assert changed(tiny_config()) == data  # and everything it says is applied


def test_defaults_are_the_papers_and_pass_their_own_checks():
    cfg = load_config()
    assert cfg.to_dict() == Config().to_dict()
    from rs_wsss.priors.specs import crop_size

    assert (crop_size(cfg.priors, "clip"), crop_size(cfg.priors, "dino")) == (320, 308)  # 20 × 16, 22 × 14
    assert (cfg.train.lr, cfg.train.weight_decay, cfg.train.batch, cfg.train.iters) == (2e-3, 1e-3, 4, 40000)
    assert (cfg.decoder.layers, cfg.decoder.heads, cfg.tpe.n_clusters, cfg.usr.alpha) == (3, 8, 8, 3)
    # every field's type is one the checker knows, and every default is in range: a round trip through YAML holds
    again = Config.from_dict(yaml.safe_load(cfg.to_yaml()), source="test")
    assert again.to_dict() == cfg.to_dict() and len(KEYS) > 60


def test_overrides_are_parsed_as_yaml_and_unknown_keys_fail():
    cfg = load_config(overrides=["usr.alpha=2", "vpe.enabled=false", "infer.scales=[1.0, 0.5]"])
    assert cfg.usr.alpha == 2 and cfg.vpe.enabled is False and cfg.infer.scales == [1.0, 0.5]
    for bad in ("usr.alpah=2", "nosuch.key=1", "alpha=2"):
        with pytest.raises(RsWsssError):
            apply_override(Config(), bad)


@pytest.mark.parametrize("item, message", [
    ("infer.batch=many", "infer.batch: expected an integer, got 'many'"),
    ("infer.batch=2.5", "infer.batch: expected an integer, got 2.5"),
    ("infer.batch=true", "infer.batch: expected an integer, got True"),
    ("usr.alpha=two", "usr.alpha: expected an integer, got 'two'"),
    ("train.lr=fast", "train.lr: expected a number, got 'fast'"),
    ("infer.crf=maybe", "infer.crf: expected true or false, got 'maybe'"),
    ("cam.bg_rule=pwr", "cam.bg_rule: expected one of 'power', 'constant', got 'pwr'"),
    ("loss.aff_on=jiont", "loss.aff_on: expected one of 'joint', 'decoder'"),
    ("infer.scales=1", "infer.scales: expected a list of numbers"),
    ("infer.scales=[1, x]", "infer.scales: expected a list of numbers"),
    ("raster.bands=[4, 3.5, 2]", "raster.bands: expected a list of integers, e.g. [1, 2] or null"),
    ("raster.gsd=[1]", "raster.gsd: expected a number or null"),
    ("tpe.template=3", "tpe.template: expected a string, got 3"),
    ("train.batch=0", "train.batch: must be ≥ 1, got 0"),
    ("raster.overlap=1", "raster.overlap: must be < 1, got 1.0"),
    ("raster.tile=16", "raster.tile: must be ≥ 32, got 16"),
    ("infer.scales=[1, -0.5]", "infer.scales: each value must be > 0, got -0.5"),
    ("train.tile=256", "'train.tile' was removed"),
])
def test_bad_values_name_the_key_and_the_expected_type(item, message):
    with pytest.raises(ConfigError) as err:
        apply_override(Config(), item)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert isinstance(err.value, ValueError)  # Python callers may catch the builtin


def test_yaml_1_1_numbers_ints_and_nulls_get_the_field_type(tmp_path):
    cfg = load_config(overrides=["train.lr=1e-3", "loss.aff_weight=1", "raster.gsd=0.5", "loss.aff_radius=null"])
    assert cfg.train.lr == 0.001 and type(cfg.train.lr) is float  # PyYAML reads 1e-3 as text
    assert cfg.loss.aff_weight == 1.0 and type(cfg.loss.aff_weight) is float
    assert cfg.raster.gsd == 0.5 and cfg.loss.aff_radius is None
    p = tmp_path / "mine.yaml"
    p.write_text("train:\n  lr: 5e-4\n  weight_decay: 1E-2\ninfer:\n  scales: [1, 2e0]\n")
    cfg = load_config(p)
    assert (cfg.train.lr, cfg.train.weight_decay, cfg.infer.scales) == (5e-4, 1e-2, [1.0, 2.0])
    p.write_text("train:\n  batch: four\n")
    with pytest.raises(ConfigError, match=r"train.batch: expected an integer, got 'four' \(from .*mine.yaml\)"):
        load_config(p)


def test_typed_settings_are_checked_like_yaml_values():
    cfg = Config()
    set_value(cfg, "raster.tile", 256)
    assert cfg.raster.tile == 256
    with pytest.raises(ConfigError, match="raster.tile: must be ≥ 32"):
        set_value(cfg, "raster.tile", 8)
    assert load_config(settings={"infer.scales": (1, 2)}).infer.scales == [1.0, 2.0]


def test_user_yaml_layers_on_top(tmp_path):
    p = tmp_path / "mine.yaml"
    p.write_text("tpe:\n  enabled: false\ntrain:\n  iters: 7\n")
    cfg = load_config(p)
    assert cfg.tpe.enabled is False and cfg.train.iters == 7 and cfg.train.lr == 2e-3
    p.write_text("tpe: [1, 2]\n")
    with pytest.raises(RsWsssError):
        load_config(p)


def test_tiny_config_is_small_and_explicitly_random():
    t = tiny_config()
    assert t.priors.tiny and t.priors.weights == "random"
    assert t.adapter.dim < Config().adapter.dim
    assert Config.from_dict(t.to_dict()).to_dict() == t.to_dict()


def test_a_checkpoints_removed_keys_are_dropped_and_its_config_is_shown(tmp_path):
    torch = pytest.importorskip("torch")
    stored = tiny_config(["usr.alpha=5"]).to_dict()
    stored["train"]["tile"] = 512  # written by an older rs-wsss
    ckpt = tmp_path / "m.pt"
    torch.save({"format": 1, "trainable": {}, "config": stored}, ckpt)
    cfg, _ = resolve_config(ModelSpec(str(ckpt), overrides=("infer.batch=3",)))
    assert cfg.usr.alpha == 5 and cfg.infer.batch == 3 and cfg.priors.tiny
    with pytest.raises(ConfigError, match="not both"):
        resolve_config(ModelSpec(str(ckpt), tiny=True))


@settings(max_examples=150, deadline=None)
@given(key=st.sampled_from(KEYS), raw=st.text(max_size=12))
def test_any_override_text_loads_or_is_a_config_error(key, raw):
    try:
        apply_override(Config(), f"{key[0]}.{key[1]}={raw}")
    except ConfigError:
        pass


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "rs_wsss_cli.main", *args], capture_output=True, text=True)


def test_config_show_prints_the_resolved_config_and_refuses_bad_values():
    p = _cli("config", "show", "--set", "raster.tile=256", "--tiny")
    assert p.returncode == 0, p.stderr
    shown = yaml.safe_load(p.stdout)
    assert shown["raster"]["tile"] == 256 and shown["priors"]["tiny"] is True
    assert Config.from_dict(shown).to_dict() == tiny_config(["raster.tile=256"]).to_dict()
    p = _cli("config", "show", "--changed", "--set", "usr.alpha=2")
    assert p.returncode == 0 and yaml.safe_load(p.stdout) == {"usr": {"alpha": 2}}
    p = _cli("config", "show", "--set", "infer.batch=many")
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.splitlines() == ["rs-wsss: error: infer.batch: expected an integer, got 'many' "
                                     "(from --set infer.batch=many)"]
