"""No page-fault tax on the CPU: keep the network's large buffers mapped between uses.

glibc's malloc serves every request above its mmap threshold (at most 32 MiB on 64-bit Linux) with a fresh
``mmap`` and hands it back with ``munmap`` on free. A full-resolution activation of CR3Net is such a buffer, so each
forward pass page-faults and zeroes every large activation again: on a 2-core Xeon a third of the CPU time of
``test.py`` was kernel time. :func:`keep_buffers_mapped` tells glibc (``mallopt``) to take every block from the
heap (``M_MMAP_MAX = 0``) and not to give freed memory back to the system (a trim threshold of 2 GiB and a top pad of
64 MiB), so a buffer freed after one layer is reused, already mapped, by the next.

Every entry point (train.py, test.py, remove_reflection.py, scripts/benchmark.py) calls it at start-up. The cost: the
process keeps its peak memory until it ends (it would reach that peak anyway). ``CR3NET_MALLOC=default`` leaves
glibc's behaviour alone; elsewhere than Linux with glibc (macOS, musl) the call does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import sys

ENV = "CR3NET_MALLOC"  # "default": leave malloc as it is
M_TRIM_THRESHOLD = -1  # glibc <malloc.h> parameter numbers
M_TOP_PAD = -2
M_MMAP_MAX = -4
TRIM_THRESHOLD_BYTES = 2**31 - 1  # the largest int: freed heap memory is kept
TOP_PAD_BYTES = 64 * 1024 * 1024  # grow the heap in steps of at least this much


@functools.cache
def keep_buffers_mapped() -> bool:
    """Configure glibc malloc as described in the module doc (once per process); True where it took effect."""
    if os.environ.get(ENV, "").strip().lower() == "default" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # no glibc (musl, static builds)
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    ok = mallopt(M_MMAP_MAX, 0) == 1
    ok = mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1 and ok
    ok = mallopt(M_TOP_PAD, TOP_PAD_BYTES) == 1 and ok
    return ok
