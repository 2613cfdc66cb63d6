"""Training data in a resumable order: this rank's shard of a seeded per-epoch permutation, started mid-epoch when a
run resumes, and one seeded DataLoader per epoch."""

from __future__ import annotations

import random
import signal

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler

from util.errors import UserError, unwrap_worker_error


class ResumableSampler(DistributedSampler):
    """``DistributedSampler`` (this rank's shard of a seeded per-epoch permutation) that can start mid-epoch.

    ``set_epoch(e)`` picks the permutation (seed + e, as DistributedSampler does), ``set_start(k)`` skips the first
    ``k`` indices of this rank's shard. Works without a process group (``num_replicas=1, rank=0``). ``record`` (a
    list, or None) collects every index handed out, for tests.
    """

    def __init__(self, dataset, num_replicas: int, rank: int, seed: int):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=False)
        self.start = 0
        self.record: list[int] | None = None

    def set_start(self, start: int) -> None:
        self.start = int(start)

    def __iter__(self):
        for index in list(super().__iter__())[self.start:]:
            if self.record is not None:
                self.record.append(int(index))
            yield index

    def __len__(self) -> int:
        return max(0, self.num_samples - self.start)


def seed_everything(seed: int) -> None:
    """Seed python's, numpy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _seed_worker(worker_id: int) -> None:
    """DataLoader worker: numpy/python seeds from the worker's torch seed; Ctrl-C is left to the main process."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def loader_seed(seed: int, rank: int, epoch: int) -> int:
    """Seed of the DataLoader generator (and so of its workers) for one (seed, rank, epoch)."""
    return int(np.random.SeedSequence([seed, rank, epoch]).generate_state(1, np.uint32)[0])


def make_loader(dataset, sampler, opt, epoch: int) -> DataLoader:
    """One epoch's loader: batches of ``--batch_size`` (the last partial batch dropped), seeded workers."""
    generator = torch.Generator().manual_seed(loader_seed(opt.seed, opt.rank, epoch))
    return DataLoader(dataset, batch_size=opt.batch_size, sampler=sampler, num_workers=opt.num_threads,
                      drop_last=True, pin_memory=opt.device.type == "cuda", worker_init_fn=_seed_worker,
                      generator=generator)


def loader_batches(loader):
    """The batches of ``loader``; a UserError raised in a worker process comes out as raised there (torch wraps it in
    a message with the worker's traceback)."""
    iterator = iter(loader)
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except UserError as err:
            raise unwrap_worker_error(err) from None
        yield batch
