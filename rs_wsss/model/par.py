"""Pixel-adaptive refinement (PAR) of a CAM on the image (Ru et al. 2022, AFA ``wetr/PAR.py``).

Each iteration replaces every pixel's class scores by an affinity-weighted mean of its 8 neighbours at every
dilation d (replicate padding). The affinity of neighbour n of pixel p is

    softmax_n( −mean_rgb( |I_n − I_p| / (std_n I_n · w1) )² ) + w2 · softmax_n( −(dist_n / (std_n dist_n · w1))² )

(w1 = 0.3, w2 = 0.01, std over the 8·len(dilations) neighbours) as in AFA, divided by 1 + w2 so the weights sum to 1
(AFA's sum to 1.01: the CAM would grow 1 % per iteration; the argmax is unchanged, the thresholds would not be).
No learnable parameters; a module only because it holds the fixed positional term. No gradients.
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
    """The neighbours are strided views of one replicate-padded copy (padded by the largest dilation: a neighbour
    at offset i·d then reads the clamped pixel, exactly what padding by d itself gives), so no convolution with
    one-hot kernels and no (·, 8·len(d), H, W) stack is built; the positional term depends on the dilations only
    and is computed once, here."""

    pos: torch.Tensor

    def __init__(self, dilations: list[int], iters: int) -> None:
        super().__init__()
        self.dilations = [int(d) for d in dilations]
        self.iters = int(iters)
        self.offsets = [(i * d, j * d) for d in self.dilations for i, j in OFFSETS]  # 8 per dilation, AFA's order
        self.margin = max(self.dilations)
        dist = torch.tensor([math.hypot(i, j) * d for d in self.dilations for i, j in OFFSETS])
        pos = -(dist / (dist.std() + 1e-8) / W_COLOUR) ** 2
        self.register_buffer("pos", W_POS * pos.softmax(dim=0), persistent=False)

    def views(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(B, C, H, W) → its 8·len(dilations) neighbours, each a (B, C, H, W) view (replicate padding)."""
        m, (h, w) = self.margin, x.shape[-2:]
        xp = F.pad(x, [m] * 4, mode="replicate")
        return [xp[..., m + dy : m + dy + h, m + dx : m + dx + w] for dy, dx in self.offsets]

    def neighbours(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) → (B, C, 8·len(dilations), H, W)."""
        return torch.stack(self.views(x), dim=2)

    def affinity(self, image: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) → (B, 8·len(dilations), H, W) weights summing to 1 over the neighbours (dim 1).

        One neighbour at a time (each view fits in cache): the std over the neighbours (unbiased, as torch.std),
        then −mean_rgb((I_n − I_p)/(std·w1))², softmax over the neighbours, plus the positional term."""
        views = self.views(image)
        n = len(views)
        mean = views[0].clone()
        for v in views[1:]:
            mean.add_(v)
        mean.div_(n)
        var = torch.zeros_like(image)
        for v in views:
            var.add_((v - mean).square_())
        inv = var.div_(max(1, n - 1)).sqrt_().add_(1e-8).mul_(W_COLOUR).reciprocal_().square_()  # 1/(std·w1)²
        b, c, h, w = image.shape
        colour = image.new_empty(b, n, h, w)
        for k, v in enumerate(views):
            torch.sum((v - image).square_().mul_(inv), dim=1, out=colour[:, k])
        colour = colour.mul_(-1.0 / c).softmax(dim=1)
        return colour.add_(self.pos.to(colour)[None, :, None, None]).div_(1 + W_POS)

    @torch.no_grad()
    def forward(self, image: torch.Tensor, cam: torch.Tensor) -> torch.Tensor:
        """Image (B, 3, H, W), cam (B, K, h, w) → refined cam (B, K, H, W) (bilinearly resized to the image first).

        AFA runs PAR at half the image resolution to save memory: pass a downscaled image and upsample the result."""
        # a channel that is 0 everywhere in the batch (a class tagged on none of its tiles) stays 0: refine the others
        active = (cam != 0).flatten(2).any(dim=2).any(dim=0).nonzero()[:, 0]
        full = cam.shape[1]
        cam = F.interpolate(cam[:, active].float(), size=image.shape[-2:], mode="bilinear", align_corners=False)
        aff = self.affinity(image.float()).unsqueeze(2).unbind(1)  # one (B, 1, H, W) weight per neighbour
        for _ in range(self.iters):
            out = torch.zeros_like(cam)
            for v, a in zip(self.views(cam), aff):
                out.addcmul_(v, a)
            cam = out
        if len(active) == full:
            return cam
        return cam.new_zeros(cam.shape[0], full, *cam.shape[2:]).index_copy_(1, active, cam)


def par_refine(image: torch.Tensor, cam: torch.Tensor, dilations: list[int], iters: int) -> torch.Tensor:
    """Functional form of :class:`PAR`."""
    return PAR(dilations, iters).to(image.device)(image, cam)
