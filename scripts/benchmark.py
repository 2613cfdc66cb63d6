#!/usr/bin/env python3
"""Speed, memory and accuracy of CR3Net's precision and memory-format modes, measured on one device.

For each mode, the full generator runs on one realistic image pair at upstream's test size (RGB 448x640, packed RAW
224x320) and then does training steps (batch 2, 256 px crops). Printed per mode, and written with ``--json``:

* seconds per image (inference) or per step (training): the median of ``--repeats`` timed runs after ``--warmup``
  untimed ones (``torch.cuda.synchronize`` around each run on CUDA), and the CPU seconds of the same runs;
* peak memory: on the CPU the peak resident set of the mode's own process (``VmHWM``) and its rise over the resident
  set just before the first run (each mode runs in a fresh subprocess, since a peak cannot be reset); on CUDA
  ``torch.cuda.max_memory_allocated``;
* speed-up over the fp32 baseline (plain NCHW, upstream's path) measured in the same run: fp32 seconds / mode seconds;
* accuracy against that baseline: PSNR in dB of the mode's clamped float T_rgb against fp32's (data range 1, no
  8-bit quantisation), the same on the 8-bit images test.py saves (``util.metrics.psnr``), the largest absolute
  difference, and that difference relative to how much the network changes its input (rms(T - T_fp32) /
  rms(T_fp32 - I_rgb)): with random weights the network changes its input little, which flatters the PSNR.

Modes are ``+``-joined tokens: a precision (``fp32`` ``bf16`` ``fp16`` ``auto``, default fp32), ``cl`` (channels_last),
``compile`` (``torch.compile``; its first call, compilation included, is reported on its own), ``jit``
(``torch.jit.trace`` + ``freeze`` + ``optimize_for_inference``, fp32 inference only) and ``nograd`` (``torch.no_grad``
instead of ``torch.inference_mode``). ``auto`` alone means ``auto+cl`` (test.py's defaults) and ``compile`` alone
``auto+cl+compile``. Every mode runs in its own subprocess with a hard ``--timeout``; ``--budget`` stops a mode's
timed repeats early once they have taken that long (at least one timed run), and the count actually run is reported.

The network has random weights (seeded, the training init N(0, 0.02)) unless ``--weights`` names a generator file.
The training step is the trainer's own ``RAWRRTrainer.optimize_parameters`` (G and D, MSE + VGG perceptual + LSGAN +
RAW L1, Adam) when models/rawrr_training.py builds; otherwise (or with ``--train_step simple``) G alone with MSE on
T_rgb/R_rgb and L1 on T_raw/R_raw and an Adam step, and the output says which one ran.

    python scripts/benchmark.py                                   # CPU, ngf 64, 448x640, all default modes
    python scripts/benchmark.py --quick --skip_train              # smoke run (ngf 16, small images)
    python scripts/benchmark.py --device cuda --json bench.json
    python scripts/benchmark.py --modes fp32 fp32+cl compile --skip_train
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from util.allocator import keep_buffers_mapped  # noqa: E402
from util.errors import UserError, run_cli  # noqa: E402
from util.precision import PRECISIONS, cpu_has_native_bf16, resolve_precision  # noqa: E402

DEFAULT_SIZE = "448x640"  # upstream's test size: RGB long side 640, short side floor(448/640*320/32)*32*2 = 448
DEFAULT_TRAIN_SIZE = 256  # upstream's training crop (RGB; packed RAW 128)
DEFAULT_BATCH = 2  # upstream's training batch
DEFAULT_WARMUP = 1
DEFAULT_REPEATS = 3
DEFAULT_BUDGET_S = 180.0  # per mode: no new timed repeat once the timed runs have taken this long
DEFAULT_TIMEOUT_S = 600.0  # per mode: the subprocess is killed after this long
DEFAULT_SEED = 0
DEFAULT_NGF = 64  # the released checkpoint's width
DEFAULT_NUM_CAB = 8
# --quick: a smoke run of the whole script in well under a minute of compute
QUICK = {"ngf": 16, "num_cab": 2, "size": "64x96", "train_size": 64}
BASELINE = "fp32"  # plain NCHW float32: upstream's path
DEFAULT_MODES = ("fp32", "fp32+cl", "bf16+cl", "auto")
DEFAULT_MODES_CUDA = ("fp32", "fp32+cl", "bf16+cl", "fp16+cl", "auto")
MODE_ALIASES = {"auto": "auto+cl", "compile": "auto+cl+compile"}
MODE_FLAGS = ("cl", "compile", "jit", "nograd")
TRAIN_STEPS = ("auto", "trainer", "simple")

# The test scene: a photo seen through glass that reflects another photo (both shipped with scikit-image).
SCENE_T_IMAGES = ("astronaut", "rocket")  # transmitted scenes, one per sample of a batch (cycled)
SCENE_R_IMAGES = ("coffee", "chelsea")  # reflected scenes
SCENE_GAMMA = 2.2  # sRGB <-> linear as upstream's synthesis
SCENE_T_WEIGHT = 0.85  # transmission of the glass
SCENE_R_WEIGHT = 0.35  # reflectance of the glass
SCENE_R_BLUR_SIGMA = 3.0  # px: the reflection is out of focus
ADAM_LR, ADAM_BETAS = 1e-4, (0.5, 0.999)  # upstream's optimiser (simple training step)
SCHEDULER_ITERS = 1000  # run length the trainer's scheduler is built for (constant rate: no effect on the timing)
KIB = 1024
MIB = 1024 * 1024
WORKER_FLAG = "--_worker"
INTERRUPTED_EXIT_CODE = 130  # the shell's status for a run stopped by a signal
MODES_HELP = (
    "A mode is '+'-joined tokens: one precision (fp32 bf16 fp16 auto; default fp32), cl = channels_last, compile = "
    "torch.compile (first call reported apart), jit = torch.jit trace+freeze+optimize_for_inference (fp32 "
    "inference), nograd = torch.no_grad instead of inference_mode. 'auto' means auto+cl, 'compile' auto+cl+compile. "
    "Each mode runs in a fresh subprocess. Speed-up = fp32 seconds / mode seconds; PSNR of T_rgb against fp32's."
)


# ---------------------------------------------------------------------------------------------------- modes
@dataclass(frozen=True)
class Mode:
    """One benchmark configuration, parsed from a name like ``bf16+cl``."""

    name: str
    precision: str = "fp32"  # as asked: fp32, bf16, fp16 or auto
    channels_last: bool = False
    compile: bool = False
    jit: bool = False
    nograd: bool = False


def parse_mode(name: str) -> Mode:
    """``'bf16+cl'`` -> Mode(precision='bf16', channels_last=True); UserError naming the choices otherwise."""
    tokens = MODE_ALIASES.get(name, name).split("+")
    precisions = [t for t in tokens if t in PRECISIONS]
    unknown = [t for t in tokens if t not in PRECISIONS and t not in MODE_FLAGS]
    if unknown or len(precisions) > 1 or len(set(tokens)) != len(tokens):
        raise UserError(
            f"--modes: cannot read {name!r}; a mode is '+'-joined tokens: at most one precision of "
            f"{', '.join(PRECISIONS)} and any of {', '.join(MODE_FLAGS)} (aliases: "
            f"{', '.join(f'{k} = {v}' for k, v in MODE_ALIASES.items())}), e.g. bf16+cl"
        )
    mode = Mode(name, precisions[0] if precisions else "fp32", "cl" in tokens, "compile" in tokens, "jit" in tokens,
                "nograd" in tokens)
    if mode.jit and (mode.compile or mode.precision != "fp32"):
        raise UserError(f"--modes {name}: jit is measured in fp32 only and not together with compile")
    return mode


def parse_size(text: str, flag: str) -> tuple[int, int]:
    """``'448x640'`` -> (448, 640) (RGB height, width), both even; ``'256'`` -> (256, 256)."""
    try:
        parts = [int(v) for v in text.lower().split("x")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) <= 0 or parts[0] % 2 or parts[1] % 2:
        raise UserError(f"{flag} {text!r}: give the RGB size as HxW (or one number), even values, e.g. 448x640")
    return parts[0], parts[1]


# ---------------------------------------------------------------------------------------------------- inputs
def _skimage_photo(name: str, h: int, w: int) -> torch.Tensor:
    """scikit-image's bundled photo ``name`` as (3, h, w) float32 sRGB in [0, 1] (antialiased bilinear resize)."""
    import skimage.data

    image = torch.from_numpy(np.ascontiguousarray(getattr(skimage.data, name)())).permute(2, 0, 1).float() / 255
    return F.interpolate(image[None], size=(h, w), mode="bilinear", antialias=True, align_corners=False)[0].clamp(0, 1)


