"""Speed, memory and accuracy of CR3Net's precision and memory-format modes, measured on one device.

    python -m scripts.benchmark                                   # CPU, ngf 64, 448x640, all default modes
    python -m scripts.benchmark --quick --skip_train              # smoke run (ngf 16, small images)
    python -m scripts.benchmark --device cuda --json bench.json
    python -m scripts.benchmark --modes fp32 fp32+cl compile --skip_train

Each mode runs in a fresh process (scripts/benchmark_mode.py; ``--timeout`` kills it): train.py's network on one image
at upstream's test size (RGB 448x640), then train.py's training step (batch 2, 256 px crops). Per mode, printed and
written with ``--json``: seconds per image or step (median of ``--repeats`` timed runs after ``--warmup``; synchronised
on CUDA) and their user and system CPU seconds; peak memory (CPU: VmHWM and its rise during the runs; CUDA:
``torch.cuda.max_memory_allocated``); the speed-up over the fp32 baseline (NCHW, buffers kept mapped; ``--baseline
upstream``: upstream's path); PSNR of T_rgb against the baseline's (data range 1; 8-bit as test.py saves), max
|difference| and rms(T - T_fp32) / rms(T_fp32 - I) (random weights change the input little, which flatters the PSNR);
for training, the first G loss's relative change.
"""

from __future__ import annotations

if not __package__:  # run as a file: the project's packages import only from the repository root
    raise SystemExit("run it from the repository root as a module: python -m scripts.benchmark [flags]")

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
from dataclasses import asdict
from pathlib import Path

import torch

from models.cr3net import SIZE_MULTIPLE
from options.base_options import DEFAULT_NGF, DEFAULT_NUM_CAB
from scripts.benchmark_mode import MODES_HELP, RESULT_TAG, compare_outputs, parse_mode, train_options
from util.errors import UserError, run_cli
from util.help import HelpFormatter
from util.measure import cpu_name
from util.metrics import json_safe
from util.precision import cpu_has_native_bf16, resolve_precision

ROOT = Path(__file__).resolve().parents[1]
# 448x640: upstream's test size (long side 640); 256: its training crop; batch 2: train.py's (upstream's) default
DEFAULTS = {"ngf": DEFAULT_NGF, "num_cab": DEFAULT_NUM_CAB, "size": "448x640", "train_size": "256"}
QUICK = {"ngf": 16, "num_cab": 2, "size": "64x96", "train_size": "64"}  # --quick: a smoke run, well under a minute
DEFAULT_BATCH, DEFAULT_WARMUP, DEFAULT_REPEATS, DEFAULT_SEED = 2, 1, 3, 0
DEFAULT_BUDGET_S, DEFAULT_TIMEOUT_S = 180.0, 600.0  # per mode: no new timed run after; the process is killed after
BASELINE = "fp32"  # plain NCHW float32 (--baseline upstream: also without the allocator setup)
DEFAULT_MODES = ("fp32", "fp32+cl", "bf16+cl", "auto")
DEFAULT_MODES_CUDA = ("fp32", "fp32+cl", "bf16+cl", "fp16+cl", "auto")
# the table's columns after mode, precision and seconds: (head, result or accuracy key, format)
COLUMNS = (("user s", "median_user_s", ".2f"), ("sys s", "median_sys_s", ".2f"), ("speed-up", "speedup", ".2f"),
           ("1st call s", "first_call_s", ".1f"), ("peak MiB", "peak_mib", ".0f"), ("+MiB", "peak_delta_mib", ".0f"))
TASK_COLUMNS = {"infer": (("PSNR T dB", "psnr_db", ".1f"), ("PSNR 8bit", "psnr_u8_db", ".1f"),
                          ("max|dT|", "max_abs_diff", ".1e"), ("rel err", "rel_error", ".1e")),
                "train": (("loss G", "first_loss_G", ".4f"), ("d loss", "loss_rel_diff", ".1e"))}
MODE_PROCESS = [sys.executable, "-m", "scripts.benchmark_mode"]  # run from the repository root
INTERRUPTED_EXIT_CODE = 130  # the shell's status for a run stopped by a signal


def parse_size(text: str, flag: str) -> tuple[int, int]:
    """``'448x640'`` -> (448, 640) (RGB height, width), multiples of the network's 8; ``'256'`` -> (256, 256)."""
    try:
        parts = [int(v) for v in text.lower().split("x")]
    except ValueError:
        parts = []
    parts *= 2 if len(parts) == 1 else 1
    if len(parts) != 2 or min(parts) <= 0 or parts[0] % SIZE_MULTIPLE or parts[1] % SIZE_MULTIPLE:
        raise UserError(f"{flag} {text!r}: give the RGB size as HxW (or one number), multiples of {SIZE_MULTIPLE} "
                        "(the network's size multiple), e.g. 448x640")
    return parts[0], parts[1]


