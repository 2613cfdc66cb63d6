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
``loss_log.txt``, ``web/index.html``, ``val_log.csv`` (validation PSNR/SSIM/LPIPS per ``--val_dataroot`` set, scored
as test.py scores: ``models.evaluation``) and ``learning_curve.png``.

Resuming is exact: the data of a sample is a function of (seed, epoch, index) and the loop restarts mid-epoch at the
first unconsumed sample, so N iterations in one run and N/2 + N/2 with ``--continue_train`` give the same weights
(bitwise on a CPU with ``--num_threads 0``). A first Ctrl-C stops after the current iteration, saves ``latest`` and
exits with status 130 (a second one aborts without saving more; a checkpoint being written is finished first). A
non-finite loss, or a file that cannot be written (disk full), stops the run with one line and status 2, leaving every
checkpoint as it was. Other kills lose at most the iterations since the last ``latest``: the three files of a label
are written as one set (``models.checkpoint_sets``: train state first, the authority), and at its start train.py
deletes the temporary files of killed writes and completes a set whose renames a kill cut short; a resumed run
drops the loss_log.txt lines and val_log.csv rows of the iterations it redoes.

This file keeps the loop and its flags (options/train_options.py); its helpers live in ``training/``: ``loading``
(the resumable sampler, seeded loaders), ``validation``, ``progress`` (the progress line), ``interrupts`` (Ctrl-C),
``distributed`` (the torchrun process group) and ``write_errors``.
"""

from __future__ import annotations

import os
from pathlib import Path

from data import create_dataset
from models import create_model
from models.checkpoint_sets import repair_pending_sets
from models.networks import resolve_schedule
from models.rawrr_training import RAWRRTrainer
from options.base_options import experiment_dir, save_options
from options.train_options import TrainOptions
from training.distributed import RANK_REPORT_ENV, any_rank, process_group, write_rank_report
from training.interrupts import INTERRUPTED_EXIT_CODE, GracefulStop
from training.loading import ResumableSampler, loader_batches, make_loader, seed_everything
from training.progress import ProgressMeter, due
from training.validation import Validator, drop_val_rows_after
from training.write_errors import write_errors_as_one_line
from util.allocator import keep_buffers_mapped
from util.errors import UserError, run_cli
from util.files import remove_dead_temps
from util.visualizer import Visualizer, drop_losses_after

PROGRESS_GEOMETRY = ("iters_per_epoch", "batch_size", "world_size", "dataset_size", "seed")


def main(argv=None) -> dict:
    keep_buffers_mapped()  # large buffers stay mapped between layers (util/allocator.py)
    parser = TrainOptions()
    opt = parser.parse(argv, save=False)
    with process_group(opt):  # sets opt.rank and opt.world_size; under torchrun, one device and process each
        return train(opt, parser)


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
    resolve_schedule(opt, iters_per_epoch)
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

    def writing(path, intact=None):
        """A failed write of ``path`` becomes one line saying what is intact (default: :func:`kept`)."""
        return write_errors_as_one_line(path, intact or kept)

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
        last_val = validator.run(model, it, epoch)
        for line in validator.summary_lines(last_val, it):
            log(line, flush=True)
        visualizer.plot_validation(it, last_val)
        warning = validator.draw_learning_curve()  # a figure only: training goes on without it
        if warning:
            log(warning)

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
                        visuals = trainer.display_visuals()  # under the dashboard's names (T_rgb, T_gt_rgb, ...)
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
                    if any_rank(stop.requested, world_size):
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
        write_rank_report(Path(record), trainer, sampler, it)
    return {"iteration": it, "epoch": epoch, "epoch_step": step, "exp_dir": exp, "val": last_val,
            "vgg": trainer.vgg_name}


if __name__ == "__main__":
    run_cli(main)
