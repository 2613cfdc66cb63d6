"""Measuring a run: wall and CPU seconds (synchronised on CUDA), resident memory and its peak, the processor's name.

One home for what the measuring scripts share (scripts/benchmark.py, benchmark_memory.py, measure_work_resolution.py,
raw_vs_rgb.py). Memory comes from Linux's /proc/self/status (``VmRSS`` now, ``VmHWM`` its peak, which
:func:`reset_peak_rss` resets), else from ``getrusage`` (the peak since the start only).
"""

from __future__ import annotations

import gc
import os
import platform
import time
from pathlib import Path

import torch


def synchronize(device) -> None:
    """Wait for the work queued on ``device`` where it is a CUDA device (nothing to wait for on the CPU)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device="cpu") -> tuple[float, float, float]:
    """(wall, user CPU, system CPU) seconds of one ``fn()``, synchronised on CUDA before and after."""
    synchronize(device)
    start, cpu = time.perf_counter(), os.times()
    fn()
    synchronize(device)
    end = os.times()
    return time.perf_counter() - start, end.user - cpu.user, end.system - cpu.system


def status_kib(field: str) -> int | None:
    """A ``kB`` field of /proc/self/status (``VmRSS``, ``VmHWM``) in KiB, or None where there is no /proc."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def peak_rss_kib() -> int:
    """Peak resident memory of this process in KiB since the last :func:`reset_peak_rss` (VmHWM), else since its
    start (``ru_maxrss``, kilobytes on Linux)."""
    peak = status_kib("VmHWM")
    if peak is not None:
        return peak
    import resource  # POSIX only

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def peak_rss_gib() -> float:
    """:func:`peak_rss_kib` in GiB."""
    return peak_rss_kib() / 2**20


def reset_peak_rss() -> bool:
    """Reset the process's peak resident memory (Linux: ``5`` to /proc/self/clear_refs); False where not possible."""
    gc.collect()
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def cpu_name() -> str:
    """The processor's model name from /proc/cpuinfo, else what :mod:`platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"
