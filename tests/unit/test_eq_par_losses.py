"""PAR, pseudo labels and the losses of eq 21, against hand values and naive implementations."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rs_wsss.config import LossConfig
from rs_wsss.model import losses
from rs_wsss.model.par import PAR


def test_par_keeps_a_constant_cam_and_respects_edges():
    par = PAR([1, 2], iters=10)
    img = torch.zeros(1, 3, 16, 16)
    img[:, :, :, 8:] = 1.0  # a strong vertical edge
    const = torch.full((1, 2, 16, 16), 0.3)
    assert torch.allclose(par(img, const), const, atol=1e-5)
    cam = torch.zeros(1, 1, 16, 16)
    cam[:, :, :, 2] = 1.0  # a stripe inside the left (homogeneous) half
    out = par(img, cam)
    left, right = out[0, 0, :, :8], out[0, 0, :, 8:]
    assert float(left[:, 5].mean()) > 0.01  # spread within the homogeneous region
    assert float(right.mean()) < 0.1 * float(left.mean())  # hardly crosses the edge
    # output takes the image's size (CAMs come at token resolution)
    assert par(img, torch.rand(1, 2, 4, 4)).shape == (1, 2, 16, 16)


def test_pseudo_labels_ignore_band_by_hand():
    cam = torch.tensor([[[[0.0, 0.0, 0.0, 0.0]], [[0.9, 0.5, 0.2, 0.1]], [[0.1, 0.4, 0.3, 0.95]]]])  # (1, 3, 1, 4)
    tags = torch.tensor([[True, True, False]])
    lab = losses.pseudo_labels(cam, tags, high=0.55, low=0.35, ignore_index=255)
    # class 2 untagged: only channel 1 counts → 0.9 ≥ high: 1; 0.5 in band: ignore; 0.2, 0.1 < low: background
    assert lab.tolist() == [[[1, 255, 0, 0]]]
    both = losses.pseudo_labels(cam, torch.tensor([[True, True, True]]), 0.55, 0.35, 255)
    assert both.tolist() == [[[1, 255, 0, 2]]]  # 0.3 < low
    none = losses.pseudo_labels(cam, torch.tensor([[True, False, False]]), 0.55, 0.35, 255)
    assert none.tolist() == [[[0, 0, 0, 0]]]


def test_seg_loss_is_cross_entropy_with_ignore():
    logits = torch.randn(1, 3, 2, 2, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([[[0, 2], [255, 1]]])
    naive = -sum(F.log_softmax(logits[0, :, i, j], 0)[labels[0, i, j]] for i, j in [(0, 0), (0, 1), (1, 1)]) / 3
    assert torch.isclose(losses.seg_loss(logits, labels, 255), naive)
    assert float(losses.seg_loss(logits, torch.full((1, 2, 2), 255), 255)) == 0.0


def test_affinity_labels_and_loss_by_hand():
    labels = torch.tensor([[[1, 1], [0, 255]]])
    aff = losses.affinity_labels(labels, (2, 2), 255)[0]
    assert aff[0, 1] == 1 and aff[0, 2] == 0 and aff[0, 3] == 255 and aff[3, 3] == 255
    pred = torch.full((1, 4, 4), 0.25)
    # 5 positive pairs (0-0, 0-1, 1-0, 1-1, 2-2) and 4 negatives (0-2, 2-0, 1-2, 2-1)
    expected = 0.5 * (5 * 0.75 / 6 + 4 * 0.25 / 5)
    assert torch.isclose(losses.affinity_loss(pred, aff[None], 255), torch.tensor(expected))
    assert torch.isclose(losses.total_loss(torch.tensor(2.0), torch.tensor(3.0), LossConfig(seg_weight=1.0, aff_weight=0.1)), torch.tensor(2.3))
