"""Eqs 10–20 (USR, VPE) against hand computations and naive loop implementations."""

from __future__ import annotations

import torch

from rs_wsss.model import usr, vpe


def test_eq11_joint_affinity_is_sigmoid_of_token_products():
    f = torch.tensor([[[1.0, 0.0, 3.0], [0.0, 2.0, 4.0]]])  # (B=1, D=2, hw=3)
    raw = usr.joint_affinity(f, normalize=False)
    for i in range(3):
        for j in range(3):
            assert torch.isclose(raw[0, i, j], torch.sigmoid((f[0, :, i] * f[0, :, j]).sum()))
    unit = usr.joint_affinity(f)
    assert torch.allclose(torch.diagonal(unit[0]), torch.sigmoid(torch.tensor(1.0)).expand(3))
    assert torch.isclose(unit[0, 0, 1], torch.sigmoid(torch.tensor(0.0)))


def test_eq12_scores_are_l1_distances():
    a_cd = torch.tensor([[[0.5, 0.5], [0.5, 0.5]]])
    attn = torch.stack([torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.full((2, 2), 0.5)])[None]
    s = usr.attention_scores(a_cd, attn)
    assert torch.allclose(s, torch.tensor([[2.0, 0.0]]))


def test_eq13_threshold_over_layers_from_n0():
    scores = torch.tensor([[0.1, 5.0, 3.0, 1.0]])  # N = 4, N0 = 2: mean over l=2..4 is 3
    g = usr.attention_filter(scores, n0=2)
    assert g.tolist() == [[0.0, 0.0, 0.0, 1.0]]  # layer 1 never counts; 3 is not < 3; only 1 < 3
    assert usr.attention_filter(scores, n0=1).tolist() == [[1.0, 0.0, 0.0, 1.0]]  # mean 2.275


def test_eq14_refining_map_averages_the_kept_maps():
    a_cd = torch.full((1, 2, 2), 0.5)
    maps = torch.stack([torch.eye(2), torch.ones(2, 2), torch.tensor([[0.0, 2.0], [2.0, 0.0]])])[None]
    gate = torch.tensor([[1.0, 0.0, 1.0]])
    r = usr.refining_map(a_cd, maps, gate, n0=1)
    assert torch.allclose(r[0], 0.5 * (torch.eye(2) + torch.tensor([[0.0, 2.0], [2.0, 0.0]])) / 2)
    # no map passes (all scores equal): every deep map is kept
    r0 = usr.refining_map(a_cd, maps, torch.zeros(1, 3), n0=2)
    assert torch.allclose(r0[0], 0.5 * (maps[0, 1] + maps[0, 2]) / 2)


def _naive_diffuse(r, m, alpha):
    n = r.shape[0]
    col = r.sum(0)
    rn = torch.stack([torch.stack([r[i, j] / col[j] for j in range(n)]) for i in range(n)])
    row = rn.sum(1)
    rn = torch.stack([rn[i] / row[i] for i in range(n)])
    t = (rn + rn.T) / 2
    p = torch.eye(n)
    for _ in range(alpha):
        p = p @ t
    return p @ m  # M_f^c = T^α M_init^c


def test_eq15_normalisation_symmetrisation_and_alpha_power():
    g = torch.Generator().manual_seed(0)
    r = torch.rand(5, 5, generator=g) + 0.1
    m = torch.rand(5, generator=g)
    for alpha in (1, 2, 3):
        out = usr.diffuse(r[None], m[None, None], alpha)[0, 0]
        assert torch.allclose(out, _naive_diffuse(r, m, alpha), atol=1e-5)


def test_usr_refine_keeps_untagged_channels_zero_and_normalises():
    g = torch.Generator().manual_seed(1)
    cam = torch.rand(1, 3, 16, generator=g)
    cam[:, 2] = 0
    out = usr.usr_refine(cam, torch.randn(1, 8, 16, generator=g), torch.rand(1, 4, 16, 16, generator=g).softmax(-1), n0=2, alpha=2)
    assert torch.count_nonzero(out[0, 2]) == 0
    assert torch.allclose(out[0, :2].amax(-1), torch.ones(2)) and torch.allclose(out[0, :2].amin(-1), torch.zeros(2))


def test_eq16_eq17_seeds_are_exclusive_topk_percent():
    m_f = torch.tensor([[[0.1, 0.2, 0.9, 0.8, 0.0], [0.5, 0.6, 0.1, 0.3, 0.0], [0.9, 0.9, 0.9, 0.9, 0.9]]])
    tags = torch.tensor([[True, True, False]])  # channel 2 untagged: never wins the argmax
    seeds = vpe.seed_mask(m_f, tags, topk_percent=0.5)
    # argmax over tagged channels: [1, 1, 0, 0, 1]; channel 0 owns 0.9, 0.8 → top 50% = {0.9}
    assert seeds[0, 0].tolist() == [False, False, True, False, False]
    # channel 1 owns 0.5, 0.6 (and 0.0 at position 4, which is not a nonzero activation) → top 50% = {0.6}
    assert seeds[0, 1].tolist() == [False, True, False, False, False]
    assert not seeds[0, 2].any()


def test_eq18_momentum_update_by_hand():
    protos = torch.tensor([[1.0, 1.0], [0.0, 0.0], [5.0, 5.0]])
    init = torch.tensor([True, False, True])
    feats = torch.tensor([[[2.0, 4.0, 0.0], [0.0, 2.0, 6.0]]])  # (1, 2, 3)
    seeds = torch.tensor([[[True, True, False], [False, False, True], [False, False, False]]])
    p, i = vpe.update_prototypes(protos, init, feats, seeds, momentum=0.9)
    assert torch.allclose(p[0], 0.9 * torch.tensor([1.0, 1.0]) + 0.1 * torch.tensor([3.0, 1.0]))
    assert torch.allclose(p[1], torch.tensor([0.0, 6.0]))  # first sighting: the seed mean
    assert torch.allclose(p[2], torch.tensor([5.0, 5.0])) and i.tolist() == [True, True, True]  # no seeds: kept


def test_eq19_eq20_similarity_squared_calibration_and_norm():
    protos = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    feats = torch.tensor([[[1.0, 1.0, -1.0], [0.0, 1.0, 0.0]]])
    s = vpe.prototype_similarity(protos, feats)
    c = 2 ** -0.5
    assert torch.allclose(s[0], torch.tensor([[1.0, c, 0.0], [0.0, c, 0.0]]), atol=1e-6)  # negative cos → 0
    m_f = torch.tensor([[[0.5, 1.0, 0.2], [0.4, 0.4, 1.0]]])
    out = vpe.prototype_cam(m_f, s, torch.tensor([[True, True]]))
    raw0 = torch.tensor([0.5, 0.5, 0.0])  # M_f ⊙ S²
    assert torch.allclose(out[0, 0], (raw0 - raw0.min()) / (raw0.max() - raw0.min()))
    assert torch.allclose(out[0, 1], torch.tensor([0.0, 1.0, 0.0]))
    assert torch.count_nonzero(vpe.prototype_cam(m_f, s, torch.tensor([[True, False]]))[0, 1]) == 0
