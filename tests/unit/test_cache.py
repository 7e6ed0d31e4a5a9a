"""The frozen-feature cache gives the loss and gradients of recomputing the backbones, and a changed input misses."""

from __future__ import annotations

import torch

from rs_wsss.classes import load_class_set
from rs_wsss.config import tiny_config
from rs_wsss.model.wsss import WSSS
from rs_wsss.priors import build_priors
from rs_wsss.raster.io import NormStats, open_scene
from rs_wsss.raster.tags import template_grid
from rs_wsss.train.batches import CachedBatches
from rs_wsss.train.cache import FeatureCache
from rs_wsss.train.sampler import TileSampler


def _sampler(shared_data, cfg, norm=None):
    scene = str(shared_data / "naip/m_4709963_se_14_1_20200831.tif")
    rows = [r.__class__(r.image, r.window, ("water",), r.row) for r in template_grid([scene], 128, 0.0)[:3]]
    return TileSampler(rows, {scene: open_scene(scene, norm=norm)}, load_class_set("landcover"), cfg)


def _grads(model):
    return torch.cat([p.grad.flatten() for p in model.trainable_parameters() if p.grad is not None])


def test_cached_features_give_the_same_loss_and_gradients(shared_data, tmp_path):
    cfg = tiny_config(["train.cache_views=2", "train.batch=2", "vpe.enabled=false"])
    clip, dino = build_priors(cfg.priors)
    torch.manual_seed(0)
    model = WSSS(cfg, load_class_set("landcover"), clip, dino)
    cache = FeatureCache(tmp_path / "c")
    cached = CachedBatches(_sampler(shared_data, cfg), cache)
    views = cached.fill(model)
    assert len(views) == 6 and cache.size_bytes() > 0
    batch = cached(0)
    images, tags, feats = batch.images, batch.tags, batch.feats
    assert feats["tokens"].shape[:2] == (2, clip.num_blocks) and feats["attn"].shape[1] == clip.num_blocks
    out_c = model.step_from_features(feats, images, tags)
    out_c["loss"].backward()
    g_c = _grads(model)
    model.zero_grad()
    out_r = model.train_step(images, tags)  # recompute the backbones on the same crops
    out_r["loss"].backward()
    g_r = _grads(model)
    assert torch.allclose(out_c["loss"], out_r["loss"], rtol=2e-2, atol=2e-3)
    # float16 features move a few pseudo-label pixels across a threshold: gradients agree in direction and size
    assert torch.nn.functional.cosine_similarity(g_c, g_r, dim=0) > 0.97
    assert abs(g_c.norm() / g_r.norm() - 1) < 0.1
    # a second fill reads everything from disk
    misses = cache.misses
    cached.fill(model)
    assert cache.misses == misses


def _keys(shared_data, cfg, tmp_path, norm=None):
    return CachedBatches(_sampler(shared_data, cfg, norm), FeatureCache(tmp_path / "c"))


def test_changed_weights_or_normalisation_invalidate_the_cache(shared_data, tmp_path):
    cfg = tiny_config(["train.cache_views=1"])
    s1 = _keys(shared_data, cfg, tmp_path)
    k = s1.view_key(0, 0, ["clip:random", "dino:random"])
    assert k == _keys(shared_data, cfg, tmp_path).view_key(0, 0, ["clip:random", "dino:random"])
    assert k != s1.view_key(0, 0, ["clip:other-weights", "dino:random"])
    assert k != s1.view_key(0, 1, ["clip:random", "dino:random"])
    s2 = _keys(shared_data, cfg, tmp_path, NormStats([0.0] * 3, [200.0] * 3))
    assert k != s2.view_key(0, 0, ["clip:random", "dino:random"])
    s3 = _keys(shared_data, tiny_config(["train.cache_views=1", "priors.clip_size=96"]), tmp_path)
    assert k != s3.view_key(0, 0, ["clip:random", "dino:random"])
