"""Where rs-wsss keeps derived files on the user's machine (not configuration, not the model)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Where derived artefacts (encoded knowledge bases) are cached: $RS_WSSS_CACHE or ~/.cache/rs-wsss."""
    return Path(os.environ.get("RS_WSSS_CACHE", Path.home() / ".cache" / "rs-wsss"))
