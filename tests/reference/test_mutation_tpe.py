"""TPE (eqs 1–4) where the mutation run (scripts/mutation.py tpe) found it unguarded: the knowledge-base cache's
load and validation, its directory, the defaults that switch caching off, eq 2's exact KMeans call, eq 3's top-k
clamp and the user-facing messages. Expectations are computed here (numpy, scikit-learn, by hand), never by the code
under test."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans

from rs_wsss.classes import class_set_from_dict
from rs_wsss.config import TPEConfig
from rs_wsss.errors import RsWsssError
from rs_wsss.model import tpe

from . import numpy_engine as ref
from .conftest import close, np64

DESCRIPTIONS = {"roof": ["red tiles", "flat grey roof", "solar panels"], "lawn": ["mown grass", "a green park"]}
TEXTS = [d for ds in DESCRIPTIONS.values() for d in ds]  # eq 1's order: classes in order, descriptions in order
DIM = 7  # ≠ the 5 descriptions, so a check of the wrong axis of the cached (5, 7) tensor shows


def _set(descriptions: dict[str, list[str]] = DESCRIPTIONS):
    colours = iter(["#ff0000", "#00ff00", "#0000ff"])
    return class_set_from_dict({"name": "t", "classes": [
        {"name": n, "color": next(colours), "descriptions": d} for n, d in descriptions.items()]})


class Encoder:
    """A fixed vector per distinct text; counts calls (a call = the knowledge base was encoded, not read)."""

    def __init__(self) -> None:
        self.calls = 0

    @staticmethod
    def vec(text: str) -> np.ndarray:
        return np.random.default_rng(sum(map(ord, text))).standard_normal(DIM)

    def __call__(self, texts: list[str]) -> torch.Tensor:
        self.calls += 1
        return torch.tensor(np.stack([self.vec(t) for t in texts]), dtype=torch.float32)


WANT_KB = np.stack([Encoder.vec(t) for t in TEXTS])


def _cached(cache: os.PathLike) -> list:
    return sorted(p for p in os.scandir(cache) if p.name.startswith("kb_") and p.name.endswith(".pt"))


class RunsOnLoad:
    """Unpickling this runs ``os.mkdir(marker)``: what a tampered cache file could do if loaded unsafely."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (self.marker,)


@pytest.mark.parametrize("bad", ["rows", "ndim", "dict", "pickle"])
def test_a_cache_file_of_the_wrong_shape_or_type_is_rebuilt_not_used(tmp_path, bad):
    enc = Encoder()
    kb = tpe.encode_knowledge_base(_set(), enc, tmp_path, "w")
    assert close(kb, WANT_KB) and enc.calls == 1
    (entry,) = _cached(tmp_path)
    assert close(tpe.encode_knowledge_base(_set(), enc, tmp_path, "w"), WANT_KB) and enc.calls == 1  # read back
    marker = tmp_path / "ran"
    wrong = {"rows": torch.zeros(4, DIM), "ndim": torch.zeros(len(TEXTS), DIM, 1), "dict": {"kb": torch.zeros(5)},
             "pickle": RunsOnLoad(str(marker))}[bad]
    torch.save(wrong, entry.path)
    again = tpe.encode_knowledge_base(_set(), enc, tmp_path, "w")
    assert close(again, WANT_KB) and enc.calls == 2  # re-encoded, not the file's content
    assert not marker.exists()  # the cache is loaded with weights_only: a pickle never runs code
    assert close(torch.load(entry.path, weights_only=True), WANT_KB)  # and the good tensor replaced the bad file


def test_the_cache_directory_is_created_with_its_parents(tmp_path):
    enc = Encoder()
    nested = tmp_path / "a" / "b" / "c"
    tpe.encode_knowledge_base(_set(), enc, nested, "w")
    assert len(_cached(nested)) == 1
    assert close(tpe.encode_knowledge_base(_set(), enc, nested, "w"), WANT_KB) and enc.calls == 1


