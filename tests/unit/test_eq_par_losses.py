"""PAR, pseudo labels and the losses of eq 21, against hand values and naive loop implementations."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from rs_wsss.config import LossConfig
from rs_wsss.model import losses, usr
from rs_wsss.model.par import PAR, par_refine
from tests.reference import numpy_engine as ref


def _naive_par(img, cam, dilations, iters):
    """AFA's PAR written pixel by pixel: the numpy reference of tests/reference (weights divided by 1 + w2)."""
    return torch.from_numpy(ref.par(img[0].double().numpy(), cam[0].double().numpy(), dilations, iters))[None].float()


def test_par_matches_a_naive_loop():
    g = torch.Generator().manual_seed(0)
    img, cam = torch.rand(1, 3, 5, 6, generator=g), torch.rand(1, 2, 5, 6, generator=g)
    out = PAR([1, 2], iters=2)(img, cam)
    naive = _naive_par(img, cam, [1, 2], 2)
    assert torch.allclose(out, naive, atol=1e-5)
    assert torch.allclose(par_refine(img, cam, [1, 2], 2), naive, atol=1e-5)  # the functional form too


def test_par_keeps_a_constant_cam_and_respects_edges():
    par = PAR([1, 2], iters=10)
    img = torch.zeros(2, 3, 16, 16)
    img[:, :, :, 8:] = 1.0  # a strong vertical edge
    img[1] += 0.01 * torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(1))  # and some texture
    const = torch.full((2, 2, 16, 16), 0.3)
    assert torch.allclose(par(img, const), const, atol=1e-5)
    cam = torch.zeros(2, 1, 16, 16)
    cam[:, :, :, 2] = 1.0  # a stripe inside the left (homogeneous) half
    out = par(img, cam)
    left, right = out[:, 0, :, :8], out[:, 0, :, 8:]
    assert float(left[:, :, 5].mean()) > 0.01  # spread within the homogeneous region
    assert float(right.mean()) < 0.01 * float(left.mean())  # hardly crosses the edge
    assert par(img, torch.rand(2, 2, 4, 4)).shape == (2, 2, 16, 16)  # CAMs at token resolution are resized


def test_pseudo_labels_ignore_band_by_hand():
    # (1, 3, 1, 5): background channel, class 1, class 2
    cam = torch.tensor([[[[0.1, 0.3, 0.9, 0.8, 0.6]],
                         [[0.9, 0.5, 0.2, 0.1, 0.7]],
                         [[0.1, 0.4, 0.3, 0.95, 0.1]]]])
    tags = torch.tensor([[True, True, False]])  # class 2 untagged: only channel 1 counts
    lab = losses.pseudo_labels(cam, tags, high=0.55, low=0.35, ignore_index=255, rule="band")
    # 0.9 ≥ high, > bg 0.1: 1 | 0.5 in the band: ignore | 0.2 < low, bg 0.9 ≥ 0.2: 0 | 0.1: 0 | 0.7 ≥ high but bg 0.6 <
    # 0.7: 1
    assert lab.tolist() == [[[1, 255, 0, 0, 1]]]
    both = losses.pseudo_labels(cam, torch.tensor([[True, True, True]]), 0.55, 0.35, 255, "band")
    assert both.tolist() == [[[1, 255, 0, 2, 1]]]
    # the background channel disagrees: score 0.2 < low but bg 0.1 < 0.2 → uncertain; 0.9 ≥ high but bg 0.95 → uncertain
    dis = torch.tensor([[[[0.1, 0.95]], [[0.2, 0.9]]]])
    assert losses.pseudo_labels(dis, torch.tensor([[True, True]]), 0.55, 0.35, 255, "band").tolist() == [[[255, 255]]]
    none = losses.pseudo_labels(cam, torch.tensor([[True, False, False]]), 0.55, 0.35, 255, "band")
    assert none.tolist() == [[[0, 0, 0, 0, 0]]]  # tagged with nothing: background


def test_pseudo_labels_weclip_argmax_by_hand():
    # the same maps under WeCLIP's rule: arg-max over background + tagged classes, nothing ignored
    cam = torch.tensor([[[[0.1, 0.3, 0.9, 0.8, 0.6]],
                         [[0.9, 0.5, 0.2, 0.1, 0.7]],
                         [[0.1, 0.4, 0.3, 0.95, 0.1]]]])
    assert losses.pseudo_labels(cam, torch.tensor([[True, True, False]]), 0.55, 0.35,
                                255).tolist() == [[[1, 1, 0, 0, 1]]]
    assert losses.pseudo_labels(cam, torch.tensor([[True, True, True]]), 0.55, 0.35,
                                255).tolist() == [[[1, 1, 0, 2, 1]]]
    assert losses.pseudo_labels(cam, torch.tensor([[True, False, False]]), 0.9, 0.1, 255).tolist() == [[[0] * 5]]
    with pytest.raises(ValueError, match="pseudo.rule"):
        losses.pseudo_labels(cam, torch.tensor([[True, True, True]]), 0.55, 0.35, 255, "otsu")


