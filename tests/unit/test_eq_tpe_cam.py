"""Eqs 1–4 (TPE) and eq 9 (initial CAM) on tiny hand-checkable tensors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from rs_wsss.classes import class_set_from_dict
from rs_wsss.config import CAMConfig, TPEConfig
from rs_wsss.model import cam, tpe


def _set(descr_a=("a1", "a2"), descr_b=("b1", "b2")):
    return class_set_from_dict({"name": "t", "classes": [
        {"name": "roof", "color": "#ff0000", "descriptions": list(descr_a)},
        {"name": "lawn", "color": "#00ff00", "descriptions": list(descr_b)}]})


class CountingEncoder:
    """Deterministic fake text encoder: one-hot-ish vectors from the text's hash; counts calls."""

    def __init__(self):
        self.calls = 0

    def __call__(self, texts):
        self.calls += 1
        g = torch.Generator().manual_seed(0)
        table = {t: torch.randn(4, generator=g) + i for i, t in enumerate(sorted(set(texts)))}
        return torch.stack([table[t] for t in texts])


def test_eq1_knowledge_base_is_cached_and_keyed_by_descriptions_and_weights(tmp_path):
    enc = CountingEncoder()
    kb1 = tpe.encode_knowledge_base(_set(), enc, tmp_path, "w1")
    kb2 = tpe.encode_knowledge_base(_set(), enc, tmp_path, "w1")
    assert kb1.shape == (4, 4) and torch.equal(kb1, kb2) and enc.calls == 1  # second call from disk
    tpe.encode_knowledge_base(_set(), enc, tmp_path, "w2")  # other weights → recomputed
    assert enc.calls == 2
    tpe.encode_knowledge_base(_set(descr_a=("a1", "a3")), enc, tmp_path, "w1")  # other descriptions → recomputed
    assert enc.calls == 3


def test_eq2_kmeans_finds_separable_clusters():
    pts = torch.tensor([[1.0, 0.01, 0], [0.99, 0, 0.02], [0, 1.0, 0], [0.01, 0.98, 0], [0, 0, 1.0], [0.02, 0, 0.97]])
    centres = tpe.kmeans_prototypes(pts, 3, seed=0)
    assert centres.shape == (3, 3)
    # each centre is the mean of one pair of (unit) points: close to one axis
    axes = sorted(int(c.argmax()) for c in centres)
    assert axes == [0, 1, 2] and all(float(c.max()) > 0.95 for c in centres)


def test_eq3_eq4_topk_softmax_enrichment_by_hand():
    t = torch.tensor([[1.0, 0.0]])
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])  # scores 1, 0, -1
    out = tpe.enrich_text(t, a, topk=2, lam=0.5)
    w1, w2 = math.exp(1) / (math.exp(1) + 1), 1 / (math.exp(1) + 1)  # softmax over the top-2 scores (1, 0)
    expected = torch.tensor([[1 + 0.5 * w1, 0.5 * w2]])
    assert torch.allclose(out, expected, atol=1e-6)
    # K = 1 keeps only the nearest prototype: T = t + λ a_0
    assert torch.allclose(tpe.enrich_text(t, a, topk=1, lam=0.5), torch.tensor([[1.5, 0.0]]))


def test_text_embeddings_switch_off_gives_the_plain_template(tmp_path):
    enc = CountingEncoder()
    cfg = TPEConfig(enabled=False)
    plain = tpe.text_embeddings(_set(), enc, cfg, tmp_path, "w")
    assert torch.allclose(plain.norm(dim=-1), torch.ones(2))
    rich = tpe.text_embeddings(_set(), enc, TPEConfig(enabled=True, n_clusters=2, topk=1, lam=0.5), tmp_path, "w")
    assert rich.shape == plain.shape and not torch.allclose(rich, plain)


def test_minmax_norm():
    x = torch.tensor([[2.0, 4.0, 6.0], [1.0, 1.0, 3.0]])
    assert torch.allclose(cam.minmax_norm(x), torch.tensor([[0.0, 0.5, 1.0], [0.0, 0.0, 1.0]]))


def test_eq9_initial_cam_cosine_minmax_tags_and_background():
    # 1×3 token grid in a 2-d joint space; classes along the axes
    joint = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]]).T.reshape(1, 2, 1, 3)
    text = torch.tensor([[3.0, 0.0], [0.0, 1.0]])
    c = math.sqrt(0.5)
    cos0, cos1 = torch.tensor([1.0, c, 0.0]), torch.tensor([0.0, c, 1.0])
    out = cam.initial_cam(joint, text, torch.tensor([[1.0, 1.0]]), CAMConfig(bg_rule="power", bg_power=2.0))
    assert out.shape == (1, 3, 1, 3)
    assert torch.allclose(out[0, 1, 0], cam.minmax_norm(cos0), atol=1e-6)
    assert torch.allclose(out[0, 2, 0], cam.minmax_norm(cos1), atol=1e-6)
    fgmax = torch.maximum(out[0, 1, 0], out[0, 2, 0])
    assert torch.allclose(out[0, 0, 0], (1 - fgmax) ** 2, atol=1e-6)
    # an untagged class is zero; the constant rule writes bg_score
    out2 = cam.initial_cam(joint, text, torch.tensor([[0.0, 1.0]]), CAMConfig(bg_rule="constant", bg_score=0.3))
    assert torch.count_nonzero(out2[0, 1]) == 0 and torch.allclose(out2[0, 0], torch.full((1, 3), 0.3))
    with pytest.raises(ValueError):
        cam.initial_cam(joint, text, None, CAMConfig(bg_rule="nope"))
    # the cosine ignores the scale of tokens and text
    assert torch.allclose(cam.initial_cam(joint * 5, text * 0.1, None, CAMConfig()), cam.initial_cam(joint, text, None, CAMConfig()))
    assert F.normalize(text, dim=-1).shape == (2, 2)
