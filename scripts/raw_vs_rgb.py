#!/usr/bin/env python3
"""Does RAW help? CR3Net trained on the camera's RAW against its RGB-only twin, on held-out sets split by condition.

    python -m scripts.raw_vs_rgb --out studies/raw_vs_rgb --dataroot ../shared/data/photos --holdout_every 8 \
        --budget 1500 --ngf 16 --num_cab 2 --seeds 0 1 --crop_size 128 --batch_size 4 \
        --real_sets datasets/val/real_zhang_heldout datasets/val/real_location_aware

The paper's claim is that a RAW-RGB pair separates reflections better than the RGB image alone. For each seed this
trains two twins with train.py that differ in one thing, where their RAW input comes from:

* ``sensor`` (``train.py --raw_source sensor``): the data's RAW (the physical model's camera RAW of synthetic
  samples, the captured RAW of real triplets);
* ``rgb`` (``--raw_source rgb``): a RAW made from the RGB image by the project's fixed inverse ISP
  (data/pseudo_raw.py), what a user without a RAW file has.

Everything else is shared: architecture, data (the same samples in the same order), seed (so the same initial
weights), iterations and flags. Real pairs that have no RAW get the pseudo-RAW in both twins (they are RGB-only by
nature); real triplets with RAW give the sensor twin their RAW. The flags this script does not know go to train.py
unchanged (``--vgg``, ``--num_threads``, ``--real_dataroot DIR ...``, ``--real_ratio``, ``--lr``, ...); the flags
that define the twins (:data:`RESERVED_TRAIN_FLAGS`) are the script's own.

Both twins are then evaluated by test.py on the same sets: the condition sets of data/condition_sets.py (normal,
highlights, low_light, strong_reflection, weak_reflection; made from the photos of ``--dataroot`` that
``--holdout_every`` holds out, at their native size) and each ``--real_sets`` folder (test layout with ground truth,
e.g. the held-out real pairs of scripts/make_val_sets.py, at ``--real_eval_resize``). On RGB-only real pairs both
twins see a pseudo-RAW: a check that the twins are otherwise equal.

Under ``--out`` (each step is skipped when its result is on disk: rerunning the same command resumes):

* ``study.json``: the settings; a different command on the same ``--out`` is refused (more ``--seeds`` are fine);
* ``sets/<condition>/``: the condition sets;
* ``runs/<twin>_s<seed>/``: train.py's experiment folders (``--continue_train`` from ``latest`` after a stop);
* ``eval/<set>/<twin>_s<seed>/``: test.py's results and ``summary.json``, reused while the weights, the set and the
  evaluation options are unchanged;
* ``results_per_run.csv`` (per set and run), ``results.csv`` (per set and metric: mean and standard deviation over
  seeds of each twin, and of the paired difference sensor - rgb), ``results.md`` (tables) and ``raw_vs_rgb.png``.
"""

from __future__ import annotations

if not __package__:  # run as a file: the project's packages import only from the repository root
    raise SystemExit("run it from the repository root as a module: python -m scripts.raw_vs_rgb [flags]")

import argparse
import csv
import functools
import hashlib
import importlib.util
import io
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from data.condition_sets import (
    CONDITIONS,
    DEFAULT_NUM,
    DEFAULT_SEED,
    DEFAULT_SIZE,
    build_requests,
    make_condition_sets,
    parse_size_hw,
)
from data.splits import DEFAULT_HOLDOUT_EVERY
from util.errors import UserError, run_cli
from util.files import atomic_write, atomic_write_text
from util.help import HelpFormatter
from util.measure import cpu_name
from util.precision import PRECISIONS

ROOT = Path(__file__).resolve().parents[1]

