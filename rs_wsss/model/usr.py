"""Unified Semantic Relation mining (USR), eqs 10–15 (Sect. 3.5.1). Layer indices are 1-based as in the paper."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def joint_affinity(f_cd: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """Eq 11: A_cd = σ(F_cdᵀ F_cd) over the tokens of F_cd (B, D2, hw) → (B, hw, hw).

    With ``normalize`` (default) the tokens are L2-normalised first, so FᵀF is a cosine in [−1, 1]; raw features of
    hundreds of channels would saturate the sigmoid to 1 everywhere and make every S_l (eq 12) alike.
    """
    f = F.normalize(f_cd, dim=1) if normalize else f_cd
    return torch.sigmoid(f.transpose(1, 2) @ f)


def attention_scores(a_cd: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
    """Eq 12: S_l = Σ_i Σ_j |A_cd(i,j) − A_s^l(i,j)| for each of the N attention maps (B, N, hw, hw) → (B, N)."""
    return (a_cd.unsqueeze(1) - attn).abs().sum(dim=(-2, -1))


def attention_filter(scores: torch.Tensor, n0: int) -> torch.Tensor:
    """Eq 13: G_l = 1 if S_l < mean_{l≥N0} S_l, else 0; layers before N0 never take part (eq 14 sums l ≥ N0)."""
    n = scores.shape[1]
    if not 1 <= n0 <= n:
        raise ValueError(f"usr.n0 must be in 1..{n}, got {n0}")
    deep = scores[:, n0 - 1 :]
    gate = torch.zeros_like(scores)
    gate[:, n0 - 1 :] = (deep < deep.mean(dim=1, keepdim=True)).to(scores.dtype)
    return gate


def refining_map(a_cd: torch.Tensor, attn: torch.Tensor, gate: torch.Tensor, n0: int) -> torch.Tensor:
    """Eq 14: R = A_cd ⊙ (1/N_m) Σ_{l≥N0} G_l A_s^l. If no map passes (N_m = 0, all S_l equal) every deep map is
    kept, which is what the strict '<' of eq 13 degenerates to."""
    g = gate[:, n0 - 1 :]
    g = torch.where(g.sum(1, keepdim=True) > 0, g, torch.ones_like(g))
    mean_attn = torch.einsum("bn,bnij->bij", g, attn[:, n0 - 1 :]) / g.sum(1)[:, None, None]
    return a_cd * mean_attn


def diffuse(r: torch.Tensor, cam: torch.Tensor, alpha: int) -> torch.Tensor:
    """Eq 15: M_f^c = ((R_nor + R_norᵀ)/2)^α · M_init^c.

    R_nor: column then row normalisation (AFA's transition matrix); "power α" is the matrix power, i.e. α diffusion
    steps of the random walk (Ru et al. 2022 propagate the same way), not an element-wise power. cam: (B, K, hw).
    """
    r = r / r.sum(dim=1, keepdim=True).clamp_min(1e-8)  # column normalisation
    r = r / r.sum(dim=2, keepdim=True).clamp_min(1e-8)  # row normalisation
    t = torch.linalg.matrix_power((r + r.transpose(1, 2)) / 2, alpha)
    return cam @ t  # T is symmetric: (T M^c)ᵀ = M^cᵀ T


def usr_refine(
    cam: torch.Tensor, f_cd: torch.Tensor, attn: torch.Tensor, n0: int, alpha: int, normalize: bool = True
) -> torch.Tensor:
    """Eqs 11–15 in one call: cam (B, K, hw), F_cd (B, D2, hw), CLIP attention (B, N, hw, hw) → M_f (B, K, hw).

    The diffused maps are min–max normalised per channel so the pseudo-label thresholds keep their meaning;
    channels that were all zero (untagged classes) stay zero.
    """
    from .cam import minmax_norm

    a_cd = joint_affinity(f_cd, normalize)
    gate = attention_filter(attention_scores(a_cd, attn), n0)
    m_f = diffuse(refining_map(a_cd, attn, gate, n0), cam, alpha)
    active = (cam.amax(dim=-1, keepdim=True) > 0).to(m_f.dtype)
    return minmax_norm(m_f, dim=-1) * active
