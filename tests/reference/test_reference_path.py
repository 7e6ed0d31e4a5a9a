"""The whole training target path — ``WSSS.refine_cam`` and ``WSSS.step_from_features`` (adapters → eq 10 → eq 9 →
USR → VPE with its prototype update → PAR → pseudo labels → L_seg, affinity labels → L_aff → eq 21) — against the
numpy reference, on random frozen features and on controlled ones (known neighbourhoods, DINO clusters, tags that
exclude classes). The frozen features are inputs here (the priors' job is tested elsewhere), so every stage's input
is chosen and a fault that swaps, ignores or replaces one shows up as a mismatch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rs_wsss.classes import load_class_set
from rs_wsss.config import tiny_config
from rs_wsss.model.wsss import WSSS
from rs_wsss.priors import build_priors

from . import numpy_engine as ref
from .conftest import adapter_weights, close, decoder_weights, np64

H, W = 5, 6  # token grid
HH, WW = 40, 48  # crop
C = 5  # potsdam's foreground classes (clutter is the background channel)


@pytest.fixture(scope="module")
def priors():
    return build_priors(tiny_config().priors)


def _model(priors, overrides: list[str] = (), seed: int = 0) -> WSSS:
    torch.manual_seed(seed)
    clip, dino = priors
    model = WSSS(tiny_config(["usr.alpha=3", *overrides]), load_class_set("potsdam"), clip, dino)
    model._text = torch.randn(C, 48, generator=torch.Generator().manual_seed(seed + 1))  # T of eq 9 is an input
    return model


def _feats(model: WSSS, seed: int = 0, b: int = 2) -> tuple[dict, torch.Tensor, torch.Tensor]:
    """Random frozen features with the shapes the priors give: CLIP tokens of every block, head-averaged attention
    (rows sum to 1), final tokens in the joint space, and DINO levels on a coarser grid than CLIP's."""
    g = torch.Generator().manual_seed(seed)
    n, d = model.clip.num_blocks, model.clip.width
    hw = H * W
    feats = {"tokens": torch.randn(b, n, d, H, W, generator=g),
             "attn": (3 * torch.randn(b, n, hw, hw, generator=g)).softmax(-1),
             "joint": torch.randn(b, 48, H, W, generator=g)}
    if model.dino_adapter is not None:
        feats["dino"] = torch.randn(b, model.dino_adapter.n_levels, model.dino.width, 4, 5, generator=g)
    images = torch.rand(b, 3, HH, WW, generator=g)
    tags = torch.tensor([[1, 0, 1, 1, 0], [0, 1, 0, 0, 1]], dtype=torch.float32)[:b]
    return feats, images, tags


def _params(model: WSSS, warm: bool = False) -> dict:
    c = model.cfg
    # N0 counted on the paper's 12-block CLIP, at the prior's depth the same share of deep blocks (README)
    n0 = round((c.usr.n0 - 1) * model.clip.spec.blocks / 12) + 1
    return {"n0": n0, "alpha": c.usr.alpha, "topk": c.vpe.topk_percent, "tau": c.vpe.momentum,
            "usr": c.usr.enabled, "vpe": c.vpe.enabled, "warm": warm, "bg_rule": c.cam.bg_rule,
            "bg_power": c.cam.bg_power, "bg_score": c.cam.bg_score, "bg_proto": c.vpe.background_prototype,
            "bg_after": c.cam.bg_after_refine,
            "par": c.par.enabled, "par_scale": c.par.scale, "dilations": list(c.par.dilations),
            "par_iters": c.par.iters, "rule": c.pseudo.rule, "high": c.pseudo.high, "low": c.pseudo.low,
            "radius": c.loss.aff_radius, "seg_w": c.loss.seg_weight, "aff_w": c.loss.aff_weight,
            "heads": c.decoder.heads}


def _np_feats(feats: dict) -> dict:
    return {k: np64(v) for k, v in feats.items()}


def _weights(model: WSSS) -> dict:
    w = {"adapter": adapter_weights(model.adapter), "decoder": decoder_weights(model.decoder)}
    if model.dino_adapter is not None:
        w["dino_adapter"] = adapter_weights(model.dino_adapter)
    return w


