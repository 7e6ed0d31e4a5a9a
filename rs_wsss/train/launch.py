"""Start a command again under torchrun, one process per rank (``rs-wsss train --nproc N``)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence


def without_option(argv: Sequence[str], name: str) -> list[str]:
    """``argv`` without ``name VALUE`` / ``name=VALUE`` (e.g. ``--nproc 2``), so the ranks do not relaunch again."""
    out: list[str] = []
    skip = False
    for a in argv:
        if skip:
            skip = False
            continue
        if a == name:
            skip = True
            continue
        if not a.startswith(f"{name}="):
            out.append(a)
    return out


def relaunch_under_torchrun(nproc: int, argv: Sequence[str], module: str = "rs_wsss_cli.main") -> int:
    """Run ``python -m torch.distributed.run --standalone --nproc-per-node nproc -m module *argv``; its exit code.

    Each rank runs one torch thread unless the user set OMP_NUM_THREADS (ranks share the CPU cores).
    """
    if nproc < 1:
        raise ValueError(f"nproc must be ≥ 1, got {nproc}")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "-m", module, *argv]
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    return subprocess.run(cmd, env=env).returncode