def test_pseudo_labels_equal_afa_with_a_constant_background():
    g = torch.Generator().manual_seed(0)
    fg = torch.rand(2, 3, 4, 4, generator=g)
    tags = torch.tensor([[True, True, False, True], [True, False, True, True]])
    cam = torch.cat([torch.full((2, 1, 4, 4), 0.45), fg], 1)
    lab = losses.pseudo_labels(cam, tags, 0.55, 0.35, 255, "band")
    valid = fg * tags[:, 1:, None, None]  # AFA's cam_to_label: max over the tagged classes, then the band
    score, idx = valid.max(1)
    afa = idx + 1
    afa[score <= 0.55] = 255
    afa[score <= 0.35] = 0
    off = (score - 0.55).abs().lt(1e-6) | (score - 0.35).abs().lt(1e-6)  # AFA uses ≤, rs-wsss <: ignore exact ties
    assert torch.equal(lab[~off], afa[~off])


def test_seg_loss_is_cross_entropy_with_ignore():
    logits = torch.randn(2, 3, 2, 2, generator=torch.Generator().manual_seed(0), requires_grad=True)
    labels = torch.tensor([[[0, 2], [255, 1]], [[1, 1], [255, 255]]])
    kept = [(b, i, j) for b in range(2) for i in range(2) for j in range(2) if labels[b, i, j] != 255]
    naive = -sum(F.log_softmax(logits[b, :, i, j], 0)[labels[b, i, j]] for b, i, j in kept) / len(kept)
    loss = losses.seg_loss(logits, labels, 255)
    assert torch.isclose(loss, naive)
    empty = losses.seg_loss(logits, torch.full((2, 2, 2), 255), 255)
    assert float(empty.detach()) == 0.0
    empty.backward()  # still a graph: a batch that is all uncertain does not crash the step
    assert logits.grad is not None


def test_affinity_labels_by_hand_with_resize():
    labels = torch.tensor([[[1, 1, 1, 1], [1, 1, 1, 1], [0, 0, 255, 255], [0, 0, 255, 255]]])  # 4×4 → 2×2 tokens
    aff = losses.affinity_labels(labels, (2, 2), 255, radius=None)[0]  # tokens: 1, 1, 0, 255
    assert aff.tolist() == [[1, 1, 0, 255], [1, 1, 0, 255], [0, 0, 1, 255], [255, 255, 255, 255]]
    assert torch.equal(losses.affinity_labels(labels, (2, 2), 255, radius=1)[0], aff)  # a 2×2 grid fits radius 1


def test_affinity_labels_local_window_by_a_loop():
    # AFA's get_mask_by_radius: pair (i, j) kept when |row_i − row_j| ≤ r and |col_i − col_j| ≤ r
    g = torch.Generator().manual_seed(3)
    labels = torch.randint(0, 3, (2, 5, 7), generator=g)
    labels[0, 1, 1] = 255
    for radius in (0, 1, 2):
        aff = losses.affinity_labels(labels, (5, 7), 255, radius=radius)
        for b in range(2):
            flat = labels[b].flatten()
            for i in range(35):
                for j in range(35):
                    near = abs(i // 7 - j // 7) <= radius and abs(i % 7 - j % 7) <= radius
                    if not near or flat[i] == 255 or flat[j] == 255:
                        want = 255
                    else:
                        want = int(flat[i] == flat[j])
                    assert int(aff[b, i, j]) == want, (radius, b, i, j)
    # the radius changes the supervised pairs: far pairs are not supervised at radius 1, all are without a radius
    far = losses.affinity_labels(labels, (5, 7), 255, radius=1)
    every = losses.affinity_labels(labels, (5, 7), 255, radius=None)
    assert (far == 255).sum() > (every == 255).sum()
    assert int(every[1, 0, 34]) != 255 and int(far[1, 0, 34]) == 255
    with pytest.raises(ValueError, match="aff_radius"):
        losses.affinity_labels(labels, (5, 7), 255, radius=-1)


def _naive_aff_loss(pred, target):
    pos = [float(1 - pred[b, i, j]) for b, i, j in zip(*torch.where(target == 1))]
    neg = [float(pred[b, i, j]) for b, i, j in zip(*torch.where(target == 0))]
    return 0.5 * sum(pos) / (len(pos) + 1) + 0.5 * sum(neg) / (len(neg) + 1)


def test_affinity_loss_matches_afa_and_trains_f_cd():
    labels = torch.tensor([[[1, 1], [0, 255]], [[2, 0], [2, 2]]])
    target = losses.affinity_labels(labels, (2, 2), 255, radius=None)
    f_cd = torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(0), requires_grad=True)
    pred = usr.joint_affinity(f_cd)
    loss = losses.affinity_loss(pred, target, 255)
    assert abs(float(loss.detach()) - _naive_aff_loss(pred.detach(), target)) < 1e-6
    loss.backward()  # L_aff reaches F_cd through eq 11
    assert f_cd.grad is not None and f_cd.grad.abs().sum() > 0
    pred = torch.full((1, 4, 4), 0.25)
    # first image alone: 5 positive pairs (0-0, 0-1, 1-0, 1-1, 2-2), 4 negatives (0-2, 2-0, 1-2, 2-1)
    by_hand = 0.5 * 5 * 0.75 / 6 + 0.5 * 4 * 0.25 / 5
    assert torch.isclose(losses.affinity_loss(pred, target[:1], 255), torch.tensor(by_hand))


def test_eq21_total_loss():
    cfg = LossConfig(seg_weight=2.0, aff_weight=0.1)
    assert torch.isclose(losses.total_loss(torch.tensor(1.5), torch.tensor(3.0), cfg), torch.tensor(3.3))
