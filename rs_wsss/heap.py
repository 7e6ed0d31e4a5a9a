"""The C allocator's reuse of freed memory during inference (``infer.keep_heap``); no torch import, so exported
graphs (ONNX Runtime, OpenVINO) use it too."""

from __future__ import annotations

# glibc mallopt parameters (malloc.h); a tile's activations (tens of MiB each) are freed and allocated again every
# batch: by default each one is a fresh mmap (page-faulted in, zeroed by the kernel) or trimmed back to the system
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
MMAP_THRESHOLD_MAX = 32 << 20  # glibc's ceiling for M_MMAP_THRESHOLD on 64-bit systems


def keep_heap() -> bool:
    """Let glibc's malloc keep freed memory for reuse (``infer.keep_heap``): buffers up to 32 MiB come from the heap,
    which is neither trimmed nor grown by less than 1 GiB of address space at a time (pages are used only when
    touched). On the 2.7 Mpx segment this cut system time from ≈ 1.2 to ≈ 0.6 CPU s for ≈ 0.2 GB more peak memory
    (benchmarks/RESULTS.md, issue 24). False where the C library is not glibc (nothing is changed)."""
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (macOS, Windows, musl without mallopt)
        return False
    return all(mallopt(param, value) == 1 for param, value in ((M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX),
                                                              (M_TRIM_THRESHOLD, 2**31 - 1), (M_TOP_PAD, 1 << 30)))
