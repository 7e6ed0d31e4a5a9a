"""Visual Prototype-aware Enrichment (VPE), eqs 16–20 (Sect. 3.5.2). Channel 0 is the background, which gets a
prototype like any class (its seeds come from the same exclusive argmax)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .cam import minmax_norm


def seed_mask(m_f: torch.Tensor, tags_k: torch.Tensor, topk_percent: float) -> torch.Tensor:
    """Eqs 16–17: I_cam = argmax_c M_f (untagged channels excluded); Q_c = the top-k% of the nonzero activations of
    M_f ⊙ 𝟙(I_cam = c). m_f (B, K, hw), tags_k (B, K) → seeds (B, K, hw) bool."""
    tags_k = tags_k.bool()
    masked = m_f.masked_fill(~tags_k[:, :, None], float("-inf"))
    owner = F.one_hot(masked.argmax(dim=1), m_f.shape[1]).permute(0, 2, 1).bool()  # eq 16
    vals = torch.where(owner & tags_k[:, :, None], m_f, torch.zeros_like(m_f))
    seeds = torch.zeros_like(vals, dtype=torch.bool)
    for b in range(m_f.shape[0]):
        for c in range(m_f.shape[1]):
            nz = vals[b, c] > 0
            n = int(nz.sum())
            if n == 0:
                continue
            kth = vals[b, c][nz].topk(max(1, math.ceil(n * topk_percent))).values[-1]
            seeds[b, c] = nz & (vals[b, c] >= kth)
    return seeds


def update_prototypes(
    protos: torch.Tensor, initialized: torch.Tensor, feats: torch.Tensor, seeds: torch.Tensor, momentum: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq 18: P_c ← τ P_c + (1 − τ) mean_{i∈Q_c} f_i, pooled over the batch; feats (B, D2, hw), seeds (B, K, hw).

    A class seen for the first time starts at its seed mean (a zero start would bias it towards the origin);
    classes without seeds keep their prototype."""
    s = seeds.to(feats.dtype)
    count = s.sum(dim=(0, 2))  # (K,)
    mean = torch.einsum("bkp,bdp->kd", s, feats) / count.clamp_min(1)[:, None]
    has = count > 0
    new = torch.where(initialized[:, None], momentum * protos + (1 - momentum) * mean, mean)
    return torch.where(has[:, None], new, protos), initialized | has


def prototype_similarity(protos: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
    """Eq 19: S_c(i) = max(cos(P_c, F̂_cd(:, i)), 0); protos (K, D2), feats (B, D2, hw) → (B, K, hw)."""
    return torch.einsum("kd,bdp->bkp", F.normalize(protos, dim=-1), F.normalize(feats, dim=1)).clamp_min(0)


def prototype_cam(m_f: torch.Tensor, sim: torch.Tensor, tags_k: torch.Tensor) -> torch.Tensor:
    """Eq 20: M_c = Norm(M_f^c ⊙ S_c²) per channel; untagged channels are zero."""
    return minmax_norm(m_f * sim**2, dim=-1) * tags_k.to(m_f.dtype)[:, :, None]