def make_scene(h: int, w: int, index: int = 0) -> dict[str, torch.Tensor]:
    """A realistic input with a reflection and its ground truth, in the repository's domains.

    Linear light (sRGB^2.2): I = 0.85 T + 0.35 blur(R); RGB = I^(1/2.2); RAW = the RGGB mosaic of the linear image,
    packed. Returns ``I_rgb``, ``T_rgb``, ``R_rgb``: (3, h, w) float32 sRGB [0, 1]; ``I_raw``, ``T_raw``, ``R_raw``:
    (4, h/2, w/2) float32 packed [R, G1, G2, B] in [0, 1]. ``index`` picks the photos (cycled).
    """
    from util.synthesis import gaussian_blur, pack_linear

    T = _skimage_photo(SCENE_T_IMAGES[index % len(SCENE_T_IMAGES)], h, w)
    R = _skimage_photo(SCENE_R_IMAGES[index % len(SCENE_R_IMAGES)], h, w).flip(-1)
    t = T**SCENE_GAMMA * SCENE_T_WEIGHT
    r = gaussian_blur(R**SCENE_GAMMA, SCENE_R_BLUR_SIGMA).clamp(0, 1) * SCENE_R_WEIGHT
    mix = (t + r).clamp(0, 1)
    inv = 1 / SCENE_GAMMA
    return {"I_rgb": mix**inv, "T_rgb": t**inv, "R_rgb": r**inv,
            "I_raw": pack_linear(mix), "T_raw": pack_linear(t), "R_raw": pack_linear(r)}


