"""Options shared by train.py, test.py and the other commands (upstream flag names kept)."""

from __future__ import annotations

import argparse
import math
import os
import string
import sys
from pathlib import Path

import torch

import data
import models
from data.pseudo_raw import DEFAULT_RAW_SOURCE, RAW_SOURCES
from models.architecture import (
    DEFAULT_NGF,
    DEFAULT_NUM_CAB,
    read_saved_options,
    resolve_architecture,
    write_architecture,
)
from models.cr3net import CA_REDUCTION
from models.work_resolution import DEFAULT_GUIDE_EPS, DEFAULT_GUIDE_RADIUS
from util.errors import UserError
from util.files import atomic_write_text
from util.help import HelpFormatter
from util.precision import PRECISIONS, add_memory_format_flags

DEFAULT_SEED = 0  # --seed, the one seed of a run (training data draws, weight init, data-loader workers)


class BaseOptions:
    """Parse, complete and save the options of one run. ``parse(argv)`` returns an ``argparse.Namespace``."""

    is_train = False
    description = "CR3Net"

    def initialize(self, parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        g = parser.add_argument_group("data and experiment")
        g.add_argument("--dataroot", default="./datasets",
                       help="dataset folder (upstream layout: testB_rgb/testB_raw, testA1_*, testA2_*, wogtB_*)")
        g.add_argument("--name", default="RAW_RGB_RR",
                       help="experiment name: weights are read from / written to <checkpoints_dir>/<name>/")
        g.add_argument("--checkpoints_dir", default="./checkpoints", help="folder of experiment folders")
        g.add_argument("--model", default="RAWRR", help="model to use (case-insensitive): RAWRR")
        g.add_argument("--dataset_mode", default="rawrr", help="dataset to use (case-insensitive): rawrr")
        g.add_argument("--epoch", default="final", help="weights to load: <epoch>_net_G_T.pth")
        g.add_argument("--num_threads", type=int, default=0, help="data-loading worker processes (0 = in the main one)")
        g.add_argument("--raw_source", default=None, choices=RAW_SOURCES,
                       help="the network's RAW input: sensor = the data's own RAW; rgb = made from the RGB image by "
                       "the fixed inverse ISP of data/pseudo_raw.py for every image (the RGB-only twin, "
                       "scripts/raw_vs_rgb.py); default: the checkpoint folder's train_opt.txt, else sensor")
        g.add_argument("--suffix", default="", help="suffix appended to --name, e.g. {netG}_ngf{ngf}")
        g.add_argument("--verbose", action="store_true", help="print more (network size, model creation)")

        g = parser.add_argument_group("network")
        g.add_argument("--netG", default="gen_drop", help="generator architecture (upstream name): gen_drop = CR3Net")
        g.add_argument("--ngf", type=int, default=None,
                       help=f"generator width; default: the checkpoint folder's, else {DEFAULT_NGF} (released model)")
        g.add_argument("--num_cab", type=int, default=None,
                       help=f"DCABs per RGB residual group; default: the checkpoint folder's, else {DEFAULT_NUM_CAB}")
        g.add_argument("--init_type", default="normal", help="weight init: normal | xavier | kaiming | orthogonal")
        g.add_argument("--init_gain", type=float, default=0.02, help="std / gain of the weight init")

        g = parser.add_argument_group("device and speed")
        g.add_argument("--gpu_ids", default="",
                       help="GPU ids, e.g. 0 or 0,1; -1 = CPU; default: GPU 0 when there is one, else the CPU")
        g.add_argument("--precision", default="auto", choices=PRECISIONS,
                       help="autocast precision: auto = bf16 on a CPU with native bf16, bf16/fp16 on CUDA, else fp32")
        add_memory_format_flags(g)
        g.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed")
        return parser

    # ------------------------------------------------------------------ parsing
    def gather_options(self, argv):
        def make(add_help):
            return self.initialize(argparse.ArgumentParser(
                description=self.description, formatter_class=HelpFormatter, add_help=add_help
            ))

        # first pass without --help, to learn --model/--dataset_mode; the full parser then shows every flag
        opt, _ = make(False).parse_known_args(argv)
        parser = make(True)
        phase = "train" if self.is_train else getattr(opt, "phase", "test")
        # model- and dataset-specific flags (resolved by name, case-insensitively)
        models.get_option_setter(opt.model)(parser, self.is_train)
        data.get_option_setter(opt.dataset_mode, phase)(parser, self.is_train)
        self.parser = parser
        return parser.parse_args(argv)

    def parse(self, argv=None, save=True):
        argv = sys.argv[1:] if argv is None else list(argv)
        opt = self.gather_options(argv)
        opt.is_train = self.is_train
        if self.is_train:
            opt.phase = "train"
        self.validate(opt)
        if opt.suffix:
            opt.name = opt.name + "_" + format_suffix(opt.suffix, opt)
        opt.explicit = {a.dest for a in self.parser._actions if any(s in argv for s in a.option_strings)}
        opt.gpu_ids, opt.device = resolve_device(opt.gpu_ids)
        resolve_architecture(opt)
        resolve_raw_source(opt)
        self.opt = opt
        if save:
            save_options(opt, self.parser)
        if opt.verbose:
            print(format_options(opt, self.parser))
        return opt


    def validate(self, opt) -> None:
        """Refuse nonsense values of the shared flags at parse time (one ``UserError`` line naming the flag)."""
        if opt.num_threads < 0:
            raise UserError(f"--num_threads {opt.num_threads} is negative; give 0 (load in the main process) or more")
        if opt.ngf is not None and opt.ngf < CA_REDUCTION:
            raise UserError(f"--ngf {opt.ngf} is too narrow: the channel attention needs at least {CA_REDUCTION} "
                            f"(the released network has {DEFAULT_NGF})")
        if opt.num_cab is not None and opt.num_cab < 0:
            raise UserError(f"--num_cab {opt.num_cab} is negative; give 0 or more (the released network has "
                            f"{DEFAULT_NUM_CAB})")
        if not (math.isfinite(opt.init_gain) and opt.init_gain > 0):
            raise UserError(f"--init_gain {opt.init_gain} must be a positive number (upstream: 0.02)")
        label = str(opt.epoch)
        if not label or label in (".", "..") or any(c in label for c in "/\\"):
            raise UserError(f"--epoch {label!r} must be a plain label such as final, latest or 40 (it names files "
                            "<epoch>_net_G_T.pth and folders test_<epoch>)")


def format_suffix(suffix: str, opt) -> str:
    """``--suffix`` with its ``{option}`` fields filled in; ``UserError`` for an unknown field or one whose value is
    not known yet (``--ngf``/``--num_cab`` left to the checkpoint folder, which the name itself chooses)."""
    values = vars(opt)
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(suffix) if f is not None]
    except ValueError as err:
        raise UserError(f"--suffix {suffix!r}: {err}; write fields as {{option}}, e.g. {{netG}}_ngf{{ngf}}") from None
    for field in fields:
        root = field.split(".")[0].split("[")[0]
        if root not in values:
            known = ", ".join(f"{{{k}}}" for k in ("netG", "ngf", "num_cab", "epoch", "precision"))
            raise UserError(f"--suffix {suffix!r}: unknown field {{{field}}}; fields are option names such as {known}")
        if values[root] is None:
            raise UserError(f"--suffix {suffix!r} uses {{{root}}}, which is unknown before the experiment folder is "
                            f"chosen; pass --{root} explicitly")
    try:
        return suffix.format(**values)
    except (AttributeError, IndexError, KeyError, TypeError, ValueError) as err:
        raise UserError(f"--suffix {suffix!r}: cannot fill in its fields ({err})") from None


