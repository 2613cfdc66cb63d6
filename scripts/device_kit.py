"""Pack what a GPU training run needs into one small folder that travels with the working tree.

    python -m scripts.device_kit                       # writes .device_kit/ (git-ignored), about 40 MB
    bash scripts/device_train.sh                        # on the GPU machine (see that file): trains, writes $OUT

A lent GPU machine (``device`` tool of this workplace) receives the repository and at most 64 MiB besides it,
has PyTorch but neither rawpy nor lpips, and reaches no network. This script prepares, from ``../shared/data``:

* ``photos/``: the training photos only (those train.py's ``--holdout_every`` keeps; held-out ones are left out, so
  the run on the kit trains with ``--holdout_every 0``), at the same relative paths, shrunk to a long side of at most
  ``--photo_side`` (Lanczos) and saved as JPEG (quality 90);
* ``zhang_real/{blended,transmission}/``: the training pairs of Zhang et al. (held-out stems left out), shrunk to
  ``--pair_side``, the two images of a pair to the same size, as JPEG;
* ``pretrained/``: the backbone files of ``python -m util.backbones``; in ``vgg16_features.pth`` every layer after
  relu2_1 is zeroed (the perceptual loss reads relu1_1 and relu2_1 only, see ``models/losses.py``) so that the
  file compresses to almost nothing; ``alexnet_features.pth`` (LPIPS) unchanged. Packed as ``pretrained.tar.gz``;
* ``wheels/``: rawpy and lpips wheels for the GPU machine's Python (3.12, manylinux x86-64), from PyPI.

The shrunk images are a deviation from the CPU recipe (same photos, lower resolution): the run's README says so.
Nothing here is committed: the data has no licence for redistribution.
"""

from __future__ import annotations

if not __package__:  # run as a file: the project's packages import only from the repository root
    raise SystemExit("run it from the repository root as a module: python -m scripts.device_kit [flags]")

import argparse
import io
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import torch

from data.splits import DEFAULT_HOLDOUT_EVERY, is_held_out
from util.backbones import ALEXNET_FILE, VGG16_FILE, ensure_backbones
from util.errors import UserError, run_cli
from util.help import HelpFormatter
from util.html_report import make_preview
from util.image_io import RGB_EXTENSIONS, files_by_stem, read_rgb, write_rgb

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SHARED = REPO.parent / "shared" / "data"
VGG_LAST_USED_LAYER = 6  # features[5] = conv2_1, features[6] = relu2_1: later parameters are never read
WHEELS = ("rawpy==0.28.0", "lpips==0.1.4")
GPU_PYTHON = "3.12"
MANYLINUX = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
JPEG_QUALITY = 90


def pack_photos(src: Path, dst: Path, long_side: int, holdout_every: int) -> int:
    """The training photos of ``src`` (train.py's split of names relative to ``src``), shrunk, as JPEGs in ``dst``."""
    count = 0
    written: dict[Path, Path] = {}
    for path in sorted(p for p in src.rglob("*") if p.suffix.lower() in RGB_EXTENSIONS):
        if is_held_out(path.relative_to(src).as_posix(), holdout_every):
            continue
        target = (dst / path.relative_to(src)).with_suffix(".jpg")
        if target in written:
            raise UserError(f"{path} and {written[target]} would both become {target}: rename one")
        written[target] = path
        write_rgb(target, make_preview(read_rgb(path), long_side), quality=JPEG_QUALITY)
        count += 1
    return count