def make_batch(batch: int, h: int, w: int) -> dict[str, torch.Tensor]:
    """``batch`` scenes stacked: the :func:`make_scene` keys with a leading batch axis, plus ``is_real`` (False)."""
    scenes = [make_scene(h, w, i) for i in range(batch)]
    out = {k: torch.stack([s[k] for s in scenes]) for k in scenes[0]}
    out["is_real"] = torch.zeros(batch, dtype=torch.bool)
    return out


# ---------------------------------------------------------------------------------------------------- worker
def _proc_status_kib(field: str) -> int | None:
    """A ``kB`` field of /proc/self/status (VmRSS, VmHWM), or None where there is no /proc."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _peak_rss_kib() -> int:
    vm_hwm = _proc_status_kib("VmHWM")
    if vm_hwm is not None:
        return vm_hwm
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # kB on Linux


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _build_generator(spec: dict, device: torch.device, mode: Mode):
    from models.networks import define_G
    from util.precision import to_memory_format

    torch.manual_seed(spec["seed"])
    net = define_G(spec["ngf"], spec["num_cab"])
    if spec.get("weights"):
        from models.checkpoint import load_generator_weights

        load_generator_weights(net, spec["weights"])
    return to_memory_format(net.to(device), mode.channels_last)


def _timed_runs(step, spec: dict, device: torch.device) -> dict:
    """Run ``step()`` ``warmup`` times, then up to ``repeats`` timed times within the time budget.

    Where the warm-up alone outlasts the budget, its last run is the one measurement (``cold``: it includes the
    first-call costs, small next to such a run) instead of starting another one that long.
    """
    def timed() -> tuple[float, float, float]:
        """(wall, user CPU, system CPU) seconds of one ``step()``, synchronised on CUDA."""
        _sync(device)
        start, cpu_start = time.perf_counter(), os.times()
        step()
        _sync(device)
        cpu_end = os.times()
        return time.perf_counter() - start, cpu_end.user - cpu_start.user, cpu_end.system - cpu_start.system

    warmup_s, seconds, user_seconds, sys_seconds = [], [], [], []
    last_warmup = None
    for _ in range(spec["warmup"]):
        last_warmup = timed()
        warmup_s.append(last_warmup[0])
    if warmup_s and sum(warmup_s) > spec["budget"]:
        wall, user, system = last_warmup
        return {"warmup_s": warmup_s, "seconds": [wall], "user_seconds": [user], "sys_seconds": [system],
                "cpu_seconds": [user + system], "cold": True}
    for i in range(spec["repeats"]):
        if i > 0 and sum(seconds) + statistics.median(seconds) > spec["budget"]:
            break
        wall, user, system = timed()
        seconds.append(wall)
        user_seconds.append(user)
        sys_seconds.append(system)
    return {"warmup_s": warmup_s, "seconds": seconds, "user_seconds": user_seconds, "sys_seconds": sys_seconds,
            "cpu_seconds": [u + s for u, s in zip(user_seconds, sys_seconds, strict=True)]}


def _memory_start(device: torch.device) -> int | None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device)
    return _proc_status_kib("VmRSS")


def _memory_report(device: torch.device, before) -> dict:
    if device.type == "cuda":
        return {"peak_mib": torch.cuda.max_memory_allocated(device) / MIB,
                "peak_delta_mib": (torch.cuda.max_memory_allocated(device) - before) / MIB,
                "memory_kind": "torch.cuda.max_memory_allocated"}
    peak = _peak_rss_kib()
    return {"peak_mib": peak * KIB / MIB, "peak_delta_mib": None if before is None else (peak - before) * KIB / MIB,
            "memory_kind": "process peak RSS (VmHWM)"}


def worker_infer(spec: dict, mode: Mode, device: torch.device) -> dict:
    """Time the generator on one image pair under ``mode``; saves T_rgb to ``spec['out']``."""
    from models.inference import separate
    from util.precision import to_memory_format

    precision = resolve_precision(mode.precision, device)
    net = _build_generator(spec, device, mode).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    h, w = spec["size"]
    scene = make_scene(h, w)
    I_rgb = scene["I_rgb"][None].to(device)
    I_raw = scene["I_raw"][None].to(device)
    grad_context = torch.no_grad if mode.nograd else torch.inference_mode
    result = {"precision": precision}
    if mode.jit:
        with torch.no_grad():
            x_rgb, x_raw = to_memory_format(I_rgb, mode.channels_last), to_memory_format(I_raw, mode.channels_last)
            traced = torch.jit.trace(net, (x_rgb, x_raw), check_trace=False)
            net = torch.jit.optimize_for_inference(torch.jit.freeze(traced))
    if mode.compile:
        net = torch.compile(net)
    before = _memory_start(device)
    if mode.compile:  # the first call compiles: report it on its own
        _sync(device)
        start = time.perf_counter()
        with grad_context():
            separate(net, I_rgb, I_raw, precision, mode.channels_last)
        _sync(device)
        result["first_call_s"] = time.perf_counter() - start
    out = {}

    def step():
        with grad_context():
            out.update(separate(net, I_rgb, I_raw, precision, mode.channels_last))

    result.update(_timed_runs(step, spec, device))
    result.update(_memory_report(device, before))
    torch.save({"T_rgb": out["T_rgb"].float().cpu(), "I_rgb": I_rgb.cpu()}, spec["out"])
    return result


def _trainer_opt(spec: dict, mode: Mode, device: torch.device, folder: str):
    """Options of the real trainer: upstream's training defaults from its own option definitions."""
    from models.rawrr_training import add_training_options
    from options.train_options import TrainOptions

    parser = argparse.ArgumentParser()
    TrainOptions().initialize(parser)
    add_training_options(parser)
    argv = ["--checkpoints_dir", folder, "--name", "benchmark", "--precision", mode.precision,
            "--ngf", str(spec["ngf"]), "--num_cab", str(spec["num_cab"]), "--n_iters", str(SCHEDULER_ITERS),
            "--batch_size", str(spec["batch"])]
    opt = parser.parse_args(argv + ([] if mode.channels_last else ["--no_channels_last"]))
    opt.device, opt.is_train, opt.phase, opt.gpu_ids = device, True, "train", []
    return opt


