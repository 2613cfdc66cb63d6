"""Train CR3Net (upstream recipe: Adam 1e-4, batch 2, 80 epochs of 4000 samples, LSGAN + VGG + pixel losses).

    python train.py --dataroot datasets/train --name my_run                     # one process (GPU 0, else CPU)
    python train.py --dataroot datasets/train --name my_run --continue_train     # resume exactly from 'latest'
    torchrun --nproc_per_node=4 train.py --dataroot datasets/train --name my_run # DDP, one process per GPU

The loop counts iterations (optimisation steps): an epoch is ``samples_per_epoch / (batch_size x processes)``
iterations and the run has ``n_epochs`` of them unless ``--n_iters`` says otherwise. ``--batch_size`` is per
process. Under torchrun (WORLD_SIZE > 1) every process joins a process group (NCCL on GPUs, gloo on CPUs), G and D
are wrapped in DistributedDataParallel, each process reads its own shard of every epoch (the same shuffling seed
everywhere), and only rank 0 prints, validates and writes files.

Files under ``<checkpoints_dir>/<name>/``: ``train_opt.txt``; ``<label>_net_G_T.pth`` / ``<label>_net_D.pth`` (bare
state_dicts) and ``<label>_train_state.pth`` for the labels ``latest`` (every ``--save_latest_freq`` iterations and
at the end), ``iter_<n>`` (with ``--save_by_iter``), ``<epoch>`` (every ``--save_epoch_freq`` epochs) and ``final``;
``loss_log.txt``, ``web/index.html`` and ``val_log.csv`` (validation PSNR/SSIM).

Resuming is exact: the data of a sample is a function of (seed, epoch, index) and the loop restarts mid-epoch at the
first unconsumed sample, so N iterations in one run and N/2 + N/2 with ``--continue_train`` give the same weights
(bitwise on a CPU with ``--num_threads 0``). A first Ctrl-C stops after the current iteration, saves ``latest`` and
exits with status 130 (a second one aborts without saving more; a checkpoint being written is finished first). A
non-finite loss, or a file that cannot be written (disk full), stops the run with one line and status 2, leaving every
checkpoint as it was. Other kills lose at most the iterations since the last ``latest``: the three files of a label
are written as one set (``models.checkpoint_sets``: train state first, the authority), and at its start train.py
deletes the temporary files of killed writes and completes a set whose renames a kill cut short; a resumed run
drops the loss_log.txt lines and val_log.csv rows of the iterations it redoes.
"""

from __future__ import annotations

import csv
import datetime
import hashlib
import json
import math
import os
import random
import signal
import threading
import time
from argparse import Namespace
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler

from data import create_dataset, create_test_loader, find_dataset_using_name
from models import create_model
from models.checkpoint_sets import repair_pending_sets
from models.inference import separate
from models.rawrr_training import RAWRRTrainer
from options.base_options import experiment_dir, save_options
from options.train_options import TrainOptions
from util.allocator import keep_buffers_mapped
from util.errors import FileSystemError, UserError, run_cli, unwrap_worker_error
from util.files import atomic_write_text, remove_dead_temps
from util.learning_curve import write_learning_curve
from util.metrics import LPIPS, mean_rows, score_separation, to_uint8
from util.visualizer import Visualizer, drop_losses_after

COLLECTIVE_TIMEOUT_MINUTES = 60  # other ranks wait this long while rank 0 validates or writes checkpoints
INTERRUPTED_EXIT_CODE = 130  # the shell's status for a process stopped by SIGINT
RANK_REPORT_ENV = "CR3NET_RANK_REPORT_DIR"  # tests: each rank writes rank<r>.json (parameter hashes) here at the end
VAL_METRICS = ("T_psnr", "T_ssim", "T_lpips", "I_psnr", "I_ssim", "I_lpips", "R_psnr", "R_ssim", "R_lpips", "gain_psnr")
VAL_COLUMNS = ("iteration", "epoch", "set", "images", *VAL_METRICS, "worst_gain_psnr")  # val_log.csv
PROGRESS_GEOMETRY = ("iters_per_epoch", "batch_size", "world_size", "dataset_size", "seed")


# ------------------------------------------------------------------------------------------------ data
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


def due(iteration: int, freq: int) -> bool:
    """True every ``freq`` iterations (never for ``freq`` <= 0)."""
    return freq > 0 and iteration % freq == 0


