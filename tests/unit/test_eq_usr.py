"""Eqs 11–15 (USR) against hand computations and naive loop implementations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rs_wsss.model import usr
from rs_wsss.model.cam import minmax_norm
from tests.reference import numpy_engine as ref


def _sig(x: float) -> torch.Tensor:
    return torch.sigmoid(torch.tensor(x))


def test_eq11_sigmoid_of_token_products_raw_and_normalised():
    f = torch.tensor([[[1.0, 0.0, 3.0], [0.0, 2.0, 4.0]]])  # (B=1, D=2, hw=3): tokens (1,0), (0,2), (3,4)
    raw = usr.joint_affinity(f)
    products = [[1, 0, 3], [0, 4, 8], [3, 8, 25]]
    assert torch.allclose(raw[0], torch.sigmoid(torch.tensor(products, dtype=torch.float32)))
    unit = usr.joint_affinity(f, normalize=True)  # cosines: (1,0)·(3,4)/5 = 0.6, (0,2)·(3,4)/10 = 0.8
    assert torch.allclose(torch.diagonal(unit[0]), _sig(1.0).expand(3))
    assert torch.isclose(unit[0, 0, 1], _sig(0.0)) and torch.isclose(unit[0, 0, 2], _sig(0.6))
    assert torch.isclose(unit[0, 1, 2], _sig(0.8)) and torch.allclose(unit[0], unit[0].T)


def test_eq11_is_differentiable_and_batched():
    f = torch.randn(2, 3, 4, requires_grad=True)
    a = usr.joint_affinity(f)
    assert torch.allclose(a[1], usr.joint_affinity(f[1:])[0])
    a.sum().backward()
    assert f.grad is not None and f.grad.abs().sum() > 0


def test_eq12_l1_distances_by_hand_and_by_loop():
    a_cd = torch.tensor([[[0.5, 0.5], [0.5, 0.5]]])
    attn = torch.stack([torch.eye(2), torch.full((2, 2), 0.5), torch.tensor([[0.0, 2.0], [1.0, 0.5]])])[None]
    assert torch.allclose(usr.attention_scores(a_cd, attn), torch.tensor([[2.0, 0.0, 2.5]]))  # 0.5 + 1.5 + 0.5 + 0
    g = torch.Generator().manual_seed(0)
    a_cd, attn = torch.rand(2, 4, 4, generator=g), torch.rand(2, 3, 4, 4, generator=g)
    s = usr.attention_scores(a_cd, attn)
    for b in range(2):
        for l in range(3):
            ref = sum(abs(float(a_cd[b, i, j] - attn[b, l, i, j])) for i in range(4) for j in range(4))
            assert abs(float(s[b, l]) - ref) < 1e-5


def test_eq13_threshold_over_layers_from_n0():
    # N = 4, N0 = 2: the mean runs over layers 2..4 only; layer 1 never counts, however small its score
    scores = torch.tensor([[0.1, 5.0, 3.0, 1.0], [9.0, 1.0, 2.0, 6.0]])
    # image 0: mean(5, 3, 1) = 3 → only layer 4 (1 < 3; 3 is not < 3); image 1: mean(1, 2, 6) = 3 → layers 2, 3
    assert usr.attention_filter(scores, n0=2).tolist() == [[0, 0, 0, 1], [0, 1, 1, 0]]
    # N0 = 1: image 0 mean 2.275 → layers 1, 4; image 1 mean 4.5 → layers 2, 3
    assert usr.attention_filter(scores, n0=1).tolist() == [[1, 0, 0, 1], [0, 1, 1, 0]]
    assert usr.attention_filter(scores, n0=4).tolist() == [[0, 0, 0, 0], [0, 0, 0, 0]]  # one map: not < itself
    for bad in (0, 5):
        with pytest.raises(ValueError, match="usr.n0"):
            usr.attention_filter(scores, n0=bad)


def test_eq14_refining_map_averages_the_kept_maps():
    a_cd = torch.tensor([[[0.5, 1.0], [0.25, 0.5]]])
    maps = torch.stack([torch.eye(2), torch.ones(2, 2), torch.tensor([[0.0, 2.0], [2.0, 0.0]])])[None]
    r = usr.refining_map(a_cd, maps, torch.tensor([[1.0, 0.0, 1.0]]), n0=1)
    assert torch.allclose(r[0], a_cd[0] * torch.tensor([[0.5, 1.0], [1.0, 0.5]]))  # (eye + anti)/2, element-wise
    # layer 1 is below N0 = 2: even a gate of 1 there must not count
    r2 = usr.refining_map(a_cd, maps, torch.tensor([[1.0, 1.0, 0.0]]), n0=2)
    assert torch.allclose(r2[0], a_cd[0] * torch.ones(2, 2))
    # N_m = 0 (all deep scores equal / N0 = N): every deep map is kept, no division by zero
    r0 = usr.refining_map(a_cd, maps, torch.zeros(1, 3), n0=2)
    assert torch.allclose(r0[0], a_cd[0] * (maps[0, 1] + maps[0, 2]) / 2)
    r3 = usr.refining_map(a_cd, maps, usr.attention_filter(torch.rand(1, 3), 3), n0=3)
    assert torch.allclose(r3[0], a_cd[0] * maps[0, 2])


def _naive_transition(r, alpha):
    n = r.shape[0]
    rn = [[float(r[i, j]) / sum(float(r[k, j]) for k in range(n)) for j in range(n)] for i in range(n)]  # columns
    rn = [[rn[i][j] / sum(rn[i]) for j in range(n)] for i in range(n)]  # then rows
    t = torch.tensor([[(rn[i][j] + rn[j][i]) / 2 for j in range(n)] for i in range(n)])
    p = torch.eye(n)
    for _ in range(alpha):  # matrix power as explicit products
        p = p @ t
    return p


def test_eq15_normalisation_symmetrisation_and_matrix_power():
    g = torch.Generator().manual_seed(0)
    r = torch.rand(2, 5, 5, generator=g) + 0.1
    m = torch.rand(2, 3, 5, generator=g)
    for alpha in (0, 1, 2, 3):
        out = usr.diffuse(r, m, alpha)
        for b in range(2):
            t = _naive_transition(r[b], alpha)
            for c in range(3):
                assert torch.allclose(out[b, c], t @ m[b, c], atol=1e-5)  # M_f^c = T^α M_init^c
    t1 = usr.transition_matrix(r, 1)
    assert torch.allclose(t1, t1.transpose(1, 2))  # symmetric
    # the power is a matrix power, not an element-wise one
    assert not torch.allclose(usr.transition_matrix(r, 2), t1**2, atol=1e-4)


def test_eq15_diffusion_spreads_along_the_affinity():
    # two groups of tokens {0,1,2} and {3,4}: affinity high inside a group, ~0 across
    r = torch.full((1, 5, 5), 1e-6)
    r[0, :3, :3] = 1.0
    r[0, 3:, 3:] = 1.0
    m = torch.tensor([[[1.0, 0.0, 0.0, 0.0, 0.0]]])
    out = usr.diffuse(r, m, alpha=3)[0, 0]
    assert float(out[1]) > 0.2 and float(out[2]) > 0.2 and float(out[3:].max()) < 1e-4


def test_usr_refine_is_the_composition_without_gradients_and_without_renormalising():
    g = torch.Generator().manual_seed(1)
    cam = torch.rand(2, 4, 9, generator=g)
    cam[:, 2] = 0.0  # an untagged class
    cam[:, 0] = 0.45  # a constant background
    f_cd = torch.randn(2, 6, 9, generator=g, requires_grad=True)
    attn = torch.rand(2, 4, 9, 9, generator=g).softmax(-1)
    out = usr.usr_refine(cam, f_cd, attn, n0=2, alpha=2)
    assert not out.requires_grad and out.dtype == torch.float64  # float64: the min–max after it amplifies rounding
    out = out.float()
    # the expectation from the independent numpy reference (tests/reference), image by image
    m = torch.from_numpy(np.stack([ref.usr(cam[b].double().numpy(), f_cd[b].detach().double().numpy(),
                                           attn[b].double().numpy(), 2, 2) for b in range(2)])).float()
    assert torch.allclose(out, m, atol=1e-5)  # eq 15's M_f as it is: no min–max in between
    assert out[:, 1].amax() < 0.99  # (a renormalised map would reach 1)
    assert torch.allclose(usr.usr_refine(cam[1:], f_cd[1:], attn[1:], 2, 2).float(), out[1:], atol=1e-6)  # per image
    # the VPE-off normalisation: min–max of the diffused maps, constant maps keep their M_init value
    nm = usr.normalise_maps(cam, out)
    assert torch.allclose(nm[:, [1, 3]], minmax_norm(m[:, [1, 3]]), atol=1e-6)
    assert torch.count_nonzero(nm[:, 2]) == 0 and torch.allclose(nm[:, 0], cam[:, 0])


def test_usr_warm_up_diffuses_with_the_mean_frozen_attention_only():
    g = torch.Generator().manual_seed(2)
    cam = torch.rand(1, 3, 9, generator=g)
    f_cd = torch.randn(1, 6, 9, generator=g)
    attn = torch.rand(1, 4, 9, 9, generator=g).softmax(-1)
    out = usr.usr_refine(cam, f_cd, attn, n0=2, alpha=2, use_affinity=False).float()
    # by hand: R = mean of A_s^2..A_s^4 (no A_cd, no filter), then eq 15's operator
    r = (attn[0, 1] + attn[0, 2] + attn[0, 3]) / 3
    for _ in range(1):
        r = r / r.sum(0, keepdim=True)
        r = r / r.sum(1, keepdim=True)
    t = (r + r.T) / 2
    assert torch.allclose(out[0], cam[0] @ (t @ t), atol=1e-6)
    assert not torch.allclose(out, usr.usr_refine(cam, f_cd, attn, n0=2, alpha=2).float(), atol=1e-4)
    # the learned features do not matter during warm-up
    assert torch.allclose(out, usr.usr_refine(cam, -f_cd, attn, n0=2, alpha=2, use_affinity=False).float())
