"""One mode of scripts/benchmark.py, measured in this process (the benchmark starts one process per mode).

    python -m scripts.benchmark_mode SPEC_JSON     # prints a line "BENCHMARK_RESULT {...}" last

The network and the trainer are train.py's, built from its own options (``options.train_options``): random weights
(seeded, the training init N(0, 0.02)) unless ``weights``; the training step is ``RAWRRTrainer.optimize_parameters``
(G and D, MSE + VGG perceptual + LSGAN + RAW L1, Adam). The images are :func:`data.synthesis.synthesize_linear`
mixtures of the photos that scikit-image ships (those of scripts/make_demo_dataset.py).
"""

from __future__ import annotations

if not __package__:  # run as a file: the project's packages import only from the repository root
    raise SystemExit("run it from the repository root as a module: python -m scripts.benchmark_mode [flags]")

import json
import math
import os
import statistics
import sys
import tempfile
from dataclasses import dataclass

import numpy as np
import torch

from data.image_io import PhotoPairs
from data.synthesis import synthesize_linear
from models import create_model
from models.checkpoint import load_generator_weights
from models.cr3net import set_winograd
from models.inference import describe_path, separate
from models.rawrr_training import RAWRRTrainer
from options.train_options import TrainOptions
from scripts.make_demo_dataset import DEMO_PHOTOS, skimage_data_dir
from util.allocator import keep_buffers_mapped
from util.errors import UserError
from util.image_io import to_uint8
from util.measure import peak_rss_kib, status_kib, timed
from util.metrics import psnr
from util.precision import PRECISIONS, to_memory_format

MODE_ALIASES = {"compile": "auto+cl+compile", "upstream": "fp32+glibc+onednn"}
MODE_FLAGS = ("compile", "jit", "nograd", "glibc", "onednn")  # Mode's boolean fields, in order
FORMAT_TOKENS = {"cl": True, "nchw": False}  # memory format tokens (Mode.channels_last)
SCENE_SEED = 0  # the photos, crops and mixing of the measured images (the same whatever the weights' seed)
TRAIN_STEP = "RAWRRTrainer.optimize_parameters (G and D; MSE T/R + {} perceptual + LSGAN + RAW L1; Adam)"
RESULT_TAG = "BENCHMARK_RESULT "  # the last line of output: this tag, then the result as JSON
KIB = 1024
MODES_HELP = (
    "A mode is '+'-joined tokens: one precision (fp32 bf16 fp16 auto; default fp32), cl = channels_last or nchw "
    "(default: NCHW for an explicit precision, the tools' own choice for auto: NCHW for fp32 on the CPU, else "
    "channels_last), compile = "
    "torch.compile (first call reported apart), jit = torch.jit trace+freeze+optimize_for_inference (fp32 "
    "inference), nograd = torch.no_grad instead of inference_mode, glibc = glibc malloc's default behaviour whatever "
    "--malloc says, onednn = PyTorch's own convolution kernels (no NNPACK Winograd for fp32 NCHW on the CPU, as "
    "CR3NET_WINOGRAD=0). 'compile' means auto+cl+compile, 'upstream' fp32+glibc+onednn (upstream's path: fp32, "
    "NCHW, PyTorch's kernels, no allocator change). "
    "Each mode runs in a fresh subprocess. Speed-up = baseline seconds / mode seconds (--baseline, default fp32); "
    "PSNR of T_rgb against the baseline's."
)


@dataclass(frozen=True)
class Mode:
    """One benchmark configuration, parsed from a name like ``bf16+cl``."""

    name: str
    precision: str = "fp32"  # as asked: fp32, bf16, fp16 or auto
    channels_last: bool | None = False  # None: the tools' own choice (util.precision.resolve_channels_last)
    compile: bool = False
    jit: bool = False
    nograd: bool = False
    glibc: bool = False  # glibc malloc's default behaviour (no util.allocator setup) whatever --malloc says
    onednn: bool = False  # WinogradConv2d's NNPACK path off: PyTorch's own convolution kernels


