"""Eqs 1–4 (TPE) on tiny hand-checkable tensors and a fake, call-counting text encoder."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rs_wsss.classes import class_set_from_dict
from rs_wsss.config import TPEConfig
from rs_wsss.errors import RsWsssError
from rs_wsss.model import tpe
from tests.reference import numpy_engine as ref


def _set(descr_a=("roof a", "roof b"), descr_b=("lawn a", "lawn b")):
    return class_set_from_dict({"name": "t", "classes": [
        {"name": "roof", "color": "#ff0000", "descriptions": list(descr_a)},
        {"name": "lawn", "color": "#00ff00", "descriptions": list(descr_b)}]})


class FakeEncoder:
    """Deterministic text encoder (a fixed vector per distinct text); records every call."""

    def __init__(self, dim: int = 4):
        self.dim, self.calls, self.seen = dim, 0, []

    def vec(self, text: str) -> torch.Tensor:
        g = torch.Generator().manual_seed(sum(map(ord, text)) * 7919 + len(text))
        return torch.randn(self.dim, generator=g) * 3

    def __call__(self, texts):
        self.calls += 1
        self.seen.extend(texts)
        return torch.stack([self.vec(t) for t in texts])


def test_eq1_knowledge_base_holds_every_description_in_class_order():
    enc = FakeEncoder()
    kb = tpe.encode_knowledge_base(_set(), enc)
    assert torch.equal(kb, torch.stack([enc.vec(t) for t in ("roof a", "roof b", "lawn a", "lawn b")]))


def test_eq1_cache_reused_and_invalidated_by_descriptions_or_weights(tmp_path):
    enc = FakeEncoder()
    kb1 = tpe.encode_knowledge_base(_set(), enc, tmp_path, "w1")
    kb2 = tpe.encode_knowledge_base(_set(), enc, tmp_path, "w1")
    assert torch.equal(kb1, kb2) and enc.calls == 1  # the second call read the disk
    assert len(list(tmp_path.glob("kb_*.pt"))) == 1 and not list(tmp_path.glob("*.tmp"))
    tpe.encode_knowledge_base(_set(), enc, tmp_path, "w2")  # other weights
    assert enc.calls == 2
    tpe.encode_knowledge_base(_set(descr_a=("roof a", "roof c")), enc, tmp_path, "w1")  # other descriptions
    assert enc.calls == 3
    tpe.encode_knowledge_base(_set(), enc, tmp_path, "")  # no weights identifier: never cached
    tpe.encode_knowledge_base(_set(), enc, tmp_path, "")
    assert enc.calls == 5


def test_eq1_corrupt_cache_is_recomputed(tmp_path):
    enc = FakeEncoder()
    kb = tpe.encode_knowledge_base(_set(), enc, tmp_path, "w")
    (cached,) = tmp_path.glob("kb_*.pt")
    cached.write_bytes(b"not a tensor")
    assert torch.equal(tpe.encode_knowledge_base(_set(), enc, tmp_path, "w"), kb) and enc.calls == 2


def test_eq1_class_without_descriptions_is_a_user_error():
    with pytest.raises(RsWsssError, match="lawn"):
        tpe.encode_knowledge_base(_set(descr_b=()), FakeEncoder())


def test_eq2_kmeans_finds_separable_clusters_of_unit_vectors():
    pts = torch.tensor([[5.0, 0.05, 0], [0.99, 0, 0.02], [0, 2.0, 0], [0.01, 0.98, 0], [0, 0, 1.0], [0.02, 0, 0.97]])
    centres = tpe.kmeans_prototypes(pts, 3, seed=0)
    unit = F.normalize(pts, dim=-1)
    expected = torch.stack([unit[i : i + 2].mean(0) for i in (0, 2, 4)])  # each centre: mean of one unit pair
    order = centres.argmax(dim=1).argsort()
    assert torch.allclose(centres[order], expected, atol=1e-5)
    assert tpe.kmeans_prototypes(pts, 50).shape == (6, 3)  # B capped at the number of descriptions


def test_eq3_eq4_topk_softmax_enrichment_by_hand():
    t = torch.tensor([[2.0, 0.0]])  # normalised to (1, 0)
    a = torch.tensor([[0.5, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.6, 0.8]])  # scores 0.5, 0, −1, 0.6
    out = tpe.enrich_text(t, a, topk=2, lam=0.5)
    w3, w0 = math.exp(0.6), math.exp(0.5)  # top-2: a_3 (0.6), a_0 (0.5); softmax over these two only
    w3, w0 = w3 / (w3 + w0), w0 / (w3 + w0)
    expected = torch.tensor([[1 + 0.5 * (w3 * 0.6 + w0 * 0.5), 0.5 * w3 * 0.8]])
    assert torch.allclose(out, expected, atol=1e-6)
    assert torch.allclose(tpe.enrich_text(t, a, topk=1, lam=2.0), torch.tensor([[1 + 2 * 0.6, 2 * 0.8]]))
    assert torch.allclose(tpe.enrich_text(t, a, topk=3, lam=0.0), torch.tensor([[1.0, 0.0]]))  # λ = 0: t̂_c


def test_eq3_eq4_match_a_naive_loop():
    g = torch.Generator().manual_seed(0)
    t, a = torch.randn(5, 6, generator=g), torch.randn(8, 6, generator=g)
    out = tpe.enrich_text(t, a, topk=3, lam=0.7)
    for c in range(5):
        tc = t[c] / t[c].norm()
        scores = [float(tc @ a[j]) for j in range(8)]
        top = sorted(range(8), key=lambda j: -scores[j])[:3]
        z = sum(math.exp(scores[j]) for j in top)
        ref = tc + 0.7 * sum(math.exp(scores[j]) / z * a[j] for j in top)
        assert torch.allclose(out[c], ref, atol=1e-5)


def test_text_embeddings_use_the_template_and_switch(tmp_path):
    cs = _set()
    enc = FakeEncoder()
    cfg = TPEConfig(enabled=False, template="an overhead satellite image of {}.")
    plain = tpe.text_embeddings(cs, enc, cfg, tmp_path, "w")
    prompts = ["an overhead satellite image of roof.", "an overhead satellite image of lawn."]
    assert enc.seen == prompts  # TPE off: the knowledge base is not even encoded
    assert torch.allclose(plain, F.normalize(torch.stack([enc.vec(p) for p in prompts]), dim=-1))
    on = TPEConfig(enabled=True, n_clusters=2, topk=1, lam=0.5, seed=0)
    rich = tpe.text_embeddings(cs, enc, on, tmp_path, "w")
    # independent expectation: eq 2's optimum over the 7 two-cluster partitions of the 4 normalised descriptions
    # (brute force), then eqs 3–4 by the numpy reference
    kb = [ref.unit(enc.vec(t).double().numpy()) for t in ("roof a", "roof b", "lawn a", "lawn b")]
    best = None
    for mask in range(1, 8):  # member 3 always in cluster 0; each mask picks cluster 1's members among 0..2
        groups = [[kb[i] for i in range(4) if (i < 3 and mask >> i & 1) == bool(c)] for c in (0, 1)]
        cents = [np.mean(gr, axis=0) for gr in groups]
        inertia = sum(((v - cents[c]) ** 2).sum() for c, gr in enumerate(groups) for v in gr)
        best = min(best or (inertia, cents), (inertia, cents), key=lambda x: x[0])
    t = torch.stack([enc.vec(p) for p in prompts]).double().numpy()
    expected = ref.enrich(t, np.stack(best[1]), 1, 0.5)
    assert np.abs(rich.double().numpy() - expected).max() < 1e-5 and not torch.allclose(rich, plain)
