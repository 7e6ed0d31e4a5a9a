"""User-facing errors: the CLI prints their message as one line and exits 2."""


class RsWsssError(Exception):
    """Bad input or a missing resource the user can fix; the message names the problem and the fix."""


class WeightsNotFound(RsWsssError):
    """Pretrained weights could not be resolved (offline, no file given)."""
