"""Visual Prototype-aware Enrichment (VPE), eqs 16–20 (Sect. 3.5.2).

Channels are K = C + 1 with the background at 0. The background takes part in the exclusive argmax of eq 16 (which
would otherwise hand every background pixel to some foreground class), but prototypes (eqs 17–19) exist for the tagged
foreground classes only — "for each class c", "an image labelled as class c"; the model masks the background's seeds
unless ``vpe.background_prototype``. ``tags_k`` (B, K) includes the background column (always true). Seeds and the
prototype update run without gradients: the prototypes
are a buffer, not parameters.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from .cam import minmax_norm


@torch.no_grad()
def seed_mask(m_f: torch.Tensor, tags_k: torch.Tensor, topk_percent: float) -> torch.Tensor:
    """Eqs 16–17: m_f (B, K, hw), tags_k (B, K) → seeds Q (B, K, hw) bool.

    eq 16: I_cam = argmax_c M_f over the tagged channels (untagged ones cannot win), so every location belongs to
    one class; eq 17: Q_c = the top-k% of the nonzero values of M_f^c ⊙ 𝟙(I_cam = c). ``topk_percent`` is a
    fraction in (0, 1]; a class owning n nonzero locations gets ⌈k·n⌉ seeds (at least 1; ties at the cut all kept).
    """
    if not 0 < topk_percent <= 1:
        raise ValueError(f"vpe.topk_percent is a fraction in (0, 1], got {topk_percent}")
    tags_k = tags_k.bool()
    masked = m_f.masked_fill(~tags_k[:, :, None], float("-inf"))
    owner = F.one_hot(masked.argmax(dim=1), m_f.shape[1]).transpose(1, 2).bool() & tags_k[:, :, None]  # eq 16
    vals = torch.where(owner, m_f, torch.zeros_like(m_f))
    nonzero = vals > 0
    n = nonzero.sum(dim=-1, keepdim=True)  # (B, K, 1)
    # ⌈k·n⌉ in float64 less a hair: in float32 0.6·25 is 15.0000006 and would take a 16th seed
    k = torch.ceil(n.double() * topk_percent - 1e-9).clamp_min(1).long()
    ranked = vals.sort(dim=-1, descending=True).values
    kth = ranked.gather(-1, (k - 1).clamp(max=m_f.shape[-1] - 1))  # the k-th largest owned value
    return nonzero & (vals >= kth)  # eq 17


@torch.no_grad()
def update_prototypes(
    protos: torch.Tensor, initialized: torch.Tensor, feats: torch.Tensor, seeds: torch.Tensor, momentum: float,
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq 18: P_c ← τ·P_c + (1 − τ)·(1/|Q_c|) Σ_{i∈Q_c} f_i; returns (new prototypes (K, D2), new initialized (K,)).

    feats (B, D2, hw), seeds (B, K, hw): Q_c pools the seeds of the whole batch. A class seen for the first time
    starts at its seed mean (starting from the zero buffer would pull P_c towards the origin for ~1/(1−τ) steps);
    a class without seeds in the batch keeps its prototype and flag. ``reduce`` (e.g. an all-reduce sum over
    data-parallel ranks) is applied to the seed sums and counts, so every rank computes the global-batch mean."""
    if not 0 <= momentum <= 1:
        raise ValueError(f"vpe.momentum must be in [0, 1], got {momentum}")
    s = seeds.to(feats.dtype)
    count = s.sum(dim=(0, 2))  # |Q_c|
    sums = torch.einsum("bkp,bdp->kd", s, feats)
    if reduce is not None:
        sums, count = reduce(sums), reduce(count)
    mean = sums / count.clamp_min(1)[:, None]
    has = count > 0
    protos = protos.to(feats.dtype)
    new = torch.where(initialized[:, None], momentum * protos + (1 - momentum) * mean, mean)
    return torch.where(has[:, None], new, protos), initialized | has


def prototype_similarity(
    protos: torch.Tensor, feats: torch.Tensor, initialized: torch.Tensor | None = None
) -> torch.Tensor:
    """Eq 19: S_c(i) = max(cos(P_c, F̂_cd(:, i)), 0); protos (K, D2), feats (B, D2, hw) → (B, K, hw).

    With ``initialized`` given, a class that has no prototype yet gets S_c = 1 (no calibration) instead of the 0 a
    zero vector's cosine would give, which would erase a tagged class in eq 20."""
    sim = torch.einsum("kd,bdp->bkp", F.normalize(protos.to(feats), dim=-1), F.normalize(feats, dim=1)).clamp_min(0)
    if initialized is not None:
        sim = torch.where(initialized.to(sim.device)[None, :, None], sim, torch.ones_like(sim))
    return sim


def prototype_cam(m_f: torch.Tensor, sim: torch.Tensor, tags_k: torch.Tensor) -> torch.Tensor:
    """Eq 20: M_c = Norm(M_f^c ⊙ S_c²), min–max per channel over hw; untagged channels are 0. (B, K, hw)."""
    return minmax_norm(m_f * sim.square(), dim=-1) * tags_k.to(m_f)[:, :, None]
