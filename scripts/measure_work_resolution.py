"""Quality, time and memory of ``--work_megapixels`` (the network at a working resolution, its result carried to full
resolution by a guided filter, :mod:`models.work_resolution`) against the network at full resolution, whole and tiled.

    python -m scripts.measure_work_resolution --checkpoint CK.pth --gpu_ids 0 --json quality.json       # quality
    python -m scripts.measure_work_resolution --megapixels 24 --work_megapixels 1 2 --json timing.json  # 24 MP time

**Quality** (the default): high-resolution pairs in the test layout with a ground-truth T (``--dataroot DIR ...``),
else two sets built once into ``--build_dir`` (rebuilt when their request changes):

* ``zhang_heldout_full``: the real pairs of Zhang et al. 2018 that :func:`data.splits.is_held_out` keeps out of
  training (``--holdout_every``), at their full size, RAW made by :mod:`data.pseudo_raw`;
* ``syn_physical_largest``: ``--num_synthetic`` triplets of :func:`data.synthesis.synthesize_physical` at the size of
  the largest held-out photos of ``--photos`` (aspect ratio at most 2:1), each as T with another of them as R.

For every image: the network on the whole image at native resolution (``whole``, images up to
``--whole_max_megapixels``), in tiles (``tiled``, ``--tile``/``--tile_overlap``), and at working resolutions, absolute
(``--work_megapixels``: images not larger are skipped) and relative (``--work_divisors D``: the image's pixels / D;
the defaults 24 and 12 scale an image as 24 MP -> 1 MP and 2 MP do, since the available pairs are about 1 MP). Each
working result is carried to full resolution once per ``--representations`` x ``--guide_radius`` x ``--guide_eps``
(the network runs once per working size). Reported per mode, as means over the images of a set: PSNR and SSIM of T
against the ground truth at native resolution (8-bit, :mod:`util.metrics`), the change of that PSNR against
``whole`` on the same images, the PSNR of T against the whole-image T (else the tiled one), seconds (network and
upsampling; on CUDA synchronised) and the peak resident memory of the process during the mode (VmHWM, reset before
each mode where Linux allows it; else the process's peak so far).

**Timing** (``--megapixels N``): a synthetic N-megapixel photo (3:2) written as a DNG with pidng
(``scripts/benchmark_memory.py``), the full-size network with random weights (``--ngf``, ``--num_cab``; or
``--checkpoint``), and remove_reflection.py's own per-photo code (read the RAW, render its RGB, ``--work_megapixels``,
quantise, write ``<stem>_T.png``) for each ``--work_megapixels``: seconds (total and by stage) and peak RSS. Python's
start, ``import torch`` and loading the weights (a few seconds) are not included.

Prints Markdown tables; ``--json`` also writes every row and the setup.
"""

from __future__ import annotations

if not __package__:  # run as a file: the project's packages import only from the repository root
    raise SystemExit("run it from the repository root as a module: python -m scripts.measure_work_resolution [flags]")

import argparse
import json
import math
import platform
import sys
import tempfile
import time
from argparse import Namespace
from pathlib import Path

import numpy as np
import torch

import remove_reflection
from data.splits import DEFAULT_HOLDOUT_EVERY, is_held_out
from models.networks import define_G
from models.tiling import DEFAULT_OVERLAP, DEFAULT_TILE, check_tiling, separate_tiled
from models.work_resolution import (
    DEFAULT_GUIDE_EPS,
    DEFAULT_GUIDE_RADIUS,
    DEFAULT_REPRESENTATION,
    REPRESENTATIONS,
    run_at_work_resolution,
    upsample_separation,
    work_size,
)
from options.base_options import resolve_device
from scripts import benchmark_memory
from util import generated_folder
from util.allocator import keep_buffers_mapped
from util.errors import UserError, run_cli
from util.help import HelpFormatter
from util.image_io import to_uint8
from util.measure import cpu_name, peak_rss_gib, reset_peak_rss, synchronize
from util.metrics import json_safe, psnr, ssim
from util.precision import PRECISIONS, cpu_has_native_bf16, resolve_precision, to_memory_format

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
DEFAULT_BUILD_DIR = ROOT / "datasets" / "work_resolution"
SETS = ("zhang_heldout_full", "syn_physical_largest")
DEFAULT_WORK_MEGAPIXELS = (1.0, 2.0)
DEFAULT_WORK_DIVISORS = (24.0, 12.0)  # 24 MP -> 1 MP and -> 2 MP, as a share of an image's pixels
DEFAULT_WHOLE_MAX_MEGAPIXELS = 2.0  # the whole-image reference above this size needs more memory than a CPU box has
DEFAULT_NUM_SYNTHETIC = 6
MAX_ASPECT = 2.0  # photos more elongated than 2:1 (a cube map, a panorama) are not used for the synthetic set
PHOTO_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
GENERATOR = "scripts/measure_work_resolution.py"
FORMAT_VERSION = 1


