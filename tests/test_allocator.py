"""util.allocator: with it, a large buffer freed and allocated again is reused without page faults (what every entry
point relies on for speed); CR3NET_MALLOC=default leaves glibc's behaviour (a fresh mmap every time)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROBE = """
import json, resource
import torch
from util.allocator import keep_buffers_mapped
active = keep_buffers_mapped()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(12):  # 64 MiB, above glibc's largest mmap threshold; the first rounds fill malloc's small-chunk
    torch.empty(64 << 20, dtype=torch.uint8).fill_(1)  # caches (posix_memalign leaves a remainder each time)
before = faults()
for _ in range(4):
    torch.empty(64 << 20, dtype=torch.uint8).fill_(1)
print(json.dumps({"active": active, "faults": faults() - before}))
"""


def probe(env_value):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("CR3NET_MALLOC", None)
    if env_value is not None:
        env["CR3NET_MALLOC"] = env_value
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, cwd=ROOT, check=True,
                         timeout=120).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's (Linux)")
def test_large_buffers_are_reused_without_page_faults():
    kept, default = probe(None), probe("default")
    if not kept["active"]:
        pytest.skip("this C library has no mallopt (not glibc)")
    assert default["active"] is False
    pages = 4 * (64 << 20) // os.sysconf("SC_PAGE_SIZE")  # what four fresh 64 MiB buffers fault in
    assert default["faults"] > pages // 4  # glibc: every buffer is a fresh mapping
    assert kept["faults"] < pages // 100  # kept: the same pages, already mapped
