"""The open choices of the README's table that are training-side switches: random rescale (train.rescale) changes
the crops only when on, and a feature cache tells the settings apart; N0's default is WeCLIP's."""

from __future__ import annotations

import numpy as np
import pytest

from rs_wsss.classes import load_class_set
from rs_wsss.config import Config, tiny_config
from rs_wsss.errors import ConfigError
from rs_wsss.raster.io import open_scene
from rs_wsss.raster.tags import template_grid
from rs_wsss.train.batches import CachedBatches
from rs_wsss.train.cache import FeatureCache
from rs_wsss.train.sampler import TileSampler


def _sampler(shared_data, cfg):
    scene = str(shared_data / "naip/m_4709963_se_14_1_20200831.tif")
    rows = [r.__class__(r.image, r.window, ("water",), r.row) for r in template_grid([scene], 128, 0.0)[:2]]
    return TileSampler(rows, {scene: open_scene(scene)}, load_class_set("landcover"), cfg)


def test_random_rescale_changes_the_crops_only_when_on(shared_data, tmp_path):
    off = _sampler(shared_data, tiny_config(["train.hflip=false"]))
    same = _sampler(shared_data, tiny_config(["train.hflip=false", "train.rescale=[1.0, 1.0]"]))
    on = _sampler(shared_data, tiny_config(["train.hflip=false", "train.rescale=[0.5, 2.0]"]))
    a, b, c = off.view(0, 0), same.view(0, 0), on.view(0, 0)
    assert a is not None and b is not None and c is not None
    assert np.array_equal(a, b) and a.shape == c.shape  # off = the paper's crops; on: still crop × crop
    assert not np.allclose(a, c)  # rescaled before the crop
    # a 2× zoom of a constant-stride image: neighbouring pixels of the rescaled crop are closer in value
    zoom = _sampler(shared_data, tiny_config(["train.hflip=false", "train.rescale=[2.0, 2.0]"])).view(0, 0)
    assert np.abs(np.diff(zoom, axis=-1)).mean() < np.abs(np.diff(a, axis=-1)).mean()
    # the feature cache keys views by the setting, and keeps its keys when it is off
    cache = FeatureCache(tmp_path / "c")
    keys = [CachedBatches(s, cache).view_key(0, 0, ["b"]) for s in (off, same, on)]
    assert keys[0] == keys[1] != keys[2]


def test_rescale_needs_two_positive_factors():
    with pytest.raises(ConfigError, match="train.rescale"):
        tiny_config(["train.rescale=[0.0, 2.0]"])
    with pytest.raises(ConfigError, match="train.rescale"):
        tiny_config(["train.rescale=[2.0]"])


def test_defaults_of_the_open_choices():
    cfg = Config()
    assert cfg.usr.n0 == 7  # WeCLIP's last six of twelve maps (README table)
    assert cfg.cam.bg_after_refine is False and cfg.par.iters == 10 and cfg.train.rescale == [1.0, 1.0]