def _trainer_step(spec: dict, mode: Mode, device: torch.device, batch: dict, folder: str):
    """The real training step (G and D) of models/rawrr_training.py: (step(), its G losses, description, precision)."""
    from models.rawrr_model import RAWRRModel
    from models.rawrr_training import RAWRRTrainer

    opt = _trainer_opt(spec, mode, device, folder)
    torch.manual_seed(spec["seed"])
    model = RAWRRModel(opt)
    if spec.get("weights"):
        model.netG_T.load_state_dict(_build_generator(spec, device, mode).state_dict())
    trainer = RAWRRTrainer(model, opt)
    if mode.compile:
        trainer.train_G = torch.compile(trainer.train_G)
    trainer.set_input(batch)
    losses = []
    counter = iter(range(1, 1 << 30))

    def step():
        losses.append(trainer.optimize_parameters(next(counter))["G"])

    what = (f"trainer step: RAWRRTrainer.optimize_parameters (G and D; MSE T/R + {trainer.vgg_name} perceptual + "
            "LSGAN + RAW L1; Adam)")
    return step, losses, what, trainer.precision


def _simple_step(spec: dict, mode: Mode, device: torch.device, batch: dict):
    """G alone: MSE on T_rgb and R_rgb, L1 on T_raw and R_raw, backward, Adam (GradScaler for fp16); as above."""
    from util.precision import autocast, to_memory_format

    precision = resolve_precision(mode.precision, device)
    net = _build_generator(spec, device, mode).train()
    train_net = torch.compile(net) if mode.compile else net
    optimizer = torch.optim.Adam(net.parameters(), lr=ADAM_LR, betas=ADAM_BETAS)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    x = {k: to_memory_format(v.to(device), mode.channels_last) for k, v in batch.items() if v.dim() == 4}
    losses = []

    def step():
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, precision):
            (R_rgb, T_rgb), (R_raw, T_raw) = train_net(x["I_rgb"], x["I_raw"])
        loss = (F.mse_loss(T_rgb.float(), x["T_rgb"]) + F.mse_loss(R_rgb.float(), x["R_rgb"])
                + F.l1_loss(T_raw.float(), x["T_raw"]) + F.l1_loss(R_raw.float(), x["R_raw"]))
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        losses.append(float(loss.detach()))

    what = "simple step: G only, MSE(T_rgb) + MSE(R_rgb) + L1(T_raw) + L1(R_raw), Adam"
    return step, losses, what, precision