TWINS = ("sensor", "rgb")  # train.py / test.py --raw_source of each twin
METRICS = ("psnr", "ssim", "lpips")
HIGHER_IS_BETTER = {"psnr": True, "ssim": True, "lpips": False}
METRIC_LABELS = {"psnr": "PSNR (dB)", "ssim": "SSIM", "lpips": "LPIPS"}
METRIC_DIGITS = {"psnr": 2, "ssim": 4, "lpips": 4}
# train.py flags that make the twins what they are: given by this script, refused among the pass-through flags
RESERVED_TRAIN_FLAGS = ("--name", "--checkpoints_dir", "--raw_source", "--seed", "--n_iters", "--n_epochs",
                        "--continue_train", "--epoch", "--suffix", "--phase")
STUDY_FILE = "study.json"
SUMMARY_FILE = "summary.json"  # one evaluation (run x set), beside test.py's results folder
TIME_FILE = "study_time.json"  # training seconds of one run, summed over the invocations that trained it
STUDY_FORMAT = 1
EVAL_FORMAT = 1  # bump when an evaluation's numbers change for the same request
INTERRUPTED_EXIT_CODE = 130  # train.py's status after a Ctrl-C (it saved 'latest')
DEFAULT_OUT = "studies/raw_vs_rgb"
DEFAULT_SEEDS = (0, 1)
DEFAULT_NGF = 16
DEFAULT_NUM_CAB = 2
DEFAULT_CROP = 128
DEFAULT_BATCH = 4
DEFAULT_SAVE_LATEST_FREQ = 100
CONDITION_EVAL_RESIZE = "none"  # the condition sets are evaluated at their native size
PER_RUN_COLUMNS = ("set", "kind", "run", "twin", "seed", "images",
                   *(f"{k}_{m}" for k in ("T", "I", "R") for m in METRICS))
TABLE_COLUMNS = ("set", "kind", "images", "metric", "seeds", "sensor_mean", "sensor_std", "rgb_mean", "rgb_std",
                 "diff_mean", "diff_std", "raw_better_seeds", "input_mean")


def log(message: str) -> None:
    print(f"[raw_vs_rgb] {message}", flush=True)


# ------------------------------------------------------------------------------------------------ options
def parse_args(argv=None) -> tuple[argparse.Namespace, list[str]]:
    """The study's flags and the list of flags passed to train.py unchanged."""
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], allow_abbrev=False,
        formatter_class=HelpFormatter,
        epilog="Any other flag goes to train.py unchanged, e.g. --vgg vgg16 --num_threads 2 --real_dataroot DIR.")
    p.add_argument("--out", default=DEFAULT_OUT, help="study folder (sets, runs, evaluations, results)")
    p.add_argument("--dataroot", required=True,
                   help="train.py's --dataroot (photos for synthesis, real_* triplets); its held-out photos make the "
                   "condition sets")
    p.add_argument("--holdout_every", type=int, default=DEFAULT_HOLDOUT_EVERY, metavar="N",
                   help="train.py --holdout_every N: about 1 photo (and real pair) in N is never trained on")
    p.add_argument("--budget", type=int, required=True, help="training iterations per run (train.py --n_iters)")
    p.add_argument("--seeds", type=int, nargs="+", default=list(DEFAULT_SEEDS), help="one pair of twins per seed")
    p.add_argument("--ngf", type=int, default=DEFAULT_NGF, help="generator width of both twins")
    p.add_argument("--num_cab", type=int, default=DEFAULT_NUM_CAB, help="DCABs per RGB residual group")
    p.add_argument("--crop_size", type=int, default=DEFAULT_CROP, help="training crop (train.py --crop_size)")
    p.add_argument("--batch_size", type=int, default=DEFAULT_BATCH, help="training batch (train.py --batch_size)")
    p.add_argument("--save_latest_freq", type=int, default=DEFAULT_SAVE_LATEST_FREQ,
                   help="train.py --save_latest_freq: a stopped run resumes from its last such checkpoint")
    p.add_argument("--gpu_ids", default="", help="train.py and test.py --gpu_ids (default: GPU 0 if any, else CPU)")
    p.add_argument("--precision", default="auto", choices=PRECISIONS, help="train.py and test.py --precision")
    p.add_argument("--conditions", nargs="+", default=list(CONDITIONS), choices=list(CONDITIONS),
                   help="condition sets to evaluate on (data/condition_sets.py)")
    p.add_argument("--num_condition", type=int, default=DEFAULT_NUM, help="images per condition set")
    p.add_argument("--condition_size", default="x".join(map(str, DEFAULT_SIZE)), metavar="HxW",
                   help="size of the condition sets' images (even)")
    p.add_argument("--condition_seed", type=int, default=DEFAULT_SEED, help="random seed of the condition sets")
    p.add_argument("--real_sets", nargs="+", default=[], metavar="DIR",
                   help="more held-out test-layout folders with ground truth (e.g. datasets/val/real_zhang_heldout "
                   "from scripts/make_val_sets.py with the same --holdout_every)")
    p.add_argument("--real_eval_resize", default="official", choices=("official", "none"),
                   help="test.py --eval_resize for --real_sets (the condition sets run at their native size)")
    p.add_argument("--no_lpips", action="store_true", help="evaluate PSNR and SSIM only")
    args, extra = p.parse_known_args(argv)
    if args.budget < 1:
        raise UserError(f"--budget {args.budget}: give at least 1 training iteration")
    if len(set(args.seeds)) != len(args.seeds) or min(args.seeds) < 0:
        raise UserError(f"--seeds {' '.join(map(str, args.seeds))}: give distinct seeds >= 0")
    if args.holdout_every < 1:
        raise UserError(f"--holdout_every {args.holdout_every}: the study needs held-out photos; give 1 or more "
                        f"(default {DEFAULT_HOLDOUT_EVERY})")
    if args.num_condition < 1:
        raise UserError(f"--num_condition {args.num_condition}: give at least 1")
    if args.save_latest_freq < 0:
        raise UserError(f"--save_latest_freq {args.save_latest_freq} must not be negative")
    args.condition_size = parse_size_hw(args.condition_size)
    args.conditions = list(dict.fromkeys(args.conditions))
    for token in extra:
        if token.split("=", 1)[0] in RESERVED_TRAIN_FLAGS:
            raise UserError(f"{token.split('=', 1)[0]} is set by this script for each twin; leave it out "
                            f"(the study sets {', '.join(RESERVED_TRAIN_FLAGS)})")
    return args, extra


