#!/usr/bin/env python3
"""Can the network fit a few fixed training samples beyond a tone curve? A capacity check before a long run.

    python -m scripts.fit_check                                  # the demo's width and weights, 16 fixed crops
    python -m scripts.fit_check --num_fixed 64 --iters 480 --init_from none --ngf 32   # train.py flags pass through

A network that only learns a tone curve of its input on real training (``scripts/tone_check``) may lack the capacity
or the optimisation to separate at all, or may lack the samples. This script tells them apart: it draws
``--num_fixed`` training samples once (train.py's own dataset, the flags below plus any train.py flag given), trains
train.py's trainer on nothing but them, cycling in a fixed order, and every ``--eval_every`` iterations scores its
T, in the training precision, on those samples and on ``--num_unseen`` samples of another epoch (other crops and
pairs of the same photos) that it never trains on. Per set it prints the mean PSNR gain of T over doing nothing, the
mean gain *beyond* the prediction's own per-channel tone curve of the input (:func:`util.tone.curve_scores`, the
separation measure of ``scripts/tone_check``; the smallest over the images in brackets) and, once, what the best
tone curve (an oracle) would gain. If the fixed samples' beyond-the-curve gain grows, the network can separate what
it sees; if meanwhile the unseen samples' does not, what it learns there is those samples, not separation.

Defaults: the demo checkpoint's network, optimiser and crop (``--ngf 24 --num_cab 2 --crop_size 128 --batch_size 4
--lr 3e-4``, constant learning rate, PSNR-balanced pixel loss, VGG16, initialised from ``checkpoints/demo``), trained
on the physical synthesis alone (``--real_ratio 0``; no upstream mixing, sensor RAW) of the photos
``--holdout_every 8`` keeps for training in ``../shared/data/photos`` (``--dataroot``). Nothing is written to disk
but ``--json``. PSNR in dB on 8-bit images (:func:`util.metrics.psnr`), T clamped to [0, 1] and rounded.
"""

from __future__ import annotations

if not __package__:  # run as a file: the project's packages import only from the repository root
    raise SystemExit("run it from the repository root as a module: python -m scripts.fit_check [flags]")

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import default_collate

from models.networks import resolve_schedule
from util.allocator import keep_buffers_mapped
from util.errors import UserError, run_cli
from util.help import HelpFormatter
from util.image_io import to_uint8
from util.metrics import json_safe, psnr
from util.precision import autocast
from util.tone import curve_scores

REPO = Path(__file__).resolve().parents[1]
DEMO_WEIGHTS = REPO / "checkpoints" / "demo" / "final_net_G_T.pth"
# train.py flags of the check, before the ones given (a flag given again wins): the demo's network and optimiser,
# the physical synthesis alone
TRAIN_FLAGS = ["--dataroot", str(REPO.parent / "shared" / "data" / "photos"), "--holdout_every", "8",
               "--ngf", "24", "--num_cab", "2", "--crop_size", "128", "--batch_size", "4", "--lr", "3e-4",
               "--lr_policy", "constant", "--real_ratio", "0", "--pixel_loss", "psnr", "--vgg", "vgg16",
               "--num_threads", "0", "--display_id", "0", "--seed", "0"]
UNSEEN_EPOCH = 999  # the dataset epoch of the unseen samples (the fixed ones are epoch 0's first)
EVAL_BATCH = 8


def parse_args(argv):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter,
        epilog="Any other flag is train.py's (python train.py --help), e.g. --ngf, --lr, --lambda_structure, "
               "--syn_model, --real_dataroot with --real_ratio.")
    p.add_argument("--num_fixed", type=int, default=16, help="training samples, drawn once and cycled")
    p.add_argument("--num_unseen", type=int, default=16, help="samples of another epoch, scored but never trained on")
    p.add_argument("--iters", type=int, default=480, help="optimisation steps of --batch_size fixed samples")
    p.add_argument("--eval_every", type=int, default=80, help="score both sets every this many iterations")
    p.add_argument("--init_from", default=str(DEMO_WEIGHTS),
                   help="generator weights to start from (default: the demo checkpoint); 'none': train.py's init")
    p.add_argument("--json", type=Path, help="also write every scoring as JSON to this file")
    args, train_flags = p.parse_known_args(argv)
    for name in ("num_fixed", "num_unseen", "iters", "eval_every"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name} {getattr(args, name)} must be at least 1")
    return args, train_flags


