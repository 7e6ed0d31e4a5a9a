"""Multi-level feature adapter, eqs 5–6 (Sect. 3.3.1); the DINO branch of USR uses the same module.

The per-level 1×1 convolutions of eq 5 are matrix products over the channels of every token: the N levels' weights
are stacked, (N, out, in), so one batched matmul per image runs all N levels straight on the backbone's
channels-first token maps (B, N, D, h, w) — no im2col, no layout copy, no concatenation (eq 6's Concat over levels
is a view of the stacked result). Checkpoints from the earlier layout (one ``nn.Conv2d`` per level and layer) load:
their weights are stacked on load (:meth:`FeatureAdapter._load_from_state_dict`).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def init_like_conv(weight: torch.Tensor, bias: torch.Tensor) -> None:
    """The initialisation ``nn.Conv2d`` / ``nn.Linear`` give (kaiming-uniform, a = √5, bias U(±1/√fan_in)), in place:
    from the same seed the stacked adapter starts from the very values the per-level convolutions did."""
    nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
    bound = 1 / math.sqrt(weight.shape[1]) if weight.shape[1] > 0 else 0.0
    nn.init.uniform_(bias, -bound, bound)


def conv1x1_to_linear(state_dict: dict[str, Any], key: str) -> None:
    """A 1×1 ``Conv2d`` weight [out, in, 1, 1] of an earlier checkpoint → the ``Linear`` weight [out, in], in place."""
    w = state_dict.get(key)
    if isinstance(w, torch.Tensor) and w.ndim == 4 and w.shape[-2:] == (1, 1):
        state_dict[key] = w[:, :, 0, 0]


class FeatureAdapter(nn.Module):
    """Eq 5: F_new^l = W¹(σ(W² F_init^l)) per level (two 1×1 convs, σ = GELU);
    eq 6: F = Conv(Concat[F_new^1 … F_new^N]).

    Parameters: ``hidden_weight`` (N, hidden, in) / ``hidden_bias`` (N, hidden) = W² of every level,
    ``out_weight`` (N, out, hidden) / ``out_bias`` (N, out) = W¹, ``fuse`` = eq 6's Conv (an ``nn.Linear`` for the
    default 1×1 kernel, an ``nn.Conv2d`` for ``fuse_kernel`` > 1)."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, n_levels: int, fuse_kernel: int = 1) -> None:
        super().__init__()
        self.in_dim, self.n_levels = in_dim, n_levels
        self.hidden_weight = nn.Parameter(torch.empty(n_levels, hidden_dim, in_dim))
        self.hidden_bias = nn.Parameter(torch.empty(n_levels, hidden_dim))
        self.out_weight = nn.Parameter(torch.empty(n_levels, out_dim, hidden_dim))
        self.out_bias = nn.Parameter(torch.empty(n_levels, out_dim))
        with torch.no_grad():  # per level, in the order the per-level convolutions were built (same seed, same values)
            for lv in range(n_levels):
                init_like_conv(self.hidden_weight[lv], self.hidden_bias[lv])
                init_like_conv(self.out_weight[lv], self.out_bias[lv])
        self.fuse: nn.Module = (nn.Linear(n_levels * out_dim, out_dim) if fuse_kernel == 1 else
                                nn.Conv2d(n_levels * out_dim, out_dim, fuse_kernel, padding=fuse_kernel // 2))

    def forward(self, levels: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
        """Levels (B, N, D, h, w), or a list of N (B, D, h, w) maps → F (B, out, h, w)."""
        n = len(levels) if isinstance(levels, list) else levels.shape[1]
        if n != self.n_levels:
            raise ValueError(f"adapter expects {self.n_levels} feature levels, got {n}")
        x = torch.stack(levels, 1) if isinstance(levels, list) else levels
        b, _, d, h, w = x.shape
        x = x.reshape(b, n, d, h * w)
        hb, ob = self.hidden_bias[:, :, None], self.out_bias[:, :, None]
        outs = []
        for i in range(b):  # one image: every level in one batched matmul (N, out, in) @ (N, in, hw), no copies
            new = torch.baddbmm(ob, self.out_weight, F.gelu(torch.baddbmm(hb, self.hidden_weight, x[i])))  # eq 5
            outs.append(new.reshape(-1, h * w))  # Concat over the levels (eq 6): a view
        if isinstance(self.fuse, nn.Linear):
            return torch.stack([torch.addmm(self.fuse.bias[:, None], self.fuse.weight, o) for o in outs]).view(
                b, -1, h, w)
        return self.fuse(torch.stack(outs).view(b, -1, h, w))

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        """Checkpoints written before the stacked layout hold ``mlps.<l>.0`` / ``mlps.<l>.2`` 1×1 convolutions per
        level and a ``Conv2d`` fuse: stack them into this layout (same values, same arithmetic)."""
        old = f"{prefix}mlps.0.0.weight"
        if old in state_dict:
            for name, layer, kind in (("hidden", 0, "weight"), ("hidden", 0, "bias"), ("out", 2, "weight"),
                                      ("out", 2, "bias")):
                keys = [f"{prefix}mlps.{lv}.{layer}.{kind}" for lv in range(self.n_levels)]
                if all(k in state_dict for k in keys):
                    parts = [state_dict.pop(k) for k in keys]
                    state_dict[f"{prefix}{name}_{kind}"] = torch.stack([p.flatten(1) if p.ndim == 4 else p
                                                                        for p in parts])
        if isinstance(self.fuse, nn.Linear):
            conv1x1_to_linear(state_dict, f"{prefix}fuse.weight")
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def upgrade_optimizer_state(opt_state: dict[str, Any], modules: dict[str, nn.Module],
                            trainable: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """An optimiser state saved with the per-level convolution layout (``trainable`` holds that checkpoint's module
    states) → the stacked layout of ``modules`` (the model's ``trainable_modules()``, in order): each level's moments
    stacked as its weights are, 1×1 kernels flattened. A state already in this layout is returned as it is."""
    if not any("mlps.0.0.weight" in sd for sd in trainable.values()):
        return opt_state
    old, new = opt_state["state"], {}
    i = j = 0  # parameter index in the old and in the new layout

    def put(entries: list[dict[str, Any] | None], shape: torch.Size) -> None:
        nonlocal j
        if all(e is not None for e in entries):  # a parameter never stepped has no state: leave it without
            new[j] = {k: (torch.stack([e[k] for e in entries if e is not None]).reshape(shape)
                          if torch.is_tensor(v) and v.ndim > 0 else v) for k, v in entries[0].items()}
        j += 1

    for name, module in modules.items():
        if isinstance(module, FeatureAdapter) and "mlps.0.0.weight" in trainable.get(name, {}):
            n = module.n_levels
            for k, p in enumerate((module.hidden_weight, module.hidden_bias, module.out_weight, module.out_bias)):
                put([old.get(i + 4 * lv + k) for lv in range(n)], p.shape)
            i += 4 * n
            for p in module.fuse.parameters():
                put([old.get(i)], p.shape)
                i += 1
        else:
            for p in module.parameters():
                put([old.get(i)], p.shape)
                i += 1
    groups = [dict(opt_state["param_groups"][0], params=list(range(j)))] + opt_state["param_groups"][1:]
    return {"state": new, "param_groups": groups}
