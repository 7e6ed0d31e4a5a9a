"""Frozen priors: shapes at the paper's sizes, attention capture, the real loading path, weight resolution."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from rs_wsss.config import PriorsConfig, load_config, tiny_config
from rs_wsss.errors import WeightsNotFound
from rs_wsss.priors import build_priors
from rs_wsss.priors.clip import ClipPrior
from rs_wsss.priors.dino import DinoPrior
from rs_wsss.priors.weights import ENV_DIR, ResolvedWeights, resolve


@pytest.fixture(scope="module")
def real_priors():
    return build_priors(load_config().priors, "random")


@pytest.mark.slow
def test_real_vit_b_shapes_at_the_paper_sizes(real_priors):
    clip, dino = real_priors
    f = clip(torch.rand(1, 3, 320, 320))
    assert len(f.tokens) == 12 and all(t.shape == (1, 768, 20, 20) for t in f.tokens)
    assert f.attn.shape == (1, 12, 400, 400) and f.joint.shape == (1, 512, 20, 20)
    assert dino(torch.rand(1, 3, 308, 308)).shape == (1, 768, 22, 22)
    assert clip.encode_text(["an overhead satellite image of building."]).shape == (1, 512)


def test_per_block_attention_equals_a_manual_softmax():
    clip, _ = build_priors(tiny_config().priors, need_dino=False)
    x = torch.rand(2, 3, 64, 64)
    f = clip(x)
    # recompute by hand: run the open_clip blocks on the same input and softmax(QKᵀ/√d) per head
    v = clip.model.visual
    h = v.conv1((x - clip.mean) / clip.std).flatten(2).transpose(1, 2)
    h = torch.cat([v.class_embedding.expand(2, 1, -1), h], 1)
    h = v.ln_pre(h + clip._pos_embed(4, 4))
    for l, blk in enumerate(v.transformer.resblocks):
        y = blk.ln_1(h)
        w, b = blk.attn.in_proj_weight, blk.attn.in_proj_bias
        c, nh = y.shape[-1], blk.attn.num_heads
        q = (y @ w[:c].T + b[:c]).view(2, -1, nh, c // nh).transpose(1, 2)
        k = (y @ w[c : 2 * c].T + b[c : 2 * c]).view(2, -1, nh, c // nh).transpose(1, 2)
        manual = torch.softmax(q @ k.transpose(-1, -2) / (c // nh) ** 0.5, -1).mean(1)[:, 1:, 1:]
        assert torch.allclose(f.attn[:, l], manual, atol=1e-5)
        h = blk(h)  # open_clip's own block (need_weights=False path) for the next layer's input
        assert torch.allclose(f.tokens[l], h[:, 1:].transpose(1, 2).reshape(2, -1, 4, 4), atol=1e-5)


def test_clip_loader_reproduces_a_saved_model_exactly(tmp_path):
    cfg = PriorsConfig(clip_size=64)
    a = ClipPrior(cfg, ResolvedWeights("clip", None, "random"))
    path = tmp_path / "open_clip_vit_b16_openai.bin"
    torch.save(a.model.state_dict(), path)
    b = ClipPrior(cfg, resolve("clip", cfg, str(tmp_path)))  # through open_clip's loader
    x = torch.rand(1, 3, 64, 64)
    fa, fb = a(x), b(x)
    assert torch.equal(fa.joint, fb.joint) and torch.equal(fa.attn, fb.attn)
    assert torch.equal(a.encode_text(["a roof"]), b.encode_text(["a roof"]))
    c = ClipPrior(cfg, ResolvedWeights("clip", None, "random"))
    assert not torch.equal(c(x).joint, fa.joint)  # a different random model differs: the load did something


def test_dino_loader_reproduces_a_saved_model_exactly(tmp_path):
    from safetensors.torch import save_file

    cfg = PriorsConfig(dino_size=56)
    a = DinoPrior(cfg, ResolvedWeights("dino", None, "random"))
    path = tmp_path / "dinov2_vitb14.safetensors"
    save_file({k: v.contiguous() for k, v in a.model.state_dict().items()}, path)
    b = DinoPrior(cfg, resolve("dino", cfg, str(path)))  # timm pretrained_cfg_overlay=dict(file=...)
    x = torch.rand(1, 3, 56, 56)
    assert torch.equal(a(x), b(x)) and a(x).shape == (1, 768, 4, 4)


def test_resolution_order_explicit_then_env_then_error(tmp_path, monkeypatch):
    cfg = PriorsConfig()
    env_dir, explicit = tmp_path / "env", tmp_path / "mine"
    env_dir.mkdir(), explicit.mkdir()
    (env_dir / "open_clip_vit_b16_openai.bin").write_bytes(b"x")
    (explicit / "clip_weights.bin").write_bytes(b"y")
    monkeypatch.setenv(ENV_DIR, str(env_dir))
    assert resolve("clip", cfg).source == "env"
    r = resolve("clip", cfg, str(explicit))
    assert r.source == "explicit" and r.path.name == "clip_weights.bin"
    assert resolve("clip", cfg, "random").is_random and resolve("clip", tiny_config().priors).is_random
    with pytest.raises(WeightsNotFound):
        resolve("dino", cfg, str(explicit))  # explicit dir without a dino file: no silent fallback
    monkeypatch.setenv(ENV_DIR, str(tmp_path / "nothing"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(WeightsNotFound) as exc:
        resolve("clip", cfg)
    assert "\n" not in str(exc.value) and "RS_WSSS_WEIGHTS_DIR" in str(exc.value) and "random" in str(exc.value)


def test_offline_without_weights_is_one_line_and_nonzero(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    p = subprocess.run([sys.executable, "-m", "rs_wsss_cli.main", "weights"], capture_output=True, text=True, env=env)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert len([l for l in p.stderr.splitlines() if l.strip()]) == 1 and "missing" in p.stderr


def test_priors_are_frozen_and_stateless():
    clip, dino = build_priors(tiny_config().priors)
    for m in (clip, dino):
        assert not any(p.requires_grad for p in m.parameters())
        m.train()
        assert not m.training
    x = torch.rand(1, 3, 64, 64, requires_grad=True)
    f1, f2 = clip(x), clip(x)
    assert torch.equal(f1.joint, f2.joint) and not f1.joint.requires_grad
    assert torch.equal(dino(F.interpolate(x, 56)), dino(F.interpolate(x, 56)))
