"""Keep freed memory for the next pass instead of handing it back to the system (CPU, Linux with glibc).

A 1024² generator pass allocates about a gigabyte of short-lived activations (one 1024² × 32 float map is
128 MiB). glibc serves every block above its mmap threshold (at most 32 MiB) with a fresh ``mmap`` and unmaps it
on ``free``, so every pass page-faults and zeroes all of that memory again: on a 2-core AMD EPYC (torch 2.13.0,
``bench/bench_forward.py``) a quarter of a batch-1 pass was kernel time for those faults (≈ 236 000 faults, 0.49 s
of system CPU time, 1.33 s wall). With ``mmap`` turned off for ``malloc`` and the trim threshold raised, the blocks
come from the heap and the next pass reuses them (0 faults, 1.05 s; peak resident memory 885 MiB instead of
1044 MiB). This is what the usual advice to preload jemalloc or tcmalloc for PyTorch on CPUs buys, without a
preload.

The setting is process-wide and only touches ``malloc``'s tuning (``mallopt``); :func:`retain_freed_memory` is
called when a pipeline is loaded for the CPU. The price is memory: a process keeps what its largest pass used
mapped (a mixed loop of 40 full-size transfers, encodes and previews at batch 1–3 stayed at 2.5 GB resident where
glibc's default peaked at 2.0 GB and settled at 1.6 GB). ``DUALSTYLEGAN_MALLOC=system`` leaves glibc's defaults alone.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

# mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8
_DEFAULT_MMAP_MAX = 65536
_DEFAULT_TRIM_THRESHOLD = 128 * 1024
_RETAINED_TRIM_THRESHOLD = 1 << 30  # free memory at the top of the heap kept up to 1 GiB

_state: bool | None = None


def _libc():
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") else None


def retain_freed_memory(enabled: bool = True) -> bool:
    """Serve large blocks from the heap and keep freed ones for reuse (``enabled``), or restore glibc's defaults.

    Returns whether the setting is now in effect. Does nothing (returns False) off Linux/glibc and when
    ``DUALSTYLEGAN_MALLOC=system``. Allocations of threads other than the main one still follow glibc's per-thread
    arenas (so :func:`retain_freed_memory` also puts every thread on the main arena while enabled).
    """
    global _state
    if enabled and os.environ.get("DUALSTYLEGAN_MALLOC", "").lower() == "system":
        return False
    if _state is enabled:
        return enabled
    libc = _libc()
    if libc is None:
        return False
    if enabled:
        ok = (libc.mallopt(_M_MMAP_MAX, 0) and libc.mallopt(_M_TRIM_THRESHOLD, _RETAINED_TRIM_THRESHOLD)
              and libc.mallopt(_M_ARENA_MAX, 1))
    else:
        ok = (libc.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX) and libc.mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM_THRESHOLD)
              and libc.mallopt(_M_ARENA_MAX, 0))  # 0: glibc's own limit
        libc.malloc_trim(0)
    _state = enabled if ok else None
    return bool(ok) and enabled


__all__ = ["retain_freed_memory"]