def parse_mode(name: str) -> Mode:
    """``'bf16+cl'`` -> Mode(precision='bf16', channels_last=True); UserError naming the choices otherwise."""
    tokens = MODE_ALIASES.get(name, name).split("+")
    precisions = [t for t in tokens if t in PRECISIONS]
    formats = [FORMAT_TOKENS[t] for t in tokens if t in FORMAT_TOKENS]
    unknown = [t for t in tokens if t not in PRECISIONS and t not in MODE_FLAGS and t not in FORMAT_TOKENS]
    if unknown or len(precisions) > 1 or len(formats) > 1 or len(set(tokens)) != len(tokens):
        raise UserError(
            f"--modes: cannot read {name!r}; a mode is '+'-joined tokens: at most one precision of "
            f"{', '.join(PRECISIONS)}, at most one of {', '.join(FORMAT_TOKENS)} and any of {', '.join(MODE_FLAGS)} "
            f"(aliases: "
            f"{', '.join(f'{k} = {v}' for k, v in MODE_ALIASES.items())}), e.g. bf16+cl"
        )
    precision = precisions[0] if precisions else "fp32"
    channels_last = formats[0] if formats else (None if precision == "auto" else False)
    mode = Mode(name, precision, channels_last, *(flag in tokens for flag in MODE_FLAGS))
    if mode.jit and (mode.compile or mode.precision != "fp32"):
        raise UserError(f"--modes {name}: jit is measured in fp32 only and not together with compile")
    return mode


def make_scene(h: int, w: int, index: int = 0) -> dict[str, torch.Tensor]:
    """Item ``index`` of the measured images: two photos cropped to (h, w) by :class:`data.image_io.PhotoPairs`, mixed
    by :func:`data.synthesis.synthesize_linear` (its dict without ``params``: RGB (3, h, w), RAW (4, h/2, w/2))."""
    pairs = PhotoPairs(skimage_data_dir(), list(DEMO_PHOTOS), (h, w), SCENE_SEED)
    rng = np.random.default_rng([SCENE_SEED, index])
    _, T, R = pairs.draw(pairs.t_name(index), rng)
    return {k: v for k, v in synthesize_linear(T, R, rng).items() if k != "params"}


def make_batch(batch: int, h: int, w: int) -> dict[str, torch.Tensor]:
    """``batch`` scenes stacked (the :func:`make_scene` keys with a batch axis), plus ``is_real`` (False)."""
    scenes = [make_scene(h, w, i) for i in range(batch)]
    return {**{k: torch.stack([s[k] for s in scenes]) for k in scenes[0]}, "is_real": torch.zeros(batch, dtype=bool)}


def train_options(spec: dict, mode: Mode):
    """train.py's options (its defaults: upstream's recipe) for the network of ``spec`` under ``mode``."""
    argv = ["--checkpoints_dir", tempfile.gettempdir(), "--name", "cr3net_benchmark", "--raw_source", "sensor",
            "--gpu_ids", "-1" if spec["device"] == "cpu" else "0", "--precision", mode.precision, "--seed",
            str(spec["seed"]), "--ngf", str(spec["ngf"]), "--num_cab", str(spec["num_cab"]), "--batch_size",
            str(spec["batch"])]
    memory_format = {True: ["--channels_last"], False: ["--no_channels_last"], None: []}[mode.channels_last]
    return TrainOptions().parse(argv + memory_format, save=False)


def timed_runs(step, spec: dict, device: torch.device) -> dict:
    """``warmup`` untimed runs, then up to ``repeats`` timed ones within ``budget`` seconds. Where the warm-up alone
    outlasts the budget its last run is the one measurement (``cold``: first-call costs included, small next to it)."""
    warm = [timed(step, device) for _ in range(spec["warmup"])]
    runs = [warm[-1]] if warm and sum(r[0] for r in warm) > spec["budget"] else []
    cold = bool(runs)
    while not cold and len(runs) < spec["repeats"] and (
            not runs or sum(r[0] for r in runs) + statistics.median(r[0] for r in runs) <= spec["budget"]):
        runs.append(timed(step, device))
    wall, user, system = (list(column) for column in zip(*runs, strict=True))
    return {"warmup_s": [r[0] for r in warm], "seconds": wall, "user_seconds": user, "sys_seconds": system,
            "cpu_seconds": [u + s for u, s in zip(user, system, strict=True)], **({"cold": True} if cold else {})}