def run_mode(spec: dict, folder: Path, timeout: float) -> dict:
    """One (task, mode) in a fresh Python process: its result, with ``status`` ok, timeout or failed and ``wall_s``."""
    spec = dict(spec, out=str(folder / f"{spec['task']}_{spec['mode']}.pt"))
    env = dict(os.environ, **({"OMP_NUM_THREADS": str(spec["threads"])} if spec["threads"] else {}))
    start = time.perf_counter()
    try:
        proc = subprocess.run([*MODE_PROCESS, json.dumps(spec)], capture_output=True, text=True, timeout=timeout,
                              env=env, cwd=ROOT, check=False)
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "error": f"killed after the --timeout of {timeout:.0f} s",
                "wall_s": time.perf_counter() - start}
    wall = time.perf_counter() - start
    last = (proc.stdout.strip().splitlines() or [""])[-1]
    if proc.returncode != 0 or not last.startswith(RESULT_TAG):
        lines = [ln for ln in (proc.stderr or proc.stdout).strip().splitlines() if ln.strip()]
        return {"status": "failed", "error": lines[-1] if lines else f"exit status {proc.returncode}", "wall_s": wall}
    output = spec["out"] if spec["task"] == "infer" else None
    return dict(json.loads(last[len(RESULT_TAG):]), status="ok", wall_s=wall, output=output)


def finish(task: str, results: dict[str, dict], timeout: float, baseline: str = BASELINE) -> None:
    """Medians, speed-ups over the baseline, accuracy and training-loss differences against it (in place)."""
    base = results.get(baseline)
    if base is None:
        return
    base_s = statistics.median(base["seconds"]) if base["status"] == "ok" else None
    for r in results.values():
        for kind in ("", "cpu_", "user_", "sys_"):
            r[f"median_{kind}s"] = statistics.median(runs) if (runs := r.get(f"{kind}seconds")) else None
        r["n"] = len(r.get("seconds", []))
        r["speedup"] = base_s / r["median_s"] if base_s and r["median_s"] else None
        if r["status"] == "timeout" and base_s:
            r["speedup_at_most"] = base_s / timeout  # slower than the timeout: the speed-up is below this
        ok = r["status"] == base["status"] == "ok"
        if ok and task == "infer" and r.get("output") and base.get("output"):
            r["accuracy"] = compare_outputs(r["output"], base["output"])
        elif ok and task == "train" and r.get("first_loss_G") is not None and base.get("first_loss_G"):
            r["loss_rel_diff"] = abs(r["first_loss_G"] - base["first_loss_G"]) / abs(base["first_loss_G"])


def _fmt(value, spec: str) -> str:
    finite = value is not None and not (isinstance(value, float) and not math.isfinite(value))
    return format(value, spec) if finite else "inf" if value is not None and math.isinf(value) else "-"


def format_table(title: str, results: dict[str, dict], task: str, timeout: float) -> str:
    """A plain-text table of one task's results."""
    columns = COLUMNS + TASK_COLUMNS[task]
    head = ["mode", "runs as", f"{'s/img' if task == 'infer' else 's/step'} (n)", *(c[0] for c in columns)]
    rows = []
    for name, r in results.items():
        if r["status"] != "ok":
            speed = f"<{r['speedup_at_most']:.2f}x" if r.get("speedup_at_most") else "-"
            cell = f">{timeout:.0f}" if r["status"] == "timeout" else r["status"]
            rows.append([name, r.get("precision", "-"), cell, "-", "-", speed] + ["-"] * (len(head) - 6))
            continue
        values, count = {**r, **r.get("accuracy", {})}, f"{r['n']}, cold" if r.get("cold") else r["n"]
        cells = [_fmt(values.get(key), spec) + ("x" if key == "speedup" else "") for _, key, spec in columns]
        rows.append([name, r.get("path", r["precision"]), f"{_fmt(r['median_s'], '.3f')} ({count})", *cells])
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows, strict=True)]
    lines = [title] + ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True))
                       for row in (head, ["-" * w for w in widths], *rows)]
    errors = [f"  {name}: {r['error']}" for name, r in results.items() if r.get("error")]
    return "\n".join(lines + (["failures:", *errors] if errors else []))


