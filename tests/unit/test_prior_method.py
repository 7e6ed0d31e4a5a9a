"""The method adapts to the prior it is given: crops keep the token grid, adapter widths and levels follow the
backbone, N0 is scaled to the depth, zero-shot runs with every CLIP prior, the knowledge-base cache and checkpoints
are keyed by the prior, and the CLI names priors from the registry.

Priors are the *tiny stand-ins* of each known prior (``priors.tiny``: width 64, 4 CLIP / 2 DINO blocks; the known
prior's patch, activation and text positions kept) with random weights: the real sizes do not fit CI; the real sizes'
specs are checked against open_clip/timm in ``test_prior_registry.py``.
"""

from __future__ import annotations

import pytest
import torch

from rs_wsss.classes import load_class_set
from rs_wsss.config import tiny_config
from rs_wsss.errors import RsWsssError
from rs_wsss.model.checkpoint import load_checkpoint, restore_model, save_checkpoint
from rs_wsss.model.tpe import kb_cache_key
from rs_wsss.model.wsss import WSSS
from rs_wsss.priors import build_priors
from rs_wsss.priors.specs import KNOWN, Prior, depth_scaled, names
from tests.conftest import run_main_in_process


def _tiny(clip="openai-vit-b-16", dino="dinov2-vit-b-14", *more):
    # the token grid of the crop comes from the config: 3 × 3 tokens whatever the patch
    cfg = tiny_config([f"priors.clip={clip}", f"priors.dino={dino}", "priors.clip_size=null", "priors.clip_grid=3",
                       *more])
    return cfg, build_priors(cfg.priors)


@pytest.mark.usefixtures("kb_cache")
@pytest.mark.parametrize("name", names("clip"))
def test_zero_shot_runs_with_every_clip_prior(name):
    cfg, (clip, dino) = _tiny(name)
    spec = KNOWN[name]
    assert isinstance(clip, Prior) and isinstance(dino, Prior) and clip.spec is spec  # both implement the protocol
    assert clip.size == 3 * spec.patch and clip.patch == spec.patch
    act = type(clip.model.visual.transformer.resblocks[0].mlp.gelu).__name__
    assert act == ("GELU" if spec.activation == "gelu" else "QuickGELU")
    assert clip.model.positional_embedding.shape[0] == spec.context_length  # FarSLIP: Long-CLIP's 248
    model = WSSS(cfg, load_class_set("landcover"), clip, dino).eval()
    images = torch.rand(1, 3, 2 * spec.patch, 3 * spec.patch)
    probs = model.zero_shot(images, scales=[1.0], flip=False)
    assert probs.shape == (1, model.class_set.num_classes + 1, 2 * spec.patch, 3 * spec.patch)
    assert torch.isfinite(probs).all() and torch.allclose(probs.sum(1), torch.ones(1, *probs.shape[2:]), atol=1e-4)


def test_the_knowledge_base_cache_is_keyed_by_the_prior():
    ids = {n: _tiny(n)[1][0].identifier for n in ("openai-vit-b-16", "farslip-vit-b-16", "skyclip-vit-b-32")}
    assert len({kb_cache_key(["a roof"], i) for i in ids.values()}) == 3  # same texts, another text tower: no reuse
    assert all(i.startswith(f"{n}(tiny)|") for n, i in ids.items())


def test_adapter_widths_levels_and_n0_follow_the_backbone(monkeypatch):
    """The adapter reads every block of the prior at its width, and usr.n0 is scaled to the spec's depth (ViT-L's
    24 blocks; the tiny stand-in runs 4). A wider stand-in (width 96) changes the adapter's input and the count."""
    base_cfg, base = _tiny()
    cfg, (clip, dino) = _tiny("remoteclip-vit-l-14", "dinov2-vit-l-14", "usr.n0=2")
    m = WSSS(cfg, load_class_set("landcover"), clip, dino)
    b = WSSS(base_cfg, load_class_set("landcover"), *base)
    assert (m.adapter.in_dim, m.adapter.n_levels) == (clip.width, clip.num_blocks)
    assert (m.n0, b.n0) == (3, 2)  # block 2 of 12 is block 3 of 24: the same share of deep blocks
    assert [depth_scaled(n, 24) for n in (1, 6, 12)] == [1, 11, 23] and depth_scaled(6, 12) == 6
    import rs_wsss.priors.clip as clip_mod

    narrow = clip_mod._tiny_config
    monkeypatch.setattr(clip_mod, "_tiny_config", lambda spec, size: {**narrow(spec, size), "vision_cfg": {
        **narrow(spec, size)["vision_cfg"], "width": 96}})
    wider = build_priors(cfg.priors)[0]
    w = WSSS(cfg, load_class_set("landcover"), wider, dino)
    assert w.adapter.in_dim == 96
    assert w.param_counts()["adapter"] > m.param_counts()["adapter"]
    with pytest.raises(RsWsssError, match=r"usr.n0=3 is outside 1..4 .*block 5 of remoteclip-vit-l-14.s 24"):
        WSSS(tiny_config(["usr.n0=3", "priors.clip=remoteclip-vit-l-14"]), load_class_set("landcover"), clip, dino)


