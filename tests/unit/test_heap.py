"""``infer.keep_heap``: glibc's malloc keeps freed tile-sized buffers in the heap for the next batch."""

from __future__ import annotations

import subprocess
import sys

import pytest

# a 16 MiB buffer (a tile batch's activation is this size) allocated and freed; then the heap's free bytes
PROBE = """
import ctypes, sys
from rs_wsss.heap import keep_heap
if sys.argv[1] == "1":
    assert keep_heap()
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]
libc.mallinfo2.restype = Info
p = libc.malloc(16 << 20)
ctypes.memset(p, 1, 16 << 20)
libc.free(p)
print(libc.mallinfo2().fordblks)
"""


def _free_after(keep: bool) -> int:
    out = subprocess.run([sys.executable, "-c", PROBE, "1" if keep else "0"], capture_output=True, text=True,
                         check=True)
    return int(out.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt/mallinfo2 are glibc's")
def test_keep_heap_keeps_a_freed_tile_buffer_for_reuse():
    """By default glibc maps a 16 MiB buffer on its own and unmaps it on free (the next batch page-faults it in
    again); with keep_heap it comes from the heap and stays there, free for the next allocation."""
    assert _free_after(keep=True) >= 16 << 20
    assert _free_after(keep=False) < 16 << 20
