"""The training fast path (issue 25) against the implementation it replaced, kept here as the reference: per-level 1×1
``Conv2d`` adapters and classifier, PAR through one-hot-kernel convolutions, DINO levels resized at every step.

Same seed, same real crops, a few AdamW steps on both: the same losses, pseudo labels and weights within float
tolerance. Checkpoints written with the convolution layout load into the new one (and resume)."""

from __future__ import annotations

import copy
import math
import shutil

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rs_wsss.classes import load_class_set
from rs_wsss.config import tiny_config
from rs_wsss.model.adapter import FeatureAdapter
from rs_wsss.model.checkpoint import load_checkpoint, restore_model
from rs_wsss.model.decoder import Decoder
from rs_wsss.model.par import OFFSETS, W_COLOUR, W_POS
from rs_wsss.model.wsss import WSSS
from rs_wsss.priors import build_priors
from rs_wsss.train.batches import Batch
from rs_wsss.train.loop import build_optimizer, train

pytestmark = pytest.mark.usefixtures("kb_cache")  # encoded knowledge bases go to a temporary cache (conftest)

# PAR dilations beyond the 32 px PAR image (clamped reads) and a DINO grid (5²) other than CLIP's (4²). USR and VPE
# (unchanged code) are off: with the tiny random model their diffused maps are nearly flat and the min–max
# normalisation of eq 20 turns float rounding (1e-7) into visible CAM differences; both adapters still train
# (L_seg through the decoder, L_aff through A_cd of eq 11)
OVERRIDES = ["par.dilations=[1,3,8,24]", "par.iters=4", "priors.dino_size=70", "usr.enabled=false",
             "vpe.enabled=false"]


