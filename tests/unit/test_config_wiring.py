"""Config keys are read where they act: raster.tile and raster.overlap set segment's tile grid."""

from __future__ import annotations

import numpy as np

from rs_wsss.classes import load_class_set
from rs_wsss.config import load_config
from rs_wsss.segment import SceneRun, Segmenter, segment_scene

CS = load_class_set("landcover")


def _recording_segmenter(cfg, seen):
    def predict(batch: np.ndarray, valid: np.ndarray) -> np.ndarray:
        seen.append(batch.shape[-1])
        g = batch.mean(1, keepdims=True)
        return np.concatenate([g, 1 - g] + [np.zeros_like(g)] * (CS.num_classes - 1), 1)

    return Segmenter(predict, CS, cfg, {"model": "stand-in"})


def test_raster_tile_and_overlap_from_the_config_set_the_tile_grid(shared_data, tmp_path):
    scene = str(shared_data / "naip/m_4709963_se_14_1_20200831.tif")
    sizes = {}
    for name, sets in {"a": ["raster.tile=256", "raster.overlap=0"], "b": ["raster.tile=128", "raster.overlap=0"],
                       "c": ["raster.tile=128", "raster.overlap=0.5"]}.items():
        seen: list[int] = []
        segment_scene(_recording_segmenter(load_config(overrides=sets + ["infer.batch=1"]), seen), scene,
                      tmp_path / f"{name}.tif")
        sizes[name] = (set(seen), len(seen))
    assert sizes["a"][0] == {256} and sizes["b"][0] == {128} and sizes["c"][0] == {128}
    assert sizes["b"][1] > sizes["a"][1] and sizes["c"][1] > sizes["b"][1]  # smaller tiles, more overlap: more tiles
    seen = []  # an explicit argument still wins over the config
    seg = _recording_segmenter(load_config(overrides=["raster.tile=256"]), seen)
    segment_scene(seg, scene, tmp_path / "d.tif", run=SceneRun(tile=64))
    assert set(seen) == {64}


def test_an_automatic_batch_is_chosen_per_scene_and_leaves_the_config_as_it_is(shared_data, tmp_path):
    scene = str(shared_data / "naip/m_4709963_se_14_1_20200831.tif")
    calls: list[int] = []
    seg = _recording_segmenter(load_config(overrides=["raster.tile=128", "raster.overlap=0"]), [])
    seg.auto_batch = lambda tile: calls.append(tile) or 2  # type: ignore[func-returns-value]
    segment_scene(seg, scene, tmp_path / "a.tif", run=SceneRun(tile=64))
    assert calls == [64] and seg.cfg.infer.batch == 0  # chosen for the run's tile size; infer.batch stays "auto"
