"""Unified Semantic Relation mining (USR), eqs 10–15 (Sect. 3.5.1).

Layer indices are 1-based as in the paper (N0 = 1 means every block). Token maps are flattened: F_cd (B, D2, hw),
attention (B, N, hw, hw), CAMs (B, K, hw). :func:`joint_affinity` is differentiable (L_aff trains it); the CAM
refinement :func:`usr_refine` builds pseudo labels and runs without gradients.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .cam import minmax_norm


def joint_affinity(f_cd: torch.Tensor, normalize: bool = False) -> torch.Tensor:
    """Eq 11: A_cd = σ(F_cdᵀF_cd), F_cd (B, D2, hw) → (B, hw, hw).

    ``normalize=False`` (default, config ``usr.normalize_affinity``) is the paper's raw product, as in WeCLIP, whose
    affinity loss trains exactly σ(FᵀF). Raw products can reach 0 for unrelated tokens, which eq 12 needs:
    S_l = Σ|A_cd − A_s^l| = const − 2Σmin(A_cd, A_s^l), so layers are only told apart where A_cd falls below the
    attention values. With ``normalize=True`` the tokens are L2-normalised first (FᵀF a cosine, A_cd in [0.27, 0.73]),
    which never saturates but also never gets that low.
    """
    f = F.normalize(f_cd, dim=1) if normalize else f_cd
    return torch.sigmoid(f.transpose(1, 2) @ f)


def attention_scores(a_cd: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
    """Eq 12: S_l = Σ_i Σ_j |A_cd(i, j) − A_s^l(i, j)|; a_cd (B, hw, hw), attn (B, N, hw, hw) → (B, N)."""
    # one layer at a time: a (B, N, hw, hw) difference would double the attention's memory at inference sizes
    return torch.stack([(a_cd - attn[:, l]).abs().sum(dim=(-2, -1)) for l in range(attn.shape[1])], dim=1)


def _check_n0(n0: int, n: int) -> None:
    if not 1 <= n0 <= n:
        raise ValueError(f"usr.n0={n0} is outside 1..{n} (the backbone has {n} blocks); set usr.n0 in that range")


def attention_filter(scores: torch.Tensor, n0: int) -> torch.Tensor:
    """Eq 13: G_l = 1 if S_l < (1/(N−N0+1)) Σ_{l=N0..N} S_l else 0, per image; (B, N) → (B, N) float 0/1.
    Blocks l < N0 never take part (G_l = 0): eq 14 sums l ≥ N0 only."""
    n = scores.shape[1]
    _check_n0(n0, n)
    deep = scores[:, n0 - 1 :]
    gate = torch.zeros_like(scores)
    gate[:, n0 - 1 :] = (deep < deep.mean(dim=1, keepdim=True)).to(scores.dtype)
    return gate


def refining_map(a_cd: torch.Tensor, attn: torch.Tensor, gate: torch.Tensor, n0: int) -> torch.Tensor:
    """Eq 14: R = A_cd ⊙ (1/N_m) Σ_{l=N0..N} G_l A_s^l, N_m = Σ_{l≥N0} G_l; (B, hw, hw).

    N_m = 0 happens only when every deep S_l is equal (e.g. N0 = N: a single map is never below its own mean);
    then all deep maps are kept, the limit of eq 13 for equal scores."""
    _check_n0(n0, attn.shape[1])
    g = gate[:, n0 - 1 :]
    g = torch.where(g.sum(1, keepdim=True) > 0, g, torch.ones_like(g))
    mean_attn = torch.einsum("bn,bnij->bij", g, attn[:, n0 - 1 :]) / g.sum(1)[:, None, None]
    return a_cd * mean_attn


def transition_matrix(r: torch.Tensor, alpha: int, norm_iters: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """The operator of eq 15: ((R_nor + R_norᵀ)/2)^α, (B, hw, hw).

    R_nor: column then row normalisation (CLIP-ES / WeCLIP order; ``norm_iters`` > 1 repeats the pair, Sinkhorn-like,
    WeCLIP uses 3). "Power α" is the matrix power, i.e. α steps of the random walk on the symmetric affinity — the
    reading of Ru et al. 2022 / WeCLIP, who propagate with repeated matrix products; an element-wise power would not
    diffuse at all (it only sharpens each pair's affinity).
    """
    if alpha < 0:
        raise ValueError(f"usr.alpha must be ≥ 0, got {alpha}")
    for _ in range(norm_iters):
        r = r / r.sum(dim=1, keepdim=True).clamp_min(eps)  # columns sum to 1
        r = r / r.sum(dim=2, keepdim=True).clamp_min(eps)  # rows sum to 1
    return torch.linalg.matrix_power((r + r.transpose(1, 2)) / 2, alpha)


def diffuse(r: torch.Tensor, cam: torch.Tensor, alpha: int, norm_iters: int = 1) -> torch.Tensor:
    """Eq 15: M_f^c = ((R_nor + R_norᵀ)/2)^α · M_init^c for every channel; r (B, hw, hw), cam (B, K, hw) → (B, K, hw).

    The operator is symmetric, so applying it to the column vector M^c equals the row-vector product M^c·T used here.
    """
    return cam @ transition_matrix(r, alpha, norm_iters)


@torch.no_grad()
def usr_refine(
    cam: torch.Tensor,
    f_cd: torch.Tensor,
    attn: torch.Tensor,
    n0: int,
    alpha: int,
    normalize: bool = False,
    norm_iters: int = 1,
    use_affinity: bool = True,
) -> torch.Tensor:
    """Eqs 11–15, without gradients: cam M_init (B, K, hw), F_cd (B, D2, hw), CLIP attention (B, N, hw, hw)
    → M_f (B, K, hw) float64, exactly as eq 15 gives it (no renormalisation: eq 16 selects seeds on M_f itself and
    eq 20 normalises once, after the S_c² calibration; see :func:`normalise_maps` for the VPE-off path).

    Computed and returned in float64: α steps of diffusion can flatten a map to a range of 1e-5 (near-uniform
    attention, small token grids), and the min–max of eq 20 / :func:`normalise_maps` would then amplify float32
    rounding (~3e-7) to percents (found by the numpy reference, tests/reference). Callers cast after normalising.

    ``use_affinity=False`` is the warm-up (config ``usr.warmup_iters``): R = the mean frozen CLIP attention of the
    blocks l ≥ N0, without A_cd and without the filter of eq 13 — WeCLIP's refinement before its learned affinity is
    trusted (WeCLIP/clip/clip_tool.py, ``perform_single_voc_cam`` with ``require_seg_trans=False``).
    """
    cam, f_cd, attn = cam.double(), f_cd.double(), attn.double()  # see above: the min–max after it amplifies rounding
    if use_affinity:
        a_cd = joint_affinity(f_cd, normalize)
        gate = attention_filter(attention_scores(a_cd, attn), n0)
        r = refining_map(a_cd, attn, gate, n0)
    else:
        _check_n0(n0, attn.shape[1])
        r = attn[:, n0 - 1 :].mean(dim=1)
    return diffuse(r, cam, alpha, norm_iters)


def normalise_maps(m_init: torch.Tensor, m_f: torch.Tensor) -> torch.Tensor:
    """Min–max per channel of M_f (B, K, hw), for the pseudo labels when VPE (whose eq 20 normalises) is off; not in
    the paper. A map that was constant before diffusion (an untagged class at 0, a ``constant`` background) carries
    no spatial information and keeps its M_init value."""
    flat = (m_init.amax(dim=-1, keepdim=True) - m_init.amin(dim=-1, keepdim=True)) <= 1e-6
    return torch.where(flat, m_init.to(m_f), minmax_norm(m_f, dim=-1))