# ---- the reference: the code before the fast path, verbatim in what it computes ------------------------------------
class ConvAdapter(nn.Module):
    def __init__(self, in_dim, hidden_dim, out_dim, n_levels, fuse_kernel=1):
        super().__init__()
        self.in_dim = in_dim
        self.mlps = nn.ModuleList(
            nn.Sequential(nn.Conv2d(in_dim, hidden_dim, 1), nn.GELU(), nn.Conv2d(hidden_dim, out_dim, 1))
            for _ in range(n_levels))
        self.fuse = nn.Conv2d(n_levels * out_dim, out_dim, fuse_kernel, padding=fuse_kernel // 2)
        self.n_levels = n_levels

    def forward(self, levels):
        levels = list(levels.unbind(1)) if isinstance(levels, torch.Tensor) else levels
        return self.fuse(torch.cat([mlp(x) for mlp, x in zip(self.mlps, levels)], dim=1))


class ConvDecoder(Decoder):
    def __init__(self, dim, num_classes, *args, **kwargs):
        super().__init__(dim, num_classes, *args, **kwargs)
        self.classifier = nn.Conv2d(dim, num_classes, 1)

    _load_from_state_dict = nn.Module._load_from_state_dict  # no conversion: this is the old layout

    def forward(self, f_clip, out_size, want_affinity=False):
        b, c, h, w = f_clip.shape
        x, aff = self.features(f_clip, want_affinity)  # the blocks (unchanged code)
        x = x.transpose(1, 2).reshape(b, c, h, w)
        return F.interpolate(self.classifier(x), size=out_size, mode="bilinear", align_corners=False), aff


class ConvPAR(nn.Module):
    def __init__(self, dilations, iters):
        super().__init__()
        self.dilations, self.iters = list(dilations), iters
        kernel = torch.zeros(8, 1, 3, 3)
        for n, (i, j) in enumerate(OFFSETS):
            kernel[n, 0, i + 1, j + 1] = 1.0
        self.register_buffer("kernel", kernel, persistent=False)
        dist = torch.tensor([math.hypot(i, j) for i, j in OFFSETS])
        self.register_buffer("dist", torch.cat([dist * d for d in self.dilations]), persistent=False)

    def _shifted(self, x, d):
        b, c, h, w = x.shape
        xp = F.pad(x, [d] * 4, mode="replicate").reshape(b * c, 1, h + 2 * d, w + 2 * d)
        return F.conv2d(xp, self.kernel.to(x), dilation=d).view(b, c, 8, h, w)

    @torch.no_grad()
    def forward(self, image, cam):
        cam = F.interpolate(cam.float(), size=image.shape[-2:], mode="bilinear", align_corners=False)
        nb = torch.cat([self._shifted(image, d) for d in self.dilations], dim=2)
        colour = -((nb - image.unsqueeze(2)).abs() / (nb.std(dim=2, keepdim=True) + 1e-8) / W_COLOUR) ** 2
        colour = colour.mean(dim=1, keepdim=True)
        pos = -(self.dist / (self.dist.std() + 1e-8) / W_COLOUR) ** 2
        aff = (colour.softmax(dim=2) + W_POS * pos.softmax(dim=0).view(1, 1, -1, 1, 1)) / (1 + W_POS)
        for _ in range(self.iters):
            out = torch.zeros_like(cam)
            for n, d in enumerate(self.dilations):
                out += (self._shifted(cam, d) * aff[:, :, 8 * n : 8 * (n + 1)]).sum(dim=2)
            cam = out
        return cam


def conv_state(ad: FeatureAdapter) -> dict[str, torch.Tensor]:
    """The stacked adapter's weights in the per-level convolution layout (what older checkpoints hold)."""
    sd = {}
    for lv in range(ad.n_levels):
        sd[f"mlps.{lv}.0.weight"] = ad.hidden_weight[lv].detach()[:, :, None, None].clone()
        sd[f"mlps.{lv}.0.bias"] = ad.hidden_bias[lv].detach().clone()
        sd[f"mlps.{lv}.2.weight"] = ad.out_weight[lv].detach()[:, :, None, None].clone()
        sd[f"mlps.{lv}.2.bias"] = ad.out_bias[lv].detach().clone()
    sd["fuse.weight"] = ad.fuse.weight.detach()[:, :, None, None].clone()
    sd["fuse.bias"] = ad.fuse.bias.detach().clone()
    return sd


def reference_model(new: WSSS) -> WSSS:
    """A copy of ``new`` running the replaced implementations, with the same weights."""
    ref = copy.deepcopy(new)
    cfg = new.cfg
    for name in ("adapter", "dino_adapter"):
        ad = getattr(new, name)
        conv = ConvAdapter(ad.in_dim, ad.hidden_weight.shape[1], ad.out_weight.shape[1], ad.n_levels)
        conv.load_state_dict(conv_state(ad))
        setattr(ref, name, conv)
    dec = ConvDecoder(cfg.adapter.dim, new.class_set.num_classes + 1, cfg.decoder.layers, cfg.decoder.heads,
                      cfg.decoder.mlp_ratio, cfg.decoder.dropout)
    sd = {k: v.clone() for k, v in new.decoder.state_dict().items()}
    sd["classifier.weight"] = sd["classifier.weight"][:, :, None, None]
    dec.load_state_dict(sd)
    ref.decoder = dec
    ref.par = ConvPAR(cfg.par.dilations, cfg.par.iters)
    return ref


@pytest.fixture(scope="module")
def setup(batch):
    cfg = tiny_config(OVERRIDES)
    clip, dino = build_priors(cfg.priors)
    torch.manual_seed(0)
    model = WSSS(cfg, load_class_set("potsdam"), clip, dino).train()
    imgs, tags = batch
    return cfg, model, imgs, tags


def test_same_seed_gives_the_convolutions_initial_weights():
    """The stacked adapter draws its initial values in the order the per-level convolutions did."""
    torch.manual_seed(3)
    conv = ConvAdapter(16, 24, 8, 3)
    torch.manual_seed(3)
    new = FeatureAdapter(16, 24, 8, 3)
    assert all(torch.equal(v, conv.state_dict()[k]) for k, v in conv_state(new).items())
    # the decoder's classifier is built last, as before; a Linear draws what the 1×1 Conv2d drew
    torch.manual_seed(3)
    conv_cls = nn.Conv2d(8, 5, 1)
    torch.manual_seed(3)
    lin = nn.Linear(8, 5)
    assert torch.equal(lin.weight, conv_cls.weight[:, :, 0, 0]) and torch.equal(lin.bias, conv_cls.bias)


def test_a_few_training_steps_match_the_convolution_implementation(setup):
    cfg, model, imgs, tags = setup
    new = copy.deepcopy(model)
    ref = reference_model(new)
    feats = new.frozen_features(imgs)
    assert feats["dino"].shape[-2:] == feats["tokens"].shape[-2:] == (4, 4)  # resized once, at caching
    # the reference gets DINO at its own 5² grid and resizes it every step, as before
    ref_feats = {**feats, "dino": new.dino.levels(F.interpolate(imgs, size=(70, 70), mode="bilinear",
                                                                align_corners=False), cfg.adapter.dino_levels)}
    assert ref_feats["dino"].shape[-2:] == (5, 5)
    opt_new, _ = build_optimizer(new, cfg.train)
    opt_ref, _ = build_optimizer(ref, cfg.train)
    for step in range(4):
        outs = []
        for m, opt, f in ((new, opt_new, feats), (ref, opt_ref, ref_feats)):
            out = m.step_from_features(f, imgs, tags)
            opt.zero_grad()
            out["loss"].backward()
            opt.step()
            outs.append(out)
        a, b = outs
        assert torch.allclose(a["loss"], b["loss"], rtol=1e-5), (step, float(a["loss"]), float(b["loss"]))
        assert torch.allclose(a["cam"], b["cam"], atol=1e-5)
        assert (a["labels"] == b["labels"]).float().mean() > 0.999
        assert torch.allclose(a["logits"], b["logits"], atol=1e-4)
    assert torch.allclose(new.prototypes, ref.prototypes, atol=1e-5)
    for name in ("adapter", "dino_adapter"):
        want = getattr(ref, name).state_dict()
        for k, v in conv_state(getattr(new, name)).items():
            assert torch.allclose(v, want[k], atol=1e-5), (name, k)
    # the weights did move: the comparison is not between two untouched copies
    assert not torch.allclose(new.adapter.hidden_weight, model.adapter.hidden_weight)


def test_par_matches_the_convolution_par_with_channels_no_tile_has(batch):
    """Views of one padded copy = the one-hot convolutions, dilations past the image included; a channel that is 0
    on every tile of the batch is skipped and comes back 0."""
    from rs_wsss.model.par import PAR

    imgs, _ = batch
    small = F.interpolate(imgs, size=(32, 32), mode="bilinear", align_corners=False)
    cam = torch.rand(2, 5, 4, 4, generator=torch.Generator().manual_seed(0))
    cam[:, 3] = 0  # nobody has class 3
    cam[0, 1] = 0  # class 1 on the second tile only
    want = ConvPAR([1, 3, 8, 24], 4)(small, cam)
    got = PAR([1, 3, 8, 24], 4)(small, cam)
    assert torch.allclose(got, want, atol=1e-6) and got[:, 3].abs().max() == 0 and got[0, 1].abs().max() == 0
    assert got[1, 1].abs().max() > 0


def test_a_checkpoint_in_the_convolution_layout_loads_and_resumes(setup, tmp_path):
    cfg, model, imgs, tags = setup
    cfg = tiny_config([*OVERRIDES, "train.iters=3", "train.checkpoint_every=2"])
    torch.manual_seed(0)
    new = WSSS(cfg, model.class_set, model.clip, model.dino).train()
    ref, ref2 = reference_model(new), reference_model(new)
    old_path = tmp_path / "old.pt"

    def keep_step_2(done: int, m, out) -> None:  # the step-2 checkpoint, before step 3 overwrites it
        if done == 3:
            shutil.copy(tmp_path / "ref.pt", old_path)

    # the convolution layout trains 3 steps uninterrupted; its step-2 checkpoint is an older checkpoint
    train(ref, lambda step: Batch(imgs, tags), cfg.train, tmp_path / "ref.pt", on_step=keep_step_2)
    state = load_checkpoint(old_path)
    assert state["step"] == 2 and "mlps.0.0.weight" in state["trainable"]["adapter"]
    assert state["trainable"]["decoder"]["classifier.weight"].ndim == 4
    loaded = WSSS(cfg, model.class_set, model.clip, model.dino)
    restore_model(loaded, state, str(old_path))
    for name in ("adapter", "dino_adapter", "decoder"):
        getattr(ref2, name).load_state_dict(state["trainable"][name])
    for name in ("adapter", "dino_adapter"):
        want = state["trainable"][name]
        assert all(torch.equal(v, want[k]) for k, v in conv_state(getattr(loaded, name)).items())
    ref2.prototypes.copy_(state["prototypes"])
    loaded.eval(), ref2.eval()
    assert torch.allclose(loaded.predict(imgs, [1.0], False), ref2.predict(imgs, [1.0], False), atol=1e-5)
    # resume the old checkpoint in the new layout (its AdamW moments stacked as the weights): step 3 as uninterrupted
    res = train(loaded.train(), lambda step: Batch(imgs, tags), cfg.train, old_path, resume=True)
    assert res["start"] == 2 and res["step"] == 3
    for name in ("adapter", "dino_adapter"):
        want = getattr(ref, name).state_dict()
        assert all(torch.allclose(v, want[k], atol=1e-5) for k, v in conv_state(getattr(loaded, name)).items())
    assert not torch.allclose(loaded.adapter.hidden_weight, new.adapter.hidden_weight)  # it trained
    assert "hidden_weight" in load_checkpoint(old_path)["trainable"]["adapter"]  # the new layout is written


# ---- train.precision ---------------------------------------------------------------------------------------------
def test_precision_auto_follows_the_cpu_and_cuda_keeps_its_amp_switch(monkeypatch):
    from rs_wsss import runtime
    from rs_wsss.errors import RsWsssError

    for has in (True, False):
        monkeypatch.setattr(runtime, "cpu_has_bf16", lambda has=has: has)
        assert runtime.training_dtype("auto", False, "cpu") == (torch.bfloat16 if has else torch.float32)
        assert runtime.training_dtype("fp32", False, "cpu") == torch.float32
        assert runtime.training_dtype("bf16", False, "cpu") == torch.bfloat16
    assert runtime.training_dtype("auto", False, "cuda") == torch.float32  # no CUDA needed to decide
    assert runtime.training_dtype("auto", True, "cuda") == torch.bfloat16
    with pytest.raises(RsWsssError, match="train.precision"):
        runtime.training_dtype("fp16", False, "cpu")


def test_bf16_runs_the_trainable_forward_in_bf16_and_keeps_fp32_masters_and_losses(setup, tmp_path):
    cfg, model, imgs, tags = setup
    runs = {}
    for prec in ("fp32", "bf16"):
        c = tiny_config([*OVERRIDES, "train.iters=5", f"train.precision={prec}", "train.checkpoint_every=100"])
        torch.manual_seed(0)
        m = WSSS(c, model.class_set, model.clip, model.dino)
        seen: dict[str, torch.dtype] = {}
        for n in ("adapter", "dino_adapter", "decoder"):
            getattr(m, n).register_forward_hook(
                lambda mod, i, o, n=n, seen=seen: seen.__setitem__(n, (o[0] if isinstance(o, tuple) else o).dtype))
        res = train(m, lambda step: Batch(imgs, tags), c.train, tmp_path / f"{prec}.pt")
        runs[prec] = (res["losses"], seen, m)
    (l32, seen32, _), (l16, seen16, m16) = runs["fp32"], runs["bf16"]
    assert set(seen32.values()) == {torch.float32}
    assert seen16 == {"adapter": torch.bfloat16, "dino_adapter": torch.bfloat16, "decoder": torch.bfloat16}
    assert all(p.dtype == torch.float32 for p in m16.trainable_parameters())  # fp32 master weights
    state = load_checkpoint(tmp_path / "bf16.pt")["optimizer"]["state"]
    assert state and all(v.dtype == torch.float32 for s in state.values() for k, v in s.items() if k != "step")
    # the same curve within bf16's precision, but not bit-identical: the switch changes the arithmetic
    a, b = torch.tensor(l32), torch.tensor(l16)
    assert torch.allclose(a, b, rtol=0.05), (a, b)
    assert not torch.equal(a, b)