def _seed_prototypes(model: WSSS, seed: int = 3) -> None:
    """Some classes already have a prototype (the momentum branch of eq 18), others not yet (the first-value one)."""
    g = torch.Generator().manual_seed(seed)
    model.prototypes.copy_(torch.randn(model.prototypes.shape, generator=g))
    model.proto_init.copy_(torch.tensor([False, True, False, True, False, True]))


def _refine_both(model: WSSS, feats: dict, tags: torch.Tensor, update: bool = True, warm: bool = False):
    f_cd = model.f_cd(model.adapter(list(feats["tokens"].unbind(1))), feats.get("dino")).detach()
    protos, init = np64(model.prototypes), np64(model.proto_init).astype(bool)
    tags_k = torch.cat([torch.ones_like(tags[:, :1]), tags], 1).bool()
    got = model.refine_cam(feats, f_cd, tags, tags_k, update=update, warm=warm)
    nf = _np_feats(feats)
    r_fcd = ref.fcd(nf, adapter_weights(model.adapter),
                    adapter_weights(model.dino_adapter) if model.dino_adapter is not None else None)
    want, rp, ri = ref.refine(nf, r_fcd, np64(tags), np64(model.text), protos, init, _params(model, warm), update)
    return got, np.stack(want), rp, ri, f_cd, np.stack(r_fcd)


# ---- the whole step -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("overrides", [[], ["usr.use_dino=false", "loss.aff_radius=null", "par.scale=1.0"]])
def test_step_from_features_matches_the_reference(priors, overrides):
    model = _model(priors, overrides).train()
    _seed_prototypes(model)
    feats, images, tags = _feats(model)
    protos, init = np64(model.prototypes), np64(model.proto_init).astype(bool)
    want = ref.step(_np_feats(feats), np64(images), np64(tags), np64(model.text), _weights(model), protos, init,
                    _params(model))
    out = model.step_from_features(feats, images, tags)
    assert close(out["logits"], want["logits"])
    assert close(out["cam"], want["cam"])
    assert np.array_equal(out["labels"].numpy(), want["labels"])
    assert close(out["seg"], want["seg"]) and close(out["aff"], want["aff"]) and close(out["loss"], want["loss"])
    assert close(model.prototypes, want["protos"]) and model.proto_init.tolist() == want["init"].tolist()
    assert len(np.unique(want["labels"])) >= 3  # the labels are not trivially one class


# ---- refine_cam under each switch -----------------------------------------------------------------------------------
@pytest.mark.parametrize("overrides", [
    [],
    ["vpe.enabled=false"],
    ["usr.enabled=false"],
    ["usr.enabled=false", "vpe.enabled=false"],
    ["cam.bg_rule=constant", "vpe.background_prototype=true"],
    ["cam.bg_power=2.0", "vpe.topk_percent=0.6", "vpe.momentum=0.5", "usr.n0=3", "usr.alpha=2"],
    ["usr.n0=1", "usr.alpha=1"],
    ["cam.bg_after_refine=true", "cam.bg_power=2.0"],
    ["cam.bg_after_refine=true", "vpe.enabled=false"],
])
def test_refine_cam_matches_the_reference(priors, overrides):
    model = _model(priors, overrides)
    _seed_prototypes(model)
    feats, _, tags = _feats(model, seed=5)
    got, want, rp, ri, _, _ = _refine_both(model, feats, tags)
    assert close(got, want)
    assert close(model.prototypes, rp) and model.proto_init.tolist() == ri.tolist()


def test_refine_cam_warm_up_and_without_update(priors):
    model = _model(priors)
    _seed_prototypes(model)
    feats, _, tags = _feats(model, seed=6)
    before = model.prototypes.clone()
    got, want, _, _, _, _ = _refine_both(model, feats, tags, update=False)
    assert close(got, want) and torch.equal(model.prototypes, before)  # inference: prototypes untouched
    got, want, _, _, _, _ = _refine_both(model, feats, tags, warm=True)
    assert close(got, want) and torch.equal(model.prototypes, before)  # warm-up: no VPE at all