def build_parser(defaults: dict = DEFAULTS) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=MODES_HELP,
                                formatter_class=HelpFormatter)
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="where to run")
    p.add_argument("--ngf", type=int, default=defaults["ngf"], help=f"generator width (--quick: {QUICK['ngf']})")
    p.add_argument("--num_cab", type=int, default=defaults["num_cab"],
                   help=f"DCABs per RGB residual group (--quick: {QUICK['num_cab']})")
    p.add_argument("--size", default=defaults["size"], help=f"RGB HxW for inference (--quick: {QUICK['size']})")
    p.add_argument("--train_size", default=defaults["train_size"],
                   help=f"RGB crop for training, HxW or one number (--quick: {QUICK['train_size']})")
    p.add_argument("--batch", type=int, default=DEFAULT_BATCH, help="training batch size")
    p.add_argument("--warmup", type=int, default=DEFAULT_WARMUP, help="untimed runs per mode before the timed ones")
    p.add_argument("--repeats", type=int, default=DEFAULT_REPEATS, help="timed runs per mode (the median is reported)")
    p.add_argument("--budget", type=float, default=DEFAULT_BUDGET_S,
                   help="seconds per mode after which no further timed run starts (at least one always runs)")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                   help="seconds after which a mode's subprocess is killed and reported as slower than this")
    p.add_argument("--modes", nargs="+", default=argparse.SUPPRESS,
                   help=f"modes to measure (default: {' '.join(DEFAULT_MODES)}; on CUDA: "
                   f"{' '.join(DEFAULT_MODES_CUDA)}); the baseline is always measured first")
    p.add_argument("--baseline", default=BASELINE, help="the 1.00 reference mode; upstream = fp32, NCHW, glibc malloc")
    p.add_argument("--skip_train", action="store_true", help="measure inference only")
    p.add_argument("--skip_infer", action="store_true", help="measure training only")
    p.add_argument("--weights", default="", help="generator weights (.pth) instead of random ones (--ngf must match)")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of the random weights")
    p.add_argument("--threads", type=int, default=argparse.SUPPRESS, help="torch intra-op threads (default: torch's)")
    p.add_argument("--malloc", default="keep", choices=("keep", "default"),
                   help="keep = large buffers stay mapped (util/allocator.py, as in every entry point); default = "
                   "glibc's behaviour (a fresh mmap and page faults for every large buffer)")
    p.add_argument("--quick", action="store_true", help="smoke run: small network and images unless given")
    p.add_argument("--json", default="", help="also write the results to this JSON file")
    return p


def resolve_args(args) -> dict:
    """The run's settings (spec shared by every worker) from parsed flags; UserError on bad values."""
    size, train_size = parse_size(str(args.size), "--size"), parse_size(str(args.train_size), "--train_size")
    if args.batch < 1 or args.repeats < 1 or args.warmup < 0:
        raise UserError("--batch >= 1, --repeats >= 1 and --warmup >= 0 are needed")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: CUDA is not available here; use --device cpu")
    if args.weights and not Path(args.weights).is_file():
        raise UserError(f"--weights {args.weights}: no such file")
    spec = {"device": args.device, "ngf": args.ngf, "num_cab": args.num_cab, "size": size, "train_size": train_size,
            "batch": args.batch, "warmup": args.warmup, "repeats": args.repeats, "budget": args.budget,
            "seed": args.seed, "threads": getattr(args, "threads", None), "malloc": args.malloc,
            "weights": str(Path(args.weights).resolve()) if args.weights else ""}
    train_options(spec, parse_mode(BASELINE))  # train.py's own checks of --ngf, --num_cab and --batch
    return spec


def _stop(signum, frame):
    """SIGTERM, like Ctrl-C: the run stops, and what it measured so far is still printed and written."""
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


def write_json(path: str, report: dict) -> None:
    clean = {k: ({n: {k2: v for k2, v in r.items() if k2 != "output"} for n, r in v.items()}
                 if k in ("infer", "train") else v) for k, v in report.items()}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(json_safe(clean), indent=2) + "\n")


def print_report(report: dict, spec: dict, timeout: float) -> None:
    (h, w), (th, tw) = spec["size"], spec["train_size"]
    titles = {"infer": f"Inference, full network, RGB {h}x{w} (+ RAW {h // 2}x{w // 2}), batch 1",
              "train": f"Training step, RGB {th}x{tw}, batch {spec['batch']}"}
    print()
    for task in (t for t in ("infer", "train") if report.get(t)):
        print(format_table(titles[task], report[task], task, timeout))
        for step in sorted({r["train_step"] for r in report[task].values() if r.get("train_step")}):
            print(f"  timed: {step}")
        print()
    infer, base = report.get("infer", {}), report["settings"]["baseline"]
    if infer.get(base, {}).get("status") == "ok":
        change = next((r["accuracy"]["net_change_rms"] for r in infer.values() if "accuracy" in r), None)
        print(f"speed-up = {base} s / mode s (same run); PSNR of T_rgb against {base}'s, data range 1 (8-bit: "
              f"as test.py saves); rel err = rms(T - T_{base}) / rms(T_{base} - I) where the network changes "
              f"its input by rms {_fmt(change, '.4f')}; peak MiB: {infer[base].get('memory_kind')}, "
              "+MiB its rise during the runs")
    if report.get("interrupted"):
        print(f"INTERRUPTED ({report['interrupted']}): the modes not listed above were not measured")


