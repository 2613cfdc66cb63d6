"""train.py under torchrun: the process group (one device per process), agreement between ranks, and the per-rank
report that tests/test_ddp.py compares."""

from __future__ import annotations

import datetime
import hashlib
import json
import os
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.distributed as dist

COLLECTIVE_TIMEOUT_MINUTES = 60  # other ranks wait this long while rank 0 validates or writes checkpoints
RANK_REPORT_ENV = "CR3NET_RANK_REPORT_DIR"  # tests: each rank writes rank<r>.json (parameter hashes) here at the end


@contextmanager
def process_group(opt):
    """Set ``opt.rank`` and ``opt.world_size`` from torchrun's environment (1 process without it); with more than one
    process, give each its own GPU (``LOCAL_RANK``, unless ``--gpu_ids`` was given) and join a process group (NCCL on
    GPUs, gloo on CPUs) for the block, leaving it afterwards if this call created it."""
    opt.world_size = int(os.environ.get("WORLD_SIZE", "1"))
    opt.rank = int(os.environ.get("RANK", "0"))
    created = False
    if opt.world_size > 1:
        if opt.device.type == "cuda" and "gpu_ids" not in opt.explicit:
            local_rank = int(os.environ.get("LOCAL_RANK", "0"))  # one GPU per process
            opt.gpu_ids = [local_rank % torch.cuda.device_count()]
            opt.device = torch.device(f"cuda:{opt.gpu_ids[0]}")
            torch.cuda.set_device(opt.device)
        if not dist.is_initialized():
            backend = "nccl" if opt.device.type == "cuda" else "gloo"
            dist.init_process_group(backend, timeout=datetime.timedelta(minutes=COLLECTIVE_TIMEOUT_MINUTES))
            created = True
    try:
        yield
    finally:
        if created and dist.is_initialized():
            dist.destroy_process_group()


def any_rank(flag: bool, world_size: int) -> bool:
    """True if ``flag`` is true on any process (a collective: every rank must call it)."""
    if world_size == 1:
        return flag
    value = torch.tensor([int(flag)], dtype=torch.int32)
    if dist.get_backend() == "nccl":
        value = value.cuda()
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def state_digest(net) -> str:
    """SHA-256 of a network's state_dict (keys and values, logical layout)."""
    digest = hashlib.sha256()
    for key, value in sorted(getattr(net, "module", net).state_dict().items()):
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def write_rank_report(folder: Path, trainer, sampler, iteration: int) -> None:
    """``<folder>/rank<r>.json``: this rank's iteration, G and D digests, checkpoint writes and sample indices."""
    folder.mkdir(parents=True, exist_ok=True)
    report = {"rank": trainer.opt.rank, "iteration": iteration, "G": state_digest(trainer.netG),
              "D": state_digest(trainer.netD), "checkpoint_writes": trainer.checkpoint_writes,
              "indices": sampler.record}
    (folder / f"rank{trainer.opt.rank}.json").write_text(json.dumps(report))
