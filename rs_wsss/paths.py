"""Where rs-wsss keeps derived files on the user's machine (not configuration, not the model)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Where derived artefacts (encoded knowledge bases) are cached: $RS_WSSS_CACHE or ~/.cache/rs-wsss."""
    return Path(os.environ.get("RS_WSSS_CACHE", Path.home() / ".cache" / "rs-wsss"))


def refuse_link_loop(path: str | os.PathLike[str], what: str = "input") -> None:
    """A symbolic link that leads back to itself is named as such, not reported as a missing file.

    Raises:
        RsWsssError: ``path`` (or a link on its way) loops.
    """
    import errno

    from .errors import RsWsssError

    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise RsWsssError(f"{what} {path} is a symbolic link loop (the link leads back to itself); "
                              "point it at the real file") from None
