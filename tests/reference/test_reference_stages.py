"""Every stage of the engine against the independent numpy reference (tests/reference/numpy_engine.py), on random
inputs and on controlled ones, to 1e-5. Random inputs make every input of a stage matter, so a stage that ignores,
swaps or replaces one of its inputs differs from the reference (``test_each_input_matters`` shows the margin)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rs_wsss.config import CAMConfig, LossConfig
from rs_wsss.model import cam, losses, multiscale, tpe, usr, vpe
from rs_wsss.model.adapter import FeatureAdapter
from rs_wsss.model.decoder import Decoder
from rs_wsss.model.par import PAR

from . import numpy_engine as ref
from .conftest import adapter_weights, close, decoder_weights, np64


def _g(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---- TPE, eqs 2–4 ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("topk", "lam"), [(1, 0.5), (3, 0.7), (8, 1.0)])
def test_enrich_text_eq3_eq4(topk, lam):
    t, a = torch.randn(5, 12, generator=_g(0)), torch.randn(8, 12, generator=_g(1)) * 0.5
    assert close(tpe.enrich_text(t, a, topk, lam), ref.enrich(np64(t), np64(a), topk, lam))


def test_kmeans_prototypes_are_the_means_of_known_clusters():
    """Eq 2 on a knowledge base of three tight clusters: the centroids are the means of the L2-normalised members."""
    g = _g(2)
    centres = torch.eye(3, 16) * 5
    members = [centres[i] + 0.05 * torch.randn(6, 16, generator=g) for i in range(3)]
    kb = torch.cat(members)[torch.randperm(18, generator=g)]
    got = np64(tpe.kmeans_prototypes(kb, 3, seed=0))
    want = [np.mean([ref.unit(v) for v in np64(m)], axis=0) for m in members]
    for w in want:  # any order
        assert min(np.abs(got - w).max(axis=1)) < 1e-5
    assert tpe.kmeans_prototypes(kb, 50).shape == (18, 16)  # B capped at the number of descriptions


# ---- eq 9 -----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cfg", [CAMConfig(), CAMConfig(bg_power=2.0), CAMConfig(bg_rule="constant", bg_score=0.3)])
def test_initial_cam_eq9(cfg):
    joint, text = torch.randn(2, 10, 4, 5, generator=_g(3)), torch.randn(3, 10, generator=_g(4))
    tags = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])  # tags that exclude classes
    out = cam.initial_cam(joint, text, tags, cfg)
    for b in range(2):
        want = ref.initial_cam(np64(joint[b]).reshape(10, 20), np64(text), np64(tags[b]), cfg.bg_rule, cfg.bg_power,
                               cfg.bg_score)
        assert close(out[b].reshape(4, 20), want)
    full = cam.initial_cam(joint, text, None, cfg)  # no tags: every class
    assert close(full[0].reshape(4, 20), ref.initial_cam(np64(joint[0]).reshape(10, 20), np64(text), None,
                                                          cfg.bg_rule, cfg.bg_power, cfg.bg_score))


# ---- USR, eqs 11–15 -------------------------------------------------------------------------------------------------
def _usr_inputs(seed: int = 5, n: int = 4, hw: int = 12):
    g = _g(seed)
    f_cd = torch.randn(2, 6, hw, generator=g) * 0.6
    attn = (2 * torch.randn(2, n, hw, hw, generator=g)).softmax(-1)
    a = torch.sigmoid(f_cd.transpose(1, 2) @ f_cd)
    attn[:, 0] = a / a.sum(-1, keepdim=True)  # block 1 follows A_cd: kept whenever N0 = 1 lets it compete
    m_init = torch.rand(2, 4, hw, generator=g)
    return m_init, f_cd, attn


def test_usr_stages_eq11_to_eq14():
    _, f_cd, attn = _usr_inputs()
    a = usr.joint_affinity(f_cd)
    s = usr.attention_scores(a, attn)
    for b in range(2):
        ra = ref.joint_affinity(np64(f_cd[b]))
        assert close(a[b], ra)
        rs = ref.scores(ra, np64(attn[b]))
        assert close(s[b], rs, 1e-6)
        for n0 in (1, 2, 3, 4):
            gate = usr.attention_filter(s, n0)
            assert close(gate[b], ref.gates(rs, n0))
            assert close(usr.refining_map(a, attn, gate, n0)[b], ref.refining_map(ra, np64(attn[b]),
                                                                                    ref.gates(rs, n0), n0))


@pytest.mark.parametrize(("n0", "alpha"), [(1, 1), (2, 3), (3, 2), (4, 3)])
def test_usr_refine_eq15(n0, alpha):
    m_init, f_cd, attn = _usr_inputs()
    out = usr.usr_refine(m_init, f_cd, attn, n0, alpha)
    warm = usr.usr_refine(m_init, f_cd, attn, n0, alpha, use_affinity=False)
    for b in range(2):
        want = ref.usr(np64(m_init[b]), np64(f_cd[b]), np64(attn[b]), n0, alpha)
        assert close(out[b], want)
        assert close(warm[b], ref.usr(np64(m_init[b]), np64(f_cd[b]), np64(attn[b]), n0, alpha, use_affinity=False))
        assert close(usr.normalise_maps(m_init, out)[b], ref.normalise_vpe_off(np64(m_init[b]), want))


def test_usr_on_a_known_neighbourhood():
    """Two regions of a 4×4 grid (left and right halves). A_cd knows them (features +v / −v); blocks 2 and 4 attend
    within the region, blocks 1 and 3 everywhere / across. The filter keeps exactly blocks 2 and 4 and a CAM that is
    a spike in the left half never leaks into the right half."""
    hw = 16
    left = torch.tensor([(i % 4) < 2 for i in range(hw)])
    same = (left[:, None] == left[None, :]).float()
    f = torch.where(left, 2.0, -2.0)[None].repeat(3, 1)  # (D=3, hw): +v left, −v right
    attn = torch.stack([torch.full((hw, hw), 1 / hw), same / same.sum(1, keepdim=True),
                        (1 - same) / (1 - same).sum(1, keepdim=True), same / same.sum(1, keepdim=True)])[None]
    a_cd = usr.joint_affinity(f[None])
    gate = usr.attention_filter(usr.attention_scores(a_cd, attn), 1)
    assert gate.tolist() == [[0.0, 1.0, 0.0, 1.0]]
    spike = torch.zeros(1, 2, hw)
    spike[0, 1, 0] = 1.0
    spike[0, 0] = 0.5
    out = usr.usr_refine(spike, f[None], attn, n0=1, alpha=3)
    want = ref.usr(np64(spike[0]), np64(f), np64(attn[0]), 1, 3)
    assert close(out[0], want)
    assert float(out[0, 1, ~left].abs().max()) < 1e-6 and float(out[0, 1, left].min()) > 1e-3
    # with n0 = 3 only blocks 3–4 compete: block 4 (within-region) wins over block 3 (across)
    assert usr.attention_filter(usr.attention_scores(a_cd, attn), 3).tolist() == [[0.0, 0.0, 0.0, 1.0]]


# ---- VPE, eqs 16–20 -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("k", [0.1, 0.3, 1.0])
def test_vpe_seeds_eq16_eq17(k):
    m_f = torch.rand(2, 4, 30, generator=_g(6))
    m_f[0, 2, :5] = 0.0  # zeros are never seeds
    tags_k = torch.tensor([[1, 1, 1, 0], [1, 0, 1, 1]]).bool()  # tags that exclude classes
    q = vpe.seed_mask(m_f, tags_k, k)
    for b in range(2):
        assert close(q[b].double(), ref.seeds(np64(m_f[b]), np64(tags_k[b]), k).astype(float))
    assert not q[0, 3].any() and not q[1, 1].any()


def test_vpe_update_similarity_and_cam_eq18_to_eq20():
    g = _g(7)
    feats = torch.randn(2, 5, 30, generator=g)
    m_f = torch.rand(2, 4, 30, generator=g)
    tags_k = torch.tensor([[1, 1, 0, 1], [1, 0, 0, 1]]).bool()
    q = vpe.seed_mask(m_f, tags_k, 0.3)
    protos = torch.randn(4, 5, generator=g)
    init = torch.tensor([False, True, True, False])
    new, new_init = vpe.update_prototypes(protos, init, feats, q, 0.8)
    rp, ri = ref.update(np64(protos), np64(init).astype(bool), [np64(f) for f in feats],
                        [np64(x).astype(bool) for x in q], 0.8)
    assert close(new, rp) and new_init.tolist() == ri.tolist()
    assert close(new[2], np64(protos[2]))  # class 2 has no seeds: kept
    sim = vpe.prototype_similarity(new, feats, new_init)
    out = vpe.prototype_cam(m_f, sim, tags_k)
    for b in range(2):
        rs = ref.similarity(rp, ri, np64(feats[b]))
        assert close(sim[b], rs)
        assert close(out[b], ref.prototype_cam(np64(m_f[b]), rs, np64(tags_k[b])))
    # the plain eq 19 (no flags): a zero prototype gives 0, not 1
    assert float(vpe.prototype_similarity(torch.zeros(4, 5), feats).abs().max()) == 0.0


# ---- PAR ------------------------------------------------------------------------------------------------------------
def test_par_against_the_reference():
    g = _g(8)
    img, c = torch.rand(2, 3, 9, 11, generator=g), torch.rand(2, 3, 5, 6, generator=g)
    out = PAR([1, 2, 4], iters=3)(img, c)
    for b in range(2):
        assert close(out[b], ref.par(np64(img[b]), np64(c[b]), [1, 2, 4], 3))


# ---- pseudo labels, affinity labels, eq 21 --------------------------------------------------------------------------
@pytest.mark.parametrize("rule", ["argmax", "band"])
def test_pseudo_labels(rule):
    c = torch.rand(2, 4, 6, 7, generator=_g(9))
    tags_k = torch.tensor([[1, 1, 0, 1], [1, 0, 0, 0]]).bool()  # image 2: background only
    out = losses.pseudo_labels(c, tags_k, 0.55, 0.35, 255, rule)
    for b in range(2):
        assert np.array_equal(out[b].numpy(), ref.pseudo_labels(np64(c[b]), np64(tags_k[b]), rule, 0.55, 0.35))
    assert 2 not in out.unique().tolist()


@pytest.mark.parametrize("radius", [None, 1, 2])
def test_affinity_labels_and_losses_eq21(radius):
    g = _g(10)
    lab = torch.randint(0, 4, (2, 12, 10), generator=g)
    lab[0, :3] = 255
    al = losses.affinity_labels(lab, (4, 5), 255, radius)
    for b in range(2):
        assert np.array_equal(al[b].numpy(), ref.affinity_labels(lab[b].numpy(), (4, 5), radius))
    aff = torch.rand(2, 20, 20, generator=g)
    logits = torch.randn(2, 4, 12, 10, generator=g)
    seg, la = losses.seg_loss(logits, lab, 255), losses.affinity_loss(aff, al, 255)
    assert close(seg, ref.seg_loss(list(np64(logits)), list(lab.numpy())))
    assert close(la, ref.aff_loss(list(np64(aff)), list(al.numpy())))
    cfg = LossConfig(seg_weight=0.7, aff_weight=0.2)
    assert close(losses.total_loss(seg, la, cfg), 0.7 * float(seg) + 0.2 * float(la))
    assert float(losses.seg_loss(logits, torch.full_like(lab, 255), 255)) == 0.0


# ---- adapter (eqs 5–6), decoder (eqs 7–8), multi-scale ---------------------------------------------------------------
def test_adapter_and_decoder_against_the_reference():
    torch.manual_seed(11)
    ad = FeatureAdapter(8, 12, 16, 3)
    dec = Decoder(16, 5, layers=2, heads=4, mlp_ratio=2.0).eval()
    levels = [torch.randn(2, 8, 3, 4) for _ in range(3)]
    with torch.no_grad():
        f = ad(levels)
        logits, aff = dec(f, (9, 10), want_affinity=True)
    for b in range(2):
        rf = ref.adapter([np64(x[b]).reshape(8, 12) for x in levels], adapter_weights(ad))
        assert close(f[b].reshape(16, 12), rf)
        rl, ra = ref.decoder(rf, (3, 4), (9, 10), decoder_weights(dec), heads=4)
        assert close(logits[b], rl) and close(aff[b], ra)


def test_multiscale_resize_and_averaging():
    x = torch.rand(1, 2, 7, 9, generator=_g(12))
    for size in [(7, 9), (14, 18), (4, 5), (10, 3)]:
        assert close(multiscale.resize(x, size)[0], ref.bilinear(np64(x[0]), size))
    assert multiscale.scaled_sizes(100, 60, [0.5, 1.0, 1.3], 16) == [(48, 32), (96, 64), (128, 80)]

    def fn(z: torch.Tensor, out: tuple[int, int]) -> torch.Tensor:  # position-dependent, so flips matter
        return multiscale.resize(z * torch.arange(z.shape[-1]).float(), out)

    out = multiscale.multi_scale(fn, x, [1.0, 2.0], flip=True, patch=1)
    want = np.zeros((2, 7, 9))
    for size in [(7, 9), (14, 18)]:
        z = ref.bilinear(np64(x[0]), size)
        ramp = np.arange(size[1])
        want += ref.bilinear(z * ramp, (7, 9)) + ref.bilinear(z[:, :, ::-1] * ramp, (7, 9))[:, :, ::-1]
    assert close(out[0], want / 4)


def test_each_input_matters():
    """The margin behind 'fails if an input is swapped, ignored or replaced': on the inputs above, replacing any one
    input of a stage moves its reference output by far more than the 1e-5 tolerance."""
    m_init, f_cd, attn = _usr_inputs()
    base = ref.usr(np64(m_init[0]), np64(f_cd[0]), np64(attn[0]), 2, 3)
    variants = {
        "A_cd ignored (mean attention)": ref.usr(np64(m_init[0]), np64(f_cd[0]), np64(attn[0]), 2, 3, False),
        "attention constant": ref.usr(np64(m_init[0]), np64(f_cd[0]), np.full((4, 12, 12), 1 / 12), 2, 3),
        "F_cd of the other image": ref.usr(np64(m_init[0]), np64(f_cd[1]), np64(attn[0]), 2, 3),
        "N0 = 1": ref.usr(np64(m_init[0]), np64(f_cd[0]), np64(attn[0]), 1, 3),
        "α = 1": ref.usr(np64(m_init[0]), np64(f_cd[0]), np64(attn[0]), 2, 1),
        "attention blocks reversed": ref.usr(np64(m_init[0]), np64(f_cd[0]), np64(attn[0])[::-1], 2, 3),
    }
    for name, v in variants.items():
        assert np.abs(v - base).max() > 1e-3, name


def test_minmax_norm_default_axis_and_eps():
    """Norm(·) over the last axis by default; a range just above eps (1e-6) is still stretched to [0, 1], a flat
    map is 0. (Mutants of the default axis and eps survived the path tests, which always pass both.)"""
    x = torch.rand(2, 3, 5, generator=_g(13))
    want = np.stack([[ref.norm01(v) for v in img] for img in np64(x)])
    assert close(cam.minmax_norm(x), want)
    tiny = torch.tensor([0.0, 1.5e-6, 0.75e-6], dtype=torch.float64)
    assert close(cam.minmax_norm(tiny), ref.norm01(np64(tiny)))
    assert close(cam.minmax_norm(torch.full((4,), 0.3)), np.zeros(4))


def test_background_rule_is_checked():
    with pytest.raises(ValueError, match=r"^cam\.bg_rule must be 'power' or 'constant', not 'other'$"):
        cam.background(torch.rand(1, 2, 3), CAMConfig(bg_rule="other"))  # type: ignore[arg-type]


# ---- edges that mutation testing showed untested (scripts/mutation.py; benchmarks/RESULTS.md lists them) ------------
def test_parameter_checks_name_the_key():
    m_f, tags_k = torch.rand(1, 2, 4), torch.ones(1, 2, dtype=torch.bool)
    for call, msg in [
        (lambda: vpe.seed_mask(m_f, tags_k, 1.5), r"^vpe\.topk_percent is a fraction in \(0, 1\], got 1\.5$"),
        (lambda: vpe.update_prototypes(torch.zeros(2, 3), torch.zeros(2, dtype=torch.bool), torch.rand(1, 3, 4),
                                       torch.ones(1, 2, 4, dtype=torch.bool), 1.5),
         r"^vpe\.momentum must be in \[0, 1\], got 1\.5$"),
        (lambda: usr.transition_matrix(torch.rand(1, 3, 3), -1), r"^usr\.alpha must be ≥ 0, got -1$"),
        (lambda: usr.attention_filter(torch.rand(1, 4), 5),
         r"^usr\.n0=5 is outside 1\.\.4 \(the backbone has 4 blocks\); set usr\.n0 in that range$"),
    ]:
        with pytest.raises(ValueError, match=msg):
            call()


def test_vpe_momentum_bounds_and_the_rank_reduction():
    g = _g(14)
    feats, seeds = torch.randn(2, 3, 6, generator=g), torch.rand(2, 2, 6, generator=g) > 0.4
    protos, init = torch.randn(2, 3, generator=g), torch.tensor([True, True])
    for tau in (0.0, 1.0):  # both ends are allowed: τ = 0 takes the batch mean, τ = 1 keeps the prototype
        new, _ = vpe.update_prototypes(protos, init, feats, seeds, tau)
        want, _ = ref.update(np64(protos), np64(init).astype(bool), list(np64(feats)), list(seeds.numpy()), tau)
        assert close(new, want)
    # the data-parallel reduction is applied to the sums and the counts: a "second rank" with the same seeds
    # (sums and counts doubled) gives the same global mean
    plain, _ = vpe.update_prototypes(protos, init, feats, seeds, 0.5)
    doubled, _ = vpe.update_prototypes(protos, init, feats, seeds, 0.5, reduce=lambda t: 2 * t)
    assert close(doubled, np64(plain))
    skewed, _ = vpe.update_prototypes(protos, init, feats, seeds, 0.5, reduce=lambda t: t + 1)
    assert not close(skewed, np64(plain))


def test_vpe_every_token_a_seed_at_k_one():
    """k = 1 with one class owning every token: all hw tokens are seeds (the k-th largest is the minimum)."""
    m_f = torch.rand(1, 2, 9, generator=_g(15)) + 0.1
    m_f[0, 0] = 0.0  # the background never wins
    q = vpe.seed_mask(m_f, torch.ones(1, 2, dtype=torch.bool), 1.0)
    assert q[0, 1].all() and not q[0, 0].any()
    assert close(q[0].double(), ref.seeds(np64(m_f[0]), np.ones(2), 1.0).astype(float))


def test_transition_matrix_defaults_and_near_empty_columns():
    """One normalisation pair by default (the README's choice), and a column whose sum is below eps = 1e-8 is
    divided by eps, not by its sum."""
    r = torch.rand(1, 5, 5, generator=_g(16), dtype=torch.float64)
    r[0, :, 2] = 0.3e-8  # a column summing to 1.5e-8 ... below 2e-8
    r[0, :, 3] = 0.1e-8  # ... and one summing to 0.5e-8, below 1e-8
    for alpha in (1, 2):
        assert close(usr.transition_matrix(r, alpha)[0], ref.transition(np64(r[0]), alpha))


def test_vpe_off_normalisation_threshold_and_the_warm_up_n0_check():
    """A map is 'flat' (keeps M_init) when its range is at most 1e-6 — exactly 1e-6 included, 1.5e-6 not; the warm-up
    branch checks N0 against the number of blocks, not the token count."""
    m_init = torch.zeros(1, 3, 4, dtype=torch.float64)
    m_init[0, 1, 0] = 1e-6
    m_init[0, 2, 0] = 1.5e-6
    m_f = torch.rand(1, 3, 4, generator=_g(17), dtype=torch.float64)
    got = usr.normalise_maps(m_init, m_f)
    assert close(got[0], ref.normalise_vpe_off(np64(m_init[0]), np64(m_f[0])))
    assert torch.equal(got[0, 1], m_init[0, 1]) and not torch.equal(got[0, 2], m_init[0, 2])
    attn = torch.rand(1, 4, 9, 9, generator=_g(18)).softmax(-1)
    with pytest.raises(ValueError, match=r"usr\.n0=6 is outside 1\.\.4"):
        usr.usr_refine(torch.rand(1, 2, 9), torch.rand(1, 3, 9), attn, 6, 2, use_affinity=False)


def test_band_rule_boundaries_and_loss_checks():
    """AFA's band at its edges (values exact in binary): s = high with s > bg is foreground, s = bg is not; s = low is
    uncertain, bg = s below low is background."""
    high, low = 0.5, 0.25
    fg = torch.tensor([0.5, 0.6, 0.25, 0.2, 0.1])
    bg = torch.tensor([0.2, 0.6, 0.5, 0.2, 0.05])
    c = torch.stack([bg, fg])[None, :, None, :]  # (1, K=2, 1, 5)
    tags_k = torch.ones(1, 2, dtype=torch.bool)
    got = losses.pseudo_labels(c, tags_k, high, low, 255, "band")[0, 0].tolist()
    assert got == [1, 255, 255, 0, 255] == ref.pseudo_labels(np64(c[0]), np.ones(2), "band", high, low)[0].tolist()
    for call, msg in [
        (lambda: losses.pseudo_labels(c, tags_k, high, low, 255, "other"),
         r"^pseudo\.rule must be 'argmax' \(WeCLIP\) or 'band' \(AFA\), not 'other'$"),
        (lambda: losses.seg_loss(torch.zeros(1, 2, 3, 4), torch.zeros(1, 3, 5, dtype=torch.long), 255),
         r"^logits \(1, 2, 3, 4\) and labels \(1, 3, 5\) differ in size$"),
        (lambda: losses.window_mask((2, 3), -1), r"^loss\.aff_radius must be ≥ 0 or null \(all pairs\), got -1$"),
    ]:
        with pytest.raises(ValueError, match=msg):
            call()
    mask = losses.window_mask((2, 3), 1)  # no device given: the default device
    assert mask.shape == (6, 6) and bool(mask[0, 4]) and not bool(mask[0, 2])


def test_par_with_empty_and_constant_channels():
    """Untagged classes give all-zero channels (PAR skips them) and a constant channel must stay constant; a batch of
    three images with K = 4 channels keeps every shape apart."""
    g = _g(19)
    img, c = torch.rand(3, 3, 7, 8, generator=g), torch.rand(3, 4, 4, 5, generator=g)
    c[:, 1] = 0.0  # an untagged class in every image
    c[:, 3] = 1.0  # a constant map
    out = PAR([1, 2], iters=2)(img, c)
    assert out.shape == (3, 4, 7, 8)
    for b in range(3):
        assert close(out[b], ref.par(np64(img[b]), np64(c[b]), [1, 2], 2))
    assert float(out[:, 1].abs().max()) == 0.0 and close(out[:, 3], np.ones((3, 7, 8)))


def test_multiscale_without_flip_and_its_check():
    x = torch.rand(1, 2, 5, 6, generator=_g(20))

    def fn(z: torch.Tensor, out: tuple[int, int]) -> torch.Tensor:  # position-dependent: a flip would show
        return multiscale.resize(z * torch.arange(z.shape[-1]).float(), out)

    want = ref.bilinear(ref.bilinear(np64(x[0]), (10, 12)) * np.arange(12), (5, 6))
    assert close(multiscale.multi_scale(fn, x, [2.0], flip=False, patch=1)[0], want)
    with pytest.raises(ValueError, match=r"^infer\.scales is empty; give at least one scale, e\.g\. \[1\.0\]$"):
        multiscale.multi_scale(fn, x, [], flip=False, patch=1)