def study_request(args, extra: list[str]) -> dict:
    """What every run of the study shares; a later command on the same --out must give the same."""
    return {"format": STUDY_FORMAT, "dataroot": str(Path(args.dataroot).resolve()),
            "holdout_every": args.holdout_every, "budget": args.budget, "ngf": args.ngf, "num_cab": args.num_cab,
            "crop_size": args.crop_size, "batch_size": args.batch_size, "train_flags": list(extra)}


def check_study(out: Path, request: dict) -> None:
    """Record the study's settings in ``<out>/study.json``, or refuse a command whose settings differ."""
    path = out / STUDY_FILE
    if path.is_file():
        try:
            saved = json.loads(path.read_text(encoding="utf-8")).get("request")
        except (ValueError, AttributeError):
            raise UserError(f"{path} is not a study file of this script; choose another --out") from None
        if not isinstance(saved, dict):
            raise UserError(f"{path} is not a study file of this script; choose another --out")
        if saved != request:
            changes = "; ".join(f"{k}: {saved.get(k)!r} -> {request.get(k)!r}"
                                for k in sorted(set(saved) | set(request)) if saved.get(k) != request.get(k))
            raise UserError(f"{out} holds a study with other settings ({changes}); rerun it with its own settings "
                            "(more --seeds are fine) or choose another --out")
        return
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"--out {out} exists and holds no {STUDY_FILE}; choose a new folder")
    atomic_write_text(path, json.dumps({"request": request}, indent=2) + "\n")


# ------------------------------------------------------------------------------------------------ training
def run_name(twin: str, seed: int) -> str:
    return f"{twin}_s{seed}"


def run_state(run_dir: Path) -> str:
    """``done`` (final weights written), ``resume`` (a 'latest' training state to continue from) or ``new``."""
    if (run_dir / "final_net_G_T.pth").is_file():
        return "done"
    if (run_dir / "latest_train_state.pth").is_file():
        return "resume"
    return "new"