def seed_everything(seed: int) -> None:
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


# ------------------------------------------------------------------------------------------------ validation
class Validator:
    """Validation on every ``--val_dataroot`` folder, each a set of its own, exactly as test.py scores it: the
    generator through ``models.inference.separate``, 8-bit quantisation ``util.metrics.to_uint8``, then
    ``util.metrics.score_separation`` and ``mean_rows``. One row per set and validation goes to
    ``<exp>/val_log.csv`` (:data:`VAL_COLUMNS`); ``gain_psnr`` is the mean over images of T PSNR minus the input's
    PSNR (the do-nothing baseline), ``worst_gain_psnr`` the smallest of those gains."""

    def __init__(self, opt):
        self.sets: list[tuple[str, object]] = []
        roots = opt.val_dataroot if isinstance(opt.val_dataroot, list | tuple) else [opt.val_dataroot]
        for root in roots:
            val_opt = Namespace(**vars(opt))
            val_opt.dataroot, val_opt.phase = root, "test"
            val_opt.eval_resize, val_opt.num_test = opt.val_resize, opt.val_num
            dataset = find_dataset_using_name(opt.dataset_mode, "test")(val_opt)
            if "T" not in getattr(dataset, "roles", {"T": None}):
                raise UserError(f"--val_dataroot {root} has no ground truth: it needs testA1_rgb + testA1_raw")
            name = Path(root).name or str(root)
            taken = {n for n, _ in self.sets}
            unique, k = name, 2
            while unique in taken:
                unique, k = f"{name}_{k}", k + 1
            self.sets.append((unique, create_test_loader(val_opt, dataset)))
        self.csv_path = experiment_dir(opt) / "val_log.csv"
        self.use_lpips = not getattr(opt, "val_no_lpips", False)
        self._lpips = None

    def _lpips_model(self, device):
        if self.use_lpips and self._lpips is None:
            self._lpips = LPIPS(device=device)
        return self._lpips

    @torch.no_grad()
    def run(self, model, iteration: int, epoch: int) -> dict[str, dict]:
        """Validate on every set; returns ``{set name: {column: value}}`` and appends the rows to val_log.csv."""
        net = model.netG_T
        net.eval()
        lpips_model = self._lpips_model(model.device)
        results = {}
        try:
            for name, loader in self.sets:
                rows = []
                for batch in loader:
                    out = separate(net, batch["I_rgb"].to(model.device), batch["I_raw"].to(model.device),
                                   model.precision, model.channels_last)
                    images = {"I": to_uint8(batch["I_rgb"][0]), "T": to_uint8(out["T_rgb"][0]),
                              "R": to_uint8(out["R_rgb"][0]), "T_gt": to_uint8(batch["T_rgb"][0])}
                    if "R_rgb" in batch:
                        images["R_gt"] = to_uint8(batch["R_rgb"][0])
                    row = score_separation(images, lpips_model)
                    row["gain_psnr"] = row["T_psnr"] - row["I_psnr"]
                    rows.append(row)
                means = mean_rows(rows, VAL_METRICS)
                gains = [r["gain_psnr"] for r in rows if math.isfinite(r["gain_psnr"])]
                means["worst_gain_psnr"] = min(gains) if gains else float("nan")
                results[name] = {"iteration": iteration, "epoch": epoch, "set": name, "images": len(rows), **means}
        finally:
            net.train()
        new = not self.csv_path.is_file()
        with open(self.csv_path, "a", newline="") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow(VAL_COLUMNS)
            for row in results.values():
                writer.writerow([_val_cell(row.get(c, float("nan"))) for c in VAL_COLUMNS])
        return results


def _val_cell(value):
    return f"{value:.6f}" if isinstance(value, float) else value


# ------------------------------------------------------------------------------------------------ logging
def drop_val_rows_after(csv_path, iteration: int) -> int:
    """Delete the rows of iterations after ``iteration`` from a val_log.csv (a resumed run redoes them), keeping the
    header; the file is replaced atomically. Returns the number of rows dropped."""
    path = Path(csv_path)
    if not path.is_file():
        return 0
    lines = path.read_text().splitlines(keepends=True)

    def redone(line: str) -> bool:
        first = line.split(",", 1)[0].strip()
        return first.isdigit() and int(first) > iteration

    kept = [line for line in lines if not redone(line)]
    if len(kept) != len(lines):
        atomic_write_text(path, "".join(kept))
    return len(lines) - len(kept)


