"""Online pseudo labels and the training objective, eq 21 (Sect. 3.6): L = λ1·L_seg + λ2·L_aff."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..config import LossConfig


def pseudo_labels(cam: torch.Tensor, tags_k: torch.Tensor, high: float, low: float, ignore_index: int) -> torch.Tensor:
    """Refined CAM (B, K, H, W), channel 0 background → labels (B, H, W) (AFA's cam_to_label with an ignore band).

    The label is the arg-max over the *tagged* foreground channels, kept where that score ≥ ``high``; pixels whose
    best foreground score is < ``low`` are background; the band in between is ``ignore_index`` (uncertain).
    A tile tagged with no class is background everywhere.
    """
    fg = cam[:, 1:].masked_fill(~tags_k[:, 1:].bool()[:, :, None, None], float("-inf"))
    score, idx = fg.max(dim=1)
    labels = idx + 1
    labels[score < high] = ignore_index
    labels[score < low] = 0  # -inf (no tags) lands here too
    return labels


def seg_loss(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int) -> torch.Tensor:
    """L_seg: per-pixel cross-entropy on the pseudo labels. An all-ignored batch gives 0, not NaN."""
    if bool((labels == ignore_index).all()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits, labels, ignore_index=ignore_index)


def affinity_labels(labels: torch.Tensor, size: tuple[int, int], ignore_index: int) -> torch.Tensor:
    """Pairwise targets on the decoder's token grid: 1 same label, 0 different, ignore if either is uncertain.
    labels (B, H, W) → (B, hw, hw) long."""
    small = F.interpolate(labels[:, None].float(), size=size, mode="nearest")[:, 0].long().flatten(1)
    aff = (small[:, :, None] == small[:, None, :]).long()
    unsure = (small == ignore_index)
    aff[unsure[:, :, None] | unsure[:, None, :]] = ignore_index
    return aff


def affinity_loss(aff: torch.Tensor, aff_labels: torch.Tensor, ignore_index: int) -> torch.Tensor:
    """L_aff (AFA): mean (1 − a) over same-label pairs plus mean a over different-label pairs, halved; aff in [0, 1]."""
    pos = (aff_labels == 1).to(aff.dtype)
    neg = (aff_labels == 0).to(aff.dtype)
    pos_loss = (pos * (1 - aff)).sum() / (pos.sum() + 1)
    neg_loss = (neg * aff).sum() / (neg.sum() + 1)
    return 0.5 * (pos_loss + neg_loss)


def total_loss(seg: torch.Tensor, aff: torch.Tensor, cfg: LossConfig) -> torch.Tensor:
    """Eq 21: L = λ1 L_seg + λ2 L_aff."""
    return cfg.seg_weight * seg + cfg.aff_weight * aff
