"""Inject the six one-line wiring faults of issue 22 into the engine, one at a time, and run the reference tests
(tests/reference/) against each: every fault must make them fail. Each fault keeps every shape, so tests that only
assert "finite", "right shape" or "differs from the switch-off run" cannot see them.

    python benchmarks/fault_injection.py            # prints one row per fault: failing tests / total

The source is patched in place and restored afterwards (also on Ctrl-C); run it on a clean checkout.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "rs_wsss" / "model"

# (fault, file, exact line fragment, its faulty replacement)
FAULTS = [
    ("USR ignores A_cd and the attention filter", "usr.py", "    if use_affinity:\n", "    if False:\n"),
    ("CLIP attention maps replaced by constants", "wsss.py",
     'cams = usr.usr_refine(cams, fcd, feats["attn"],',
     'cams = usr.usr_refine(cams, fcd, torch.full_like(feats["attn"], 1 / feats["attn"].shape[-1]),'),
    ("DINO levels replaced by noise before the DINO adapter", "wsss.py",
     "self.dino_adapter(x)", "self.dino_adapter(torch.randn_like(x))"),
    ("α and N0 hard-coded to 1", "wsss.py", "self.n0, cfg.usr.alpha,", "1, 1,"),
    ("VPE's top-k ignored", "vpe.py", "    return nonzero & (vals >= kth)", "    return nonzero"),
    ("VPE's similarity on unrelated features (another image's)", "wsss.py",
     "vpe.prototype_similarity(self.prototypes, fcd,", "vpe.prototype_similarity(self.prototypes, fcd.roll(1, 0),"),
]


def run_tests() -> tuple[int, int]:
    """(failed, total) of tests/reference."""
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/reference"],
                         cwd=ROOT, capture_output=True, text=True)
    tail = res.stdout.strip().splitlines()[-1] if res.stdout.strip() else res.stderr
    failed = int(m.group(1)) if (m := re.search(r"(\d+) failed", tail)) else 0
    passed = int(m.group(1)) if (m := re.search(r"(\d+) passed", tail)) else 0
    return failed, failed + passed


def main() -> int:
    failed, total = run_tests()
    print(f"{'fault':60s} reference tests failing")
    print(f"{'(none: the engine as it is)':60s} {failed}/{total}")
    ok = failed == 0
    for name, fname, old, new in FAULTS:
        path = MODEL / fname
        src = path.read_text()
        if src.count(old) != 1:
            print(f"{name:60s} NOT INJECTED: {old.strip()!r} not found once in {fname}")
            ok = False
            continue
        try:
            path.write_text(src.replace(old, new))
            failed, total = run_tests()
        finally:
            path.write_text(src)
        print(f"{name:60s} {failed}/{total}")
        ok = ok and failed > 0
    print("every fault caught" if ok else "SOME FAULT NOT CAUGHT")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