def train_command(args, extra: list[str], twin: str, seed: int, runs_dir: Path, resume: bool) -> list[str]:
    """train.py's command line for one twin and seed."""
    cmd = [sys.executable, str(ROOT / "train.py"), "--dataroot", str(args.dataroot),
           "--holdout_every", str(args.holdout_every), "--name", run_name(twin, seed),
           "--checkpoints_dir", str(runs_dir), "--raw_source", twin, "--seed", str(seed),
           "--n_iters", str(args.budget), "--ngf", str(args.ngf), "--num_cab", str(args.num_cab),
           "--crop_size", str(args.crop_size), "--batch_size", str(args.batch_size),
           "--save_latest_freq", str(args.save_latest_freq), "--precision", args.precision]
    if args.gpu_ids:
        cmd += ["--gpu_ids", args.gpu_ids]
    cmd += extra
    if resume:
        cmd.append("--continue_train")
    return cmd


def train_run(cmd: list[str]) -> int:
    """Run train.py to its end; returns its exit status. A Ctrl-C reaches train.py too (same process group): it stops
    after its current iteration and saves 'latest', so this waits for it instead of killing it."""
    proc = subprocess.Popen(cmd)
    while True:
        try:
            return proc.wait()
        except KeyboardInterrupt:
            continue


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def train_seconds(run_dir: Path) -> float:
    saved = _read_json(run_dir / TIME_FILE)
    return float(saved.get("train_seconds", 0.0)) if isinstance(saved, dict) else 0.0


def ensure_trained(args, extra: list[str], twin: str, seed: int, runs_dir: Path) -> None:
    """Train one twin, resume it, or skip it when its final weights exist."""
    name = run_name(twin, seed)
    run_dir = runs_dir / name
    state = run_state(run_dir)
    if state == "done":
        log(f"{name}: trained, skipped")
        return
    what = "resuming from its 'latest' checkpoint" if state == "resume" else "training"
    log(f"{name}: {what} ({args.budget} iterations, --raw_source {twin}, --seed {seed})")
    start = time.perf_counter()
    try:
        code = train_run(train_command(args, extra, twin, seed, runs_dir, resume=state == "resume"))
    finally:
        seconds = train_seconds(run_dir) + time.perf_counter() - start
        atomic_write_text(run_dir / TIME_FILE, json.dumps({"train_seconds": round(seconds, 1)}) + "\n")
    if code == INTERRUPTED_EXIT_CODE:
        log(f"{name}: stopped by interrupt; rerun the same command to resume")
        raise SystemExit(INTERRUPTED_EXIT_CODE)
    if code != 0:
        raise UserError(f"train.py failed for {name} (exit status {code}, its message is above); fix the cause and "
                        "rerun the same command to resume")
    if run_state(run_dir) != "done":
        raise UserError(f"train.py ended without writing {run_dir / 'final_net_G_T.pth'}")


# ------------------------------------------------------------------------------------------------ evaluation
def real_set_entries(args) -> list[dict]:
    """The --real_sets, checked: test layout with ground truth, held out by the study's --holdout_every where the
    folder's manifest says how it was made (scripts/make_val_sets.py), names distinct from every other set's."""
    sets = []
    for text in args.real_sets:
        folder = Path(text)
        if not folder.is_dir():
            raise UserError(f"--real_sets {folder} is not a folder")
        if not ((folder / "testB_rgb").is_dir() and (folder / "testA1_rgb").is_dir()):
            raise UserError(f"--real_sets {folder} needs inputs with ground truth: testB_rgb/testB_raw and "
                            "testA1_rgb/testA1_raw")
        manifest = _read_json(folder / "manifest.json")
        request = manifest.get("request") if isinstance(manifest, dict) else None
        built_with = request.get("holdout_every") if isinstance(request, dict) else None
        if isinstance(built_with, int) and built_with != args.holdout_every:
            raise UserError(f"--real_sets {folder} holds the pairs held out by --holdout_every {built_with}, but the "
                            f"study trains with --holdout_every {args.holdout_every}: some may be trained on; rebuild "
                            f"it with python -m scripts.make_val_sets --holdout_every {args.holdout_every}")
        if folder.name in args.conditions or any(s["name"] == folder.name for s in sets):
            raise UserError(f"two evaluation sets are named {folder.name}; rename that folder of --real_sets")
        sets.append({"name": folder.name, "folder": folder, "kind": "real", "eval_resize": args.real_eval_resize,
                     "description": f"{folder}: real pairs, with the RAW the set has"})
    return sets