def add_compile_flag(group) -> None:
    """Add ``--compile`` (``util.precision.maybe_compile`` on the generator) to ``group``: test.py and
    remove_reflection.py share it."""
    group.add_argument("--compile", action="store_true",
                       help="run the generator through torch.compile: the first image of each size compiles (slow), "
                       "the following ones run faster (see README, Speed)")


def add_work_resolution_flags(group, megapixels_help: str) -> None:
    """Add ``--work_megapixels``, ``--guide_radius`` and ``--guide_eps`` (:mod:`models.work_resolution`) to ``group``:
    test.py and remove_reflection.py share them; ``megapixels_help`` says what the working image is scaled from.
    Check the parsed values with :func:`models.work_resolution.check_work_resolution`."""
    group.add_argument("--work_megapixels", type=float, default=0.0, metavar="MP", help=megapixels_help)
    group.add_argument("--guide_radius", type=int, default=None,
                       help=f"guided filter window radius in working pixels (default {DEFAULT_GUIDE_RADIUS}; 0 = "
                       "plain bilinear upsampling); with --work_megapixels")
    group.add_argument("--guide_eps", type=float, default=None,
                       help=f"guided filter regularisation, linear light squared (default {DEFAULT_GUIDE_EPS:g}); "
                       "with --work_megapixels")