def worker_train(spec: dict, mode: Mode, device: torch.device) -> dict:
    """Time training steps (batch ``spec['batch']`` at ``spec['train_size']``) under ``mode``."""
    if mode.jit:
        raise UserError(f"mode {mode.name}: jit is an inference-only mode")
    h, w = spec["train_size"]
    batch = make_batch(spec["batch"], h, w)
    trainer_error = None
    with tempfile.TemporaryDirectory() as folder:
        built = None
        if spec["train_step"] in ("auto", "trainer"):
            try:
                built = _trainer_step(spec, mode, device, batch, folder)
            except Exception as err:  # the training code is optional here: fall back, and say why
                if spec["train_step"] == "trainer":
                    raise
                trainer_error = f"{type(err).__name__}: {err}".splitlines()[0][:300]
        if built is None:
            built = _simple_step(spec, mode, device, batch)
        step, losses, what, precision = built
        before = _memory_start(device)
        result = {"precision": precision, "train_step": what}
        if trainer_error:
            result["trainer_error"] = trainer_error
        if mode.compile:
            _sync(device)
            start = time.perf_counter()
            step()
            _sync(device)
            result["first_call_s"] = time.perf_counter() - start
        result.update(_timed_runs(step, spec, device))
        result.update(_memory_report(device, before))
    result["first_loss_G"] = losses[0] if losses else None
    return result


def worker_main(spec_path: str) -> None:
    """Subprocess entry: run one (task, mode) described by the JSON file ``spec_path``; write its result beside."""
    spec = json.loads(Path(spec_path).read_text())
    spec["size"], spec["train_size"] = tuple(spec["size"]), tuple(spec["train_size"])
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    if spec.get("malloc", "keep") == "keep":
        keep_buffers_mapped()
    device = torch.device(spec["device"])
    mode = parse_mode(spec["mode"])
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    task = worker_infer if spec["task"] == "infer" else worker_train
    result = task(spec, mode, device)
    result.update({"threads": torch.get_num_threads(), "load_before": load_before,
                   "load_after": os.getloadavg()[0] if hasattr(os, "getloadavg") else None})
    Path(spec["result"]).write_text(json.dumps(result))


# ---------------------------------------------------------------------------------------------------- parent
def _run_mode(spec: dict, folder: Path, timeout: float) -> dict:
    """Run one (task, mode) in a fresh Python process; returns its result with ``status`` ok/timeout/failed."""
    tag = f"{spec['task']}_{spec['mode'].replace('+', '_')}"
    spec = dict(spec, out=str(folder / f"{tag}.pt"), result=str(folder / f"{tag}.json"))
    spec_path = folder / f"{tag}_spec.json"
    spec_path.write_text(json.dumps(spec))
    env = dict(os.environ)
    if spec.get("threads"):
        env["OMP_NUM_THREADS"] = str(spec["threads"])
    start = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), WORKER_FLAG, str(spec_path)],
                              capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO_ROOT, check=False)
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "error": f"killed after the --timeout of {timeout:.0f} s",
                "wall_s": time.perf_counter() - start}
    wall = time.perf_counter() - start
    if proc.returncode != 0 or not Path(spec["result"]).is_file():
        lines = [ln for ln in (proc.stderr or proc.stdout).strip().splitlines() if ln.strip()]
        return {"status": "failed", "error": lines[-1] if lines else f"exit status {proc.returncode}", "wall_s": wall}
    result = json.loads(Path(spec["result"]).read_text())
    result.update(status="ok", wall_s=wall, output=spec["out"] if spec["task"] == "infer" else None)
    return result


def compare_outputs(path: str, baseline_path: str) -> dict:
    """Accuracy of one mode's T_rgb against the fp32 baseline's: float PSNR (range 1), 8-bit PSNR, max |diff|."""
    from util.metrics import psnr, to_uint8

    out, ref = torch.load(path, weights_only=True), torch.load(baseline_path, weights_only=True)
    T, T_ref = out["T_rgb"].double(), ref["T_rgb"].double()
    mse = float(((T - T_ref) ** 2).mean())
    change = float(((T_ref - ref["I_rgb"].double().clamp(0, 1)) ** 2).mean().sqrt())
    return {
        "psnr_db": 10 * math.log10(1 / mse) if mse > 0 else math.inf,  # data range 1 (sRGB [0, 1])
        "psnr_u8_db": psnr(to_uint8(T_ref[0].float()), to_uint8(T[0].float())),
        "max_abs_diff": float((T - T_ref).abs().max()),
        "rel_error": math.sqrt(mse) / change if change > 0 else math.nan,
        "identical": mse == 0,
        "finite": bool(torch.isfinite(T).all()),
        "net_change_rms": change,
    }


def _median(values):
    return statistics.median(values) if values else None


