"""Textual Prototype-aware Enrichment (TPE), eqs 1–4 (Sect. 3.2).

Normalisation (the paper does not say; CLIP compares directions, and ExCEL, whose clustering TPE follows, does this):
- the knowledge-base embeddings Φ(e_{c,k}) are L2-normalised before KMeans (eq 2), so the centroids a_j are means of
  unit vectors (norm ≤ 1) and are used as KMeans returns them;
- the global template embedding t_c is L2-normalised, so t_cᵀa_j (eq 3) is a cosine scaled by |a_j|;
- T_c = t̂_c + λ Σ softmax(t̂_cᵀW_c)_j a_j (eq 4) is not re-normalised here: eq 9 normalises it.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from ..atomic import atomic_path
from ..classes import ClassSet
from ..config import TPEConfig
from ..errors import RsWsssError

EncodeText = Callable[[list[str]], torch.Tensor]
_BATCH = 64  # prompts per text-encoder call


def kb_cache_key(descriptions: list[str], weights_id: str) -> str:
    """sha256 of (descriptions in order, text-encoder weights identifier)."""
    return hashlib.sha256(json.dumps([descriptions, weights_id]).encode()).hexdigest()


def encode_knowledge_base(
    class_set: ClassSet, encode_text: EncodeText, cache_dir: Path | None = None, weights_id: str = ""
) -> torch.Tensor:
    """Eq 1: T = {Φ(e_{c,k})}, the CLIP text embeddings of every description of every class, (n_total, E), as the
    encoder returns them (eq 2 normalises).

    Cached in ``cache_dir`` as ``kb_<sha256>.pt`` keyed by (descriptions, weights_id): encoding hundreds of prompts
    costs seconds per run. Without a ``weights_id`` nothing is cached (different weights could not be told apart).
    """
    texts = [d for c in class_set.classes for d in c.descriptions]
    missing = [c.name for c in class_set.classes if not c.descriptions]
    if missing:
        raise RsWsssError(
            f"class set '{class_set.name}': no descriptions for {', '.join(missing)}; "
            "add a 'descriptions' list to each class or set tpe.enabled=false"
        )
    path = Path(cache_dir) / f"kb_{kb_cache_key(texts, weights_id)}.pt" if cache_dir and weights_id else None
    if path is not None and path.exists():
        try:
            kb = torch.load(path, weights_only=True)
            if isinstance(kb, torch.Tensor) and kb.ndim == 2 and kb.shape[0] == len(texts):
                return kb
        except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError):
            pass  # a truncated or corrupt cache file is recomputed, not fatal
    with torch.no_grad():
        kb = torch.cat([encode_text(texts[i : i + _BATCH]).float().cpu() for i in range(0, len(texts), _BATCH)])
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:  # a concurrent reader never sees half a file; a killed writer's is swept
            torch.save(kb, tmp)
    return kb


def kmeans_prototypes(kb: torch.Tensor, n_clusters: int, seed: int = 0) -> torch.Tensor:
    """Eq 2: W = KMeans(T, B) = {a_i}_{i=1..B}, the centroids of the L2-normalised knowledge base, (B, E).

    scikit-learn KMeans; B is capped at the number of descriptions."""
    if n_clusters < 1:
        raise ValueError(f"tpe.n_clusters must be ≥ 1, got {n_clusters}")
    from sklearn.cluster import KMeans

    x = F.normalize(kb.detach().float().cpu(), dim=-1).numpy()
    km = KMeans(n_clusters=min(n_clusters, len(x)), n_init=10, random_state=seed).fit(x)
    return torch.from_numpy(km.cluster_centers_).float()


def enrich_text(t: torch.Tensor, prototypes: torch.Tensor, topk: int, lam: float) -> torch.Tensor:
    """Eqs 3–4 for all classes at once: t (C, E), prototypes (B, E) → T (C, E).

    eq 3: W_c = the K prototypes with the largest t̂_cᵀa_j;
    eq 4: T_c = t̂_c + λ Σ_{j≤K} softmax(t̂_cᵀW_c)_j a_j, the softmax taken over those K scores only.
    """
    if topk < 1:
        raise ValueError(f"tpe.topk must be ≥ 1, got {topk}")
    t = F.normalize(t.float(), dim=-1)
    a = prototypes.to(t)
    scores = t @ a.T  # (C, B): t_cᵀ a_j
    top, idx = scores.topk(min(topk, a.shape[0]), dim=-1)  # eq 3
    weights = top.softmax(dim=-1)  # (C, K)
    return t + lam * torch.einsum("ck,cke->ce", weights, a[idx])  # eq 4


def text_embeddings(
    class_set: ClassSet,
    encode_text: EncodeText,
    cfg: TPEConfig,
    cache_dir: Path | None = None,
    weights_id: str = "",
) -> torch.Tensor:
    """Class text embeddings for the initial CAM (eq 9), (C, E), on the CPU.

    t_c = Φ(cfg.template.format(prompt_c)) (the global template g(c)); with ``cfg.enabled`` it is enriched by the
    knowledge-base prototypes (eqs 1–4), otherwise returned L2-normalised. Either way eq 9 normalises again."""
    with torch.no_grad():
        t = encode_text([cfg.template.format(p) for p in class_set.prompts]).float().cpu()
    if not cfg.enabled:
        return F.normalize(t, dim=-1)
    kb = encode_knowledge_base(class_set, encode_text, cache_dir, weights_id)
    return enrich_text(t, kmeans_prototypes(kb, cfg.n_clusters, cfg.seed), cfg.topk, cfg.lam)