def test_without_a_weights_id_nothing_is_cached_by_default(tmp_path):
    enc = Encoder()
    for _ in range(2):
        assert close(tpe.encode_knowledge_base(_set(), enc, tmp_path), WANT_KB)
    assert enc.calls == 2 and not _cached(tmp_path)
    cfg = TPEConfig(enabled=True, n_clusters=2, topk=1, lam=0.5, seed=0)
    tpe.text_embeddings(_set(), enc, cfg, tmp_path)  # the default weights_id of text_embeddings too
    assert not _cached(tmp_path)
    tpe.text_embeddings(_set(), enc, cfg, tmp_path, "w")  # the control: with one, it is cached
    assert len(_cached(tmp_path)) == 1


def test_a_class_without_descriptions_names_the_classes_and_the_fix():
    enc = Encoder()
    with pytest.raises(RsWsssError) as err:
        tpe.encode_knowledge_base(_set({"roof": ["red tiles"], "lawn": [], "pool": []}), enc)
    assert re.fullmatch(r"class set 't': no descriptions for lawn, pool; add a 'descriptions' list to each class "
                        r"or set tpe\.enabled=false", str(err.value)), str(err.value)
    assert enc.calls == 0


def test_parameter_checks_are_exact_messages():
    kb = torch.randn(5, 3)
    with pytest.raises(ValueError, match=r"^tpe\.n_clusters must be ≥ 1, got 0$"):
        tpe.kmeans_prototypes(kb, 0)
    with pytest.raises(ValueError, match=r"^tpe\.topk must be ≥ 1, got 0$"):
        tpe.enrich_text(kb[:2], kb, 0, 0.5)


def _unit_rows(x: np.ndarray) -> np.ndarray:
    return np.stack([ref.unit(v) for v in x]).astype(np.float32)


def test_one_prototype_is_the_mean_of_the_normalised_knowledge_base():
    """B = 1 is a valid eq 2: the single centroid is the mean of all unit vectors."""
    kb = np.random.default_rng(3).standard_normal((9, 5)) * 4
    got = tpe.kmeans_prototypes(torch.tensor(kb, dtype=torch.float32), 1)
    assert got.shape == (1, 5) and close(got[0], np.stack([ref.unit(v) for v in kb]).mean(0))


def test_eq2_is_scikit_learns_kmeans_with_ten_inits_from_the_seed():
    """On unit vectors with many local optima the exact call shows: n_init = 10 and random_state = seed (default
    0). The data (seed 12) is one where an 11th init, or another random_state, finds a different optimum."""
    x = _unit_rows(np.random.default_rng(12).standard_normal((40, 6)))

    def sk(n_init: int, rs: int) -> np.ndarray:
        return KMeans(n_clusters=6, n_init=n_init, random_state=rs).fit(x).cluster_centers_

    want0, want1 = sk(10, 0), sk(10, 1)
    assert np.abs(want0 - sk(11, 0)).max() > 0.1 and np.abs(want0 - want1).max() > 0.1  # the data can tell
    kb = torch.tensor(x) * 3  # eq 2 normalises first: the scale must not matter
    assert close(tpe.kmeans_prototypes(kb, 6), want0)
    assert close(tpe.kmeans_prototypes(kb, 6, seed=0), want0)
    assert close(tpe.kmeans_prototypes(kb, 6, seed=1), want1)


def test_topk_larger_than_the_prototypes_takes_them_all():
    """K is clamped at B (not at the embedding width): 2 prototypes of width 4, topk = 3 → the softmax over both."""
    t = torch.tensor([[3.0, 0.0, 4.0, 0.0], [0.0, 1.0, 0.0, 0.0]])
    a = torch.tensor([[0.2, 0.1, 0.4, 0.0], [0.0, 0.5, -0.3, 0.6]])
    out = tpe.enrich_text(t, a, topk=3, lam=0.8)
    want = []
    for tc in np64(t):
        tc = tc / np.linalg.norm(tc)
        s = np64(a) @ tc
        w = np.exp(s) / np.exp(s).sum()
        want.append(tc + 0.8 * (w[:, None] * np64(a)).sum(0))
    assert close(out, np.stack(want))
