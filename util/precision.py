"""Mixed precision: ``--precision {fp32,bf16,fp16,auto}`` as autocast, plus the memory format.

``auto`` picks bf16 on a CPU with native bf16 instructions (AVX512-BF16 or AMX), bf16 on a CUDA GPU that supports
it (else fp16), and fp32 otherwise: on a CPU without native bf16 (e.g. AVX2 only), bf16 is emulated and far slower.
The memory format is channels_last except for fp32 on the CPU, which runs NCHW (``--channels_last`` /
``--no_channels_last`` force either): there inference takes NNPACK's Winograd convolutions
(``models.cr3net.WinogradConv2d``, NCHW only) and training's backward convolutions are faster in NCHW.
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path

import torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
NATIVE_BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo flags of CPUs with bf16 arithmetic


@functools.cache
def cpu_has_native_bf16() -> bool:
    """True where the CPU computes in bf16 natively (x86 AVX512-BF16 / AMX, read from /proc/cpuinfo)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(f in flags.split() for f in NATIVE_BF16_CPU_FLAGS)


def resolve_precision(precision: str, device) -> str:
    """The concrete precision (fp32, bf16 or fp16) that ``precision`` means on ``device``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    device = torch.device(device)
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type == "cpu" and cpu_has_native_bf16():
        return "bf16"
    return "fp32"


def autocast(device, precision: str):
    """Autocast context for a concrete precision; fp32 is a no-op."""
    device = torch.device(device)
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=DTYPES[precision])


def add_memory_format_flags(group) -> None:
    """``--channels_last`` / ``--no_channels_last`` (one of them at most) on an argparse group; neither = the rule of
    :func:`resolve_channels_last`."""
    both = group.add_mutually_exclusive_group()
    both.add_argument("--channels_last", action="store_true",
                      help="channels_last memory format whatever the precision (default: channels_last except for "
                      "fp32 on the CPU)")
    both.add_argument("--no_channels_last", action="store_true",
                      help="NCHW memory format whatever the precision (default: NCHW only for fp32 on the CPU, where "
                      "inference runs NNPACK's Winograd 3x3 convolutions, NCHW only)")


def resolve_channels_last(precision: str, device, channels_last: bool = False, no_channels_last: bool = False) -> bool:
    """Whether to run in channels_last: as forced by ``--channels_last`` / ``--no_channels_last``, else True except for
    fp32 (a concrete precision, from :func:`resolve_precision`) on the CPU.

    Measured on a 2-core AMD EPYC with oneDNN limited to AVX2 (a CPU without native bf16, where auto is fp32), ngf 64,
    448x640: inference 19.9 s in channels_last, 11.9 s in NCHW with the Winograd convolutions; a fp32 training step
    was 1.5x slower in channels_last than in NCHW on an AVX2 AMD CPU (README, Speed). bf16 and fp16, and CUDA, are
    faster in channels_last."""
    if channels_last and no_channels_last:
        raise ValueError("channels_last and no_channels_last both set")
    if channels_last or no_channels_last:
        return channels_last
    return not (torch.device(device).type == "cpu" and precision == "fp32")


def to_memory_format(x, channels_last: bool):
    """Module or 4-D tensor in channels_last (NHWC in memory) or the default format."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    if isinstance(x, torch.nn.Module):
        return x.to(memory_format=fmt)
    return x.contiguous(memory_format=fmt) if x.dim() == 4 else x


def maybe_compile(net: torch.nn.Module, enabled: bool) -> torch.nn.Module:
    """``torch.compile(net)`` when ``enabled`` (``--compile``), else ``net`` itself.

    The compiled module shares ``net``'s parameters, so weights loaded into ``net`` later are used. Its first call
    per input size compiles (tens of seconds to minutes on a CPU): it pays off over many images of one size.
    """
    return torch.compile(net) if enabled else net
