"""The adapter (eqs 5–6) and decoder (eqs 7–8) where the mutation run (scripts/mutation.py adapter decoder) found them
unguarded: the initialisation against PyTorch's own nn.Linear, checkpoints and AdamW states of the earlier per-level
convolution layout (written here by hand), the fuse kernel's padding, the decoder's widths and defaults, and its CPU
bf16 attention. Expectations come from numpy, PyTorch's reference layers or uninterrupted training, never from the
code under test."""

from __future__ import annotations

import copy
import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rs_wsss.config import DecoderConfig
from rs_wsss.model import decoder as decoder_mod
from rs_wsss.model.adapter import FeatureAdapter, conv1x1_to_linear, init_like_conv, upgrade_optimizer_state
from rs_wsss.model.decoder import Block, Decoder

from . import numpy_engine as ref
from .conftest import close, np64


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _t(x: np.ndarray) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float32)


# ---- initialisation --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fan_in", [0, 1, 5, 64])
def test_init_draws_what_nn_linear_draws_from_the_same_seed(fan_in):
    """PyTorch's nn.Linear default is the reference: kaiming-uniform a = √5, bias U(±1/√fan_in), 0 for fan_in 0."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyTorch warns that initialising a zero-element tensor is a no-op
        torch.manual_seed(7)
        lin = nn.Linear(fan_in, 6)
        torch.manual_seed(7)
        w, b = torch.empty(6, fan_in), torch.empty(6)
        init_like_conv(w, b)
    assert torch.equal(w, lin.weight) and torch.equal(b, lin.bias)
    if fan_in == 0:
        assert torch.equal(b, torch.zeros(6))
    else:
        assert b.abs().max() > 0


def test_adapter_init_bounds_are_one_over_root_fan_in():
    """Statistically: weights and biases U(±1/√fan_in) per level (fan_in = in_dim for W², hidden_dim for W¹); with
    thousands of draws the largest |value| sits just below the bound and the spread is bound/√3."""
    torch.manual_seed(0)
    ad = FeatureAdapter(64, 256, 32, 2)
    for lv in range(2):
        for w, b, fan_in in ((ad.hidden_weight[lv].detach(), ad.hidden_bias[lv].detach(), 64),
                             (ad.out_weight[lv].detach(), ad.out_bias[lv].detach(), 256)):
            bound = 1 / math.sqrt(fan_in)
            assert 0.99 * bound < w.abs().max() <= bound
            assert abs(float(w.std()) - bound / math.sqrt(3)) < 0.03 * bound
            assert abs(float(w.mean())) < 0.03 * bound
            assert 0.85 * bound < b.abs().max() <= bound and b.min() < 0 < b.max()


# ---- 1×1 convolution weights → Linear --------------------------------------------------------------------------------
def test_conv1x1_to_linear_converts_only_one_by_one_kernels():
    w = _t(_rng(0).standard_normal((3, 2, 1, 1)))
    other = {"k3": torch.ones(3, 2, 3, 3), "k21": torch.ones(3, 2, 2, 1), "k12": torch.ones(3, 2, 1, 2),
             "lin": torch.ones(3, 2), "five": torch.ones(3, 2, 1, 1, 1), "text": "not a tensor"}
    sd = {"w": w, **other}
    for key in [*sd, "absent"]:
        conv1x1_to_linear(sd, key)
    assert sd["w"].shape == (3, 2) and torch.equal(sd["w"], _t(np64(w)[:, :, 0, 0]))
    assert "absent" not in sd
    for key, v in other.items():
        assert sd[key] is v


# ---- checkpoints in the per-level convolution layout -----------------------------------------------------------------
def _old_adapter_state(rng: np.random.Generator, n: int, i: int, h: int, o: int, kernel: int = 1) -> dict:
    """An adapter's state dict as the earlier layout wrote it: per level ``mlps.<l>.0`` (W²) and ``mlps.<l>.2`` (W¹) 1×1
    Conv2d weights (o, i, 1, 1) with their biases, and a Conv2d fuse."""
    sd = {}
    for lv in range(n):
        sd[f"mlps.{lv}.0.weight"] = rng.standard_normal((h, i, 1, 1)) * 0.4
        sd[f"mlps.{lv}.0.bias"] = rng.standard_normal(h) * 0.1
        sd[f"mlps.{lv}.2.weight"] = rng.standard_normal((o, h, 1, 1)) * 0.4
        sd[f"mlps.{lv}.2.bias"] = rng.standard_normal(o) * 0.1
    sd["fuse.weight"] = rng.standard_normal((o, n * o, kernel, kernel)) * 0.3
    sd["fuse.bias"] = rng.standard_normal(o) * 0.1
    return sd


def _levels_np(sd: dict, levels: list[np.ndarray]) -> list[np.ndarray]:
    """Eq 5 per level in numpy from the old weights: W¹ σ(W² x + b²) + b¹, x (D, hw)."""
    out = []
    for lv, x in enumerate(levels):
        w2, b2 = sd[f"mlps.{lv}.0.weight"][:, :, 0, 0], sd[f"mlps.{lv}.0.bias"]
        w1, b1 = sd[f"mlps.{lv}.2.weight"][:, :, 0, 0], sd[f"mlps.{lv}.2.bias"]
        out.append(w1 @ ref.gelu(w2 @ x + b2[:, None]) + b1[:, None])
    return out


def test_an_old_layout_checkpoint_loads_into_the_same_function_through_a_prefix():
    rng = _rng(1)
    old = _old_adapter_state(rng, 3, 5, 6, 4)
    dec_src = Decoder(4, 3, layers=1, heads=2).state_dict()
    dec_old = {k: v.clone() for k, v in dec_src.items()}
    cls = rng.standard_normal((3, 4, 1, 1))
    dec_old["classifier.weight"] = _t(cls)  # the decoder's classifier as the earlier 1×1 Conv2d
    holder = nn.Module()
    holder.adapter = FeatureAdapter(5, 6, 4, 3)
    holder.decoder = Decoder(4, 3, layers=1, heads=2)
    sd = {f"adapter.{k}": _t(v) for k, v in old.items()} | {f"decoder.{k}": v for k, v in dec_old.items()}
    holder.load_state_dict(sd, strict=True)  # strict: every old key consumed, every new one filled
    ad = holder.adapter
    for lv in range(3):
        assert torch.equal(ad.hidden_weight[lv], _t(old[f"mlps.{lv}.0.weight"][:, :, 0, 0]))
        assert torch.equal(ad.hidden_bias[lv], _t(old[f"mlps.{lv}.0.bias"]))
        assert torch.equal(ad.out_weight[lv], _t(old[f"mlps.{lv}.2.weight"][:, :, 0, 0]))
        assert torch.equal(ad.out_bias[lv], _t(old[f"mlps.{lv}.2.bias"]))
    assert torch.equal(holder.decoder.classifier.weight, _t(cls[:, :, 0, 0]))
    assert all(torch.equal(holder.decoder.state_dict()[k], v) for k, v in dec_src.items() if k != "classifier.weight")
    levels = [rng.standard_normal((2, 5, 3, 4)) for _ in range(3)]
    with torch.no_grad():
        got = ad([_t(x) for x in levels])
    f32 = {k: v.astype(np.float32).astype(np.float64) for k, v in old.items()}  # the values as stored in float32
    for b in range(2):
        cat = np.concatenate(_levels_np(f32, [x[b].reshape(5, 12).astype(np.float32) for x in levels]))
        want = f32["fuse.weight"][:, :, 0, 0] @ cat + f32["fuse.bias"][:, None]
        assert close(got[b].reshape(4, 12), want)


@pytest.mark.parametrize("kernel", [3, 5])
def test_a_wider_fuse_kernel_keeps_the_grid_and_loads_from_the_old_layout(kernel):
    rng = _rng(2)
    old = _old_adapter_state(rng, 2, 3, 4, 2, kernel)
    ad = FeatureAdapter(3, 4, 2, 2, fuse_kernel=kernel)
    ad.load_state_dict({k: _t(v) for k, v in old.items()}, strict=True)
    assert isinstance(ad.fuse, nn.Conv2d) and torch.equal(ad.fuse.weight, _t(old["fuse.weight"]))
    x = rng.standard_normal((1, 2, 3, 6, 7)).astype(np.float32)
    with torch.no_grad():
        got = ad(_t(x))
    f32 = {k: v.astype(np.float32).astype(np.float64) for k, v in old.items()}
    cat = np.concatenate(_levels_np(f32, [x[0, lv].reshape(3, 42) for lv in range(2)])).reshape(1, 4, 6, 7)
    want = F.conv2d(torch.tensor(cat), torch.tensor(f32["fuse.weight"]), torch.tensor(f32["fuse.bias"]),
                    padding=kernel // 2)  # 'same' padding: the output grid is the token grid
    assert got.shape == (1, 2, 6, 7) and close(got, want.numpy())


def test_the_level_count_check_names_both_counts():
    ad = FeatureAdapter(3, 4, 2, 3)
    with pytest.raises(ValueError, match=r"^adapter expects 3 feature levels, got 2$"):
        ad([torch.zeros(1, 3, 2, 2)] * 2)


# ---- AdamW state of the old layout -----------------------------------------------------------------------------------
def _modules(seed: int) -> dict[str, nn.Module]:
    torch.manual_seed(seed)
    return {"adapter": FeatureAdapter(5, 6, 4, 3), "dino_adapter": FeatureAdapter(5, 3, 4, 2),
            "decoder": Decoder(4, 3, layers=1, heads=2)}


_G = torch.Generator().manual_seed(5)
_LA, _LB = torch.randn(2, 3, 5, 3, 3, generator=_G), torch.randn(2, 2, 5, 3, 3, generator=_G)


def _loss(m: dict[str, nn.Module], with_dino: bool) -> torch.Tensor:
    f = m["adapter"](_LA)
    if with_dino:
        f = f + 0.5 * m["dino_adapter"](_LB)
    logits, aff = m["decoder"](f, (5, 5), want_affinity=True)
    return (logits - 0.3).square().mean() + aff.mean()


def _opt(m: dict[str, nn.Module]) -> torch.optim.Optimizer:
    return torch.optim.AdamW([p for mod in m.values() for p in mod.parameters()], lr=0.05, weight_decay=0.01)


def _step(m: dict[str, nn.Module], opt: torch.optim.Optimizer, with_dino: bool) -> None:
    opt.zero_grad()
    _loss(m, with_dino).backward()
    opt.step()


def _to_old(m: dict[str, nn.Module], opt_sd: dict, old_layout: set[str], float_step: bool) -> tuple[dict, dict]:
    """The trained modules and their AdamW state as the per-level convolution layout saved them (by hand: each stacked
    parameter split into its levels, in mlps.<l>.{0,2}.{weight,bias} order; 1×1 kernels 4-D)."""
    trainable, state, i, j = {}, {}, 0, 0  # i: index in the new (stacked) state, j: in the old one

    def put(entry: dict | None, cut, shape) -> None:
        nonlocal j
        if entry is not None:
            state[j] = {k: (float(v) if float_step else v.clone()) if k == "step" else cut(v).reshape(shape).clone()
                        for k, v in entry.items()}
        j += 1

    new = opt_sd["state"]
    for name, mod in m.items():
        sd = {k: v.detach().clone() for k, v in mod.state_dict().items()}
        if name in old_layout:
            assert isinstance(mod, FeatureAdapter)
            old = {}
            stacked = [("0.weight", mod.hidden_weight), ("0.bias", mod.hidden_bias), ("2.weight", mod.out_weight),
                       ("2.bias", mod.out_bias)]
            for lv in range(mod.n_levels):
                for k, (suffix, p) in enumerate(stacked):
                    shape = (*p.shape[1:], 1, 1) if p.ndim == 3 else p.shape[1:]
                    old[f"mlps.{lv}.{suffix}"] = p.detach()[lv].reshape(shape).clone()
                    put(new.get(i + k), lambda v, lv=lv: v[lv], shape)
            i += 4
            old["fuse.weight"] = mod.fuse.weight.detach()[:, :, None, None].clone()
            old["fuse.bias"] = mod.fuse.bias.detach().clone()
            put(new.get(i), lambda v: v, old["fuse.weight"].shape)
            put(new.get(i + 1), lambda v: v, old["fuse.bias"].shape)
            i += 2
            trainable[name] = old
        else:
            if name == "decoder":
                sd["classifier.weight"] = sd["classifier.weight"][:, :, None, None]
            for key, _ in mod.named_parameters():
                shape = sd[key].shape
                put(new.get(i), lambda v: v, shape)
                i += 1
            trainable[name] = sd
    groups = [dict(opt_sd["param_groups"][0], params=list(range(j)))]
    return trainable, {"state": state, "param_groups": groups}


@pytest.mark.parametrize(("steps", "old_layout", "float_step"), [
    (2, {"adapter", "dino_adapter"}, False),
    (1, {"adapter", "dino_adapter"}, False),  # the DINO adapter never stepped: it has no AdamW state yet
    (2, {"adapter"}, True),  # one module already stacked; steps saved as Python floats (older PyTorch)
])
def test_an_old_layout_optimizer_state_resumes_the_same_adamw_step(steps, old_layout, float_step):
    m = _modules(0)
    opt = _opt(m)
    for s in range(steps):
        _step(m, opt, with_dino=s > 0)
    trainable, old_opt = _to_old(m, copy.deepcopy(opt.state_dict()), old_layout, float_step)
    saved = {name: copy.deepcopy(mod.state_dict()) for name, mod in m.items()}
    want_state = copy.deepcopy(opt.state_dict()["state"])
    _step(m, opt, with_dino=True)  # the uninterrupted run's next step
    # resume: fresh modules (other initial values), the old checkpoint loaded and its AdamW state upgraded
    m2 = _modules(1)
    for name, mod in m2.items():
        mod.load_state_dict(trainable[name], strict=True)
        assert all(torch.equal(v, saved[name][k]) for k, v in mod.state_dict().items())
    upgraded = upgrade_optimizer_state(old_opt, m2, trainable)
    assert sorted(upgraded["state"]) == sorted(want_state)  # unstepped parameters stay without state
    for idx, entry in want_state.items():
        got = upgraded["state"][idx]
        assert sorted(got) == sorted(entry)
        for k, v in entry.items():
            if k == "step":
                assert float(got[k]) == float(v)
            else:
                assert got[k].shape == v.shape and torch.equal(got[k], v), (idx, k)
    n_new = sum(1 for mod in m2.values() for _ in mod.parameters())
    assert [g["params"] for g in upgraded["param_groups"]] == [list(range(n_new))]
    assert {k: v for k, v in upgraded["param_groups"][0].items() if k != "params"} == {
        k: v for k, v in old_opt["param_groups"][0].items() if k != "params"}
    opt2 = _opt(m2)
    opt2.load_state_dict(upgraded)
    _step(m2, opt2, with_dino=True)
    for name in m:
        for k, v in m[name].state_dict().items():
            assert torch.allclose(m2[name].state_dict()[k], v, atol=1e-6, rtol=0), (name, k)
    assert not torch.allclose(m2["adapter"].hidden_weight, saved["adapter"]["hidden_weight"])  # it stepped


def test_a_state_already_in_the_stacked_layout_is_returned_as_it_is():
    m = _modules(0)
    opt = _opt(m)
    _step(m, opt, with_dino=True)
    sd = opt.state_dict()
    assert upgrade_optimizer_state(sd, m, {k: mod.state_dict() for k, mod in m.items()}) is sd


# ---- decoder ---------------------------------------------------------------------------------------------------------
def test_decoder_widths_and_defaults_are_the_configs():
    dec = Decoder(16, 5, layers=2, heads=4, mlp_ratio=2.5)
    for blk in dec.blocks:
        assert blk.mlp[0].weight.shape == (40, 16) and blk.mlp[3].weight.shape == (16, 40)  # int(16 · 2.5)
        assert blk.qkv.weight.shape == (48, 16) and blk.proj.weight.shape == (16, 16)
    assert dec.classifier.weight.shape == (5, 16)
    cfg = DecoderConfig()
    plain = Decoder(16, 5, layers=1, heads=4)  # the module's own defaults = the config's (one place for defaults)
    assert plain.blocks[0].mlp[0].weight.shape == (int(16 * cfg.mlp_ratio), 16)
    assert plain.blocks[0].dropout == cfg.dropout and plain.blocks[0].mlp[2].p == cfg.dropout


def test_affinity_only_on_request():
    torch.manual_seed(0)
    dec = Decoder(8, 3, layers=2, heads=2).eval()
    x = torch.randn(1, 8, 3, 3)
    with torch.no_grad():
        assert dec.blocks[0](x.flatten(2).transpose(1, 2))[1] is None
        assert dec.features(x)[1] is None and dec(x, (6, 6))[1] is None
        assert dec(x, (6, 6), want_affinity=True)[1].shape == (1, 9, 9)


def _bf16_block() -> Block:
    torch.manual_seed(3)
    return Block(16, 4, 2.0, 0.0).eval().to(torch.bfloat16)


def test_cpu_bf16_attention_is_fp32_attention_rounded_to_bf16():
    """The CPU's bf16 path runs attention in fp32 and returns bf16: the attention output is the exact attention of the
    bf16 q, k, v (float64 here) rounded once to bf16 (PyTorch's own bf16 kernel rounds on the way and differs)."""
    blk = _bf16_block()
    seen = {}
    blk.qkv.register_forward_hook(lambda mod, args, out: seen.update(qkv=out.detach()))
    blk.proj.register_forward_pre_hook(lambda mod, args: seen.update(attn=args[0].detach()))
    x = (torch.randn(2, 12, 16, generator=torch.Generator().manual_seed(4)) * 2).bfloat16()
    with torch.no_grad():
        out, aff = blk(x, want_affinity=True)
    assert out.dtype == torch.bfloat16 and aff.dtype == torch.bfloat16 and seen["attn"].dtype == torch.bfloat16
    qkv = seen["qkv"].double().numpy().reshape(2, 12, 3, 4, 4).transpose(2, 0, 3, 1, 4)  # (3, b, heads, n, hd)
    q, k, v = qkv
    s = q @ k.transpose(0, 1, 3, 2) / 2.0  # 1/√(16/4)
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    want = torch.tensor((p @ v).transpose(0, 2, 1, 3).reshape(2, 12, 16)).bfloat16()
    mismatched = float((seen["attn"] != want).float().mean())
    assert mismatched <= 0.01, mismatched  # bf16 SDPA on the CPU: ~15 % of the values differ by an ulp or more
    assert torch.allclose(seen["attn"].float(), want.float(), atol=1e-2, rtol=1e-2)


def test_the_fp32_attention_fallback_is_for_the_cpus_bf16_only(monkeypatch):
    """Which dtype SDPA gets: fp32 with autocast off for CPU bf16 (inside a bf16 autocast too), the tensors as they are
    for CPU fp32 and on any other device (meta here, standing for CUDA)."""
    calls = []
    sdpa = F.scaled_dot_product_attention

    def spy(q, k, v, **kw):
        calls.append((q.dtype, torch.is_autocast_enabled("cpu")))
        return sdpa(q, k, v, **kw)

    monkeypatch.setattr(decoder_mod.F, "scaled_dot_product_attention", spy)
    blk = _bf16_block()
    x = torch.randn(1, 6, 16).bfloat16()
    with torch.no_grad():
        blk(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            blk(x)
        blk.float()(x.float())
        blk.to("meta", torch.bfloat16)(torch.empty(1, 6, 16, device="meta", dtype=torch.bfloat16))
    assert calls == [(torch.float32, False), (torch.float32, False), (torch.float32, False), (torch.bfloat16, False)]


def test_attention_scale_and_head_mean_of_the_affinity():
    """The affinity = sigmoid of the symmetrised, head-averaged q·k/√(d/heads) (by hand from the qkv output)."""
    torch.manual_seed(5)
    blk = Block(12, 3, 2.0, 0.0).eval()
    seen = {}
    blk.qkv.register_forward_hook(lambda mod, args, out: seen.update(qkv=out.detach()))
    x = torch.randn(2, 7, 12)
    with torch.no_grad():
        _, aff = blk(x, want_affinity=True)
    q, k, _ = np64(seen["qkv"]).reshape(2, 7, 3, 3, 4).transpose(2, 0, 3, 1, 4)
    logits = np.einsum("bhid,bhjd->bhij", q, k).mean(1) / 2.0  # √(12/3) = 2
    want = ref.sigmoid((logits + logits.transpose(0, 2, 1)) / 2)
    assert close(aff, want)
