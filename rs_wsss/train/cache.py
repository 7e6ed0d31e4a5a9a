"""Frozen-feature cache: the backbones are frozen, so what the trainable part needs from them (CLIP per-block tokens,
per-block attention, joint-space tokens, DINO tokens) is computed once per training view and stored on disk.

One safetensors file per view, float16, named by the SHA-256 of everything the features depend on (image file
identity, window, crop/flip, band selection, normalisation, backbone identifiers and input sizes), so a stale entry is
never read: a changed input simply misses. Size per view at the paper's sizes: tokens 12×768×20×20, attention
12×400×400, joint 512×20×20, DINO 12×768×20×20 (adapter.dino_levels, resized to the CLIP grid), crop 3×320×320, all
float16 ≈ 20 MB.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..atomic import atomic_path


def cache_key(*parts: object) -> str:
    """A 32-hex key from JSON-able ``parts`` (prior identifier, file identity, window …); other values by ``str``."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


def file_identity(path: str) -> list:
    """Absolute path, size and mtime: a changed file gets new cache keys without hashing it."""
    st = os.stat(path)
    return [os.path.abspath(path), st.st_size, st.st_mtime_ns]


class FeatureCache:
    """Frozen prior features on disk, one safetensors file (float16) per key under ``root``; counts hits and misses."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.hits = self.misses = 0

    def path(self, key: str) -> Path:
        """The file of ``key`` (sharded by its first two characters)."""
        return self.root / key[:2] / f"{key}.safetensors"

    def has(self, key: str) -> bool:
        """Whether ``key`` is cached (counts nothing)."""
        return self.path(key).is_file()

    def get(self, key: str) -> dict[str, torch.Tensor] | None:
        """The tensors of ``key`` as float32, or None (a miss)."""
        p = self.path(key)
        if not p.is_file():
            self.misses += 1
            return None
        self.hits += 1
        return {k: v.float() for k, v in load_file(p).items()}

    def put(self, key: str, tensors: dict[str, torch.Tensor]) -> None:
        """Store ``tensors`` under ``key`` as float16, atomically."""
        p = self.path(key)
        p.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(p) as tmp:  # readers never see half a file
            save_file({k: v.detach().to("cpu", torch.float16).contiguous() for k, v in tensors.items()}, tmp)

    def size_bytes(self) -> int:
        """Bytes the cache holds on disk."""
        return sum(f.stat().st_size for f in self.root.rglob("*.safetensors"))
