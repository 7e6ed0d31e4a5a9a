"""Online pseudo labels and the training objective, eq 21 (Sect. 3.6): L = λ1·L_seg + λ2·L_aff.

Pseudo labels are targets: they are computed without gradients. Gradients reach the decoder through L_seg and the
features of the affinity map (A_cd of eq 11, or the decoder's attention) through L_aff.
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F

from ..config import LossConfig


@torch.no_grad()
def pseudo_labels(
    cam: torch.Tensor, tags_k: torch.Tensor, high: float, low: float, ignore_index: int, rule: str = "argmax"
) -> torch.Tensor:
    """PAR-refined CAM (B, K, H, W), channel 0 background → pseudo labels M_p (B, H, W) long (config ``pseudo``).

    ``rule="argmax"`` (default): the arg-max over the background and the classes tagged on the tile, no pixel
    ignored — the rule WeCLIP applies to its PAR-refined maps (WeCLIP/WeCLIP_model/model_attn_aff_voc.py,
    ``_refine_cams``: ``ref_mod(images, cams).argmax(dim=1)`` mapped through the valid keys, called from
    ``WeCLIP.forward`` on [background, tagged classes]). ``high``/``low`` are not used.

    ``rule="band"``: AFA's ignore band (cam_to_label / refine_cams_with_bkg_v2, utils/camutils.py). s, c* = the max /
    arg-max over the tagged foreground channels, b = the background channel:
      c*            where s ≥ high and s > b   (confident foreground)
      0             where s < low  and b ≥ s   (confident background; a tile tagged with nothing is all background)
      ignore_index  elsewhere                  (uncertain: between the thresholds, or the background channel disagrees)
    With AFA's constant background in [low, high) the background condition always holds and this is exactly AFA's
    rule; with a refined background channel a pixel also needs the arg-max over all tagged channels to agree.
    """
    tags_k = tags_k.bool()
    if rule == "argmax":
        # max(dim).indices = argmax (the first maximum as well) at a fraction of argmax's cost over a non-inner dim
        return cam.masked_fill(~tags_k[:, :, None, None], float("-inf")).max(dim=1).indices
    if rule != "band":
        raise ValueError(f"pseudo.rule must be 'argmax' (WeCLIP) or 'band' (AFA), not {rule!r}")
    fg = cam[:, 1:].masked_fill(~tags_k[:, 1:, None, None], float("-inf"))
    score, idx = fg.max(dim=1)
    bg = cam[:, 0]
    labels = torch.full_like(idx, ignore_index)
    labels = torch.where((score >= high) & (score > bg), idx + 1, labels)
    return torch.where((score < low) & (bg >= score), torch.zeros_like(labels), labels)


def seg_loss(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int) -> torch.Tensor:
    """L_seg: mean per-pixel cross-entropy of logits (B, K, H, W) on the pseudo labels (B, H, W), ignored pixels
    excluded. An all-ignored batch gives 0 (with a graph), not NaN."""
    if logits.shape[-2:] != labels.shape[-2:]:
        raise ValueError(f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} differ in size")
    if bool((labels == ignore_index).all()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits, labels.long(), ignore_index=ignore_index)


def window_mask(size: tuple[int, int], radius: int | None, device: torch.device | None = None) -> torch.Tensor:
    """(hw, hw) bool: token pairs within ``radius`` of each other on the (h, w) grid in both rows and columns (a
    (2r+1)² window, AFA's and WeCLIP's ``get_mask_by_radius``); ``radius=None``: every pair.

    Built once per (grid, radius, device) and shared (every step of a run has the same grid): do not modify it."""
    return _window_mask(tuple(size), radius, None if device is None else torch.device(device))


@lru_cache(maxsize=8)
def _window_mask(size: tuple[int, int], radius: int | None, device: torch.device | None) -> torch.Tensor:
    h, w = size
    if radius is None:
        return torch.ones(h * w, h * w, dtype=torch.bool, device=device)
    if radius < 0:
        raise ValueError(f"loss.aff_radius must be ≥ 0 or null (all pairs), got {radius}")
    yy, xx = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    yy, xx = yy.flatten(), xx.flatten()
    return ((yy[:, None] - yy[None, :]).abs() <= radius) & ((xx[:, None] - xx[None, :]).abs() <= radius)


@torch.no_grad()
def affinity_labels(labels: torch.Tensor, size: tuple[int, int], ignore_index: int, radius: int | None = 8
                    ) -> torch.Tensor:
    """Pairwise targets on the (h, w) token grid (AFA's cams_to_affinity_label with its mask): labels (B, H, W) are
    resized by nearest neighbour, then pair (i, j) is 1 for the same label, 0 for different labels, ``ignore_index``
    when either is uncertain or when j lies outside the window of ``radius`` tokens around i (config
    ``loss.aff_radius``; 8 in AFA's scripts/dist_train_voc.py and WeCLIP's scripts/dist_clip_voc.py, ``--radius``,
    on the same 20×20 grid of a 320 px crop). → (B, hw, hw) long."""
    small = F.interpolate(labels[:, None].float(), size=tuple(size), mode="nearest")[:, 0].long().flatten(1)
    aff = (small[:, :, None] == small[:, None, :]).long()
    unsure = small == ignore_index
    near = window_mask(tuple(size), radius, labels.device)  # type: ignore[arg-type]
    return aff.masked_fill(unsure[:, :, None] | unsure[:, None, :] | ~near[None], ignore_index)


def affinity_loss(aff: torch.Tensor, aff_labels: torch.Tensor, ignore_index: int) -> torch.Tensor:
    """L_aff (AFA's get_aff_loss): ½·Σ_pos(1 − a)/(n_pos + 1) + ½·Σ_neg a/(n_neg + 1) for a predicted affinity
    aff (B, hw, hw) in [0, 1]; pairs labelled ``ignore_index`` do not count."""
    pos = (aff_labels == 1).to(aff.dtype)
    neg = (aff_labels == 0).to(aff.dtype)
    pos_loss = (pos * (1 - aff)).sum() / (pos.sum() + 1)
    neg_loss = (neg * aff).sum() / (neg.sum() + 1)
    return 0.5 * pos_loss + 0.5 * neg_loss


def total_loss(seg: torch.Tensor, aff: torch.Tensor, cfg: LossConfig) -> torch.Tensor:
    """Eq 21: L = λ1·L_seg + λ2·L_aff (λ1 = loss.seg_weight, λ2 = loss.aff_weight)."""
    return cfg.seg_weight * seg + cfg.aff_weight * aff