# ----------------------------------------------------------------------------------------------------------------
# The high-resolution sets
# ----------------------------------------------------------------------------------------------------------------


def _photos(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in PHOTO_EXTENSIONS
                  and not any(part.startswith(".") for part in p.relative_to(root).parts))


def zhang_request(args) -> dict:
    from data.rawrr_dataset import single_partner
    from util.image_io import RGB_EXTENSIONS, files_by_stem

    root = Path(args.zhang)
    blends = files_by_stem(root / "blended", RGB_EXTENSIONS)
    transmissions = files_by_stem(root / "transmission", RGB_EXTENSIONS)
    pairs = {stem: [str(blends[stem][0]), str(single_partner(stem, transmissions, root / "transmission",
                                                                  RGB_EXTENSIONS, blends[stem][0]))]
             for stem in sorted(blends) if is_held_out(stem, args.holdout_every)}
    if not pairs:
        raise UserError(f"--zhang {root}: no held-out pair under --holdout_every {args.holdout_every}")
    return {"generator": GENERATOR, "format": FORMAT_VERSION, "set": "zhang_heldout_full", "pairs": pairs}


def synthetic_request(args) -> dict:
    from PIL import Image

    root = Path(args.photos)
    sized = []
    for path in _photos(root):
        name = path.relative_to(root).as_posix()
        if not is_held_out(name, args.holdout_every):
            continue
        with Image.open(path) as image:
            w, h = image.size
        if max(h, w) <= MAX_ASPECT * min(h, w) and min(h, w) >= 2:
            sized.append((-(h // 2 * 2) * (w // 2 * 2), name))
    sized.sort()
    names = [name for _, name in sized]
    if len(names) < 2:
        raise UserError(f"--photos {root}: {len(names)} held-out photo(s) under --holdout_every {args.holdout_every}; "
                        "the synthetic set needs at least 2")
    return {"generator": GENERATOR, "format": FORMAT_VERSION, "set": "syn_physical_largest", "source": str(root),
            "photos": names[: max(args.num_synthetic, 2) * 2], "num": args.num_synthetic, "seed": args.seed}


def write_zhang(folder: Path, request: dict) -> None:
    from data.pseudo_raw import write_pseudo_raw_pair
    from util.image_io import read_rgb

    for stem, (blend, transmission) in request["pairs"].items():
        h, w = write_pseudo_raw_pair(folder, stem, read_rgb(blend), read_rgb(transmission))
        print(f"  {stem}: {w}x{h}")


def write_synthetic(folder: Path, request: dict) -> None:
    from data.cameras import DEFAULT_PROFILE
    from data.image_io import fit_photo, write_png16
    from data.synthesis import raw_to_counts, synthesize_physical
    from util.image_io import read_rgb, write_rgb

    root = Path(request["source"])
    names = request["photos"]
    for index in range(min(request["num"], len(names))):
        rng = np.random.default_rng([request["seed"], index])
        t_name = names[index]
        r_name = names[(index + 1 + int(rng.integers(len(names) - 1))) % len(names)]  # another photo
        T_u8 = read_rgb(root / t_name)
        h, w = T_u8.shape[0] // 2 * 2, T_u8.shape[1] // 2 * 2
        T_u8 = np.ascontiguousarray(T_u8[:h, :w])
        R_u8 = fit_photo(read_rgb(root / r_name), (h, w), rng)  # cover-scaled and cropped to T's size

        def chw(u8):
            return torch.from_numpy(np.ascontiguousarray(u8.transpose(2, 0, 1))).float() / 255

        sample = synthesize_physical(chw(T_u8), chw(R_u8), rng)
        stem = f"{index:02d}"
        for role, prefix in (("I", "testB"), ("T", "testA1"), ("R", "testA2")):
            write_rgb(folder / f"{prefix}_rgb" / f"{stem}.png", to_uint8(sample[f"{role}_rgb"]))
            write_png16(folder / f"{prefix}_raw" / f"{stem}.png", raw_to_counts(sample[f"{role}_raw"], DEFAULT_PROFILE))
        print(f"  {stem}: {w}x{h}, T {t_name}, R {r_name}")


def build_set(name: str, args) -> Path:
    """The folder of set ``name`` under ``--build_dir``, built (or kept when its request is unchanged)."""
    request = zhang_request(args) if name == "zhang_heldout_full" else synthetic_request(args)
    folder = Path(args.build_dir) / name
    if generated_folder.is_up_to_date(folder, request):
        return folder
    generated_folder.check_replaceable(folder, GENERATOR, "--build_dir")
    print(f"building {folder}")

    def fill(partial: Path) -> None:
        (write_zhang if name == "zhang_heldout_full" else write_synthetic)(partial, request)
        (partial / "camera.json").write_text('{"camera": "default"}\n', encoding="utf-8")

    generated_folder.build_folder(folder, request, fill)
    return folder


# ----------------------------------------------------------------------------------------------------------------
# Quality
# ----------------------------------------------------------------------------------------------------------------


def working_settings(h: int, w: int, args) -> list[tuple[str, tuple[int, int]]]:
    """(label, working size) of every working resolution measured on an h x w image (those smaller than it)."""
    settings = [(f"work {mp:g} MP", work_size(h, w, mp)) for mp in args.work_megapixels]
    settings += [(f"work 1/{d:g} px", work_size(h, w, h * w / d / 1e6)) for d in args.work_divisors]
    return [(label, size) for label, size in settings if size is not None]


def measure_image(set_name: str, item: dict, net, args, device, precision) -> list[dict]:
    stem = item["stem"]
    I_rgb, I_raw = item["I_rgb"][None], item["I_raw"][None]
    gt = to_uint8(item["T_rgb"])
    h, w = I_rgb.shape[-2:]
    rows, results = [], {}

    def record(mode: str, T, seconds: float, peak: float, **extra) -> None:
        T_u8 = to_uint8(T)
        results[mode] = T_u8
        rows.append({"set": set_name, "stem": stem, "size": f"{w}x{h}", "mode": mode, "T_psnr": psnr(gt, T_u8),
                     "T_ssim": ssim(gt, T_u8), "seconds": round(seconds, 3), "peak_rss_gb": round(peak, 3), **extra})
        print(f"  {set_name}/{stem} ({w}x{h}) {mode}: T {rows[-1]['T_psnr']:.2f} dB, SSIM {rows[-1]['T_ssim']:.4f}, "
              f"{seconds:.2f} s, peak RSS {peak:.2f} GB", flush=True)

    def full_resolution(mode: str, tile: int) -> None:
        reset_peak_rss()
        start = time.perf_counter()
        out = separate_tiled(net, I_rgb, I_raw, tile, args.tile_overlap, device, precision, True)
        synchronize(device)
        record(mode, out["T_pred_rgb"], time.perf_counter() - start, peak_rss_gib())

    with torch.inference_mode():
        if "whole" in args.modes and h * w <= args.whole_max_megapixels * 1e6:
            full_resolution("whole", 0)
        if "tiled" in args.modes:
            full_resolution("tiled", args.tile)
        if "work" in args.modes:
            for label, size in working_settings(h, w, args):
                reset_peak_rss()
                start = time.perf_counter()
                work = run_at_work_resolution(net, I_rgb, I_raw, size, device, precision, True, args.tile,
                                              args.tile_overlap)
                synchronize(device)
                network_seconds = time.perf_counter() - start
                for representation in args.representations:
                    for radius in args.guide_radius:
                        for eps in args.guide_eps:
                            start = time.perf_counter()
                            out = upsample_separation(I_rgb, I_raw, work, radius, eps, representation, ("T_pred_rgb",))
                            seconds = network_seconds + time.perf_counter() - start
                            record(f"{label} {representation} r{radius} eps{eps:g}", out["T_pred_rgb"], seconds,
                                   peak_rss_gib(), working_size=f"{size[1]}x{size[0]}", representation=representation,
                                   radius=radius, eps=eps, network_seconds=round(network_seconds, 3))
    reference = next((mode for mode in ("whole", "tiled") if mode in results), None)
    whole = next((r for r in rows if r["mode"] == "whole"), None)
    for row in rows:
        row["reference"] = reference
        row["psnr_vs_reference"] = psnr(results[reference], results[row["mode"]]) if reference else None
        row["delta_vs_whole_db"] = row["T_psnr"] - whole["T_psnr"] if whole is not None else None
    return rows


def summarise(rows: list[dict]) -> list[dict]:
    """Means over the images of each (set, mode), modes in the order first measured."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["set"], row["mode"]), []).append(row)

    def mean(values):
        values = [v for v in values if v is not None and math.isfinite(v)]
        return float(np.mean(values)) if values else None

    return [{"set": set_name, "mode": mode, "images": len(group),
             "T_psnr": mean([r["T_psnr"] for r in group]), "T_ssim": mean([r["T_ssim"] for r in group]),
             "delta_vs_whole_db": mean([r["delta_vs_whole_db"] for r in group]),
             "psnr_vs_reference": mean([r["psnr_vs_reference"] for r in group]),
             "seconds": mean([r["seconds"] for r in group]), "peak_rss_gb": max(r["peak_rss_gb"] for r in group)}
            for (set_name, mode), group in groups.items()]


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def quality_markdown(summary: list[dict]) -> str:
    lines = ["| set | mode | images | T PSNR dB | T SSIM | vs whole dB | PSNR vs whole/tiled T | s/image "
             "| peak RSS GB |",
             "|---|---|---|---|---|---|---|---|---|"]
    for s in summary:
        lines.append(f"| {s['set']} | {s['mode']} | {s['images']} | {_fmt(s['T_psnr'], '.2f')} | "
                     f"{_fmt(s['T_ssim'], '.4f')} | {_fmt(s['delta_vs_whole_db'], '+.2f')} | "
                     f"{_fmt(s['psnr_vs_reference'], '.2f')} | {_fmt(s['seconds'], '.2f')} | "
                     f"{_fmt(s['peak_rss_gb'], '.2f')} |")
    return "\n".join(lines)


def measure_quality(args, device, precision) -> dict:
    from data.rawrr_dataset import RawrrDataset

    if args.dataroot:
        sets = {Path(d).name: Path(d) for d in args.dataroot}
    else:
        sets = {name: build_set(name, args) for name in args.sets}
    net, ngf, num_cab = remove_reflection.load_network(args.checkpoint, device)
    net = to_memory_format(net, True)
    print(f"weights {args.checkpoint} (ngf {ngf}, num_cab {num_cab}); {device}, {precision}; sets: "
          f"{', '.join(str(p) for p in sets.values())}")
    rows = []
    for name, folder in sets.items():
        dataset = RawrrDataset(Namespace(dataroot=str(folder), phase="test", eval_resize="none", raw_source="sensor",
                                         num_test=args.num_test))
        if "T" not in dataset.roles:
            raise UserError(f"{folder} has no ground-truth transmission (testA1_rgb + testA1_raw)")
        for index in range(len(dataset)):
            rows += measure_image(name, dataset[index], net, args, device, precision)
    summary = summarise(rows)
    print()
    print(quality_markdown(summary))
    return {"checkpoint": str(args.checkpoint), "ngf": ngf, "num_cab": num_cab, "rows": rows, "summary": summary}


# ----------------------------------------------------------------------------------------------------------------
# Timing of a large photo
# ----------------------------------------------------------------------------------------------------------------


def measure_timing(args, device, precision) -> dict:
    h, w = benchmark_memory.photo_size(args.megapixels)  # its 3:2 photo size and DNG writer
    torch.manual_seed(0)
    if args.checkpoint_given:
        net, ngf, num_cab = remove_reflection.load_network(args.checkpoint, device)
        network = f"weights {args.checkpoint} (ngf {ngf}, num_cab {num_cab})"
    else:
        ngf, num_cab = args.ngf, args.num_cab
        net = define_G(ngf, num_cab, device=device).eval()
        network = f"random weights (ngf {ngf}, num_cab {num_cab})"
    net = to_memory_format(net, True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="work_resolution_") as tmp:
        dng = Path(tmp) / "photo.dng"
        if not benchmark_memory.write_dng(dng, h, w):
            raise UserError("--megapixels needs pidng and rawpy (a real DNG, read as remove_reflection.py reads it)")
        print(f"{w}x{h} ({w * h / 1e6:.1f} MP) DNG; {network}; {device}, {precision}, "
              f"{torch.get_num_threads()} threads")
        for mp in args.work_megapixels:
            out_dir = Path(tmp) / f"out_{mp:g}"
            argv = [str(dng), "-o", str(out_dir), "--work_megapixels", f"{mp:g}", "--tile", str(args.tile),
                    "--tile_overlap", str(args.tile_overlap)]
            for flag, values in (("--guide_radius", args.guide_radius), ("--guide_eps", args.guide_eps)):
                if mp > 0:
                    argv += [flag, f"{values[0]:g}"]
            rr_args = remove_reflection.parse_args(argv)
            jobs = remove_reflection.collect_jobs(rr_args.inputs)
            remove_reflection.plan_outputs(jobs, out_dir, rr_args)
            reset_peak_rss()
            start = time.perf_counter()
            result = remove_reflection.process(jobs[0], net, rr_args, device, precision, True, out_dir, network)
            synchronize(device)
            seconds = time.perf_counter() - start
            size = work_size(h, w, mp)
            row = {"photo": f"{w}x{h}", "megapixels": round(w * h / 1e6, 2), "work_megapixels": mp,
                   "working_size": f"{size[1]}x{size[0]}" if size else "full resolution", "precision": precision,
                   "seconds": round(seconds, 2), **{f"{k}_seconds": round(v, 2) for k, v in result.seconds.items()},
                   "peak_rss_gb": round(peak_rss_gib(), 3)}
            rows.append(row)
            print(f"  --work_megapixels {mp:g} ({row['working_size']}): {seconds:.1f} s "
                  f"({', '.join(f'{k} {v:.1f}' for k, v in result.seconds.items())}), peak RSS "
                  f"{row['peak_rss_gb']:.2f} GB", flush=True)
    lines = ["| photo | `--work_megapixels` | working size | precision | seconds | read | remove | write "
             "| peak RSS GB |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['photo']} | {r['work_megapixels']:g} | {r['working_size']} | {r['precision']} | "
                     f"{r['seconds']:.1f} | {r['read_seconds']:.1f} | {r['remove_seconds']:.1f} | "
                     f"{r['write_seconds']:.1f} | {r['peak_rss_gb']:.2f} |")
    print()
    print("\n".join(lines))
    return {"network": network, "ngf": ngf, "num_cab": num_cab, "rows": rows}


# ----------------------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------------------


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=HelpFormatter)
    p.add_argument("--megapixels", type=float, default=0.0,
                   help="timing mode: a synthetic photo of this many megapixels (e.g. 24); 0 = the quality mode")
    p.add_argument("--checkpoint", default=None,
                   help="generator weights (quality: default the demo checkpoint; timing: default random weights of "
                   "--ngf/--num_cab)")
    p.add_argument("--ngf", type=int, default=64, help="timing mode with random weights: network width")
    p.add_argument("--num_cab", type=int, default=8, help="timing mode with random weights: channel attention blocks")
    p.add_argument("--work_megapixels", type=float, nargs="+", default=list(DEFAULT_WORK_MEGAPIXELS),
                   help="working resolutions in megapixels (timing: each one run; 0 = full resolution in tiles)")
    p.add_argument("--work_divisors", type=float, nargs="*", default=list(DEFAULT_WORK_DIVISORS),
                   help="quality: working resolutions as the image's pixels divided by these")
    p.add_argument("--representations", nargs="+", default=[DEFAULT_REPRESENTATION], choices=REPRESENTATIONS,
                   help="what the guided filter carries to full resolution (quality; models.work_resolution)")
    p.add_argument("--guide_radius", type=int, nargs="+", default=[DEFAULT_GUIDE_RADIUS],
                   help="guided filter radii in working pixels (quality: each; timing: the first)")
    p.add_argument("--guide_eps", type=float, nargs="+", default=[DEFAULT_GUIDE_EPS],
                   help="guided filter eps (quality: each; timing: the first)")
    p.add_argument("--modes", nargs="+", default=["whole", "tiled", "work"], choices=("whole", "tiled", "work"),
                   help="quality: what to measure")
    p.add_argument("--whole_max_megapixels", type=float, default=DEFAULT_WHOLE_MAX_MEGAPIXELS,
                   help="quality: run the whole-image reference on images up to this size only (memory)")
    p.add_argument("--tile", type=int, default=DEFAULT_TILE, help="tile size (full resolution and working images)")
    p.add_argument("--tile_overlap", type=int, default=None, help=f"tile overlap (default {DEFAULT_OVERLAP})")
    p.add_argument("--dataroot", nargs="*", default=[],
                   help="quality: test-layout folders with ground truth (default: the sets built in --build_dir)")
    p.add_argument("--sets", nargs="+", default=list(SETS), choices=SETS, help="quality: which sets to build and use")
    p.add_argument("--build_dir", default=str(DEFAULT_BUILD_DIR), help="where the sets are built")
    p.add_argument("--zhang", default=str(SHARED / "reflection" / "zhang_real"),
                   help="Zhang et al.'s real pairs (blended/ + transmission/)")
    p.add_argument("--photos", default=str(SHARED / "photos"), help="photo folder of the synthetic set")
    p.add_argument("--holdout_every", type=int, default=DEFAULT_HOLDOUT_EVERY, metavar="N",
                   help="the held-out split of train.py --holdout_every N")
    p.add_argument("--num_synthetic", type=int, default=DEFAULT_NUM_SYNTHETIC, help="synthetic triplets")
    p.add_argument("--seed", type=int, default=0, help="random seed of the synthetic set")
    p.add_argument("--num_test", type=int, default=0, help="quality: at most this many images per set (0 = all)")
    p.add_argument("--gpu_ids", default="", help="GPU id; -1 = CPU; default: GPU 0 when there is one")
    p.add_argument("--precision", default="auto", choices=PRECISIONS)
    p.add_argument("--json", default=None, help="also write every row and the setup to this JSON file")
    args = p.parse_args(argv)
    args.tile_overlap = check_tiling(args.tile, args.tile_overlap)
    if not (math.isfinite(args.megapixels) and args.megapixels >= 0):
        raise UserError(f"--megapixels {args.megapixels} must be 0 (quality mode) or a photo size such as 24")
    if any(not (math.isfinite(mp) and mp >= 0) for mp in args.work_megapixels):
        raise UserError(f"--work_megapixels {args.work_megapixels}: give sizes >= 0 in megapixels, e.g. 1 2")
    if any(not (math.isfinite(d) and d > 1) for d in args.work_divisors):
        raise UserError(f"--work_divisors {args.work_divisors}: give divisors above 1, e.g. 24 12")
    if any(r < 0 for r in args.guide_radius) or any(not (math.isfinite(e) and e > 0) for e in args.guide_eps):
        raise UserError("--guide_radius must be >= 0 and --guide_eps positive numbers")
    if args.num_synthetic < 1 or args.num_test < 0:
        raise UserError("--num_synthetic must be at least 1 and --num_test at least 0")
    args.checkpoint_given = args.checkpoint is not None
    if args.checkpoint is None and not args.megapixels:
        args.checkpoint = str(remove_reflection.DEFAULT_CHECKPOINT)
    if args.checkpoint is not None and not Path(args.checkpoint).is_file():
        raise UserError(f"no weights at {args.checkpoint}; pass --checkpoint PATH to a CR3Net generator (.pth)")
    return args


def main(argv=None) -> dict:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    keep_buffers_mapped()  # as remove_reflection.py and test.py do at start-up: measure what they run
    _, device = resolve_device(args.gpu_ids)
    precision = resolve_precision(args.precision, device)
    results = measure_timing(args, device, precision) if args.megapixels else measure_quality(args, device, precision)
    meta = {"device": str(device), "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else
            cpu_name(), "cpu_native_bf16": cpu_has_native_bf16(), "threads": torch.get_num_threads(),
            "precision": precision, "tile": args.tile, "tile_overlap": args.tile_overlap,
            "peak_rss_per_mode": reset_peak_rss(), "python": platform.python_version(), "torch": torch.__version__,
            "created": time.strftime("%Y-%m-%d %H:%M:%S")}
    results = {"meta": meta, **results}
    if args.json:
        Path(args.json).write_text(json.dumps(json_safe(results), indent=2) + "\n", encoding="utf-8")
        print(f"numbers: {args.json}")
    return results


if __name__ == "__main__":
    run_cli(main)
