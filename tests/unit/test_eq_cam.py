"""Eq 9 (initial CAM) and its background channel, by hand and against a naive loop."""

from __future__ import annotations

import math

import pytest
import torch

from rs_wsss.config import CAMConfig
from rs_wsss.model import cam


def test_minmax_norm_by_hand():
    x = torch.tensor([[2.0, 4.0, 6.0], [1.0, 1.0, 3.0], [5.0, 5.0, 5.0]])
    assert torch.allclose(cam.minmax_norm(x), torch.tensor([[0.0, 0.5, 1.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]]))
    grid = torch.tensor([[[[1.0, 3.0], [5.0, 9.0]]]])
    assert torch.allclose(cam.minmax_norm(grid, dim=(-2, -1)), torch.tensor([[[[0.0, 0.25], [0.5, 1.0]]]]))


def test_eq9_by_hand():
    # a 1×3 token grid in a 2-d joint space; class 1 along x, class 2 along y
    joint = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]]).T.reshape(1, 2, 1, 3)
    text = torch.tensor([[3.0, 0.0], [0.0, 1.0]])
    c = math.sqrt(0.5)  # cosines: class 1 (1, c, 0) → (1, c, 0) after min–max; class 2 (0, c, 1)
    out = cam.initial_cam(joint, text, torch.tensor([[1, 1]]), CAMConfig(bg_rule="power", bg_power=2.0))
    assert out.shape == (1, 3, 1, 3)
    assert torch.allclose(out[0, 1, 0], torch.tensor([1.0, c, 0.0]), atol=1e-6)
    assert torch.allclose(out[0, 2, 0], torch.tensor([0.0, c, 1.0]), atol=1e-6)
    assert torch.allclose(out[0, 0, 0], torch.tensor([0.0, (1 - c) ** 2, 0.0]), atol=1e-6)  # (1 − max)^2
    only2 = cam.initial_cam(joint, text, torch.tensor([[0, 1]]), CAMConfig(bg_rule="power", bg_power=1.0))
    assert torch.count_nonzero(only2[0, 1]) == 0  # untagged → 0, and the background ignores it
    assert torch.allclose(only2[0, 0, 0], torch.tensor([1.0, 1 - c, 0.0]), atol=1e-6)
    const = cam.initial_cam(joint, text, torch.tensor([[1, 0]]), CAMConfig(bg_rule="constant", bg_score=0.3))
    assert torch.allclose(const[0, 0], torch.full((1, 3), 0.3))
    nothing = cam.initial_cam(joint, text, torch.tensor([[0, 0]]), CAMConfig(bg_rule="power"))
    assert torch.equal(nothing[0, 0], torch.ones(1, 3))  # nothing tagged: all background


def _naive_cam(joint, text, tags, power):
    b, e, h, w = joint.shape
    c = text.shape[0]
    out = torch.zeros(b, c + 1, h * w)
    for i in range(b):
        for k in range(c):
            t = text[k] / text[k].norm()
            cos = [float(joint[i, :, p // w, p % w] @ t / joint[i, :, p // w, p % w].norm()) for p in range(h * w)]
            lo, hi = min(cos), max(cos)
            for p in range(h * w):
                out[i, k + 1, p] = (cos[p] - lo) / (hi - lo) * float(tags[i, k])
        for p in range(h * w):
            out[i, 0, p] = (1 - max(float(out[i, k + 1, p]) for k in range(c))) ** power
    return out.view(b, c + 1, h, w)


def test_eq9_matches_a_naive_loop_on_a_batch():
    g = torch.Generator().manual_seed(0)
    joint, text = torch.randn(2, 5, 2, 3, generator=g), torch.randn(3, 5, generator=g)
    tags = torch.tensor([[1, 0, 1], [0, 1, 1]])
    out = cam.initial_cam(joint, text, tags, CAMConfig(bg_rule="power", bg_power=1.5))
    assert torch.allclose(out, _naive_cam(joint, text, tags, 1.5), atol=1e-5)
    # per-image: image 0 alone gives the same maps; scaling tokens or text changes nothing (cosine)
    assert torch.allclose(cam.initial_cam(joint[:1], text, tags[:1], CAMConfig(bg_power=1.5)), out[:1], atol=1e-6)
    assert torch.allclose(cam.initial_cam(joint * 4, text * 0.1, tags, CAMConfig(bg_power=1.5)), out, atol=1e-5)
    no_tags = cam.initial_cam(joint, text, None, CAMConfig())
    assert torch.allclose(no_tags[:, 1:].amax(dim=(-2, -1)), torch.ones(2, 3))  # every class, min–max'ed


def test_unknown_background_rule_is_a_value_error():
    with pytest.raises(ValueError, match="bg_rule"):
        cam.initial_cam(torch.randn(1, 2, 1, 2), torch.randn(1, 2), None, CAMConfig(bg_rule="nope"))
