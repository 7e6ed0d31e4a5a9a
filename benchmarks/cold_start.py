"""Cold start of `rs-wsss --help` (goal < 1 s): median of 7 runs in fresh processes."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

from _common import cli, machine

if __name__ == "__main__":
    times = []
    for _ in range(7):
        t = time.perf_counter()
        subprocess.run(cli() + ["--help"], check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - t)
    print(machine())
    print(f"| rs-wsss --help | median {statistics.median(times):.3f} s | min {min(times):.3f} | max {max(times):.3f} | "
          "goal < 1 s |")
    sys.exit(0)