def pack_pairs(src: Path, dst: Path, long_side: int, holdout_every: int) -> int:
    """The training pairs (``blended/`` + ``transmission/``, paired by stem), both images shrunk alike, as JPEGs."""
    blended = files_by_stem(src / "blended", RGB_EXTENSIONS, unique=True)
    transmission = files_by_stem(src / "transmission", RGB_EXTENSIONS, unique=True)
    count = 0
    for stem, i_path in sorted(blended.items()):
        if is_held_out(stem, holdout_every):
            continue
        if stem not in transmission:
            raise UserError(f"{i_path}: no transmission/{stem}.* partner")
        i_rgb, t_rgb = read_rgb(i_path), read_rgb(transmission[stem])
        if i_rgb.shape != t_rgb.shape:
            raise UserError(f"{transmission[stem]}: size {t_rgb.shape[:2]} differs from {i_path}'s {i_rgb.shape[:2]}")
        for side, rgb in (("blended", i_rgb), ("transmission", t_rgb)):
            write_rgb(dst / side / f"{stem}.jpg", make_preview(rgb, long_side), quality=JPEG_QUALITY)
        count += 1
    return count


def pack_backbones(dst: Path) -> Path:
    """``pretrained.tar.gz`` with alexnet unchanged and vgg16 zeroed after relu2_1 (see the module docstring)."""
    paths = ensure_backbones(verbose=True)
    vgg = torch.load(paths["vgg16"], map_location="cpu", weights_only=True)
    for key, value in vgg.items():
        if int(key.split(".")[0]) > VGG_LAST_USED_LAYER:
            vgg[key] = torch.zeros_like(value)
    buffer = io.BytesIO()
    torch.save(vgg, buffer)
    archive = dst / "pretrained.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(paths["alexnet"], arcname=ALEXNET_FILE)
        info = tarfile.TarInfo(VGG16_FILE)
        info.size = buffer.tell()
        buffer.seek(0)
        tar.addfile(info, buffer)
    return archive


def download_wheels(dst: Path) -> None:
    """pip-download the wheels of :data:`WHEELS` for the GPU machine's Python into ``dst``."""
    platforms = [arg for tag in MANYLINUX for arg in ("--platform", tag)]
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version",
           GPU_PYTHON, "--implementation", "cp", *platforms, "-d", str(dst), *WHEELS]
    if subprocess.run(cmd).returncode != 0:
        raise UserError(f"pip download of {', '.join(WHEELS)} failed (PyPI reachable?): {' '.join(cmd)}")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=HelpFormatter)
    p.add_argument("--shared", type=Path, default=DEFAULT_SHARED, help="the shared data folder")
    p.add_argument("--out", type=Path, default=REPO / ".device_kit", help="kit folder (git-ignored)")
    p.add_argument("--holdout_every", type=int, default=DEFAULT_HOLDOUT_EVERY, help="as train.py's: held-out "
                   "photos and pairs are left out of the kit")
    p.add_argument("--photo_side", type=int, default=384, help="long side of the photos at most")
    p.add_argument("--pair_side", type=int, default=512, help="long side of the real pairs at most")
    p.add_argument("--no_wheels", action="store_true", help="skip the wheel download (tests, offline)")
    args = p.parse_args(argv)
    photos, pairs = args.shared / "photos", args.shared / "reflection" / "zhang_real"
    for folder in (photos, pairs / "blended", pairs / "transmission"):
        if not folder.is_dir():
            raise UserError(f"{folder} not found: pass --shared DIR (the folder holding photos/ and reflection/)")
    if args.out.exists():
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True)
    n_photos = pack_photos(photos, args.out / "photos", args.photo_side, args.holdout_every)
    print(f"[device_kit] {n_photos} training photos -> {args.out / 'photos'}", flush=True)
    n_pairs = pack_pairs(pairs, args.out / "zhang_real", args.pair_side, args.holdout_every)
    print(f"[device_kit] {n_pairs} training pairs -> {args.out / 'zhang_real'}", flush=True)
    print(f"[device_kit] {pack_backbones(args.out)}", flush=True)
    if not args.no_wheels:
        download_wheels(args.out / "wheels")
    total = sum(f.stat().st_size for f in args.out.rglob("*") if f.is_file())
    print(f"[device_kit] {args.out}: {total / 2**20:.1f} MiB (the working tree that travels may hold 64 MiB in all)")


if __name__ == "__main__":
    run_cli(main)
