"""The YAML files and the dataclasses describe the same keys; overrides are typed and checked."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from rs_wsss.config import Config, apply_override, load_config, packaged_config, tiny_config
from rs_wsss.errors import RsWsssError


def _yaml_keys(*names: str) -> set[str]:
    keys: set[str] = set()
    for name in names:
        for section, values in yaml.safe_load(packaged_config(name).read_text()).items():
            keys |= {f"{section}.{k}" for k in values}
    return keys


def test_yaml_defaults_cover_every_dataclass_key_and_match_the_paper():
    fields = {
        f"{s.name}.{f.name}"
        for s in dataclasses.fields(Config)
        for f in dataclasses.fields(getattr(Config(), s.name))
    }
    assert _yaml_keys("model.yaml", "train.yaml") == fields
    # the YAML defaults equal the dataclass defaults (no drift between the two)
    assert load_config().to_dict() == Config().to_dict()
    cfg = load_config()
    # the paper's stated values (Sect. 4.2, Tables 5-6)
    assert (cfg.priors.clip_size, cfg.priors.dino_size) == (320, 308)
    assert (cfg.train.lr, cfg.train.weight_decay, cfg.train.batch, cfg.train.iters) == (2e-3, 1e-3, 4, 40000)
    assert (cfg.decoder.layers, cfg.decoder.heads, cfg.tpe.n_clusters, cfg.usr.alpha) == (3, 8, 8, 3)


def test_overrides_are_parsed_as_yaml_and_unknown_keys_fail():
    cfg = load_config(overrides=["usr.alpha=2", "vpe.enabled=false", "infer.scales=[1.0, 0.5]"])
    assert cfg.usr.alpha == 2 and cfg.vpe.enabled is False and cfg.infer.scales == [1.0, 0.5]
    for bad in ("usr.alpah=2", "nosuch.key=1", "alpha=2"):
        with pytest.raises(RsWsssError):
            apply_override(Config(), bad)


def test_tiny_config_is_small_and_explicitly_random():
    t = tiny_config()
    assert t.priors.tiny and t.priors.weights == "random"
    assert t.adapter.dim < Config().adapter.dim
    assert Config.from_dict(t.to_dict()).to_dict() == t.to_dict()


def test_user_yaml_layers_on_top(tmp_path):
    p = tmp_path / "mine.yaml"
    p.write_text("tpe:\n  enabled: false\ntrain:\n  iters: 7\n")
    cfg = load_config(p)
    assert cfg.tpe.enabled is False and cfg.train.iters == 7 and cfg.train.lr == 2e-3
    p.write_text("tpe: [1, 2]\n")
    with pytest.raises(RsWsssError):
        load_config(p)
