"""Helpers of the reference tests: torch ↔ numpy, and the weights of the trainable modules as plain arrays (the
reference takes them as inputs, so it never calls the modules it checks)."""

from __future__ import annotations

import numpy as np
import torch

TOL = 1e-5


def np64(x: torch.Tensor) -> np.ndarray:
    return x.detach().double().cpu().numpy()


def close(actual: torch.Tensor | float, expected: np.ndarray | float, tol: float = TOL) -> bool:
    """|actual − expected| ≤ tol·max(1, |expected|) everywhere (a relative bound for large values)."""
    a = np64(actual) if isinstance(actual, torch.Tensor) else np.asarray(actual, np.float64)
    e = np.asarray(expected, np.float64)
    return a.shape == e.shape and bool(np.all(np.abs(a - e) <= tol * np.maximum(1.0, np.abs(e))))


def adapter_weights(ad: torch.nn.Module) -> dict:
    """FeatureAdapter → {"mlps": [(W², b², W¹, b¹)] per level, "fuse": (W_f, b_f)} (1×1 kernels as matrices)."""
    mlps = [(np64(ad.hidden_weight[lv]), np64(ad.hidden_bias[lv]), np64(ad.out_weight[lv]), np64(ad.out_bias[lv]))
            for lv in range(ad.n_levels)]
    wf = ad.fuse.weight
    return {"mlps": mlps, "fuse": (np64(wf[:, :, 0, 0] if wf.ndim == 4 else wf), np64(ad.fuse.bias))}


def decoder_weights(dec: torch.nn.Module) -> dict:
    def lin(m: torch.nn.Module) -> tuple[np.ndarray, np.ndarray]:
        w = m.weight
        return np64(w[:, :, 0, 0] if w.ndim == 4 else w), np64(m.bias)

    blocks = [{"norm1": lin(b.norm1), "qkv": lin(b.qkv), "proj": lin(b.proj), "norm2": lin(b.norm2),
               "fc1": lin(b.mlp[0]), "fc2": lin(b.mlp[3])} for b in dec.blocks]
    return {"blocks": blocks, "norm": lin(dec.norm), "classifier": lin(dec.classifier)}
