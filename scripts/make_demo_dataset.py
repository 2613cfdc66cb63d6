#!/usr/bin/env python3
"""Make the deterministic demo test set: synthetic RAW+RGB reflection triplets from photos inside scikit-image.

The photographs are the natural colour images that the scikit-image wheel itself ships in ``skimage/data``
(no download): astronaut, chelsea, coffee, rocket and motorcycle_left. Each item takes its transmission T and its
reflection R from two different photos, fitted to the output size (cover-scale with Lanczos, then a seeded crop),
and mixes them with the physical model of :func:`data.synthesis.synthesize_physical`: both photos are unprocessed
to camera RAW (inverse tone curve, inverse gamma, sRGB -> camera colour matrix, inverse white balance), mixed in
linear light (glass transmittance, blurred and attenuated reflection, optional ghost), given shot and read noise,
mosaicked and quantised to the black/white levels of the default camera profile (RGGB, 400 / 16383); every RGB
image is rendered from its RAW by the forward ISP. A draw is kept when its do-nothing PSNR (I vs T, 8-bit) lies in
[18, 24] dB, like real captured test sets; otherwise the reflection is redrawn.

Output (upstream test layout, pairs share a file stem): ``testB_rgb`` / ``testB_raw`` = input I, ``testA1_rgb`` /
``testA1_raw`` = transmission T, ``testA2_rgb`` / ``testA2_raw`` = reflection R; RGB as 8-bit PNG, RAW as 16-bit
single-channel PNG Bayer mosaics; plus ``camera.json``, ``manifest.json`` (seed, sources with SHA-256, every random
draw, baseline PSNR) and ``README.txt``. The default RGB size, 448 x 640 (height x width), passes upstream's
official test-time resize unchanged.

Deterministic: the same arguments give byte-identical files. Running it again on a complete folder with the same
manifest does nothing.

Usage: python -m scripts.make_demo_dataset [--out datasets/demo] [--num 8] [--seed 0] [--size 448x640] [--force]
"""

from __future__ import annotations

if not __package__:  # run as a file: the project's packages import only from the repository root
    raise SystemExit("run it from the repository root as a module: python -m scripts.make_demo_dataset [flags]")

import argparse
import hashlib
import importlib.util
import json
from pathlib import Path

from util import generated_folder
from util.errors import UserError, run_cli
from util.help import HelpFormatter

GENERATOR = "scripts/make_demo_dataset.py"
FORMAT_VERSION = 1  # bump when the generated data changes for the same arguments
DEFAULT_OUT = "datasets/demo"
DEFAULT_NUM = 8
DEFAULT_SEED = 0
DEFAULT_SIZE = (448, 640)  # (H, W): upstream's official resize maps 448 x 640 to itself
# Natural colour photographs stored in the scikit-image wheel (skimage/data), not fetched by pooch.
DEMO_PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png")
CAMERA = "default"  # data.cameras profile of the mosaics (RGGB, black 400, white 16383)
# data.synthesis.PhysicalConfig fields changed for the demo: a slightly weaker reflection than for training, so that
# about half of the draws already fall in BASELINE_PSNR_RANGE.
DEMO_CONFIG_OVERRIDES = {"reflection_gain": (0.1, 0.4)}
BASELINE_PSNR_RANGE = (18.0, 24.0)  # dB, do-nothing PSNR of I vs T accepted for an item
MAX_DRAWS = 50  # reflection redraws per item before the draw closest to the range is kept
ROLE_FOLDERS = {"I": "testB", "T": "testA1", "R": "testA2"}
README = "README.txt"
CAMERA_JSON = "camera.json"


def parse_size(text: str) -> tuple[int, int]:
    """``"HxW"`` -> (H, W), both positive and even; UserError otherwise."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UserError(f"--size {text!r} must look like HxW, e.g. 448x640") from None
    if h <= 0 or w <= 0 or h % 2 or w % 2:
        raise UserError(f"--size {text}: height and width must be positive and even (Bayer mosaic)")
    return h, w


def skimage_data_dir() -> Path:
    """The ``skimage/data`` folder of the installed scikit-image, found without importing it."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("scikit-image is not installed: pip install scikit-image")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def source_files() -> list[Path]:
    folder = skimage_data_dir()
    paths = [folder / name for name in DEMO_PHOTOS]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise UserError(f"{folder} lacks {', '.join(missing)}: reinstall scikit-image (the wheel ships these photos)")
    return paths


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_request(num: int, seed: int, size: tuple[int, int], sources: list[Path]) -> dict:
    """The part of the manifest fixed by the arguments: equal requests give identical files.

    Built without importing torch, so that an up-to-date check stays fast.
    """
    return {
        "generator": GENERATOR,
        "format": FORMAT_VERSION,
        "num": num,
        "seed": seed,
        "size_hw": list(size),
        "camera": CAMERA,
        "physical_config_overrides": {k: list(v) for k, v in DEMO_CONFIG_OVERRIDES.items()},
        "baseline_psnr_range_db": list(BASELINE_PSNR_RANGE),
        "sources": [{"file": f"skimage/data/{p.name}", "sha256": _sha256(p)} for p in sources],
    }


