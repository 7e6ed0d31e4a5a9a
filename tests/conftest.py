"""Shared fixtures: the real data pack lives in ../shared/data (never copied into the repository)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("RS_WSSS_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``; its absence is a failure, not a skip (CI has it)."""
    assert SHARED_DATA.is_dir(), f"real data pack missing: {SHARED_DATA} (set RS_WSSS_SHARED_DATA)"
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _offline_hub(monkeypatch):
    # Tests never reach a model hub: weights are random (explicitly) or written by the test itself.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
