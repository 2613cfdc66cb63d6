"""Remove reflections from your own photos: camera RAW files (with or without the camera's JPEGs), full resolution.

    python remove_reflection.py PHOTO.dng [PHOTO.jpg] -o OUT_DIR
    python remove_reflection.py FOLDER -o OUT_DIR --save_reflection

For each RAW file the RGB side is the camera's JPEG beside it (same stem: x.NEF + x.JPG) or given right after it,
else an sRGB rendering of the RAW itself (camera white balance, no auto-brightness). Writes ``<stem>_T.png`` (and
``<stem>_R.png`` with ``--save_reflection``) at the photo's full resolution and viewing orientation.

Nothing is overwritten by surprise: output names are planned before any inference; photos that share a name
(``a/x.NEF b/x.NEF``, ``x.KDC x.kdc``) get ``x_T``, ``x-2_T``, ... (printed); a file of those names already in the
output folder stops the run before it starts unless ``--overwrite`` is given, and an input is never overwritten.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from data.camera_raw import (
    apply_orientation,
    is_camera_raw,
    load_jpeg_partner,
    read_camera_raw,
    render_rgb,
)
from data.image_io import RGB_EXTENSIONS, write_rgb
from models.checkpoint import infer_generator_shape, load_generator_weights, load_state_dict_file
from models.networks import define_G
from models.tiling import DEFAULT_OVERLAP, DEFAULT_TILE, check_tiling, separate_tiled
from options.base_options import resolve_device
from util.errors import FileSystemError, UserError, file_system_error, run_cli, unwrap_worker_error
from util.files import link_problem
from util.metrics import to_uint8
from util.precision import PRECISIONS, resolve_precision, to_memory_format

DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "checkpoints" / "demo" / "final_net_G_T.pth"
JPEG_EXTENSIONS = (".jpg", ".jpeg")
JPEG_QUALITY_RANGE = (1, 100)  # Pillow's JPEG quality scale


@dataclass
class Job:
    raw: Path
    rgb: Path | None  # the camera's JPEG (or another RGB file of the same photo); None = render from the RAW
    name: str = ""  # output name stem: the RAW's stem, or <stem>-2, ... where photos share one (plan_outputs)


def parse_args(argv):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("inputs", nargs="+", metavar="PATH",
                   help="camera RAW files (DNG, NEF, CR2, CR3, ARW, ORF, RW2, PEF, ...), each optionally followed by "
                   "its JPEG, and/or folders of them")
    p.add_argument("-o", "--out_dir", required=True, help="folder for the results")
    p.add_argument("--save_reflection", action="store_true", help="also write the reflection <stem>_R")
    p.add_argument("--format", default="png", choices=("png", "jpg"), help="output format (8-bit)")
    p.add_argument("--quality", type=int, default=95, help="JPEG quality with --format jpg (1..100)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace results of an earlier run in the output folder (default: refuse before starting)")
    g = p.add_argument_group("network")
    g.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT),
                   help="generator weights (any CR3Net width; e.g. checkpoints/RAW_RGB_RR/final_net_G_T.pth)")
    g.add_argument("--tile", type=int, default=DEFAULT_TILE,
                   help="tile size in RGB pixels (multiple of 8): memory is bounded by the tile; 0 = whole photo")
    g.add_argument("--tile_overlap", type=int, default=None,
                   help=f"overlap between tiles in RGB pixels (even; default {DEFAULT_OVERLAP}, at most half the tile)")
    g.add_argument("--gpu_ids", default="", help="GPU id (e.g. 0); -1 = CPU; default: GPU 0 when there is one")
    g.add_argument("--precision", default="auto", choices=PRECISIONS, help="autocast precision (see README)")
    args = p.parse_args(argv)
    low, high = JPEG_QUALITY_RANGE
    if not low <= args.quality <= high:
        raise UserError(f"--quality {args.quality} is outside {low}..{high} (JPEG quality; 95 is visually lossless)")
    args.tile_overlap = check_tiling(args.tile, args.tile_overlap)
    return args


def collect_jobs(inputs) -> list[Job]:
    """RAW files (with an optional JPEG right after each) and folders -> jobs, in the order given."""
    jobs: list[Job] = []
    for arg in inputs:
        path = Path(arg)
        if path.is_dir():
            raws = sorted(p for p in path.iterdir() if p.is_file() and is_camera_raw(p))
            if not raws:
                raise UserError(f"folder {path} holds no camera RAW file (DNG, NEF, CR2, CR3, ARW, ...)")
            jobs.extend(Job(r, find_jpeg(r)) for r in raws)
        elif not path.exists():
            raise UserError(f"{path} does not exist")
        elif is_camera_raw(path):
            jobs.append(Job(path, find_jpeg(path)))
        elif path.suffix.lower() in RGB_EXTENSIONS:
            if not jobs or jobs[-1].raw.is_dir():
                raise UserError(f"{path} is an RGB image; give it right after its RAW file (PHOTO.dng PHOTO.jpg)")
            jobs[-1].rgb = path
        else:
            raise UserError(f"{path}: unsupported file type {path.suffix!r}; expected a camera RAW file or a folder")
    return jobs


def plan_outputs(jobs: list[Job], out_dir: Path, kinds, fmt: str, overwrite: bool) -> None:
    """Give every job a distinct output name and check the output folder, before any inference.

    Photos that share a stem (``a/x.NEF b/x.NEF``; ``x.KDC x.kdc``; ``X.dng x.dng`` on a case-insensitive disk)
    keep it for the first and get ``<stem>-2``, ``-3``, ... for the others (printed). Refused (``UserError``): the
    same photo twice, ``-o`` naming a file, an output name that is a folder or one of the inputs, and, without
    ``overwrite``, any output name that already exists in ``out_dir``. Creates ``out_dir``.
    """
    seen: dict[Path, Path] = {}
    for job in jobs:
        key = job.raw.resolve()
        if key in seen:
            raise UserError(f"{job.raw} is given twice (also as {seen[key]}); give each photo once")
        seen[key] = job.raw
    taken = {job.raw.stem.casefold() for job in jobs}
    first_with: dict[str, Job] = {}
    for job in jobs:
        stem = job.raw.stem
        if stem.casefold() not in first_with:
            first_with[stem.casefold()] = job
            job.name = stem
            continue
        number = 2
        while f"{stem}-{number}".casefold() in taken:
            number += 1
        job.name = f"{stem}-{number}"
        taken.add(job.name.casefold())
        print(f"note: {first_with[stem.casefold()].raw} and {job.raw} share the name {stem}: the results of "
              f"{job.raw} are named {job.name}_*")

    problem = link_problem(out_dir)
    if problem:
        raise UserError(f"-o {problem}")
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"-o {out_dir} is a file, not a folder; give a folder for the results")
    inputs = [p for job in jobs for p in (job.raw, job.rgb) if p is not None]
    existing = []
    for job in jobs:
        for kind in kinds:
            path = output_path(out_dir, job, kind, fmt)
            if not os.path.lexists(path):
                continue
            if path.is_dir():
                raise UserError(f"{path} is a folder where this run would write an image; move it or choose another -o")
            if any(path.resolve() == p.resolve() for p in inputs):
                raise UserError(f"{path} is an input of this run and would be overwritten; choose another -o")
            existing.append(path)
    if existing and not overwrite:
        more = f" and {len(existing) - 1} more result file(s)" if len(existing) > 1 else ""
        raise UserError(f"{existing[0]}{more} already exist(s) in {out_dir}: choose another -o, move them away, or "
                        "pass --overwrite to replace them")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise file_system_error(err, out_dir, "create") or UserError(
            f"cannot create the output folder {out_dir}: {err.strerror or err}; choose another -o"
        ) from None


def output_path(out_dir: Path, job: Job, kind: str, fmt: str) -> Path:
    return out_dir / f"{job.name or job.raw.stem}_{kind}.{fmt}"


def find_jpeg(raw: Path) -> Path | None:
    for p in raw.parent.iterdir():
        if p.stem == raw.stem and p.suffix.lower() in JPEG_EXTENSIONS and p.is_file():
            return p
    return None


def load_network(checkpoint, device):
    state = load_state_dict_file(checkpoint)
    ngf, num_cab = infer_generator_shape(state, checkpoint)
    net = define_G(ngf=ngf, num_cab=num_cab, device=device)
    load_generator_weights(net, checkpoint)
    return net.eval(), ngf, num_cab


def save_image(path: Path, rgb_u8: np.ndarray, fmt: str, quality: int) -> None:
    """Write one result, whole or not at all (a full disk is one line naming ``path``)."""
    if fmt == "jpg":
        write_rgb(path, rgb_u8, quality=quality, subsampling=0)
    else:
        write_rgb(path, rgb_u8)


def process(job: Job, net, args, device, precision, channels_last, out_dir: Path) -> list[Path]:
    raw = read_camera_raw(job.raw)
    rgb_u8 = load_jpeg_partner(job.rgb, raw) if job.rgb is not None else render_rgb(raw)
    I_rgb = torch.from_numpy(rgb_u8).permute(2, 0, 1)[None].float().div_(255)
    I_raw = torch.from_numpy(raw.packed())[None]
    h, w = raw.size
    tiles = tqdm(total=None, desc=f"  {job.raw.name} ({w}x{h})", unit="tile", leave=False, file=sys.stdout)

    def progress(done, total):
        tiles.total = total
        tiles.update(1)

    with torch.inference_mode():
        out = separate_tiled(net, I_rgb, I_raw, args.tile, args.tile_overlap, device, precision, channels_last,
                             progress=progress)
    tiles.close()
    written = []
    kinds = ("T", "R") if args.save_reflection else ("T",)
    for kind in kinds:
        image = apply_orientation(to_uint8(out[f"{kind}_rgb"]), raw.orientation)
        path = output_path(out_dir, job, kind, args.format)
        save_image(path, image, args.format, args.quality)
        written.append(path)
    return written


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    jobs = collect_jobs(args.inputs)
    out_dir = Path(args.out_dir)
    plan_outputs(jobs, out_dir, ("T", "R") if args.save_reflection else ("T",), args.format, args.overwrite)
    _, device = resolve_device(args.gpu_ids)
    precision = resolve_precision(args.precision, device)
    if not Path(args.checkpoint).is_file():
        raise UserError(f"no weights at {args.checkpoint}; pass --checkpoint PATH to a CR3Net generator (.pth)")
    net, ngf, num_cab = load_network(args.checkpoint, device)
    channels_last = True
    net = to_memory_format(net, channels_last)
    print(f"{len(jobs)} photo(s); weights {args.checkpoint} (ngf {ngf}, num_cab {num_cab}); {device}, {precision}, "
          f"tile {args.tile}")
    failed = []
    for job in tqdm(jobs, desc="photos", unit="photo", file=sys.stdout, disable=len(jobs) < 2):
        start = time.perf_counter()
        try:
            written = process(job, net, args, device, precision, channels_last, out_dir)
        except FileSystemError:
            raise  # a full disk or a read-only folder: the other photos cannot be written either
        except UserError as err:
            if len(jobs) == 1:
                raise
            message = str(unwrap_worker_error(err))
            print(f"error: {message}", file=sys.stderr)
            failed.append((job.raw, message))
            continue
        source = job.rgb.name if job.rgb else "rendered from the RAW"
        print(f"{job.raw.name} (RGB: {source}) -> {', '.join(str(p) for p in written)} "
              f"[{time.perf_counter() - start:.1f} s]")
    if failed:
        print(f"\n{len(jobs) - len(failed)} of {len(jobs)} photo(s) done; {len(failed)} failed:", file=sys.stderr)
        for path, msg in failed:
            print(f"  {path}: {msg}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
