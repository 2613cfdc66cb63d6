"""Whole-process speed: test.py on a few images, upstream's path against ours, wall, user and system CPU time.

    python -m scripts.benchmark_process                      # 3 images of 448x640, ngf 64, random weights
    python -m scripts.benchmark_process --num 3 --json process.json --modes upstream auto fp32+cl

Where ``scripts/benchmark.py`` times the network alone (medians of repeated runs in one process), this runs what a
user runs: one ``test.py`` process per mode over the same images (``scripts/make_demo_dataset.py``, physical model,
at ``--size``), start-up, data loading, LPIPS-free metrics and file writing included, and reads the process's wall
time and its user and system CPU time (``resource.getrusage(RUSAGE_CHILDREN)``). The modes:

* ``upstream``: ``--precision fp32 --no_channels_last`` with ``CR3NET_MALLOC=default`` (glibc's malloc left alone)
  and ``CR3NET_WINOGRAD=0`` (PyTorch's own convolution kernels): upstream's own path, the 1.00 reference;
* ``fp32`` (NCHW, NNPACK's Winograd 3x3 convolutions), ``fp32+cl`` (channels_last, oneDNN), ``auto`` (=
  ``--precision auto`` with its memory format: bf16 + channels_last on a CPU with native bf16, else fp32 NCHW with
  the Winograd convolutions), ``bf16``: ours, with the allocator setup of ``util/allocator.py``.

Each mode's saved T images are compared with the reference's (PSNR on the 8-bit files, the worst image).
"""

from __future__ import annotations

if not __package__:  # run as a file: the project's packages import only from the repository root
    raise SystemExit("run it from the repository root as a module: python -m scripts.benchmark_process [flags]")

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from models.cr3net import NUM_CAB, RELEASED_NGF
from models.networks import define_G
from scripts import make_demo_dataset
from util.errors import UserError, run_cli
from util.help import HelpFormatter
from util.image_io import files_by_stem, read_rgb
from util.measure import cpu_name
from util.metrics import json_safe, psnr
from util.precision import cpu_has_native_bf16

REPO = Path(__file__).resolve().parents[1]
REFERENCE = "upstream"
MODES = {  # test.py flags and environment of each mode
    "upstream": (["--precision", "fp32", "--no_channels_last"], {"CR3NET_MALLOC": "default", "CR3NET_WINOGRAD": "0"}),
    "fp32": (["--precision", "fp32", "--no_channels_last"], {}),
    "fp32+cl": (["--precision", "fp32", "--channels_last"], {}),
    "bf16": (["--precision", "bf16"], {}),
    "auto": (["--precision", "auto"], {}),
}
DEFAULT_MODES = ("upstream", "auto")


def run_test_py(mode: str, data: Path, checkpoints: Path, results: Path, threads: int | None) -> dict:
    """One ``test.py`` process of ``mode``; its wall, user and system seconds and the folder of its T images."""
    flags, env = MODES[mode]
    cmd = [sys.executable, str(REPO / "test.py"), "--dataroot", str(data), "--name", "bench", "--checkpoints_dir",
           str(checkpoints), "--results_dir", str(results / mode), "--gpu_ids", "-1", "--eval_resize", "none",
           "--no_lpips", "--num_threads", "0", *flags]
    env = dict(os.environ, **env, **({"OMP_NUM_THREADS": str(threads)} if threads else {}))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        raise UserError(f"test.py ({mode}) failed: {lines[-1] if lines else proc.returncode}")
    return {"wall_s": wall, "user_s": after.ru_utime - before.ru_utime, "sys_s": after.ru_stime - before.ru_stime,
            "images": results / mode / "bench" / "test_final" / "images"}


def worst_psnr(images: Path, reference: Path) -> float:
    """The lowest PSNR (dB, 8-bit) between a mode's ``*_T.png`` files and the reference's, over the images."""
    ours, ref = files_by_stem(images, (".png",), unique=True), files_by_stem(reference, (".png",), unique=True)
    return min(psnr(read_rgb(ref[stem]), read_rgb(ours[stem])) for stem in ref if stem.endswith("_T"))


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=HelpFormatter)
    p.add_argument("--num", type=int, default=3, help="images")
    p.add_argument("--size", default="448x640", help="RGB HxW of the images (upstream's test size)")
    p.add_argument("--ngf", type=int, default=RELEASED_NGF, help="generator width (random weights)")
    p.add_argument("--num_cab", type=int, default=NUM_CAB, help="DCABs per RGB residual group")
    p.add_argument("--modes", nargs="+", default=list(DEFAULT_MODES), choices=list(MODES),
                   help=f"modes to run; {REFERENCE} (the reference) always runs first")
    p.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS of the test.py processes")
    p.add_argument("--json", default="", help="also write the results to this JSON file")
    args = p.parse_args(argv)
    if args.num < 1:
        raise UserError(f"--num {args.num}: at least one image")
    modes = [REFERENCE] + [m for m in dict.fromkeys(args.modes) if m != REFERENCE]
    print(f"test.py as a whole process: {args.num} image(s) of {args.size}, ngf {args.ngf}, num_cab {args.num_cab}, "
          f"random weights; CPU {cpu_name()}, native bf16: {cpu_has_native_bf16()}, {os.cpu_count()} cores", flush=True)
    results = {}
    with tempfile.TemporaryDirectory(prefix="cr3net_process_") as tmp:
        tmp = Path(tmp)
        make_demo_dataset.main(["--out", str(tmp / "data"), "--num", str(args.num), "--size", args.size])
        torch.manual_seed(0)
        net = define_G(args.ngf, args.num_cab)
        (tmp / "ck" / "bench").mkdir(parents=True)
        torch.save(net.state_dict(), tmp / "ck" / "bench" / "final_net_G_T.pth")
        for mode in modes:
            r = run_test_py(mode, tmp / "data", tmp / "ck", tmp / "res", args.threads)
            ref = results.get(REFERENCE)
            r["speedup"] = ref["wall_s"] / r["wall_s"] if ref else 1.0
            r["sys_over_user"] = r["sys_s"] / r["user_s"] if r["user_s"] else float("nan")
            r["worst_psnr_vs_upstream_db"] = worst_psnr(r["images"], ref["images"]) if ref else float("inf")
            results[mode] = r
            print(f"  {mode:8s} wall {r['wall_s']:7.1f} s  user {r['user_s']:7.1f} s  sys {r['sys_s']:6.1f} s "
                  f"(sys/user {100 * r['sys_over_user']:4.1f} %)  speed-up {r['speedup']:5.2f}  "
                  f"T vs {REFERENCE}: worst {r['worst_psnr_vs_upstream_db']:.1f} dB", flush=True)
    for r in results.values():
        r.pop("images")
    report = {"cpu": cpu_name(), "native_bf16": cpu_has_native_bf16(), "cores": os.cpu_count(), "num": args.num,
              "size": args.size, "ngf": args.ngf, "num_cab": args.num_cab, "modes": results}
    if args.json:
        Path(args.json).write_text(json.dumps(json_safe(report), indent=2) + "\n")
        print(f"wrote {args.json}")
    return report


if __name__ == "__main__":
    run_cli(main)