def summarise(results: dict[str, dict], baseline: str, timeout: float) -> None:
    """Add median seconds and the speed-up over ``baseline`` to every result (in place)."""
    base = _median(results[baseline].get("seconds", [])) if results[baseline]["status"] == "ok" else None
    for r in results.values():
        r["median_s"] = _median(r.get("seconds", []))
        r["median_cpu_s"] = _median(r.get("cpu_seconds", []))
        r["median_user_s"] = _median(r.get("user_seconds", []))
        r["median_sys_s"] = _median(r.get("sys_seconds", []))
        r["n"] = len(r.get("seconds", []))
        r["speedup"] = base / r["median_s"] if base and r["median_s"] else None
        if r["status"] == "timeout" and base:
            r["speedup_at_most"] = base / timeout  # slower than the timeout: the speed-up is below this


def _fmt(value, spec: str, missing: str = "-") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return missing
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return format(value, spec)


def format_table(title: str, results: dict[str, dict], task: str, timeout: float) -> str:
    """A plain-text table of one task's results."""
    unit = "s/img" if task == "infer" else "s/step"
    head = ["mode", "prec", f"{unit} (n)", "user s", "sys s", "speed-up", "1st call s", "peak MiB", "+MiB"]
    if task == "infer":
        head += ["PSNR T dB", "PSNR 8bit", "max|dT|", "rel err"]
    else:
        head += ["loss G", "d loss"]
    rows = []
    for name, r in results.items():
        if r["status"] != "ok":
            cell = f">{timeout:.0f}" if r["status"] == "timeout" else r["status"]
            speed = f"<{r['speedup_at_most']:.2f}x" if r.get("speedup_at_most") else "-"
            rows.append([name, r.get("precision", "-"), cell, "-", "-", speed] + ["-"] * (len(head) - 6))
            continue
        count = f"{r['n']}, cold" if r.get("cold") else str(r["n"])
        row = [name, r["precision"], f"{_fmt(r['median_s'], '.3f')} ({count})", _fmt(r["median_user_s"], ".2f"),
               _fmt(r["median_sys_s"], ".2f"),
               _fmt(r["speedup"], ".2f") + "x", _fmt(r.get("first_call_s"), ".1f"), _fmt(r["peak_mib"], ".0f"),
               _fmt(r["peak_delta_mib"], ".0f")]
        if task == "infer":
            acc = r.get("accuracy", {})
            row += [_fmt(acc.get("psnr_db"), ".1f"), _fmt(acc.get("psnr_u8_db"), ".1f"),
                    _fmt(acc.get("max_abs_diff"), ".1e"), _fmt(acc.get("rel_error"), ".1e")]
        else:
            row += [_fmt(r.get("first_loss_G"), ".4f"), _fmt(r.get("loss_rel_diff"), ".1e")]
        rows.append(row)
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows, strict=True)]
    lines = [title, "  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    errors = [f"  {name}: {r['error']}" for name, r in results.items() if r.get("error")]
    return "\n".join(lines + (["failures:"] + errors if errors else []))


def environment(device: torch.device, threads: int | None) -> dict:
    """What the numbers depend on: versions, processor, threads, GPU."""
    info = {"torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine(),
            "cpu_count": os.cpu_count(), "threads": threads or torch.get_num_threads(),
            "cpu_native_bf16": cpu_has_native_bf16(), "auto_precision": resolve_precision("auto", device),
            "mkldnn": torch.backends.mkldnn.is_available()}
    try:
        models = [ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                  if ln.startswith("model name")]
        info["cpu"] = models[0] if models else platform.processor()
    except OSError:
        info["cpu"] = platform.processor()
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


class _DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, except None (those flags state theirs in their help)."""

    def _get_help_string(self, action):
        return action.help if action.default is None else super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=MODES_HELP,
                                formatter_class=_DefaultsFormatter)
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="where to run")
    p.add_argument("--ngf", type=int, default=None,
                   help=f"generator width (default: {DEFAULT_NGF}; --quick: {QUICK['ngf']})")
    p.add_argument("--num_cab", type=int, default=None,
                   help=f"DCABs per RGB residual group (default: {DEFAULT_NUM_CAB}; --quick: {QUICK['num_cab']})")
    p.add_argument("--size", default=None,
                   help=f"RGB HxW for inference (default: {DEFAULT_SIZE}; --quick: {QUICK['size']})")
    p.add_argument("--train_size", default=None,
                   help=f"RGB crop for training, HxW or one number (default: {DEFAULT_TRAIN_SIZE}; --quick: "
                   f"{QUICK['train_size']})")
    p.add_argument("--batch", type=int, default=DEFAULT_BATCH, help="training batch size")
    p.add_argument("--warmup", type=int, default=DEFAULT_WARMUP, help="untimed runs per mode before the timed ones")
    p.add_argument("--repeats", type=int, default=DEFAULT_REPEATS, help="timed runs per mode (the median is reported)")
    p.add_argument("--budget", type=float, default=DEFAULT_BUDGET_S,
                   help="seconds per mode after which no further timed run starts (at least one always runs)")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                   help="seconds after which a mode's subprocess is killed and reported as slower than this")
    p.add_argument("--modes", nargs="+", default=None,
                   help=f"modes to measure (default: {' '.join(DEFAULT_MODES)}; on CUDA: "
                   f"{' '.join(DEFAULT_MODES_CUDA)}); the {BASELINE} baseline is always measured first")
    p.add_argument("--skip_train", action="store_true", help="measure inference only")
    p.add_argument("--skip_infer", action="store_true", help="measure training only")
    p.add_argument("--train_step", default="auto", choices=TRAIN_STEPS,
                   help="training step to time: the trainer's (G and D), the simple G-only one, or auto = the "
                   "trainer's when it builds")
    p.add_argument("--weights", default="", help="generator weights (.pth) instead of random ones (--ngf must match)")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of the random weights")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--malloc", default="keep", choices=("keep", "default"),
                   help="keep = large buffers stay mapped between uses (util/allocator.py, what every entry point "
                   "does); default = glibc's own behaviour (a fresh mmap and page faults for every large buffer)")
    p.add_argument("--quick", action="store_true", help="smoke run: small network and images unless given")
    p.add_argument("--json", default="", help="also write the results to this JSON file")
    return p


def resolve_args(args) -> dict:
    """The run's settings (spec shared by every worker) from parsed flags; UserError on bad values."""
    defaults = QUICK if args.quick else {"ngf": DEFAULT_NGF, "num_cab": DEFAULT_NUM_CAB, "size": DEFAULT_SIZE,
                                         "train_size": DEFAULT_TRAIN_SIZE}
    ngf = args.ngf if args.ngf is not None else defaults["ngf"]
    num_cab = args.num_cab if args.num_cab is not None else defaults["num_cab"]
    size = parse_size(str(args.size or defaults["size"]), "--size")
    train_size = parse_size(str(args.train_size or defaults["train_size"]), "--train_size")
    from models.mcdrnet import SIZE_MULTIPLE

    for flag, (h, w) in (("--size", size), ("--train_size", train_size)):
        if h % SIZE_MULTIPLE or w % SIZE_MULTIPLE:
            raise UserError(f"{flag} {h}x{w}: use multiples of {SIZE_MULTIPLE} (the network's size multiple)")
    if ngf < 4 or num_cab < 1 or args.batch < 1 or args.repeats < 1 or args.warmup < 0:
        raise UserError("--ngf >= 4, --num_cab >= 1, --batch >= 1, --repeats >= 1 and --warmup >= 0 are needed")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: CUDA is not available here; use --device cpu")
    if args.weights and not Path(args.weights).is_file():
        raise UserError(f"--weights {args.weights}: no such file")
    return {"device": args.device, "ngf": ngf, "num_cab": num_cab, "size": size, "train_size": train_size,
            "batch": args.batch, "warmup": args.warmup, "repeats": args.repeats, "budget": args.budget,
            "seed": args.seed, "threads": args.threads, "weights": str(Path(args.weights).resolve()) if args.weights
            else "", "train_step": args.train_step, "malloc": args.malloc}


class Interrupted(Exception):
    """SIGTERM or Ctrl-C: the run stops, and what it measured so far is still printed and written."""


def _raise_interrupted(signum, frame):
    raise Interrupted(f"signal {signal.Signals(signum).name}")


def finish_task(task: str, results: dict[str, dict], timeout: float) -> None:
    """Speed-ups, accuracy against the baseline and training-loss differences of one task's results (in place)."""
    if BASELINE not in results:
        return
    summarise(results, BASELINE, timeout)
    base = results[BASELINE]
    for r in results.values():
        if r["status"] != "ok" or base["status"] != "ok":
            continue
        if task == "infer" and r.get("output") and base.get("output"):
            r["accuracy"] = compare_outputs(r["output"], base["output"])
        elif task == "train" and r.get("first_loss_G") is not None and base.get("first_loss_G"):
            r["loss_rel_diff"] = abs(r["first_loss_G"] - base["first_loss_G"]) / abs(base["first_loss_G"])


def write_json(path: str, report: dict) -> None:
    from util.metrics import json_safe

    clean = {k: v for k, v in report.items() if k not in ("infer", "train")}
    for task in ("infer", "train"):
        if task in report:
            clean[task] = {n: {k: v for k, v in r.items() if k != "output"} for n, r in report[task].items()}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(json_safe(clean), indent=2) + "\n")


