"""Textual Prototype-aware Enrichment (TPE), eqs 1–4 (Sect. 3.2).

Choice (not fixed by the paper): all dot products are between L2-normalised CLIP embeddings (CLIP compares
directions), so the scores t_cᵀa_j of eq 3 are cosines, the KMeans of eq 2 runs on unit vectors, and the enriched
T_c of eq 4 is built on the unit t_c.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from ..classes import ClassSet
from ..config import TPEConfig

EncodeText = Callable[[list[str]], torch.Tensor]


def encode_knowledge_base(
    class_set: ClassSet, encode_text: EncodeText, cache_dir: Path | None = None, weights_id: str = ""
) -> torch.Tensor:
    """Eq 1: T = {Φ(e_{c,k})}, the CLIP text embeddings of every description, (n·C, E).

    Cached on disk keyed by (descriptions, text-encoder weights), since encoding hundreds of prompts costs seconds.
    """
    texts = [d for c in class_set.classes for d in c.descriptions]
    if not texts:
        raise ValueError(f"class set '{class_set.name}' has no descriptions: TPE needs a knowledge base")
    key = hashlib.sha256(json.dumps([texts, weights_id]).encode()).hexdigest()[:20]
    path = Path(cache_dir) / f"kb_{key}.pt" if cache_dir else None
    if path is not None and path.exists():
        return torch.load(path, weights_only=True)
    kb = torch.cat([encode_text(texts[i : i + 64]) for i in range(0, len(texts), 64)]).float()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(kb, tmp)
        tmp.replace(path)
    return kb


def kmeans_prototypes(kb: torch.Tensor, n_clusters: int, seed: int = 0) -> torch.Tensor:
    """Eq 2: W = KMeans(T, B) = {a_i}, B centroids of the (unit) knowledge-base embeddings, (B, E)."""
    from sklearn.cluster import KMeans

    x = F.normalize(kb.float(), dim=-1).cpu().numpy()
    km = KMeans(n_clusters=min(n_clusters, len(x)), n_init=10, random_state=seed).fit(x)
    return torch.from_numpy(km.cluster_centers_).float()


def enrich_text(t: torch.Tensor, prototypes: torch.Tensor, topk: int, lam: float) -> torch.Tensor:
    """Eqs 3–4: T_c = t_c + λ Σ_{j∈TopK} softmax(t_cᵀW_c)_j a_j, on unit t_c and a_j; (C, E)."""
    t = F.normalize(t.float(), dim=-1)
    a = F.normalize(prototypes.float(), dim=-1)
    scores = t @ a.T  # (C, B): t_cᵀ a_j
    top, idx = scores.topk(min(topk, a.shape[0]), dim=-1)  # eq 3: the K nearest prototypes W_c
    weights = top.softmax(dim=-1)  # softmax over the K scores
    return t + lam * torch.einsum("ck,cke->ce", weights, a[idx])


def text_embeddings(
    class_set: ClassSet,
    encode_text: EncodeText,
    cfg: TPEConfig,
    cache_dir: Path | None = None,
    weights_id: str = "",
) -> torch.Tensor:
    """The class text embeddings used by the initial CAM (eq 9): t_c from the global template, enriched by TPE
    (eqs 1–4) when ``cfg.enabled``; (C, E), not normalised further (eq 9 normalises)."""
    t = encode_text([cfg.template.format(p) for p in class_set.prompts]).float()
    if not cfg.enabled:
        return F.normalize(t, dim=-1)
    kb = encode_knowledge_base(class_set, encode_text, cache_dir, weights_id)
    return enrich_text(t, kmeans_prototypes(kb, cfg.n_clusters, cfg.seed), cfg.topk, cfg.lam)