def is_up_to_date(out: Path, request: dict) -> bool:
    """True where ``out`` holds a complete set made from the same request."""
    def files(stems):
        return [README, CAMERA_JSON, *generated_folder.layout_files(stems, ROLE_FOLDERS.values())]

    return generated_folder.is_up_to_date(out, request, files)


def _fit(rgb_u8, size: tuple[int, int], rng):
    """Cover-scale a (h, w, 3) uint8 photo to at least ``size`` (Lanczos), then crop ``size`` at a seeded offset."""
    import numpy as np
    from PIL import Image

    h, w = rgb_u8.shape[:2]
    H, W = size
    scale = max(H / h, W / w)
    new_w, new_h = max(W, round(w * scale)), max(H, round(h * scale))
    if (new_h, new_w) != (h, w):
        rgb_u8 = np.asarray(Image.fromarray(rgb_u8).resize((new_w, new_h), Image.Resampling.LANCZOS), dtype=np.uint8)
    top, left = int(rng.integers(0, new_h - H + 1)), int(rng.integers(0, new_w - W + 1))
    window = {"scale": new_w / w, "top": top, "left": left}
    return rgb_u8[top : top + H, left : left + W], window


def generate(out: Path, request: dict, sources: list[Path]) -> list[dict]:
    """Write the data set into ``out`` (an empty or absent folder); return the manifest items."""
    import numpy as np
    import torch

    from data.cameras import CAMERA_PROFILES
    from data.image_io import write_png16
    from data.synthesis import PhysicalConfig, params_to_json, raw_to_counts, synthesize_physical
    from util.image_io import read_rgb, to_uint8, write_rgb
    from util.metrics import psnr

    profile = CAMERA_PROFILES[request["camera"]]
    config = PhysicalConfig(**{k: tuple(v) for k, v in request["physical_config_overrides"].items()})
    size = tuple(request["size_hw"])
    photos = [read_rgb(p) for p in sources]
    names = [p.stem for p in sources]
    lo, hi = BASELINE_PSNR_RANGE
    items = []
    for index in range(request["num"]):
        rng = np.random.default_rng([request["seed"], index])
        t_idx = index % len(photos)
        r_idx = int(rng.integers(len(photos) - 1))
        r_idx += r_idx >= t_idx  # a different photo
        t_u8, t_window = _fit(photos[t_idx], size, rng)
        r_u8, r_window = _fit(photos[r_idx], size, rng)
        T_src = torch.from_numpy(np.ascontiguousarray(t_u8.transpose(2, 0, 1))).float() / 255
        R_src = torch.from_numpy(np.ascontiguousarray(r_u8.transpose(2, 0, 1))).float() / 255
        best = None
        for draw in range(MAX_DRAWS):
            sample = synthesize_physical(T_src, R_src, rng, profile, config)
            images = {role: to_uint8(sample[f"{role}_rgb"]) for role in ROLE_FOLDERS}
            baseline = psnr(images["T"], images["I"])
            distance = max(lo - baseline, baseline - hi, 0.0)
            if best is None or distance < best[0]:
                best = (distance, draw, sample, images, baseline)
            if distance == 0.0:
                break
        _, draw, sample, images, baseline = best
        stem = f"{index:02d}_{names[t_idx]}_{names[r_idx]}"
        for role, prefix in ROLE_FOLDERS.items():
            write_rgb(out / f"{prefix}_rgb" / f"{stem}.png", images[role])
            write_png16(out / f"{prefix}_raw" / f"{stem}.png", raw_to_counts(sample[f"{role}_raw"], profile))
        print(f"{stem}: baseline PSNR (I vs T) {baseline:.2f} dB")
        items.append(
            {
                "stem": stem,
                "T_source": f"skimage/data/{sources[t_idx].name}",
                "R_source": f"skimage/data/{sources[r_idx].name}",
                "T_window": t_window,
                "R_window": r_window,
                "draw": draw,
                "params": params_to_json(sample["params"]),
                "baseline_psnr_db": round(baseline, 4),
            }
        )
    return items