# ---- controlled inputs ----------------------------------------------------------------------------------------------
def test_known_neighbourhood_keeps_the_refinement_inside_its_region(priors):
    """Left and right halves of the grid are two regions. The deep attention maps are: block 2 within the region,
    block 3 across it, block 4 within it (block 1 uniform, before N0 = 2). Adapter features are made region-constant
    (CLIP tokens constant per region), so A_cd prefers within-region pairs and the filter keeps blocks 2 and 4.
    With the joint-space tokens giving class 1 a spike on the left, its refined map stays 0 on the right."""
    model = _model(priors, ["usr.use_dino=false", "vpe.enabled=false"])
    feats, _, _ = _feats(model, seed=7, b=1)
    hw = H * W
    left = torch.tensor([(i % W) < W // 2 for i in range(hw)])
    same = (left[:, None] == left[None, :]).float()
    within, across = same / same.sum(1, keepdim=True), (1 - same) / (1 - same).sum(1, keepdim=True)
    feats["attn"] = torch.stack([torch.full((hw, hw), 1 / hw), within, across, within])[None]
    # a known adapter: level 1 passes GELU(channels 0..31), level 2 GELU(channels 32..63), fused as level 1 − level 2;
    # tokens (a, 0) on the left and (0, a) on the right then give F_clip = ±GELU(a): A_cd ≈ 1 within, ≈ 0 across
    ad, d = model.adapter, model.clip.width
    hid = ad.hidden_weight.shape[1]
    with torch.no_grad():
        for t in (ad.hidden_weight, ad.hidden_bias, ad.out_weight, ad.out_bias, ad.fuse.weight, ad.fuse.bias):
            t.zero_()
        for n in range(2):
            ad.hidden_weight[n, :, n * hid:(n + 1) * hid] = torch.eye(hid)
            ad.out_weight[n] = torch.eye(hid)
        fw = ad.fuse.weight.view(hid, -1)  # (out, levels·out), a 1×1 fuse
        fw[:, :hid], fw[:, hid:2 * hid] = torch.eye(hid), -torch.eye(hid)
    u, v = torch.zeros(d), torch.zeros(d)
    u[:hid], v[hid:2 * hid] = 0.5, 0.5
    region = torch.where(left[None, :], u[:, None], v[:, None]).view(-1, H, W)
    feats["tokens"] = region[None, None].repeat(1, model.clip.num_blocks, 1, 1, 1)
    feats["joint"] = torch.zeros(1, 48, H, W)
    feats["joint"][0, :, 0, 0] = model.text[0]  # class 1 (channel 1) peaks at token 0, on the left
    feats["joint"][0, :, 1:, :] = -model.text[0][:, None, None]
    feats["joint"][0, :, 0, 1:] = -model.text[0][:, None]
    tags = torch.zeros(1, C)
    tags[0, 0] = 1
    got, want, _, _, f_cd, _ = _refine_both(model, feats, tags)
    assert close(got, want)
    from rs_wsss.model import usr

    a_cd = usr.joint_affinity(f_cd.flatten(2))
    assert usr.attention_filter(usr.attention_scores(a_cd, feats["attn"]), 2).tolist() == [[0.0, 1.0, 0.0, 1.0]]
    m_init = ref.initial_cam(np64(feats["joint"][0]).reshape(48, hw), np64(model.text), np64(tags[0]))
    m_f = ref.usr(m_init, np64(f_cd[0]).reshape(-1, hw), np64(feats["attn"][0]), 2, 3)
    assert np.abs(m_f[1][~left.numpy()]).max() < 1e-9 < m_f[1][left.numpy()].min()
    assert float(got[0, 1, ~left].abs().max()) < 1e-6  # the refined class never leaves its region


def test_dino_clusters_shape_the_targets_when_clip_is_flat(priors):
    """CLIP tokens and attention constant over the image: every spatial difference of A_cd and so of the refined CAM
    comes from the DINO levels, which hold two clusters (top rows / bottom rows). The
    refined maps are then constant inside each DINO cluster and differ between them."""
    model = _model(priors, ["vpe.enabled=false"])  # (VPE's seeds would tie on cluster-constant maps)
    feats, _, tags = _feats(model, seed=9)
    hw = H * W
    # small features keep σ of eq 11 away from saturation, where float32 cannot tell the clusters apart
    feats["tokens"] = 0.2 * feats["tokens"][:, :, :, :1, :1].expand(-1, -1, -1, H, W).contiguous()
    feats["attn"] = torch.full_like(feats["attn"], 1 / hw)
    g = torch.Generator().manual_seed(10)
    n, d = feats["dino"].shape[1:3]
    top, bottom = 3 * torch.randn(2, n, d, 1, 1, generator=g), 3 * torch.randn(2, n, d, 1, 1, generator=g)
    dino = torch.empty(2, n, d, 4, 5)
    dino[:, :, :, :2], dino[:, :, :, 2:] = top, bottom  # after the bilinear resize to 5 rows: rows 0–1 / 3–4
    feats["dino"] = dino
    # the joint-space tokens vary per DINO cluster too, so the initial CAM has structure to refine
    feats["joint"] = feats["joint"][:, :, :1, :1].expand(-1, -1, H, W).clone()
    feats["joint"][:, :, 3:] = -feats["joint"][:, :, 3:]
    got, want, _, _, _, _ = _refine_both(model, feats, tags)
    assert close(got, want)
    g2 = got.view(2, -1, H, W)
    for rows in ([0, 1], [3, 4]):
        block = g2[:, :, rows]
        assert float((block - block[:, :, :1, :1]).abs().max()) < 1e-5  # constant inside a cluster
    assert float((g2[:, 1:, 0, 0] - g2[:, 1:, 4, 0]).abs().max()) > 1e-2  # the clusters differ


def test_tags_that_exclude_classes(priors):
    """Untagged classes are 0 in every refined map and never a pseudo label; a tile tagged with nothing is all
    background; the prototypes of untagged classes do not move."""
    model = _model(priors).train()
    _seed_prototypes(model)
    feats, images, _ = _feats(model, seed=11)
    tags = torch.tensor([[0, 0, 1, 0, 0], [0, 0, 0, 0, 0]], dtype=torch.float32)
    feats["joint"][0, :, :2] += 3 * model.text[2][:, None, None]  # the tagged class is present in the top rows
    before = model.prototypes.clone()
    want = ref.step(_np_feats(feats), np64(images), np64(tags), np64(model.text), _weights(model),
                    np64(model.prototypes), np64(model.proto_init).astype(bool), _params(model))
    out = model.step_from_features(feats, images, tags)
    assert close(out["cam"], want["cam"]) and np.array_equal(out["labels"].numpy(), want["labels"])
    assert set(out["labels"][0].unique().tolist()) <= {0, 3} and out["labels"][1].unique().tolist() == [0]
    assert float(out["cam"][:, [1, 2, 4, 5]].abs().max()) == 0.0
    untouched = [0, 1, 2, 4, 5]
    assert torch.equal(model.prototypes[untouched], before[untouched]) and not torch.equal(model.prototypes[3],
                                                                                            before[3])


def test_each_input_of_the_path_matters(priors):
    """On the random features above, replacing any one input of the target path (swapping the images' attention,
    constant attention, noise for the DINO levels, another image's joint tokens, N0 = α = 1, every owned token a
    seed) moves the reference's refined CAM far beyond the tolerance, so the comparisons above would fail."""
    model = _model(priors)
    _seed_prototypes(model)
    feats, _, tags = _feats(model, seed=5)
    nf, p = _np_feats(feats), _params(model)
    protos, init = np64(model.prototypes), np64(model.proto_init).astype(bool)
    wa, wd = adapter_weights(model.adapter), adapter_weights(model.dino_adapter)

    tags_np = np64(tags)

    def run(f: dict = nf, q: dict = p, t: np.ndarray = tags_np) -> np.ndarray:
        return np.stack(ref.refine(f, ref.fcd(f, wa, wd), t, np64(model.text), protos, init, q)[0])

    base = run()
    swaps = {
        "attention of the other image": {**nf, "attn": nf["attn"][::-1]},
        "constant attention": {**nf, "attn": np.full_like(nf["attn"], 1 / (H * W))},
        "DINO levels replaced by noise": {**nf, "dino": np.random.default_rng(0).normal(size=nf["dino"].shape)},
        "joint tokens of the other image": {**nf, "joint": nf["joint"][::-1]},
        "CLIP tokens of the other image": {**nf, "tokens": nf["tokens"][::-1]},
    }
    for name, f in swaps.items():
        assert np.abs(run(f) - base).max() > 1e-3, name
    for name, q in {"N0 = α = 1": {**p, "n0": 1, "alpha": 1}, "A_cd ignored": {**p, "warm": True},
                    "top-k ignored": {**p, "topk": 1.0}}.items():
        assert np.abs(run(q=q) - base).max() > 1e-3, name
    assert np.abs(run(t=np.ones_like(np64(tags))) - base).max() > 1e-3  # tags ignored
