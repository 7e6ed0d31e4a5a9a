"""Pixel-adaptive refinement (PAR) of a CAM on the image (Ru et al. 2022, AFA): each pixel's class scores are
repeatedly replaced by an affinity-weighted mean of its 8 neighbours at several dilations, the affinity mixing
colour similarity and spatial distance. No learnable parameters; a module only because it holds fixed kernels."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# the 8 neighbours of a 3×3 window (centre excluded) and their distances
_OFFSETS = [(i, j) for i in range(3) for j in range(3) if (i, j) != (1, 1)]
_W_COLOUR, _W_POS = 0.3, 0.01  # AFA's weights of the colour and position terms


class PAR(nn.Module):
    def __init__(self, dilations: list[int], iters: int):
        super().__init__()
        self.dilations = list(dilations)
        self.iters = iters
        kernel = torch.zeros(8, 1, 3, 3)
        for n, (i, j) in enumerate(_OFFSETS):
            kernel[n, 0, i, j] = 1.0
        self.register_buffer("kernel", kernel, persistent=False)
        dist = torch.tensor([math.hypot(i - 1, j - 1) for i, j in _OFFSETS])
        self.register_buffer("pos", torch.cat([dist * d for d in self.dilations]).view(1, 1, -1, 1, 1), persistent=False)

    def neighbours(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) → (B, C, 8·len(dilations), H, W): the dilated 8-neighbourhood (replicate padding)."""
        b, c, h, w = x.shape
        out = []
        for d in self.dilations:
            xp = F.pad(x, [d] * 4, mode="replicate").reshape(b * c, 1, h + 2 * d, w + 2 * d)
            out.append(F.conv2d(xp, self.kernel, dilation=d).view(b, c, 8, h, w))
        return torch.cat(out, dim=2)

    @torch.no_grad()
    def forward(self, image: torch.Tensor, cam: torch.Tensor) -> torch.Tensor:
        """image (B, 3, H, W), cam (B, K, h, w) → refined cam (B, K, H, W)."""
        cam = F.interpolate(cam, size=image.shape[-2:], mode="bilinear", align_corners=False)
        nb = self.neighbours(image)
        colour = -((nb - image.unsqueeze(2)).abs() / (nb.std(dim=2, keepdim=True) + 1e-8) / _W_COLOUR) ** 2
        colour = colour.mean(dim=1, keepdim=True)
        pos = -(self.pos / (self.pos.std(dim=2, keepdim=True) + 1e-8) / _W_COLOUR) ** 2
        # AFA adds the two softmaxes (weights sum to 1 + w2); dividing by 1 + w2 makes each step a true weighted
        # mean, so CAM values keep their scale and the pseudo-label thresholds keep their meaning
        aff = (colour.softmax(dim=2) + _W_POS * pos.expand_as(colour).softmax(dim=2)) / (1 + _W_POS)
        for _ in range(self.iters):
            cam = (self.neighbours(cam) * aff).sum(dim=2)
        return cam


def par_refine(image: torch.Tensor, cam: torch.Tensor, dilations: list[int], iters: int) -> torch.Tensor:
    """Functional form of :class:`PAR`."""
    return PAR(dilations, iters).to(image.device)(image, cam)