class ProgressMeter:
    """Mean losses, samples/s and ETA over the iterations since the last report."""

    def __init__(self, n_iters: int, samples_per_iteration: int):
        self.n_iters, self.samples_per_iteration = n_iters, samples_per_iteration
        self.reset()

    def reset(self):
        self.sums: dict[str, float] = {}
        self.count = 0
        self.start = time.perf_counter()

    def add(self, losses: dict[str, float]) -> None:
        for k, v in losses.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        self.count += 1

    def report(self, iteration: int, epoch: int, epoch_step: int, iters_per_epoch: int, lr: float):
        """(line, mean losses) for the iterations since the last report; starts a new window."""
        means = {k: v / max(1, self.count) for k, v in self.sums.items()}
        seconds = max(time.perf_counter() - self.start, 1e-9)
        speed = self.count * self.samples_per_iteration / seconds
        eta = (self.n_iters - iteration) * seconds / max(1, self.count)
        losses = " ".join(f"{k} {v:.4g}" for k, v in means.items() if k not in ("real_fraction", "R_fraction"))
        real = f" | real {means['real_fraction']:.2f}" if "real_fraction" in means else ""
        real += f" | with R {means['R_fraction']:.2f}" if "R_fraction" in means else ""
        line = (f"iter {iteration}/{self.n_iters} | epoch {epoch} ({epoch_step}/{iters_per_epoch}) | {losses}{real} | "
                f"lr {lr:.3g} | {speed:.2f} samples/s | ETA {format_seconds(eta)}")
        self.reset()
        return line, means


def format_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    days, seconds = divmod(seconds, 86400)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    if days:
        return f"{days}d{hours:02d}h{minutes:02d}m"
    return f"{hours}h{minutes:02d}m{seconds:02d}s" if hours else f"{minutes}m{seconds:02d}s"


def state_digest(net) -> str:
    """SHA-256 of a network's state_dict (keys and values, logical layout)."""
    digest = hashlib.sha256()
    for key, value in sorted(getattr(net, "module", net).state_dict().items()):
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class GracefulStop:
    """While active (main thread only), the first SIGINT asks the loop to stop after the current iteration; a
    second one raises KeyboardInterrupt at once, or, inside :meth:`deferred` (a checkpoint being written), as soon as
    that block is done, so that an abort never cuts a checkpoint set in two."""

    def __init__(self):
        self.requested = False
        self.aborted = False
        self._deferring = 0
        self._previous = None

    def _handler(self, signum, frame):
        if self.requested:
            if self._deferring:
                self.aborted = True
                print("\ninterrupt: aborting as soon as the checkpoint being written is complete", flush=True)
                return
            raise KeyboardInterrupt
        self.requested = True
        print("\ninterrupt: stopping after this iteration and saving 'latest' (Ctrl-C again: abort without saving "
              "more; a checkpoint being written is finished first)", flush=True)

    @contextmanager
    def deferred(self):
        """A block that a second SIGINT does not interrupt; KeyboardInterrupt is raised when it ends instead."""
        self._deferring += 1
        try:
            yield
        finally:
            self._deferring -= 1
        if self.aborted and not self._deferring:
            raise KeyboardInterrupt

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False


def _agreed(flag: bool, world_size: int) -> bool:
    """True if ``flag`` is true on any process."""
    if world_size == 1:
        return flag
    value = torch.tensor([int(flag)], dtype=torch.int32)
    if dist.get_backend() == "nccl":
        value = value.cuda()
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


# ------------------------------------------------------------------------------------------------ main
def main(argv=None) -> dict:
    keep_buffers_mapped()  # large buffers stay mapped between layers (util/allocator.py)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    parser = TrainOptions()
    opt = parser.parse(argv, save=False)
    opt.rank, opt.world_size = rank, world_size
    created_group = False
    if world_size > 1:
        if opt.device.type == "cuda" and "gpu_ids" not in opt.explicit:
            local_rank = int(os.environ.get("LOCAL_RANK", "0"))  # one GPU per process
            opt.gpu_ids = [local_rank % torch.cuda.device_count()]
            opt.device = torch.device(f"cuda:{opt.gpu_ids[0]}")
            torch.cuda.set_device(opt.device)
        if not dist.is_initialized():
            backend = "nccl" if opt.device.type == "cuda" else "gloo"
            dist.init_process_group(backend, timeout=datetime.timedelta(minutes=COLLECTIVE_TIMEOUT_MINUTES))
            created_group = True
    try:
        return train(opt, parser)
    finally:
        if created_group and dist.is_initialized():
            dist.destroy_process_group()


