"""``rs-wsss info``: parameter counts, GFLOPs and config differences as printed lines, checked against the model."""

from __future__ import annotations

import re

import pytest
import torch
from click.testing import CliRunner

from rs_wsss.classes import load_class_set
from rs_wsss.config import tiny_config
from rs_wsss.errors import RsWsssError
from rs_wsss.model.profile import config_differences, crop_flops
from rs_wsss.model.wsss import WSSS
from rs_wsss.priors import build_priors
from rs_wsss_cli.main import cli


def _run(*args) -> str:
    res = CliRunner().invoke(cli, ["info", *args], catch_exceptions=True)
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        raise res.exception
    assert res.exit_code == 0, res.output
    return res.output


def _number(out: str, label: str) -> float:
    m = re.search(rf"^{label} ([0-9.]+)", out, re.M)
    assert m, f"no '{label}' line in:\n{out}"
    return float(m.group(1))


def test_info_prints_counts_flops_classes_and_differences():
    out = _run("--classes", "potsdam", "--tiny", "--set", "usr.warmup_iters=7")
    clip, dino = build_priors(tiny_config().priors)
    model = WSSS(tiny_config(), load_class_set("potsdam"), clip, dino)
    trainable = sum(p.numel() for m in (model.adapter, model.dino_adapter, model.decoder) for p in m.parameters())
    assert _number(out, "trainable") == pytest.approx(trainable / 1e6, abs=0.005)
    assert "GFLOPs" in out and "FlopCounterMode" in out and "per 64-px crop" in out
    assert "classes potsdam: 5 + background" in out and "random weights (explicit)" in out
    assert "config usr.warmup_iters = 7   (default 0)" in out and "config priors.tiny = True" in out


def test_info_reads_the_config_file(tmp_path):
    yaml = tmp_path / "mine.yaml"
    yaml.write_text("usr:\n  warmup_iters: 5\n")
    out = _run("--classes", "potsdam", "--tiny", "--config", str(yaml))
    assert "config usr.warmup_iters = 5   (default 0)" in out


def test_switching_dino_off_removes_its_adapter_parameters_and_flops():
    cfg = tiny_config()
    clip, dino = build_priors(cfg.priors)
    with_dino = WSSS(cfg, load_class_set("potsdam"), clip, dino)
    without = WSSS(tiny_config(["usr.use_dino=false"]), load_class_set("potsdam"), clip, None)
    a, b = crop_flops(with_dino), crop_flops(without)
    assert a.dino > 0 and b.dino == 0 and a.clip == b.clip
    assert a.trainable > b.trainable > 0
    # the adapter's 1×1 convs by hand: 2·(in·hid + hid·out)·hw per level + 2·(L·out)·out·hw for the fuse
    ad, hw = with_dino.adapter, (64 // 16) ** 2
    lv = ad.n_levels
    conv = 2 * hw * (lv * (64 * 32 + 32 * 32) + lv * 32 * 32)
    with torch.no_grad():
        from torch.utils.flop_counter import FlopCounterMode

        with FlopCounterMode(display=False) as fc:
            ad([torch.rand(1, 64, 4, 4) for _ in range(lv)])
    assert fc.get_total_flops() == conv
    out = _run("--classes", "potsdam", "--tiny", "--set", "usr.use_dino=false")
    assert "DINO   off" in out and "config usr.use_dino = False" in out


def test_config_differences_and_bad_arguments():
    assert config_differences(tiny_config(), tiny_config()) == []
    diffs = dict((k, (v, d)) for k, v, d in config_differences(tiny_config(["pseudo.rule=band"])))
    assert diffs["pseudo.rule"] == ("band", "argmax")
    with pytest.raises(RsWsssError, match="either --classes"):
        _run("--tiny")


def test_info_of_a_checkpoint_uses_its_config_and_classes(tmp_path):
    from rs_wsss.model.checkpoint import save_checkpoint

    cfg = tiny_config(["vpe.background_prototype=true", "adapter.dino_levels=1"])
    clip, dino = build_priors(cfg.priors)
    model = WSSS(cfg, load_class_set("isaid"), clip, dino)
    save_checkpoint(tmp_path / "m.pt", model)
    out = _run("--model", str(tmp_path / "m.pt"))
    assert "classes isaid: 15 + background" in out and "last 1 blocks" in out
    assert _number(out, "trainable") == pytest.approx(model.param_counts()["trainable"] / 1e6, abs=0.005)
    assert "config vpe.background_prototype = True   (default False)" in out
