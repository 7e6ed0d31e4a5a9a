"""The training-target and zero-shot paths of ``WSSS`` at the edges that mutation testing found unguarded
(scripts/mutation.py wsss; benchmarks/RESULTS.md lists the survivors): the DINO-level check of eq 10, L_aff on the
decoder's affinity, the USR warm-up count, PAR at a one-pixel scale. Expectations come from the numpy reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rs_wsss.errors import RsWsssError

from . import numpy_engine as ref
from .conftest import close, decoder_weights, np64
from .test_reference_path import (
    HH,
    WW,
    H,
    W,
    _feats,
    _model,
    _np_feats,
    _params,
    _refine_both,
    _seed_prototypes,
    _weights,
)
from .test_reference_path import priors as priors  # noqa: F401  (the module-scoped fixture)


def test_f_cd_names_dino_levels_it_cannot_use(priors):
    """Missing, 4-D, or with another number of levels: one message naming what came and the fix."""
    model = _model(priors)
    n, d = model.dino_adapter.n_levels, model.dino.width
    f_clip = torch.randn(2, model.cfg.adapter.dim, H, W)
    tail = (f" do not hold the {n} levels adapter\\.dino_levels asks for; features cached by an older version or "
            "another config: delete that feature cache$")
    for levels, got in [(None, "none"), (torch.zeros(2, n, d, 4), rf"\(2, {n}, {d}, 4\)"),
                        (torch.zeros(2, n + 1, d, 4, 5), rf"\(2, {n + 1}, {d}, 4, 5\)")]:
        with pytest.raises(RsWsssError, match=f"^DINO features {got}{tail}"):
            model.f_cd(f_clip, levels)
    assert model.f_cd(f_clip, torch.zeros(2, n, d, 4, 5)).shape == (2, model.prototypes.shape[1], H, W)


def test_affinity_loss_on_the_decoders_attention(priors):
    """``loss.aff_on=decoder``: L_aff is computed on the decoder's affinity (eqs 7–8 reference) instead of A_cd; the
    targets are unchanged, and the loss differs from the joint-affinity one."""
    model = _model(priors, ["loss.aff_on=decoder"]).train()
    _seed_prototypes(model)
    feats, images, tags = _feats(model)
    p = _params(model)
    want = ref.step(_np_feats(feats), np64(images), np64(tags), np64(model.text), _weights(model),
                    np64(model.prototypes), np64(model.proto_init).astype(bool), p)
    out = model.step_from_features(feats, images, tags)
    assert np.array_equal(out["labels"].numpy(), want["labels"]) and close(out["seg"], want["seg"])
    dim = model.cfg.adapter.dim
    dec_aff = [ref.decoder(f[:dim], (H, W), (HH, WW), decoder_weights(model.decoder), p["heads"])[1]
               for f in want["f_cd"]]
    aff = ref.aff_loss(dec_aff, [ref.affinity_labels(lb, (H, W), p["radius"]) for lb in want["labels"]])
    assert close(out["aff"], aff) and close(out["loss"], p["seg_w"] * want["seg"] + p["aff_w"] * aff)
    assert abs(aff - want["aff"]) > 1e-3  # the switch changes the loss


def test_warm_up_counts_training_steps(priors):
    """``usr.warmup_iters=2``: the first two training steps refine without A_cd and VPE, the third with them; each
    step counts once, and an evaluation step neither counts nor warms up."""
    model = _model(priors, ["usr.warmup_iters=2"]).train()
    _seed_prototypes(model)
    protos, init = np64(model.prototypes), np64(model.proto_init).astype(bool)
    for i, warm in enumerate([True, True, False]):
        feats, images, tags = _feats(model, seed=20 + i)
        want = ref.step(_np_feats(feats), np64(images), np64(tags), np64(model.text), _weights(model), protos, init,
                        _params(model, warm))
        out = model.step_from_features(feats, images, tags)
        assert close(out["cam"], want["cam"]), (i, warm)
        assert np.array_equal(out["labels"].numpy(), want["labels"]) and model.steps_done == i + 1
        protos, init = want["protos"], want["init"]
    model.eval()
    before = model.prototypes.clone()
    feats, images, tags = _feats(model, seed=23)
    model.step_from_features(feats, images, tags)
    assert model.steps_done == 3 and torch.equal(model.prototypes, before)  # evaluation: not counted, no update


def test_par_at_a_scale_of_one_pixel(priors):
    """``par.scale`` so small that the PAR image is 1×1 (0.02 of a 40×48 crop): the size is clamped to 1, never 0,
    and the refined CAM is the reference's."""
    model = _model(priors, ["par.scale=0.02"]).train()
    _seed_prototypes(model)
    feats, images, tags = _feats(model)
    want = ref.step(_np_feats(feats), np64(images), np64(tags), np64(model.text), _weights(model),
                    np64(model.prototypes), np64(model.proto_init).astype(bool), _params(model))
    out = model.step_from_features(feats, images, tags)
    assert close(out["cam"], want["cam"]) and np.array_equal(out["labels"].numpy(), want["labels"])


def test_refine_cam_is_not_warm_by_default(priors):
    """``refine_cam`` without ``warm`` refines with A_cd and VPE (the warm-up is the caller's choice)."""
    model = _model(priors)
    _seed_prototypes(model)
    feats, _, tags = _feats(model, seed=24)
    _, want, rp, _, f_cd, _ = _refine_both(model, feats, tags)  # warm=False, passed explicitly
    _seed_prototypes(model)
    tags_k = torch.cat([torch.ones_like(tags[:, :1]), tags], 1).bool()
    assert close(model.refine_cam(feats, f_cd, tags, tags_k, update=True), want) and close(model.prototypes, rp)