def train(opt, parser) -> dict:
    rank, world_size = opt.rank, opt.world_size
    is_main = rank == 0
    log = print if is_main else (lambda *a, **k: None)
    seed_everything(opt.seed)

    dataset = create_dataset(opt)
    sampler = ResumableSampler(dataset, num_replicas=world_size, rank=rank, seed=opt.seed)
    iters_per_epoch = sampler.num_samples // opt.batch_size
    if iters_per_epoch == 0:
        raise UserError(f"--batch_size {opt.batch_size} is larger than the {sampler.num_samples} samples per epoch and "
                        "process: lower --batch_size or raise --samples_per_epoch")
    opt.n_iters = opt.n_iters if opt.n_iters > 0 else opt.n_epochs * iters_per_epoch
    opt.lr_decay_iters = opt.lr_decay_iters if opt.lr_decay_iters > 0 else max(1, opt.n_iters // 2)
    opt.n_iters_decay_start = opt.lr_decay_iters  # models.networks.get_scheduler's name for the linear policy
    validator = Validator(opt) if opt.val_dataroot else None  # every rank: a bad folder fails everywhere at once

    model = create_model(opt)
    trainer = RAWRRTrainer(model, opt, world_size)
    progress = {"iteration": 0, "epoch": opt.epoch_count, "epoch_step": 0}
    exp = experiment_dir(opt)
    saved_latest = {"iteration": None}  # iteration of the 'latest' set on disk, once this run knows it

    def kept() -> str:
        """What a stop at this point leaves, for messages."""
        if saved_latest["iteration"] is not None:
            return f"every checkpoint in {exp} is complete, 'latest' holds iteration {saved_latest['iteration']}"
        if (exp / "latest_train_state.pth").is_file():
            return f"every checkpoint in {exp} is complete, 'latest' is from before this run"
        return f"no checkpoint of this run was written yet in {exp}"

    @contextmanager
    def writing(path, intact=None):
        """An OSError (disk full, permissions) while writing ``path`` becomes one line saying what is intact (also
        the FileSystemError that util.files' atomic writers make of one: it names the file written)."""
        try:
            yield
        except FileSystemError as err:
            if err.reason is None:
                raise
            raise UserError(f"cannot write {err.path or path}: {err.reason}; {intact or kept()}: free disk space (or "
                            "fix permissions), then resume with --continue_train") from None
        except OSError as err:
            where = err.filename or path
            reason = err.strerror or str(err) or type(err).__name__
            raise UserError(f"cannot write {where}: {reason}; {intact or kept()}: free disk space (or fix "
                            "permissions), then resume with --continue_train") from None

    tidy = "the next start of train.py tidies up again"
    if is_main:  # the debris of a killed run: its temporary files, a checkpoint set cut short while being saved
        with writing(exp, tidy):
            removed = remove_dead_temps(exp)
            notes = repair_pending_sets(exp)
        if removed:
            log(f"note: deleted {len(removed)} temporary file(s) of interrupted writes in {exp}: "
                f"{', '.join(p.name for p in removed)}")
        for note in notes:
            log(f"note: {note}")
    if opt.continue_train:
        with writing(exp, tidy):
            saved = trainer.load(opt.epoch, repair=is_main)
        for path in trainer.repaired:
            log(f"note: {path} did not match {opt.epoch}_train_state.pth (a save was cut short): rewritten from it")
        progress = {k: saved[k] for k in progress}
        current = {"iters_per_epoch": iters_per_epoch, "batch_size": opt.batch_size, "world_size": world_size,
                   "dataset_size": len(dataset), "seed": opt.seed}
        changed = [k for k in PROGRESS_GEOMETRY if saved.get(k) != current[k]]
        if changed and progress["epoch_step"] > 0:
            what = ", ".join(f"{k} {saved.get(k)} -> {current[k]}" for k in changed)
            log(f"warning: {what} since the saved run: the rest of epoch {progress['epoch']} cannot be replayed; "
                f"continuing with epoch {progress['epoch'] + 1}")
            progress["epoch"] += 1
            progress["epoch_step"] = 0
        for flag in ("epoch_count", "init_from"):
            if flag in opt.explicit:
                log(f"note: --{flag} is ignored when resuming (the training state gives the weights and the epoch)")
        log(f"resumed from {trainer.paths(opt.epoch)['train_state']} at iteration {progress['iteration']}, "
            f"epoch {progress['epoch']} ({progress['epoch_step']}/{iters_per_epoch})")
        if opt.epoch == "latest" and progress == {k: saved[k] for k in progress}:
            saved_latest["iteration"] = progress["iteration"]
        if is_main:  # iterations after the resumed one are redone: forget what the killed run logged of them
            with writing(exp / "loss_log.txt"):
                lines = drop_losses_after(exp / "loss_log.txt", progress["iteration"])
            with writing(exp / "val_log.csv"):
                rows = drop_val_rows_after(exp / "val_log.csv", progress["iteration"])
            if lines or rows:
                log(f"note: iterations after {progress['iteration']} are redone: dropped their {lines} line(s) of "
                    f"loss_log.txt and {rows} row(s) of val_log.csv")
    else:
        if opt.init_from:
            trainer.init_generator_from(opt.init_from)
            log(f"generator initialised from {opt.init_from}")
        if is_main and (exp / "latest_train_state.pth").is_file():
            log(f"note: {exp} holds an earlier run; this new run overwrites its checkpoints (resume: --continue_train)")
    if is_main:
        with writing(exp / f"{opt.phase}_opt.txt"):
            save_options(opt, parser.parser)
    with writing(exp / "loss_log.txt"):
        visualizer = Visualizer(opt)

    n_params = sum(p.numel() for p in trainer.netG.parameters())
    log(f"training {opt.name}: {len(dataset)} samples/epoch, {world_size} process(es) x batch {opt.batch_size}, "
        f"{iters_per_epoch} iterations/epoch, {opt.n_iters} iterations; G ngf {opt.ngf} num_cab {opt.num_cab} "
        f"({n_params:,} parameters); perceptual loss on {trainer.vgg_name}"
        f"{'' if trainer.vgg_name == 'vgg19' else ' (upstream uses VGG19)'}; device {opt.device}, "
        f"precision {trainer.precision}, channels_last {trainer.channels_last}", flush=True)
    if getattr(opt, "raw_source", "sensor") == "rgb":
        log("RAW input: made from every sample's RGB by the fixed inverse ISP (--raw_source rgb: the RGB-only twin; "
            "validation likewise)", flush=True)
    real = getattr(dataset, "real_items", [])
    if real and getattr(dataset, "real_ratio", 0) > 0:
        no_r = sum("R_rgb" not in e["paths"] for e in real)
        no_raw = sum("I_raw" not in e["paths"] for e in real)
        held = getattr(dataset, "held_out_real", 0)
        log(f"real samples: {len(real)} ({no_r} without R, {no_raw} with pseudo-RAW"
            f"{f', {held} held out by --holdout_every' if held else ''}), each sample real with probability "
            f"{dataset.real_ratio:g}", flush=True)

    record = os.environ.get(RANK_REPORT_ENV)
    if record:
        sampler.record = []
    meter = ProgressMeter(opt.n_iters, opt.batch_size * world_size)
    it, epoch, step = progress["iteration"], progress["epoch"], progress["epoch_step"]
    last_val = None

    def current_progress():
        return {"iteration": it, "epoch": epoch, "epoch_step": step, "iters_per_epoch": iters_per_epoch,
                "batch_size": opt.batch_size, "world_size": world_size, "dataset_size": len(dataset),
                "seed": opt.seed, "n_iters": opt.n_iters}

    stop = GracefulStop()

    def save(label):
        """Write one checkpoint set (rank 0); a second Ctrl-C waits until it is complete."""
        if is_main and not (label == "latest" and saved_latest["iteration"] == it):
            with stop.deferred():
                trainer.save(label, current_progress())
                if label == "latest":
                    saved_latest["iteration"] = it

    def validate():
        nonlocal last_val
        if validator is None or not is_main:
            return
        results = validator.run(model, it, epoch)
        last_val = results
        for name, m in results.items():
            lp = f" LPIPS {m['T_lpips']:.4f} ({m['I_lpips']:.4f})" if "T_lpips" in m else ""
            r = f" | R {m['R_psnr']:.2f} dB" if "R_psnr" in m else ""
            log(f"validation {name} at iteration {it}: T {m['T_psnr']:.2f} dB ({m['gain_psnr']:+.2f} dB over the "
                f"input, worst image {m['worst_gain_psnr']:+.2f}) SSIM {m['T_ssim']:.4f} ({m['I_ssim']:.4f}){lp}{r} "
                f"on {m['images']} image(s)", flush=True)
        visualizer.plot_validation(it, results)
        try:
            write_learning_curve(validator.csv_path, exp / "learning_curve.png", title=opt.name)
        except (OSError, ValueError, FileSystemError) as err:  # a figure only: training goes on
            log(f"warning: could not draw {exp / 'learning_curve.png'}: {err}")

    try:
        with stop:
            while it < opt.n_iters and not stop.requested:
                sampler.set_epoch(epoch)
                sampler.set_start(step * opt.batch_size)
                if hasattr(dataset, "set_epoch"):
                    dataset.set_epoch(epoch)
                for batch in loader_batches(make_loader(dataset, sampler, opt, epoch)):
                    trainer.set_input(batch)
                    losses = trainer.optimize_parameters(it + 1)
                    it += 1
                    step += 1
                    meter.add(losses)
                    if is_main and due(it, opt.print_freq):
                        line, means = meter.report(it, epoch, step, iters_per_epoch, trainer.learning_rate())
                        log(line, flush=True)
                        with writing(visualizer.log_path):
                            visualizer.plot_losses(it, means)
                        visualizer.plot_lr(it, trainer.learning_rate())
                    if is_main and due(it, opt.display_freq):
                        visuals = trainer.get_current_visuals()
                        visualizer.display_images(it, visuals)
                        with writing(visualizer.web_dir):
                            visualizer.save_html(it, visuals)
                    if step == iters_per_epoch:  # end of an epoch
                        finished, epoch, step = epoch, epoch + 1, 0
                        if opt.save_epoch_freq > 0 and finished % opt.save_epoch_freq == 0:
                            save(str(finished))
                            log(f"end of epoch {finished}: saved checkpoint '{finished}'", flush=True)
                    if due(it, opt.save_latest_freq):
                        save("latest")
                        if opt.save_by_iter:
                            save(f"iter_{it}")
                        log(f"saved checkpoint 'latest' at iteration {it}", flush=True)
                    if due(it, opt.val_freq):
                        with writing(exp / "val_log.csv"):
                            validate()
                    if _agreed(stop.requested, world_size):
                        stop.requested = True
                        break
                    if it >= opt.n_iters:
                        break
            if stop.requested:
                save("latest")
                log(f"stopped by interrupt at iteration {it}: saved 'latest' in {exp}; resume with --continue_train")
                raise SystemExit(INTERRUPTED_EXIT_CODE)
            save("latest")
            save("final")
    except KeyboardInterrupt:
        log(f"aborted at iteration {it}: {kept()}; resume with --continue_train")
        raise SystemExit(INTERRUPTED_EXIT_CODE) from None

    if validator is not None and (last_val is None or next(iter(last_val.values()))["iteration"] != it):
        with writing(exp / "val_log.csv"):
            validate()
    log(f"training done: {it} iterations; weights {exp / 'final_net_G_T.pth'}", flush=True)
    if record:
        _write_rank_report(Path(record), trainer, sampler, it)
    return {"iteration": it, "epoch": epoch, "epoch_step": step, "exp_dir": exp, "val": last_val,
            "vgg": trainer.vgg_name}


def _write_rank_report(folder: Path, trainer, sampler, iteration) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    report = {"rank": trainer.opt.rank, "iteration": iteration, "G": state_digest(trainer.netG),
              "D": state_digest(trainer.netD), "checkpoint_writes": trainer.checkpoint_writes,
              "indices": sampler.record}
    (folder / f"rank{trainer.opt.rank}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    run_cli(main)