def measure(spec: dict) -> dict:
    """Time ``spec['task']`` (infer, train) under ``spec['mode']``; an inference saves its ``T_pred_rgb`` (and
    ``I_rgb``) to ``spec['out']``."""
    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    mode = parse_mode(spec["mode"])
    if spec["malloc"] == "keep" and not mode.glibc:
        keep_buffers_mapped()
    if mode.onednn:
        set_winograd(False)
    opt = train_options(spec, mode)
    torch.manual_seed(opt.seed)
    model = create_model(opt)
    if spec["weights"]:
        load_generator_weights(model.netG_T, spec["weights"])
    device = model.device
    load = os.getloadavg if hasattr(os, "getloadavg") else None
    result = {"precision": model.precision, "channels_last": model.channels_last,
              "path": describe_path(model.precision, device, model.channels_last),
              "load_before": load()[0] if load else None}
    if spec["task"] == "infer":
        net = model.netG_T.eval().requires_grad_(False)
        scene = make_batch(1, *spec["size"])
        I_rgb, I_raw = scene["I_rgb"].to(device), scene["I_raw"].to(device)
        if mode.jit:
            with torch.no_grad():
                inputs = tuple(to_memory_format(x, model.channels_last) for x in (I_rgb, I_raw))
                net = torch.jit.freeze(torch.jit.trace(net, inputs, check_trace=False))
                net = torch.jit.optimize_for_inference(net)
        net = torch.compile(net) if mode.compile else net
        context, out = (torch.no_grad if mode.nograd else torch.inference_mode), {}

        def step():
            with context():
                out.update(separate(net, I_rgb, I_raw, model.precision, model.channels_last))
    else:
        if mode.jit:
            raise UserError(f"mode {mode.name}: jit is an inference-only mode")
        trainer = RAWRRTrainer(model, opt)
        if mode.compile:
            trainer.train_G = torch.compile(trainer.train_G)
        trainer.set_input(make_batch(spec["batch"], *spec["train_size"]))
        losses = []
        result["train_step"] = TRAIN_STEP.format(trainer.vgg_name)

        def step():
            losses.append(trainer.optimize_parameters(len(losses) + 1)["G"])
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device) / KIB if cuda else status_kib("VmRSS")
    if mode.compile:  # the first call compiles: reported on its own
        result["first_call_s"] = timed(step, device)[0]
    result.update(timed_runs(step, spec, device))
    peak = torch.cuda.max_memory_allocated(device) / KIB if cuda else peak_rss_kib()
    result.update(peak_mib=peak / KIB, peak_delta_mib=None if before is None else (peak - before) / KIB,
                  memory_kind="torch.cuda.max_memory_allocated" if cuda else "process peak RSS (VmHWM)",
                  threads=torch.get_num_threads(), load_after=load()[0] if load else None)
    if spec["task"] == "infer":
        torch.save({"T_pred_rgb": out["T_pred_rgb"].float().cpu(), "I_rgb": I_rgb.cpu()}, spec["out"])
    else:
        result["first_loss_G"] = losses[0] if losses else None
    return result


if __name__ == "__main__":
    if len(sys.argv) != 2 or not sys.argv[1].startswith("{"):
        sys.exit(__doc__)  # an internal command of scripts/benchmark.py: no flags
    print(RESULT_TAG + json.dumps(measure(json.loads(sys.argv[1]))), flush=True)


def compare_outputs(path: str, baseline_path: str) -> dict:
    """Accuracy of one mode's T_pred_rgb against the baseline's: float PSNR (range 1), 8-bit PSNR, max |diff|."""
    out, ref = torch.load(path, weights_only=True), torch.load(baseline_path, weights_only=True)
    T, T_ref = out["T_pred_rgb"].double(), ref["T_pred_rgb"].double()
    mse = float(((T - T_ref) ** 2).mean())
    change = float(((T_ref - ref["I_rgb"].double().clamp(0, 1)) ** 2).mean().sqrt())
    return {"psnr_db": 10 * math.log10(1 / mse) if mse > 0 else math.inf,  # data range 1 (sRGB [0, 1])
            "psnr_u8_db": psnr(to_uint8(T_ref[0].float()), to_uint8(T[0].float())),
            "max_abs_diff": float((T - T_ref).abs().max()), "identical": mse == 0,
            "rel_error": math.sqrt(mse) / change if change else math.nan, "finite": bool(torch.isfinite(T).all()),
            "net_change_rms": change}