def print_report(report: dict, spec: dict, timeout: float) -> None:
    h, w = spec["size"]
    th, tw = spec["train_size"]
    title = {"infer": f"Inference, full network, RGB {h}x{w} (+ RAW {h // 2}x{w // 2}), batch 1",
             "train": f"Training step, RGB {th}x{tw}, batch {spec['batch']}"}
    print()
    for task in ("infer", "train"):
        if not report.get(task):
            continue
        print(format_table(title[task], report[task], task, timeout))
        if task == "train":
            for step in sorted({r["train_step"] for r in report[task].values() if r.get("train_step")}):
                print(f"  timed: {step}")
            fallbacks = [name for name, r in report[task].items() if r.get("trainer_error")]
            if fallbacks:
                first = report[task][fallbacks[0]]["trainer_error"]
                print(f"  the trainer's step could not be built for {', '.join(fallbacks)} ({first}): the simple step "
                      "was timed instead")
        print()
    infer = report.get("infer", {})
    if infer.get(BASELINE, {}).get("status") == "ok":
        change = next((r["accuracy"]["net_change_rms"] for r in infer.values() if "accuracy" in r), None)
        print(f"speed-up = {BASELINE} s / mode s (same run); PSNR of T_rgb against {BASELINE}'s, data range 1 (8-bit: "
              f"as test.py saves); rel err = rms(T - T_{BASELINE}) / rms(T_{BASELINE} - I) where the network changes "
              f"its input by rms {_fmt(change, '.4f')}; peak MiB: {infer[BASELINE].get('memory_kind')}, "
              "+MiB its rise during the runs")
    if report.get("interrupted"):
        print(f"INTERRUPTED ({report['interrupted']}): the modes not listed above were not measured")