def main(argv=None) -> dict:
    args = build_parser().parse_args(argv)
    if args.quick:  # smaller defaults; flags given still win
        args = build_parser(QUICK).parse_args(argv)
    spec = resolve_args(args)
    device = torch.device(args.device)
    names = list(getattr(args, "modes", DEFAULT_MODES_CUDA if device.type == "cuda" else DEFAULT_MODES))
    names = [args.baseline] + [n for n in dict.fromkeys(names) if n != args.baseline]
    modes = {n: parse_mode(n) for n in names}
    tasks = [task for task, skip in (("infer", args.skip_infer), ("train", args.skip_train)) if not skip]
    if not tasks:
        raise UserError("--skip_infer and --skip_train together leave nothing to measure")
    env = {"torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine(),
           "cpu_count": os.cpu_count(), "threads": spec["threads"] or torch.get_num_threads(),
           "cpu_native_bf16": cpu_has_native_bf16(), "auto_precision": resolve_precision("auto", device),
           "mkldnn": torch.backends.mkldnn.is_available(), "cpu": cpu_name(),
           **({"gpu": torch.cuda.get_device_name(device)} if device.type == "cuda" else {})}  # what numbers depend on
    (h, w), (th, tw) = spec["size"], spec["train_size"]
    print(f"CR3Net benchmark on {args.device} ({env.get('gpu', env['cpu'])}; torch {env['torch']}, "
          f"{env['threads']} threads, native CPU bf16: {env['cpu_native_bf16']}, auto -> {env['auto_precision']})")
    weights = f"weights {spec['weights']}" if spec["weights"] else f"random weights (seed {spec['seed']}, N(0, 0.02))"
    print(f"ngf {spec['ngf']}, num_cab {spec['num_cab']}, {weights}; inference RGB {h}x{w} batch 1; training RGB "
          f"{th}x{tw} batch {spec['batch']}; warmup {spec['warmup']}, repeats {spec['repeats']} (budget "
          f"{spec['budget']:.0f} s, timeout {args.timeout:.0f} s per mode)", flush=True)
    settings = {**spec, "modes": names, "baseline": args.baseline, "timeout": args.timeout}
    report = {"environment": env, "settings": settings, "modes": {n: asdict(m) for n, m in modes.items()}}
    previous = signal.signal(signal.SIGTERM, _stop)
    with tempfile.TemporaryDirectory(prefix="cr3net_bench_") as tmp:  # the inference outputs, compared at the end
        try:
            for task in tasks:
                report[task] = results = {}
                for name, mode in modes.items():
                    if task == "train" and mode.jit:
                        continue
                    r = results[name] = run_mode(dict(spec, task=task, mode=name), Path(tmp), args.timeout)
                    r.setdefault("precision", resolve_precision(mode.precision, device))
                    shown = (f"{statistics.median(r['seconds']):.3f} s median of {len(r['seconds'])}"
                             if r["status"] == "ok" else f"{r['status']}: {r['error']}")
                    print(f"  [{task}] {name}: {shown} ({r['wall_s']:.0f} s wall)", flush=True)
                    if args.json:  # a run stopped later still leaves this much behind
                        finish(task, results, args.timeout, args.baseline)
                        write_json(args.json, report)
                finish(task, results, args.timeout, args.baseline)
        except KeyboardInterrupt as err:
            report["interrupted"] = str(err) or type(err).__name__
            for task in (t for t in tasks if t in report):
                finish(task, report[task], args.timeout, args.baseline)
        finally:
            signal.signal(signal.SIGTERM, previous)
    print_report(report, spec, args.timeout)
    if args.json:
        write_json(args.json, report)
        print(f"wrote {args.json}")
    if report.get("interrupted"):
        sys.exit(INTERRUPTED_EXIT_CODE)
    for r in (r for task in tasks for r in report[task].values()):
        r.pop("output", None)
    return report


if __name__ == "__main__":
    run_cli(main)
