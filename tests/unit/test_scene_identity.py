"""Per-scene statistics are keyed by file identity: a/x.tif and b/x.tif do not share them; old base-name keys load."""

from __future__ import annotations

import shutil

import numpy as np
import rasterio
from rasterio.transform import from_origin

from rs_wsss.raster.io import known_norm, scene_key


def _scene(path, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", driver="GTiff", width=16, height=16, count=3, dtype="uint16",
                       transform=from_origin(0, 16, 1, 1), crs="EPSG:32614") as ds:
        ds.write(np.full((3, 16, 16), value, np.uint16))


def test_same_name_different_files_have_different_keys_and_statistics(tmp_path):
    a, b = tmp_path / "a" / "x.tif", tmp_path / "b" / "x.tif"
    _scene(a, 100)
    _scene(b, 900)
    assert scene_key(a) != scene_key(b)
    norms = {scene_key(a): {"low": [1, 1, 1], "high": [2, 2, 2]}, scene_key(b): {"low": [5, 5, 5], "high": [9, 9, 9]}}
    assert known_norm(norms, a).low == [1.0] * 3 and known_norm(norms, b).low == [5.0] * 3
    moved = tmp_path / "elsewhere" / "renamed.tif"
    moved.parent.mkdir()
    shutil.copy(a, moved)
    assert known_norm(norms, moved).low == [1.0] * 3  # a moved or renamed scene keeps its statistics
    _scene(tmp_path / "c" / "x.tif", 100 + 1)
    assert known_norm(norms, tmp_path / "c" / "x.tif") is None  # an unknown file: computed afresh, never borrowed


def test_checkpoints_with_base_name_keys_still_load(tmp_path):
    a = tmp_path / "a" / "x.tif"
    _scene(a, 100)
    old = {"x.tif": {"low": [3, 3, 3], "high": [4, 4, 4]}}
    assert known_norm(old, a).high == [4.0] * 3
    assert known_norm(old, tmp_path / "y.tif") is None


def test_a_large_file_key_covers_its_tail(tmp_path):
    p, q = tmp_path / "p.bin", tmp_path / "q.bin"
    data = bytearray(5 << 20)
    p.write_bytes(bytes(data))
    data[-1] = 1  # same size, same head, different tail
    q.write_bytes(bytes(data))
    assert scene_key(p) != scene_key(q)
