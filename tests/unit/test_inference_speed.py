"""Inference without wasted work: fused attention equals the explicit one, real weights skip random init, no DINO for
decoder inference, precision switch, automatic batch size, multi-scale and CRF shortcuts leave results unchanged."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rs_wsss.config import PriorsConfig, tiny_config
from rs_wsss.priors import build_priors
from rs_wsss.priors.clip import ClipPrior
from rs_wsss.priors.weights import ResolvedWeights, resolve


def test_fused_attention_path_gives_the_same_tokens_without_maps():
    clip, _ = build_priors(tiny_config().priors, need_dino=False)
    x = torch.rand(2, 3, 96, 64)
    with_maps, fused = clip(x, need_attn=True), clip(x, need_attn=False)
    assert fused.attn is None and with_maps.attn.shape == (2, clip.num_blocks, 24, 24)
    for a, b in zip(with_maps.tokens, fused.tokens):
        assert torch.allclose(a, b, atol=1e-5)
    assert torch.allclose(with_maps.joint, fused.joint, atol=1e-5)


def test_real_weights_load_without_any_random_initialisation(tmp_path, monkeypatch):
    cfg = PriorsConfig(clip_size=64)
    a = ClipPrior(cfg, ResolvedWeights("clip", None, "random"))
    torch.save({k: v.half() for k, v in a.model.state_dict().items()}, tmp_path / "open_clip_vit_b16_openai.bin")

    def no_random(tensor, *args, **kwargs):  # on the meta device an init draws nothing: only real tensors count
        if not tensor.is_meta:
            raise AssertionError("random initialisation on the real-weights path")
        return tensor

    for name in ("uniform_", "normal_", "trunc_normal_"):
        monkeypatch.setattr(torch.nn.init, name, no_random)
    monkeypatch.setattr(torch.Tensor, "normal_", no_random)
    monkeypatch.setattr(torch.Tensor, "uniform_", no_random)
    b = ClipPrior(cfg, resolve("clip", cfg, str(tmp_path)))
    assert all(p.dtype == torch.float32 and not p.is_meta for p in b.parameters())  # float16 file → float32 model
    x = torch.rand(1, 3, 64, 64)
    assert torch.allclose(a(x, need_attn=False).joint, b(x, need_attn=False).joint, atol=2e-2)
    assert torch.equal(b.model.attn_mask, torch.full((77, 77), float("-inf")).triu(1))
    assert b.encode_text(["a roof"]).shape == (1, 512)


def _tiny_checkpoint(path, **over):
    from rs_wsss.classes import load_class_set
    from rs_wsss.model.checkpoint import save_checkpoint
    from rs_wsss.model.wsss import WSSS

    cfg = tiny_config([f"{k}={v}" for k, v in over.items()])
    clip, dino = build_priors(cfg.priors)
    save_checkpoint(path, WSSS(cfg, load_class_set("landcover"), clip, dino))
    return path


def _potsdam(shared_data, size=128):
    import numpy as np
    import rasterio

    with rasterio.open(shared_data / "potsdam/images/2_10_0_0_512_512.png") as src:
        img = src.read([1, 2, 3]).astype(np.float32) / 255
    return np.stack([img[:, :size, :size], img[:, -size:, -size:]])


def test_precision_switch_changes_the_compute_dtype_and_agrees_with_fp32(tmp_path, shared_data):
    from rs_wsss.build import ModelSpec
    from rs_wsss.segment import load_segmenter

    ckpt = _tiny_checkpoint(tmp_path / "m.pt")
    x = _potsdam(shared_data)
    seen = {}
    out = {}
    for p in ("fp32", "bf16"):
        seg = load_segmenter(ModelSpec(str(ckpt), overrides=(f"infer.precision={p}",)))
        hooks = [seg.model.clip.model.visual.transformer.resblocks[0].mlp.register_forward_hook(
                     lambda m, i, o, p=p: seen.__setitem__(("clip", p), o.dtype)),
                 seg.model.decoder.blocks[0].qkv.register_forward_hook(
                     lambda m, i, o, p=p: seen.__setitem__(("decoder", p), o.dtype))]
        out[p] = seg.predict(x, np.ones(x.shape[:1] + x.shape[2:], bool))
        for h in hooks:
            h.remove()
        assert seg.model.clip.model.visual.conv1.weight.dtype == {"fp32": torch.float32, "bf16": torch.bfloat16}[p]
        assert seg.model.dino is None and seg.model.dino_adapter is not None  # decoder inference: DINO never built
    # low precision is the CLIP tower's alone: the adapter/decoder compute in float32 either way
    assert seen == {("clip", "fp32"): torch.float32, ("clip", "bf16"): torch.bfloat16,
                    ("decoder", "fp32"): torch.float32, ("decoder", "bf16"): torch.float32}
    assert out["bf16"].dtype == np.float32 and not np.array_equal(out["bf16"], out["fp32"])
    # stated tolerance (tiny untrained model, real Potsdam crops): |Δp| ≤ 0.02, ≥ 99 % of pixels same class
    assert np.abs(out["bf16"] - out["fp32"]).max() <= 0.02
    assert (out["bf16"].argmax(1) == out["fp32"].argmax(1)).mean() >= 0.99


def test_auto_precision_follows_the_cpu_flags(monkeypatch):
    from rs_wsss import runtime
    from rs_wsss.errors import RsWsssError

    monkeypatch.setattr(runtime, "cpu_has_bf16", lambda: True)
    assert runtime.choose_precision("auto", "cpu") == torch.bfloat16
    monkeypatch.setattr(runtime, "cpu_has_bf16", lambda: False)
    assert runtime.choose_precision("auto", "cpu") == torch.float32
    assert runtime.choose_precision("fp16", "cpu") == torch.float16
    with pytest.raises(RsWsssError):
        runtime.choose_precision("int8", "cpu")


def test_automatic_batch_size_shrinks_with_the_tile():
    from rs_wsss.runtime import auto_batch

    assert auto_batch(512, "cpu") == 4  # CPU: small batches, the cores are busy at batch 1
    assert auto_batch(2048, "cpu") < auto_batch(1024, "cpu") <= 4
    assert auto_batch(2048, "cpu", scales=[1.5]) <= auto_batch(2048, "cpu") and auto_batch(8192, "cpu") == 1


def test_crf_in_worker_processes_gives_the_in_process_result(shared_data):
    from rs_wsss.config import InferConfig
    from rs_wsss.model import crf

    x = _potsdam(shared_data, 96)
    rgb = (x.transpose(0, 2, 3, 1) * 255).round().astype(np.uint8)
    g = x.mean(1, keepdims=True)
    probs = np.concatenate([g, 1 - g, np.full_like(g, 0.1)], 1).astype(np.float32)
    probs /= probs.sum(1, keepdims=True)
    cfg = InferConfig(crf_iters=3)
    serial = crf.crf_refine_batch(rgb, probs, cfg, workers=1)
    pooled = crf.crf_refine_batch(rgb, probs, cfg, workers=2)
    assert crf._pool_size == 2  # the pool ran it
    assert np.array_equal(serial, pooled) and not np.allclose(serial, probs, atol=1e-3)  # the CRF changed something
    assert crf.crf_workers(0, 4) >= 1 and crf.crf_workers(3, 4) == 3


def test_training_eta_covers_the_whole_schedule():
    from rs_wsss.train.loop import eta_text

    assert eta_text(None, 10, 40000) == "" and eta_text(2.0, 40000, 40000) == ""
    text = eta_text(0.5, 200, 40000)  # 39 800 steps at 0.5 it/s = 79 600 s = 22 h 6.7 min
    assert "ETA 22 h 7 min" in text and "200–40000 of 40000" in text and "0.5 it/s" in text


def test_train_logs_an_eta_for_the_whole_schedule(tmp_path, caplog, monkeypatch):
    import logging

    from rs_wsss.classes import load_class_set
    from rs_wsss.model.wsss import WSSS
    from rs_wsss.train.batches import Batch
    from rs_wsss.train.loop import train

    monkeypatch.setenv("RS_WSSS_CACHE", str(tmp_path / "cache"))
    cfg = tiny_config(["train.iters=6", "train.log_every=100", "train.checkpoint_every=100"])
    model = WSSS(cfg, load_class_set("potsdam"), *build_priors(cfg.priors))
    imgs, tags = torch.rand(1, 3, 64, 64), torch.tensor([[1.0, 0, 0, 0, 0]])
    with caplog.at_level(logging.INFO, logger="rs_wsss"):
        train(model, lambda step: Batch(imgs, tags), cfg.train, tmp_path / "m.pt")
    etas = [r.getMessage() for r in caplog.records if "ETA" in r.getMessage()]
    assert len(etas) == 1 and "whole schedule" in etas[0] and "of 6" in etas[0]
    assert "6 steps × batch 2" in etas[0] and "(cpu, fp32, frozen-feature cache off)" in etas[0]


def test_train_suggests_the_cache_and_bf16_on_a_cpu_where_they_apply():
    from rs_wsss import runtime
    from rs_wsss.train.loop import projection

    cfg = tiny_config(["train.iters=100"]).train
    cpu = torch.device("cpu")
    for has_bf16 in (True, False):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(runtime, "cpu_has_bf16", lambda has=has_bf16: has)
            plain = projection(2.0, 2, cfg, cpu, False, torch.float32)
            assert "at 0.50 s/step" in plain[0] and "≈ 0 min" not in plain[0]
            assert any("--cache-features" in t for t in plain[1:])
            assert any("train.precision=bf16" in t for t in plain[1:]) == has_bf16
            assert len(projection(2.0, 2, cfg, cpu, True, torch.bfloat16)) == 1  # both on: nothing to suggest
    assert len(projection(2.0, 2, cfg, torch.device("cuda"), False, torch.float32)) == 1  # CPU tips only