def resolve_device(spec: str):
    """``--gpu_ids`` -> (list of ids, torch.device). Empty = GPU 0 when CUDA is available, else CPU; -1 = CPU."""
    spec = str(spec).strip()
    if spec == "":  # one GPU per process: under torchrun, each local rank takes its own
        ids = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
        if "LOCAL_RANK" not in os.environ:
            ids = ids[:1]
    else:
        try:
            ids = [int(s) for s in spec.split(",") if s.strip() != ""]
        except ValueError:
            raise UserError(f"--gpu_ids {spec!r} is not a list of integers like 0,1 (-1 = CPU)") from None
        ids = [i for i in ids if i >= 0]
    if ids and not torch.cuda.is_available():
        raise UserError(f"--gpu_ids {spec} asks for a GPU but CUDA is not available here; use --gpu_ids -1 for the CPU")
    if ids and max(ids) >= torch.cuda.device_count():
        raise UserError(f"--gpu_ids {spec}: only {torch.cuda.device_count()} GPU(s) are visible")
    local_rank = int(os.environ.get("LOCAL_RANK", "-1"))
    if ids and local_rank >= 0:  # torchrun: one process per GPU
        ids = [ids[local_rank % len(ids)]]
    device = torch.device(f"cuda:{ids[0]}") if ids else torch.device("cpu")
    if ids:
        torch.cuda.set_device(device)
    return ids, device


def experiment_dir(opt) -> Path:
    return Path(opt.checkpoints_dir) / opt.name


def resolve_raw_source(opt) -> None:
    """Fill ``--raw_source`` when not given, as ``--ngf``: the checkpoint folder's ``train_opt.txt`` (a network trained
    on RAW made from RGB is evaluated and resumed that way), else ``sensor``. A new training run never gets here without
    a value (train_options sets ``sensor``). Resuming a run with another ``--raw_source`` than it was trained with is
    refused: the twins of scripts/raw_vs_rgb.py must differ in nothing else."""
    train_opt = experiment_dir(opt) / "train_opt.txt"
    saved = read_saved_options(train_opt).get("raw_source") if train_opt.is_file() else None
    saved = saved if saved in RAW_SOURCES else None
    given = getattr(opt, "raw_source", None)
    if given is None:
        opt.raw_source = saved or DEFAULT_RAW_SOURCE
    elif getattr(opt, "is_train", False) and getattr(opt, "continue_train", False) and saved and saved != given:
        raise UserError(f"cannot resume {experiment_dir(opt)} with --raw_source {given}: it was trained with "
                        f"--raw_source {saved}; leave the flag out, or start a new run (--init_from to start from "
                        "its weights)")


def format_options(opt, parser) -> str:
    lines = ["----------------- Options ---------------"]
    for k, v in sorted(vars(opt).items()):
        if k == "explicit":
            continue
        default = parser.get_default(k)
        note = f"\t[default: {default}]" if v != default else ""
        lines.append(f"{k:>25}: {v!s:<30}{note}")
    lines.append("----------------- End -------------------")
    return "\n".join(lines)


def save_options(opt, parser) -> Path:
    """Write the final options (after every override) to ``<checkpoints_dir>/<name>/<phase>_opt.txt``; a training
    run also writes the generator's ``architecture.json`` beside it (:mod:`models.architecture`)."""
    rank = int(os.environ.get("RANK", "0"))
    path = experiment_dir(opt) / f"{opt.phase}_opt.txt"
    if rank != 0:
        return path
    atomic_write_text(path, format_options(opt, parser) + "\n")
    if opt.phase == "train":
        write_architecture(path.parent, opt.ngf, opt.num_cab, opt.netG)
    return path