def write_readme(out: Path, request: dict, items: list[dict]) -> None:
    from data.cameras import CAMERA_PROFILES

    profile = CAMERA_PROFILES[request["camera"]]
    h, w = request["size_hw"]
    lines = [
        "CR3Net demo test set (synthetic RAW+RGB reflection triplets)",
        "",
        f"Made by {GENERATOR} --num {request['num']} --seed {request['seed']} --size {h}x{w}",
        "from photographs shipped in the scikit-image wheel (skimage/data). Deterministic: the same arguments",
        "give byte-identical files. manifest.json lists sources (SHA-256), crops and every random draw.",
        "",
        "Layout (upstream test layout, files matched by stem):",
        "  testB_rgb / testB_raw    input I (transmission + reflection)",
        "  testA1_rgb / testA1_raw  transmission T (ground truth)",
        "  testA2_rgb / testA2_raw  reflection R (the reflection layer alone, rendered by the same ISP)",
        f"RGB: 8-bit sRGB PNG. RAW: 16-bit single-channel PNG Bayer mosaic of camera profile {request['camera']!r}",
        f"({profile.cfa}, black {profile.black}, white {profile.white}; see camera.json and data/cameras.py).",
        "",
        "Model (data.synthesis.synthesize_physical): unprocess both photos to camera RAW with one random camera",
        "(Brooks et al. 2019), mix in linear light (glass transmittance, blurred/attenuated/possibly doubled",
        "reflection), add shot + read noise, quantise; every RGB is rendered from its RAW by the same forward ISP.",
        f"Items are redrawn until the do-nothing PSNR (I vs T, 8-bit) is in [{BASELINE_PSNR_RANGE[0]:g}, "
        f"{BASELINE_PSNR_RANGE[1]:g}] dB.",
        "",
        "Baseline PSNR (I vs T):",
        *(f"  {item['stem']}: {item['baseline_psnr_db']:.2f} dB" for item in items),
        "",
        "Photos: scikit-image sample data; see skimage/data/README.txt of your installation for their licences.",
    ]
    (out / README).write_text("\n".join(lines) + "\n", encoding="utf-8")


def make_demo_dataset(out, num: int = DEFAULT_NUM, seed: int = DEFAULT_SEED, size=DEFAULT_SIZE, force=False) -> bool:
    """Create the demo set in ``out``; return False (and do nothing) where it is already complete and identical.

    ``out`` is replaced as a whole (it is written beside it first, then renamed); a non-empty folder that this
    script did not make raises ``UserError``.
    """
    out = Path(out)
    if num <= 0:
        raise UserError(f"--num {num} must be positive")
    sources = source_files()
    request = build_request(num, seed, tuple(size), sources)
    if not force and is_up_to_date(out, request):
        print(f"{out} is up to date ({num} items, seed {seed}); nothing to do")
        return False
    generated_folder.check_replaceable(out, GENERATOR)

    def fill(partial: Path) -> list[dict]:
        items = generate(partial, request, sources)
        (partial / CAMERA_JSON).write_text(json.dumps({"camera": request["camera"]}) + "\n", encoding="utf-8")
        write_readme(partial, request, items)
        return items

    generated_folder.build_folder(out, request, fill)
    print(f"wrote {num} items to {out}")
    return True


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description="Make the deterministic CR3Net demo test set (synthetic RAW+RGB reflection triplets from "
        "scikit-image's bundled photos) in the upstream test layout.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--out", default=DEFAULT_OUT, help="output folder (replaced as a whole when regenerated)")
    parser.add_argument("--num", type=int, default=DEFAULT_NUM, help="number of triplets")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed")
    parser.add_argument(
        "--size",
        default="x".join(map(str, DEFAULT_SIZE)),
        help="RGB size HxW (even); the default passes upstream's official test resize unchanged",
    )
    parser.add_argument("--force", action="store_true", help="regenerate even when the folder is up to date")
    args = parser.parse_args(argv)
    make_demo_dataset(args.out, args.num, args.seed, parse_size(args.size), args.force)


if __name__ == "__main__":
    run_cli(main)