def training_options(train_flags: list[str], checkpoints_dir: str):
    from options.train_options import TrainOptions

    opt = TrainOptions().parse([*TRAIN_FLAGS, *train_flags, "--name", "fit_check", "--checkpoints_dir",
                                checkpoints_dir], save=False)
    opt.rank, opt.world_size = 0, 1  # one process (what training.distributed.process_group sets)
    resolve_schedule(opt, iters_per_epoch=1)  # --n_iters is always given
    return opt


def score(trainer, items: list[dict]) -> dict[str, float]:
    """Mean gain over doing nothing, mean and smallest gain beyond T's tone curve of I, mean best-curve gain."""
    net = trainer.netG
    net.eval()
    rows = []
    with torch.no_grad():
        for start in range(0, len(items), EVAL_BATCH):
            batch = default_collate(items[start : start + EVAL_BATCH])
            trainer.set_input(batch)
            with autocast(trainer.device, trainer.precision):
                (_, T), _ = net(trainer.input["I_rgb"], trainer.input["I_raw"])
            for j in range(T.shape[0]):
                I_u8, T_u8, gt_u8 = (to_uint8(x[j].float()) for x in (batch["I_rgb"], T.cpu(), batch["T_rgb"]))
                nothing = psnr(gt_u8, I_u8)
                curve = curve_scores(I_u8, T_u8, gt_u8)
                rows.append([psnr(gt_u8, T_u8) - nothing, curve["beyond_curve_psnr"],
                             curve["best_curve_psnr"] - nothing])
    net.train()
    table = np.array(rows)
    return {"gain": float(table[:, 0].mean()), "beyond_curve": float(table[:, 1].mean()),
            "beyond_curve_worst": float(table[:, 1].min()), "best_curve_gain": float(table[:, 2].mean())}


def main(argv=None) -> list[dict]:
    keep_buffers_mapped()
    args, train_flags = parse_args(argv)
    from data import create_dataset
    from models import create_model
    from models.rawrr_training import RAWRRTrainer
    from training.loading import seed_everything

    with tempfile.TemporaryDirectory(prefix="fit_check_") as scratch:
        opt = training_options([*train_flags, "--n_iters", str(args.iters)], scratch)
        seed_everything(opt.seed)  # as train.py: the discriminator's (and, with --init_from none, G's) initial weights
        dataset = create_dataset(opt)
        dataset.set_epoch(0)
        fixed = [dataset[i % len(dataset)] for i in range(args.num_fixed)]
        dataset.set_epoch(UNSEEN_EPOCH)
        unseen = [dataset[i % len(dataset)] for i in range(args.num_unseen)]
        trainer = RAWRRTrainer(create_model(opt), opt)
        if args.init_from.lower() != "none":
            trainer.init_generator_from(args.init_from)
    start = "train.py's init" if args.init_from.lower() == "none" else args.init_from
    print(f"fit check: {args.num_fixed} fixed and {args.num_unseen} unseen samples of {opt.crop_size} px; ngf "
          f"{opt.ngf}, num_cab {opt.num_cab}, from {start}; batch {opt.batch_size}, lr {opt.lr:g}, precision "
          f"{trainer.precision}; {args.iters} iterations", flush=True)
    print("PSNR gain over doing nothing / beyond T's tone curve of I (smallest), dB", flush=True)
    history: list[dict] = []
    began = time.perf_counter()
    for it in range(args.iters + 1):
        if it % args.eval_every == 0 or it == args.iters:
            row = {"iteration": it, "seconds": time.perf_counter() - began,
                   "fixed": score(trainer, fixed), "unseen": score(trainer, unseen)}
            history.append(row)
            f, u = row["fixed"], row["unseen"]
            if it == 0:
                print(f"  best tone curve (oracle): fixed {f['best_curve_gain']:+.2f}, unseen "
                      f"{u['best_curve_gain']:+.2f}", flush=True)
            print(f"  it {it:5d} ({row['seconds']:5.0f} s)  fixed: {f['gain']:+.2f} / {f['beyond_curve']:+.2f} "
                  f"({f['beyond_curve_worst']:+.2f})   unseen: {u['gain']:+.2f} / {u['beyond_curve']:+.2f} "
                  f"({u['beyond_curve_worst']:+.2f})", flush=True)
        if it == args.iters:
            break
        picks = [fixed[(it * opt.batch_size + k) % len(fixed)] for k in range(opt.batch_size)]
        trainer.set_input(default_collate(picks))
        trainer.optimize_parameters(it + 1)
    if args.json:
        args.json.write_text(json.dumps(json_safe({"args": vars(args) | {"json": str(args.json)},
                                                   "train_flags": train_flags, "history": history}), indent=1))
        print(f"wrote {args.json}")
    return history


if __name__ == "__main__":
    run_cli(main)
