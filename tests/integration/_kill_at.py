"""``python -m tests.integration._kill_at STAGE DONE [SEED] -- rs-wsss ARGS``: the real CLI, SIGKILLed by itself
right after it reports progress ``DONE`` of ``STAGE`` (``DONE`` = ``total``: when the stage completes).

A kill point is then an event of the run, not a race between a parent reading progress lines and a child that keeps
working: the blocks on disk when it dies are exactly those the event counts. ``SEED`` shuffles the order in which
this process stitches its blocks (as a Dask cluster would), to show the result does not depend on it."""

from __future__ import annotations

import os
import random
import signal
import sys


def main() -> None:
    """Patch the progress reporter (and the block order), then run ``rs_wsss_cli.main`` with the rest of argv."""
    sep = sys.argv.index("--")
    stage, done, *seed = sys.argv[1:sep]
    from rs_wsss.raster import blocks
    from rs_wsss_cli import common

    report = common.Progress.__call__

    def progress(self, s: str, n: int, total: int) -> None:
        report(self, s, n, total)
        if s == stage and (n == total if done == "total" else n >= int(done)):
            os.kill(os.getpid(), signal.SIGKILL)

    common.Progress.__call__ = progress
    if seed:
        stitch_all = blocks.LocalBlocks.__call__

        def shuffled(self, scene, jobs, **kw) -> None:
            jobs = list(jobs)
            random.Random(int(seed[0])).shuffle(jobs)
            stitch_all(self, scene, jobs, **kw)

        blocks.LocalBlocks.__call__ = shuffled
    sys.argv = ["rs-wsss", *sys.argv[sep + 1 :]]
    from rs_wsss_cli.main import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
