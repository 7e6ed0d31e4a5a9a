"""The reference's predictions for a model: its frozen priors' outputs and its trainable weights are inputs, and
everything after them is :mod:`numpy_engine` (zero-shot: eq 9 → USR; decoder inference: eqs 5–8 + softmax), at every
scale and flip. Uses the model's ``clip``, ``dino``, ``cfg``, ``text``, ``class_set`` and parameters, never its
methods."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from . import numpy_engine as ref
from .conftest import adapter_weights, decoder_weights, np64


def expected_zero_shot(model: Any, images: torch.Tensor, tags: torch.Tensor | None, scales: list[float],
                       flip: bool) -> np.ndarray:
    """The reference's zero-shot probabilities: mean over scales (rounded to whole CLIP patches) and flips."""
    clip, dino, cfg = model.clip, model.dino, model.cfg
    b, _, hh, ww = images.shape
    p = clip.patch
    out = np.zeros((b, model.class_set.num_classes + 1, hh, ww))
    n = 0
    for s in scales:
        size = (max(p, round(hh * s / p) * p), max(p, round(ww * s / p) * p))
        for flipped in (False, True) if flip else (False,):
            for i in range(b):
                x = ref.bilinear(np64(images[i]), size)
                x = x[:, :, ::-1].copy() if flipped else x
                xt = torch.from_numpy(x).float()[None]
                with torch.no_grad():
                    f = clip(xt)
                    h, w = f.joint.shape[-2:]
                    dn = None
                    if dino is not None and cfg.usr.use_dino:
                        xd = torch.from_numpy(ref.bilinear(x, (h * dino.patch, w * dino.patch))).float()[None]
                        dn = np64(dino(xd)[0])
                pr = ref.zero_shot_probs(np64(f.tokens[-1][0]), np64(f.attn[0]), np64(f.joint[0]), dn,
                                         np64(model.text), None if tags is None else np64(tags[i]),
                                         min(cfg.usr.n0, clip.num_blocks), cfg.usr.alpha, (hh, ww), cfg.usr.enabled)
                out[i] += pr[:, :, ::-1] if flipped else pr
            n += 1
    return out / n


def expected_predict(model: Any, images: torch.Tensor, scales: list[float], flip: bool) -> np.ndarray:
    """Decoder inference: mean over scales and flips of softmax(Upsample(Conv(φ(F_clip)))) at the input size."""
    clip, p = model.clip, model.clip.patch
    wa, wd = adapter_weights(model.adapter), decoder_weights(model.decoder)
    b, _, hh, ww = images.shape
    out, n = 0.0, 0
    for s in scales:
        size = (max(p, round(hh * s / p) * p), max(p, round(ww * s / p) * p))
        for flipped in (False, True) if flip else (False,):
            probs = []
            for i in range(b):
                x = ref.bilinear(np64(images[i]), size)
                x = x[:, :, ::-1].copy() if flipped else x
                with torch.no_grad():
                    tokens = clip(torch.from_numpy(x).float()[None], need_attn=False).tokens
                h, w = tokens[0].shape[-2:]
                f = ref.adapter([np64(t[0]).reshape(t.shape[1], -1) for t in tokens], wa)
                logits = ref.decoder(f, (h, w), (hh, ww), wd, model.cfg.decoder.heads)[0]
                e = np.exp(logits - logits.max(axis=0, keepdims=True))
                pr = e / e.sum(axis=0, keepdims=True)
                probs.append(pr[:, :, ::-1] if flipped else pr)
            out = out + np.stack(probs)
            n += 1
    return np.asarray(out) / n