def condition_set_entries(args, out: Path) -> list[dict]:
    """The condition sets, built (or kept when up to date) under ``<out>/sets``."""
    made = make_condition_sets(out / "sets", args.dataroot, args.holdout_every, args.num_condition,
                               args.condition_size, args.condition_seed, args.conditions)
    return [{"name": name, "folder": folder, "kind": "condition", "eval_resize": CONDITION_EVAL_RESIZE,
             "description": CONDITIONS[name].description} for name, folder in made.items()]


def folder_digest(folder: Path) -> str:
    """SHA-256 (16 hex digits) of every file's relative path and content under ``folder``."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def weights_digest(path: Path) -> str:
    """SHA-256 (16 hex digits) of a weights file's tensors (keys and values), whatever the file's bytes."""
    from models.checkpoint import load_state_dict_file

    digest = hashlib.sha256()
    for key, value in sorted(load_state_dict_file(path).items()):
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


@functools.cache
def _test_script():
    """test.py as a module (loaded by path: ``test`` is also a package of Python's standard library)."""
    spec = importlib.util.spec_from_file_location("cr3net_test_script", ROOT / "test.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_test_py(argv: list[str]) -> dict:
    """test.py in this process; returns its summary (metrics.json's content)."""
    return _test_script().main(argv)


def evaluate_run(args, out: Path, runs_dir: Path, run: str, twin: str, weights: str, eval_set: dict,
                 set_digest: str) -> dict:
    """test.py's means for one run on one set, from ``summary.json`` when its request is unchanged."""
    folder = out / "eval" / eval_set["name"] / run
    request = {"format": EVAL_FORMAT, "weights": weights, "set": set_digest, "eval_resize": eval_set["eval_resize"],
               "raw_source": twin, "lpips": not args.no_lpips, "precision": args.precision}
    cached = _read_json(folder / SUMMARY_FILE)
    if isinstance(cached, dict) and cached.get("request") == request:
        return cached
    if folder.exists():  # an older or unfinished evaluation: its results would only be confused with this one's
        shutil.rmtree(folder)
    log(f"{run}: evaluating on {eval_set['name']} ({eval_set['folder']})")
    argv = ["--dataroot", str(eval_set["folder"]), "--name", run, "--checkpoints_dir", str(runs_dir),
            "--results_dir", str(folder.parent), "--epoch", "final", "--eval_resize", eval_set["eval_resize"],
            "--raw_source", twin, "--precision", args.precision, "--num_threads", "0"]
    if args.gpu_ids:
        argv += ["--gpu_ids", args.gpu_ids]
    if args.no_lpips:
        argv.append("--no_lpips")
    summary = run_test_py(argv)
    if summary.get("raw_source") != twin:
        raise RuntimeError(f"test.py evaluated {run} with --raw_source {summary.get('raw_source')}, not {twin}")
    result = {"request": request, "images": summary["num_images"], "means": _finite(summary["means"]),
              "device": summary["device"], "precision": summary["precision"], "results": summary["results"]}
    atomic_write_text(folder / SUMMARY_FILE, json.dumps(result, indent=2, sort_keys=True) + "\n")
    return result


def _finite(means: dict) -> dict:
    return {k: (float(v) if v is not None and math.isfinite(float(v)) else None) for k, v in means.items()}


# ------------------------------------------------------------------------------------------------ results
def _mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else math.nan


def _std(values: list[float]) -> float:
    """Sample standard deviation (n - 1); NaN for fewer than 2 values."""
    return statistics.stdev(values) if len(values) > 1 else math.nan


def summarize(per_run: list[dict], sets: list[dict], seeds) -> list[dict]:
    """One row per set and metric: each twin's mean and standard deviation over seeds, and the paired difference
    sensor - rgb (per seed: same data, same initial weights) with the number of seeds where the sensor twin is
    better. Seeds that lack either twin are left out."""
    table = []
    for eval_set in sets:
        rows = [r for r in per_run if r["set"] == eval_set["name"]]
        for metric in METRICS:
            key = f"T_{metric}"
            by_twin = {twin: {r["seed"]: r[key] for r in rows if r["twin"] == twin and r[key] is not None}
                       for twin in TWINS}
            paired = [seed for seed in seeds if seed in by_twin["sensor"] and seed in by_twin["rgb"]]
            if not paired:
                continue
            sensor = [by_twin["sensor"][s] for s in paired]
            rgb = [by_twin["rgb"][s] for s in paired]
            diffs = [a - b for a, b in zip(sensor, rgb, strict=True)]
            better = sum(d > 0 if HIGHER_IS_BETTER[metric] else d < 0 for d in diffs)
            inputs = [r[f"I_{metric}"] for r in rows if r[f"I_{metric}"] is not None]
            table.append({"set": eval_set["name"], "kind": eval_set["kind"], "images": max(r["images"] for r in rows),
                          "metric": metric, "seeds": len(paired), "sensor_mean": _mean(sensor),
                          "sensor_std": _std(sensor), "rgb_mean": _mean(rgb), "rgb_std": _std(rgb),
                          "diff_mean": _mean(diffs), "diff_std": _std(diffs), "raw_better_seeds": better,
                          "input_mean": _mean(inputs), "diffs": diffs})
    return table


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.6f}"
    return str(value)


def _csv_text(columns, rows) -> str:
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in columns])
    return text.getvalue()


