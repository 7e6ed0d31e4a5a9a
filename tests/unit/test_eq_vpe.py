"""Eqs 16–20 (VPE): seeds, momentum prototypes, similarity and the S² calibration, by hand and by loop."""

from __future__ import annotations

import math

import pytest
import torch

from rs_wsss.model import vpe


def test_eq16_eq17_seeds_are_exclusive_topk_percent_by_hand():
    m_f = torch.tensor([[[0.1, 0.2, 0.9, 0.8, 0.0, 0.7],
                         [0.5, 0.6, 0.1, 0.3, 0.0, 0.2],
                         [0.9, 0.9, 0.9, 0.9, 0.9, 0.9]]])
    tags = torch.tensor([[True, True, False]])  # channel 2 untagged: never wins the argmax, never seeded
    seeds = vpe.seed_mask(m_f, tags, topk_percent=0.5)
    # argmax over tagged channels: [1, 1, 0, 0, 0/1 tie at 0, 0]; channel 0 owns 0.9, 0.8, 0.7 → ⌈1.5⌉ = 2 seeds
    assert seeds[0, 0].tolist() == [False, False, True, True, False, False]
    # channel 1 owns 0.5, 0.6 (position 4 is 0, not a nonzero activation) → ⌈1⌉ = 1 seed
    assert seeds[0, 1].tolist() == [False, True, False, False, False, False]
    assert not seeds[0, 2].any()
    assert not (seeds[0, 0] & seeds[0, 1]).any()  # exclusive
    assert vpe.seed_mask(m_f, tags, 0.01)[0].sum(-1).tolist() == [1, 1, 0]  # at least one seed per owner
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match="topk_percent"):
            vpe.seed_mask(m_f, tags, bad)


def _naive_seeds(m_f, tags, k):
    b, kk, n = m_f.shape
    out = torch.zeros(b, kk, n, dtype=torch.bool)
    for i in range(b):
        for p in range(n):
            best = max((c for c in range(kk) if tags[i, c]), key=lambda c: float(m_f[i, c, p]))
            out[i, best, p] = True
        for c in range(kk):
            owned = [(float(m_f[i, c, p]), p) for p in range(n) if out[i, c, p] and m_f[i, c, p] > 0]
            owned.sort(reverse=True)
            keep = {p for _, p in owned[: max(1, math.ceil(len(owned) * k))]} if owned else set()
            for p in range(n):
                out[i, c, p] = p in keep
    return out


def test_eq16_eq17_match_a_naive_loop_on_a_batch():
    g = torch.Generator().manual_seed(0)
    m_f = torch.rand(2, 4, 30, generator=g)  # continuous values: no ties
    m_f[0, 1, :5] = 0.0
    tags = torch.tensor([[True, True, False, True], [True, False, True, True]])
    for k in (0.1, 0.3, 1.0):
        assert torch.equal(vpe.seed_mask(m_f, tags, k), _naive_seeds(m_f, tags, k))


def test_eq18_momentum_update_by_hand():
    protos = torch.tensor([[1.0, 1.0], [0.0, 0.0], [5.0, 5.0]])
    init = torch.tensor([True, False, True])
    feats = torch.tensor([[[2.0, 4.0, 0.0], [0.0, 2.0, 6.0]]])  # (1, 2, 3): tokens (2,0), (4,2), (0,6)
    seeds = torch.tensor([[[True, True, False], [False, False, True], [False, False, False]]])
    p, i = vpe.update_prototypes(protos, init, feats, seeds, momentum=0.9)
    assert torch.allclose(p[0], 0.9 * torch.tensor([1.0, 1.0]) + 0.1 * torch.tensor([3.0, 1.0]))
    assert torch.allclose(p[1], torch.tensor([0.0, 6.0]))  # first sighting: the seed mean
    assert torch.equal(p[2], protos[2]) and i.tolist() == [True, True, True]  # no seeds: kept
    # a class without seeds that was never initialised stays uninitialised
    _, i2 = vpe.update_prototypes(protos, torch.zeros(3, dtype=torch.bool), feats, torch.zeros_like(seeds), 0.9)
    assert i2.tolist() == [False, False, False]


def test_eq18_pools_the_seeds_of_the_batch_and_keeps_no_graph():
    protos = torch.tensor([[2.0, 0.0]])
    feats = torch.tensor([[[1.0, 3.0], [1.0, 1.0]], [[5.0, 0.0], [5.0, 0.0]]], requires_grad=True)  # (2, 2, 2)
    seeds = torch.tensor([[[True, True]], [[True, False]]])  # tokens (1,1), (3,1), (5,5): mean (3, 7/3)
    p, _ = vpe.update_prototypes(protos, torch.tensor([True]), feats, seeds, momentum=0.5)
    assert torch.allclose(p[0], 0.5 * torch.tensor([2.0, 0.0]) + 0.5 * torch.tensor([3.0, 7 / 3]))
    assert not p.requires_grad


def test_eq19_eq20_similarity_squared_calibration_and_norm():
    protos = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    feats = torch.tensor([[[1.0, 1.0, -1.0], [0.0, 1.0, 0.0]]])  # tokens (1,0), (1,1), (−1,0)
    s = vpe.prototype_similarity(protos, feats)
    c = 2**-0.5
    assert torch.allclose(s[0], torch.tensor([[1.0, c, 0.0], [0.0, c, 0.0]]), atol=1e-6)  # negative cos → 0
    m_f = torch.tensor([[[0.5, 1.0, 0.2], [0.4, 0.4, 1.0]]])
    out = vpe.prototype_cam(m_f, s, torch.tensor([[True, True]]))
    # class 0: M ⊙ S² = (0.5, 0.5, 0) → (1, 1, 0); class 1: (0, 0.2, 0) → (0, 1, 0)
    assert torch.allclose(out[0], torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 0.0]]), atol=1e-6)
    assert torch.count_nonzero(vpe.prototype_cam(m_f, s, torch.tensor([[True, False]]))[0, 1]) == 0
    # S² (not S): a similarity of 0.5 scales the map by 0.25 before the min–max
    half = torch.tensor([[[0.5, 1.0, 1.0]]])
    raw = torch.tensor([[[1.0, 1.0, 0.3]]])
    expected = torch.tensor([0.25, 1.0, 0.3])
    assert torch.allclose(vpe.prototype_cam(raw, half, torch.tensor([[True]]))[0, 0], (expected - 0.25) / 0.75)


def test_eq19_uninitialised_prototypes_do_not_calibrate():
    protos = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    feats = torch.tensor([[[1.0, -1.0], [0.0, 1.0]]])
    s = vpe.prototype_similarity(protos, feats, initialized=torch.tensor([True, False]))
    assert torch.allclose(s[0], torch.tensor([[1.0, 0.0], [1.0, 1.0]]))
