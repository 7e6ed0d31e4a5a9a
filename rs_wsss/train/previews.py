"""Training previews and validation tiles: fixed windows read once, then run through the model every N steps.

A preview shows, per tile: the image, the initial CAM (eq 9), the refined map (USR → VPE → PAR, what the pseudo
labels are cut from), the pseudo labels (eq 21's targets) and the decoder's prediction.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from ..model import cam as cam_mod

if TYPE_CHECKING:
    from ..model.wsss import WSSS
    from ..raster.io import Scene


def read_tiles(scenes: Mapping[str, Scene], windows: list, size: int) -> torch.Tensor:
    """Windows of opened scenes ((scene path, Window) pairs) → (N, 3, size, size) in [0, 1], resized (bilinear)."""
    out = []
    for path, win in windows:
        img, _ = scenes[path].read(win)
        out.append(F.interpolate(torch.from_numpy(img)[None], size=(size, size), mode="bilinear",
                                 align_corners=False)[0])
    return torch.stack(out)


def pick_evenly(n: int, k: int) -> list[int]:
    """K indices spread evenly over range(n) (all of them when n ≤ k): fixed, so previews compare across steps."""
    if n <= k:
        return list(range(n))
    return sorted({round(i * (n - 1) / (k - 1)) for i in range(k)}) if k > 1 else [0]


@torch.no_grad()
def preview_maps(model: WSSS, images: torch.Tensor, tags: torch.Tensor) -> dict[str, np.ndarray]:
    """Class maps (N, H, W) uint8 of the four stages for ``images`` (N, 3, H, W) with ``tags`` (N, C).

    Runs in eval mode, so the VPE prototypes are read, not updated: a preview never changes training."""
    was_training = model.training
    model.eval()
    try:
        device = model.prototypes.device
        images, tags = images.to(device), tags.to(device)
        feats = model.frozen_features(images)
        init = cam_mod.initial_cam(feats["joint"], model.text, tags, model.cfg.cam)
        init = F.interpolate(init, size=images.shape[-2:], mode="bilinear", align_corners=False)
        out = model.step_from_features(feats, images, tags)
        pred = model.predict(images, scales=[1.0], flip=False)
    finally:
        model.train(was_training)
    # the refined map's background channel competes with the tagged classes only: untagged ones are 0
    return {
        "image": (images.permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype(np.uint8),
        "initial CAM": init.argmax(1).cpu().numpy().astype(np.uint8),
        "refined map": out["cam"].argmax(1).cpu().numpy().astype(np.uint8),
        "pseudo labels": out["labels"].cpu().numpy().astype(np.uint8),
        "prediction": pred.argmax(1).cpu().numpy().astype(np.uint8),
    }


@torch.no_grad()
def predict_classes(model: WSSS, images: torch.Tensor, batch: int = 4) -> np.ndarray:
    """Decoder class map (N, H, W) uint8, single scale, no flip, no CRF (validation: cheap and comparable)."""
    was_training = model.training
    model.eval()
    try:
        device = model.prototypes.device
        out = [model.predict(images[i : i + batch].to(device), scales=[1.0], flip=False).argmax(1).cpu()
               for i in range(0, len(images), batch)]
    finally:
        model.train(was_training)
    return torch.cat(out).numpy().astype(np.uint8)