def _pm(mean: float, std: float, digits: int, sign: bool = False) -> str:
    if math.isnan(mean):
        return "-"
    text = f"{mean:+.{digits}f}" if sign else f"{mean:.{digits}f}"
    return text if math.isnan(std) else f"{text} ± {std:.{digits}f}"


def _duration(seconds: float) -> str:
    minutes = int(round(seconds / 60))
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


def machine_description(args) -> str:
    """CPU model and count, and the GPU where the runs use one (from /proc/cpuinfo and torch)."""
    from options.base_options import resolve_device
    from util.precision import resolve_precision

    _, device = resolve_device(args.gpu_ids)
    text = f"{cpu_name()}, {os.cpu_count()} logical CPUs"
    if device.type == "cuda":
        import torch

        text += f"; GPU {torch.cuda.get_device_name(device)}"
    return f"{text}; device {device}, precision {args.precision} (= {resolve_precision(args.precision, device)})"


def markdown_report(args, extra, sets, table, seconds: dict[str, float], machine: str) -> str:
    runs = ", ".join(f"{name} {_duration(s)}" for name, s in seconds.items())
    lines = [
        "# Does RAW help? CR3Net with the sensor's RAW vs. a RAW made from the RGB",
        "",
        f"- Runs: {args.budget} iterations of batch {args.batch_size} at {args.crop_size} px each, ngf {args.ngf}, "
        f"num_cab {args.num_cab}, seeds {', '.join(map(str, args.seeds))}; twins `--raw_source sensor` and "
        "`--raw_source rgb`, identical otherwise.",
        f"- Training data: `--dataroot {args.dataroot} --holdout_every {args.holdout_every}`"
        + (f", train.py flags `{' '.join(extra)}`" if extra else "") + ".",
        f"- Machine: {machine}.",
        f"- Training time per run: {runs or '-'}; total {_duration(sum(seconds.values()))}.",
        "- T = predicted transmission vs. ground truth on 8-bit images (README, Metric convention); mean ± standard "
        "deviation over seeds; Δ = sensor − rgb per seed (same data and initial weights), then mean ± standard "
        "deviation; \"RAW better\" counts the seeds where the sensor twin wins (higher PSNR/SSIM, lower LPIPS); "
        "\"do nothing\" scores the input itself.",
        "",
    ]
    for metric in METRICS:
        rows = [r for r in table if r["metric"] == metric]
        if not rows:
            continue
        digits = METRIC_DIGITS[metric]
        lines += [f"## T {METRIC_LABELS[metric]}", "",
                  "| set | images | do nothing | sensor | rgb | Δ sensor − rgb | RAW better |",
                  "|---|---|---|---|---|---|---|"]
        for r in rows:
            cells = [r["set"], str(r["images"]), _pm(r["input_mean"], math.nan, digits),
                     _pm(r["sensor_mean"], r["sensor_std"], digits), _pm(r["rgb_mean"], r["rgb_std"], digits),
                     _pm(r["diff_mean"], r["diff_std"], digits, sign=True), f"{r['raw_better_seeds']}/{r['seeds']}"]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["## Sets", ""]
    for s in sets:
        resize = "native size" if s["eval_resize"] == "none" else f"--eval_resize {s['eval_resize']}"
        lines.append(f"- `{s['name']}` ({resize}): {s['description']}")
    return "\n".join(lines) + "\n"