def main(argv=None) -> dict:
    args = build_parser().parse_args(argv)
    spec = resolve_args(args)
    device = torch.device(args.device)
    names = list(args.modes or (DEFAULT_MODES_CUDA if device.type == "cuda" else DEFAULT_MODES))
    names = [BASELINE] + [n for n in dict.fromkeys(names) if n != BASELINE]
    modes = {n: parse_mode(n) for n in names}
    tasks = ([] if args.skip_infer else ["infer"]) + ([] if args.skip_train else ["train"])
    if not tasks:
        raise UserError("--skip_infer and --skip_train together leave nothing to measure")
    env = environment(device, args.threads)
    h, w = spec["size"]
    th, tw = spec["train_size"]
    print(f"CR3Net benchmark on {args.device} ({env.get('gpu', env['cpu'])}; torch {env['torch']}, "
          f"{env['threads']} threads, native CPU bf16: {env['cpu_native_bf16']}, auto -> {env['auto_precision']})")
    weights = f"weights {spec['weights']}" if spec["weights"] else f"random weights (seed {spec['seed']}, N(0, 0.02))"
    print(f"ngf {spec['ngf']}, num_cab {spec['num_cab']}, {weights}; inference RGB {h}x{w} batch 1; training RGB "
          f"{th}x{tw} batch {spec['batch']}; warmup {spec['warmup']}, repeats {spec['repeats']} (budget "
          f"{spec['budget']:.0f} s, timeout {args.timeout:.0f} s per mode)", flush=True)
    report = {"environment": env, "settings": {**spec, "modes": names, "baseline": BASELINE, "timeout": args.timeout},
              "modes": {n: asdict(m) for n, m in modes.items()}}
    previous = signal.signal(signal.SIGTERM, _raise_interrupted)
    try:
        with tempfile.TemporaryDirectory(prefix="cr3net_bench_") as tmp:
            try:
                for task in tasks:
                    report[task] = results = {}
                    for name, mode in modes.items():
                        if task == "train" and mode.jit:
                            continue
                        r = _run_mode(dict(spec, task=task, mode=name), Path(tmp), args.timeout)
                        results[name] = r
                        r.setdefault("precision", resolve_precision(mode.precision, device))
                        shown = (f"{_median(r['seconds']):.3f} s median of {len(r['seconds'])}" if r["status"] == "ok"
                                 else f"{r['status']}: {r['error']}")
                        print(f"  [{task}] {name}: {shown} ({r['wall_s']:.0f} s wall)", flush=True)
                        if args.json:  # a run stopped later still leaves this much behind
                            finish_task(task, results, args.timeout)
                            write_json(args.json, report)
                    finish_task(task, results, args.timeout)
            except (Interrupted, KeyboardInterrupt) as err:
                report["interrupted"] = str(err) or type(err).__name__
                for task in tasks:
                    if task in report:
                        finish_task(task, report[task], args.timeout)
    finally:
        signal.signal(signal.SIGTERM, previous)
    print_report(report, spec, args.timeout)
    if args.json:
        write_json(args.json, report)
        print(f"wrote {args.json}")
    if report.get("interrupted"):
        sys.exit(INTERRUPTED_EXIT_CODE)
    for task in tasks:
        for r in report[task].values():
            r.pop("output", None)
    return report


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == WORKER_FLAG:
        worker_main(sys.argv[2])
    else:
        run_cli(main)