def test_a_checkpoint_records_its_priors_and_refuses_others(tmp_path):
    cfg, priors = _tiny("remoteclip-vit-b-32", "dinov2-vit-s-14-reg")
    model = WSSS(cfg, load_class_set("landcover"), *priors)
    save_checkpoint(tmp_path / "m.pt", model, step=1)
    state = load_checkpoint(tmp_path / "m.pt")
    assert state["backbones"]["clip"].startswith("remoteclip-vit-b-32(tiny)|clip:random")
    assert state["config"]["priors"]["clip"] == "remoteclip-vit-b-32"  # segment with it builds the same prior
    assert state["priors"]["clip"] == {"name": "remoteclip-vit-b-32", "arch": "ViT-B-32", "file": None, "size": None,
                                       "sha256": None}  # random weights: no file (a file's sha256: registry tests)
    assert state["priors"]["dino"]["name"] == "dinov2-vit-s-14-reg"
    restore_model(WSSS(cfg, load_class_set("landcover"), *priors), state, "m.pt")  # the same priors: fine
    other_cfg, other = _tiny("georsclip-vit-b-32", "dinov2-vit-s-14-reg")
    with pytest.raises(RsWsssError) as exc:
        restore_model(WSSS(other_cfg, load_class_set("landcover"), *other), state, "m.pt")
    assert "trained on the CLIP prior remoteclip-vit-b-32(tiny), not georsclip-vit-b-32(tiny)" in str(exc.value)
    assert "--clip-prior remoteclip-vit-b-32" in str(exc.value) and "\n" not in str(exc.value)
    dino_cfg, dino_other = _tiny("remoteclip-vit-b-32", "dinov2-vit-s-14", "adapter.dino_levels=2")
    with pytest.raises(RsWsssError, match="trained on the DINO prior dinov2-vit-s-14-reg.*--dino-prior "
                                          "dinov2-vit-s-14-reg"):
        restore_model(WSSS(dino_cfg, load_class_set("landcover"), priors[0], dino_other[1]), state, "m.pt")
    # a checkpoint made before the registry recorded open_clip's architecture name: still the default prior
    base_cfg, base = _tiny()
    legacy = {**state, "backbones": {"clip": "tiny|clip:random", "dino": "tiny|dino:random"},
              "class_set": state["class_set"]}
    restore_model(WSSS(base_cfg, load_class_set("landcover"), *base), legacy, "old.pt")


def test_the_cli_lists_and_checks_prior_names(capfd, tmp_path):
    code, err = run_main_in_process(["weights", "--weights", "random"], capfd)
    assert code == 0, err
    code, err = run_main_in_process(["weights", "--clip-prior", "remoteclip-vit-b-16"], capfd)
    assert code == 2 and "unknown clip prior 'remoteclip-vit-b-16'" in err and err.strip().count("\n") == 0
    code, err = run_main_in_process(["info", "--tiny", "--classes", "landcover", "--dino-prior", "openai-vit-b-16"],
                                    capfd)
    assert code == 2 and "is a clip prior, not a dino one" in err


def test_weights_lists_every_known_prior_with_its_files(tmp_path):
    import subprocess
    import sys

    (tmp_path / "RemoteCLIP-ViT-B-32.pt").write_bytes(b"x")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    p = subprocess.run([sys.executable, "-m", "rs_wsss_cli.main", "weights", "--weights", str(tmp_path),
                        "--clip-prior", "remoteclip-vit-b-32"], capture_output=True, text=True, env=env, check=False)
    for spec in KNOWN.values():
        assert f" {spec.name}: {spec.arch}" in p.stdout and spec.files[0] in p.stdout and spec.licence in p.stdout
    assert "* remoteclip-vit-b-32: ViT-B-32, QuickGELU, patch 32" in p.stdout
    assert "crop 640 px (20×20 tokens)" in p.stdout
    assert f"weights: {tmp_path / 'RemoteCLIP-ViT-B-32.pt'} (from explicit)" in p.stdout
    assert p.returncode == 2 and "missing" in p.stderr  # the config's DINO prior is not in that folder


def test_kb_build_caches_one_knowledge_base_per_prior(tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("RS_WSSS_CACHE", str(tmp_path))
    for name in ("openai-vit-b-16", "farslip-vit-b-16", "openai-vit-b-16"):
        code, err = run_main_in_process(["kb", "build", "--classes", "landcover", "--tiny", "--clip-prior", name],
                                        capfd)
        assert code == 0, err
    assert len(list(tmp_path.glob("kb_*.pt"))) == 2  # the third run reused the first prior's


def test_weights_json_lists_the_registry():
    """What the QGIS plugin can read for its prior choices: every registry entry, the crop, the resolution."""
    import json

    from click.testing import CliRunner

    from rs_wsss_cli.weights import weights_cmd

    out = CliRunner().invoke(weights_cmd, ["--weights", "random", "--json", "--clip-prior", "skyclip-vit-b-32"])
    assert out.exit_code == 0, out.output
    rows = json.loads(out.output)
    assert [r["name"] for r in rows] == list(KNOWN)
    sky = next(r for r in rows if r["name"] == "skyclip-vit-b-32")
    assert sky["chosen"] and sky["activation"] == "gelu" and sky["crop"] == 640 and sky["weights"] == "random"
    assert [r["name"] for r in rows if r["chosen"]] == ["skyclip-vit-b-32", "dinov2-vit-b-14"]