def write_chart(table: list[dict], png_path: Path, title: str) -> Path:
    """Grouped bars of T PSNR per set (sensor, rgb; error bars: standard deviation over seeds; a tick for doing
    nothing) and the paired differences sensor - rgb of PSNR, SSIM and LPIPS (bar: mean, dots: seeds)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r["set"] for r in table))
    x = list(range(len(names)))
    fig, axes = plt.subplots(2, 2, figsize=(12, 8), dpi=100)

    def rows_of(metric):
        found = {r["set"]: r for r in table if r["metric"] == metric}
        return [found.get(n) for n in names]

    def err(value):
        return 0.0 if value is None or math.isnan(value) else value

    ax = axes[0][0]
    psnr_rows = rows_of("psnr")
    width = 0.38
    for offset, twin, colour in ((-width / 2, "sensor", "tab:blue"), (width / 2, "rgb", "tab:orange")):
        means = [r[f"{twin}_mean"] if r else math.nan for r in psnr_rows]
        stds = [err(r[f"{twin}_std"]) if r else 0.0 for r in psnr_rows]
        ax.bar([i + offset for i in x], means, width, yerr=stds, capsize=3, color=colour, label=f"{twin} RAW")
    ax.plot(x, [r["input_mean"] if r else math.nan for r in psnr_rows], "k_", ms=22, mew=2, label="do nothing")
    finite = [v for r in psnr_rows if r for v in (r["sensor_mean"], r["rgb_mean"], r["input_mean"])
              if not math.isnan(v)]
    if finite:
        ax.set_ylim(min(finite) - 2, max(finite) + 1)
    ax.set_ylabel("T PSNR (dB)")
    ax.set_title("T PSNR per twin (mean, standard deviation over seeds)", fontsize=9)
    ax.legend(fontsize=8)
    for ax, metric in ((axes[0][1], "psnr"), (axes[1][0], "ssim"), (axes[1][1], "lpips")):
        rows = rows_of(metric)
        if not any(rows):
            ax.text(0.5, 0.5, f"{METRIC_LABELS[metric]} not computed", ha="center", va="center",
                    transform=ax.transAxes)
            ax.set_axis_off()
            continue
        ax.bar(x, [r["diff_mean"] if r else math.nan for r in rows], 0.6,
               yerr=[err(r["diff_std"]) if r else 0.0 for r in rows], capsize=3, color="tab:green", alpha=0.7)
        for i, r in zip(x, rows, strict=True):
            if r:
                ax.plot([i] * len(r["diffs"]), r["diffs"], "o", color="black", ms=3)
        ax.axhline(0.0, color="black", lw=0.8)
        better = "above" if HIGHER_IS_BETTER[metric] else "below"
        ax.set_ylabel(f"Δ T {METRIC_LABELS[metric]}")
        ax.set_title(f"T {METRIC_LABELS[metric]}: sensor − rgb per seed ({better} 0: RAW helps)", fontsize=9)
    for ax in (axes[0][0], axes[0][1], axes[1][0], axes[1][1]):
        if ax.axison:
            ax.set_xticks(x)
            ax.set_xticklabels(names, rotation=25, ha="right", fontsize=8)
            ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    try:  # whole or not at all
        return atomic_write(png_path, lambda tmp: fig.savefig(tmp, format="png"))
    finally:
        plt.close(fig)


def write_reports(args, extra, out: Path, sets: list[dict], per_run: list[dict]) -> list[dict]:
    """results_per_run.csv, results.csv, results.md and raw_vs_rgb.png from the evaluations so far."""
    table = summarize(per_run, sets, args.seeds)
    atomic_write_text(out / "results_per_run.csv", _csv_text(PER_RUN_COLUMNS, per_run))
    atomic_write_text(out / "results.csv", _csv_text(TABLE_COLUMNS, table))
    seconds = {run_name(twin, seed): train_seconds(out / "runs" / run_name(twin, seed))
               for seed in args.seeds for twin in TWINS if (out / "runs" / run_name(twin, seed)).is_dir()}
    atomic_write_text(out / "results.md", markdown_report(args, extra, sets, table, seconds,
                                                          machine_description(args)))
    if table:
        seeds = len({r["seed"] for r in per_run})
        write_chart(table, out / "raw_vs_rgb.png", f"Does RAW help? sensor RAW vs RAW from RGB: {args.budget} "
                    f"iterations, ngf {args.ngf}, {seeds} seed(s)")
    return table


# ------------------------------------------------------------------------------------------------ main
def main(argv=None) -> dict:
    args, extra = parse_args(argv)
    out = Path(args.out)
    if not Path(args.dataroot).is_dir():
        raise UserError(f"--dataroot {args.dataroot} is not a folder")
    # refuse what cannot work before anything is written: too few held-out photos, unusable --real_sets
    build_requests(args.dataroot, args.holdout_every, args.num_condition, args.condition_size, args.condition_seed,
                   args.conditions)
    real_sets = real_set_entries(args)
    check_study(out, study_request(args, extra))
    log(f"study in {out}: twins {' and '.join(TWINS)}, seeds {', '.join(map(str, args.seeds))}, {args.budget} "
        f"iterations each")
    sets = condition_set_entries(args, out) + real_sets
    digests = {s["name"]: folder_digest(s["folder"]) for s in sets}
    runs_dir = out / "runs"
    per_run: list[dict] = []
    table: list[dict] = []
    for seed in args.seeds:
        for twin in TWINS:
            ensure_trained(args, extra, twin, seed, runs_dir)
            run = run_name(twin, seed)
            weights = weights_digest(runs_dir / run / "final_net_G_T.pth")
            for eval_set in sets:
                result = evaluate_run(args, out, runs_dir, run, twin, weights, eval_set, digests[eval_set["name"]])
                means = result["means"]
                per_run.append({"set": eval_set["name"], "kind": eval_set["kind"], "run": run, "twin": twin,
                                "seed": seed, "images": result["images"],
                                **{c: means.get(c) for c in PER_RUN_COLUMNS[6:]}})
        table = write_reports(args, extra, out, sets, per_run)
        log(f"seed {seed} done: {out / 'results.md'}, {out / 'results.csv'}, {out / 'raw_vs_rgb.png'}")
    for row in (r for r in table if r["metric"] == "psnr"):
        log(f"{row['set']}: T PSNR sensor {row['sensor_mean']:.2f}, rgb {row['rgb_mean']:.2f}, difference "
            f"{row['diff_mean']:+.2f} dB (RAW better for {row['raw_better_seeds']} of {row['seeds']} seed(s))")
    return {"out": out, "sets": sets, "per_run": per_run, "table": table}


if __name__ == "__main__":
    run_cli(main)
