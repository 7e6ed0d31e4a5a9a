"""guard_outputs: no planned output may be an input (by path, symlink, hard link or ``..``) or another output."""

from __future__ import annotations

import os

import pytest

from rs_wsss.errors import RsWsssError
from rs_wsss.outputs import guard_outputs


@pytest.fixture
def scene(tmp_path):
    p = tmp_path / "scene.tif"
    p.write_bytes(b"precious")
    return p


@pytest.mark.parametrize("overwrite", [False, True])
@pytest.mark.parametrize("how", ["same path", "dot-dot", "symlink", "hard link", "symlinked dir"])
def test_an_output_that_is_an_input_is_refused(tmp_path, scene, how, overwrite):
    sub = tmp_path / "sub"
    sub.mkdir()
    out = {"same path": lambda: scene, "dot-dot": lambda: sub / ".." / "scene.tif",
           "symlink": lambda: (sub / "link.tif").symlink_to(scene) or sub / "link.tif",
           "hard link": lambda: os.link(scene, sub / "hard.tif") or sub / "hard.tif",
           "symlinked dir": lambda: (tmp_path / "alias").symlink_to(tmp_path) or tmp_path / "alias" / "scene.tif",
           }[how]()
    with pytest.raises(RsWsssError, match="is the input"):
        guard_outputs([tmp_path / "other.qml", out], [scene], overwrite=overwrite)
    assert scene.read_bytes() == b"precious"


def test_a_sibling_output_is_checked_too(tmp_path, scene):
    qml = tmp_path / "scene.qml"  # an input style file a sibling of -o scene_out.tif would not hit, but this does
    qml.write_text("style")
    with pytest.raises(RsWsssError, match="is the input"):
        guard_outputs([tmp_path / "x.tif", qml, tmp_path / "x.gpkg"], [scene, qml], overwrite=True)


def test_two_outputs_on_one_file_and_the_plain_checks(tmp_path, scene):
    with pytest.raises(RsWsssError, match="two outputs are the same file"):
        guard_outputs([tmp_path / "a.tif", tmp_path / "sub" / ".." / "a.tif"], [scene])
    (tmp_path / "a.tif").write_text("x")
    with pytest.raises(RsWsssError, match="output exists"):
        guard_outputs([tmp_path / "a.tif"], [scene])
    assert guard_outputs([tmp_path / "a.tif", None, tmp_path / "b.tif"], [scene, None], overwrite=True) == [
        tmp_path / "a.tif", tmp_path / "b.tif"]
