"""Pixel-adaptive refinement (PAR) of a CAM on the image (Ru et al. 2022, AFA ``wetr/PAR.py``).

Each iteration replaces every pixel's class scores by an affinity-weighted mean of its 8 neighbours at every
dilation d (replicate padding). The affinity of neighbour n of pixel p is

    softmax_n( −mean_rgb( |I_n − I_p| / (std_n I_n · w1) )² ) + w2 · softmax_n( −(dist_n / (std_n dist_n · w1))² )

(w1 = 0.3, w2 = 0.01, std over the 8·len(dilations) neighbours) as in AFA, divided by 1 + w2 so the weights sum to 1
(AFA's sum to 1.01: the CAM would grow 1 % per iteration; the argmax is unchanged, the thresholds would not be).
No learnable parameters; a module only because it holds fixed kernels. No gradients.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# the 8 neighbours of a 3×3 window (centre excluded), AFA's order
OFFSETS = [(i, j) for i in (-1, 0, 1) for j in (-1, 0, 1) if (i, j) != (0, 0)]
W_COLOUR, W_POS = 0.3, 0.01  # AFA's w1, w2


class PAR(nn.Module):
    kernel: torch.Tensor
    dist: torch.Tensor
    def __init__(self, dilations: list[int], iters: int):
        super().__init__()
        self.dilations = [int(d) for d in dilations]
        self.iters = int(iters)
        kernel = torch.zeros(8, 1, 3, 3)
        for n, (i, j) in enumerate(OFFSETS):
            kernel[n, 0, i + 1, j + 1] = 1.0
        self.register_buffer("kernel", kernel, persistent=False)
        dist = torch.tensor([math.hypot(i, j) for i, j in OFFSETS])
        self.register_buffer("dist", torch.cat([dist * d for d in self.dilations]), persistent=False)

    def _shifted(self, x: torch.Tensor, d: int) -> torch.Tensor:
        """(B, C, H, W) → (B, C, 8, H, W): the 8 neighbours at dilation d (replicate padding)."""
        b, c, h, w = x.shape
        xp = F.pad(x, [d] * 4, mode="replicate").reshape(b * c, 1, h + 2 * d, w + 2 * d)
        return F.conv2d(xp, self.kernel.to(x), dilation=d).view(b, c, 8, h, w)

    def neighbours(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) → (B, C, 8·len(dilations), H, W)."""
        return torch.cat([self._shifted(x, d) for d in self.dilations], dim=2)

    def affinity(self, image: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) → (B, 1, 8·len(dilations), H, W) weights summing to 1 over the neighbours."""
        nb = self.neighbours(image)
        colour = -((nb - image.unsqueeze(2)).abs() / (nb.std(dim=2, keepdim=True) + 1e-8) / W_COLOUR) ** 2
        colour = colour.mean(dim=1, keepdim=True)
        dist = self.dist.to(image)
        pos = -(dist / (dist.std() + 1e-8) / W_COLOUR) ** 2
        return (colour.softmax(dim=2) + W_POS * pos.softmax(dim=0).view(1, 1, -1, 1, 1)) / (1 + W_POS)

    @torch.no_grad()
    def forward(self, image: torch.Tensor, cam: torch.Tensor) -> torch.Tensor:
        """image (B, 3, H, W), cam (B, K, h, w) → refined cam (B, K, H, W) (bilinearly resized to the image first).

        AFA runs PAR at half the image resolution to save memory: pass a downscaled image and upsample the result."""
        cam = F.interpolate(cam.float(), size=image.shape[-2:], mode="bilinear", align_corners=False)
        aff = self.affinity(image.float())
        for _ in range(self.iters):
            out = torch.zeros_like(cam)
            for n, d in enumerate(self.dilations):  # one dilation at a time: K·8 maps in memory, not K·8·len(d)
                out += (self._shifted(cam, d) * aff[:, :, 8 * n : 8 * (n + 1)]).sum(dim=2)
            cam = out
        return cam


def par_refine(image: torch.Tensor, cam: torch.Tensor, dilations: list[int], iters: int) -> torch.Tensor:
    """Functional form of :class:`PAR`."""
    return PAR(dilations, iters).to(image.device)(image, cam)
