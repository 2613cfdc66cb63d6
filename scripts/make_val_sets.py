#!/usr/bin/env python3
"""Build the held-out validation sets that training is judged on, in the upstream test layout.

    python -m scripts.make_val_sets                        # from ../shared/data into datasets/val/
    python train.py ... --dataroot ../shared/data/photos --real_dataroot ../shared/data/reflection/zhang_real \
        --holdout_every 8 --val_dataroot datasets/val/real_zhang_heldout datasets/val/real_location_aware \
        datasets/val/syn_upstream_heldout

Three sets, none of which a run with the same ``--holdout_every`` trains on:

* ``real_zhang_heldout``: the real pairs of Zhang et al. 2018 (``blended``/``transmission``) whose stem
  :func:`data.splits.is_held_out` picks (about one in ``--holdout_every``); train.py leaves exactly these out.
* ``real_location_aware``: every pair of the location-aware SIRR set (``blend``/``transmission``), never trained on.
* ``syn_upstream_heldout``: ``--num_synthetic`` triplets made with *upstream's* mixing (Zhang et al. 2018's
  x^2.2, Gaussian blur, over-exposure correction, vignette: :func:`data.synthesis.synthesize_upstream`) from
  held-out photos only (``--photos``, paths relative to it, so use the same folder as train.py's ``--dataroot``).
  T and R come from two different photos, each cover-scaled (Lanczos) and cropped to ``--size``; the vignette
  keeps upstream's proportions at that size; upstream's skip rules redraw the pair. The mixing parameters are
  upstream's.
* ``syn_linear_heldout``: the same photos and crops mixed by plain linear addition
  (:func:`data.synthesis.synthesize_linear`), a model that no training option uses.

The real sets have no RAW: it is made by the fixed neutral inverse ISP of :mod:`data.pseudo_raw` (RGGB mosaic,
default camera profile), so on them CR3Net's RAW branch sees nothing the RGB does not show. The synthetic set's
RAW is upstream's linear mosaic in the default profile's levels. Every set gets ``camera.json``, ``manifest.json``
(request, sources, draws, do-nothing PSNR) and is rebuilt only when its request changed. Deterministic.
"""

from __future__ import annotations

if not __package__:  # run as a file: the project's packages import only from the repository root
    raise SystemExit("run it from the repository root as a module: python -m scripts.make_val_sets [flags]")

import argparse
import functools
import hashlib
from pathlib import Path

from data.splits import DEFAULT_HOLDOUT_EVERY, is_held_out
from util import generated_folder
from util.errors import UserError, run_cli
from util.help import HelpFormatter

ROOT = Path(__file__).resolve().parents[1]
GENERATOR = "scripts/make_val_sets.py"
FORMAT_VERSION = 1  # bump when the written data changes for the same request
SHARED = ROOT.parent / "shared" / "data"
DEFAULT_OUT = "datasets/val"
DEFAULT_NUM_SYNTHETIC = 24
DEFAULT_SIZE = (448, 640)  # (H, W), landscape; upstream's official test resize keeps it
DEFAULT_SEED = 0
SETS = ("real_zhang_heldout", "real_location_aware", "syn_upstream_heldout", "syn_linear_heldout")
SYNTHETIC_MODELS = {"syn_upstream_heldout": "upstream", "syn_linear_heldout": "linear"}
MAX_DRAWS = 50  # pair redraws under upstream's skip rules before the last draw is kept
PHOTO_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _pairs(root: Path, layouts) -> dict[str, tuple[Path, Path]]:
    """``{stem: (photo through glass, transmission)}`` of an RGB-only pair set in one of ``layouts``."""
    from data.rawrr_dataset import single_partner
    from util.image_io import RGB_EXTENSIONS, files_by_stem

    for blend, trans in layouts:
        if (root / blend).is_dir() and (root / trans).is_dir():
            blends = files_by_stem(root / blend, RGB_EXTENSIONS)
            transmissions = files_by_stem(root / trans, RGB_EXTENSIONS)
            if not blends:
                raise UserError(f"{root / blend} holds no images")
            return {
                stem: (
                    single_partner(stem, blends, root / blend, RGB_EXTENSIONS, root / blend),
                    single_partner(stem, transmissions, root / trans, RGB_EXTENSIONS, blends[stem][0]),
                )
                for stem in sorted(blends)
            }
    wanted = " or ".join(f"{a}/ + {b}/" for a, b in layouts)
    raise UserError(f"{root} is not an RGB-only pair set: expected {wanted}")


def _photos(root: Path) -> list[Path]:
    if not root.is_dir():
        raise UserError(f"--photos {root} is not a folder")
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in PHOTO_EXTENSIONS
                  and not any(part.startswith(".") for part in p.relative_to(root).parts))


def build_requests(args) -> dict[str, dict]:
    """The request of each set (what its files depend on); equal requests give identical files."""
    requests = {}
    base = {"generator": GENERATOR, "format": FORMAT_VERSION, "holdout_every": args.holdout_every}
    if args.zhang:
        pairs = {s: p for s, p in _pairs(Path(args.zhang), [("blended", "transmission")]).items()
                 if is_held_out(s, args.holdout_every)}
        requests["real_zhang_heldout"] = {**base, "source": str(args.zhang),
                                          "pairs": {s: [_sha256(a), _sha256(b)] for s, (a, b) in pairs.items()}}
    if args.location_aware:
        pairs = _pairs(Path(args.location_aware), [("blend", "transmission")])
        requests["real_location_aware"] = {**base, "source": str(args.location_aware), "holdout_every": None,
                                           "pairs": {s: [_sha256(a), _sha256(b)] for s, (a, b) in pairs.items()}}
    if args.photos and args.num_synthetic > 0:
        root = Path(args.photos)
        held = [p.relative_to(root).as_posix() for p in _photos(root)
                if is_held_out(p.relative_to(root).as_posix(), args.holdout_every)]
        if len(held) < 2:
            raise UserError(f"--photos {root} has {len(held)} held-out photo(s) under --holdout_every "
                            f"{args.holdout_every}; the synthetic set needs at least 2")
        for name, model in SYNTHETIC_MODELS.items():
            requests[name] = {**base, "source": str(root), "photos": held, "num": args.num_synthetic,
                              "size_hw": list(args.size), "seed": args.seed, "model": model}
    return requests


def _write_real(folder: Path, request: dict, layout) -> list[dict]:
    from data.pseudo_raw import write_pseudo_raw_pair
    from util.image_io import read_rgb
    from util.metrics import psnr

    pairs = _pairs(Path(request["source"]), [layout])
    items = []
    for stem in request["pairs"]:
        blend_path, trans_path = pairs[stem]
        blend, trans = read_rgb(blend_path), read_rgb(trans_path)
        if blend.shape != trans.shape:
            raise UserError(f"{blend_path} and {trans_path} differ in size")
        h, w = write_pseudo_raw_pair(folder, stem, blend, trans)
        baseline = psnr(trans[:h, :w], blend[:h, :w])
        items.append({"stem": stem, "size_hw": [h, w], "baseline_psnr_db": round(baseline, 4)})
        print(f"  {stem}: {w}x{h}, do-nothing PSNR {baseline:.2f} dB (native size)")
    return items


def _write_synthetic(folder: Path, request: dict) -> list[dict]:
    import numpy as np

    from data.cameras import DEFAULT_PROFILE
    from data.image_io import PhotoPairs, write_png16
    from data.synthesis import (
        raw_to_counts,
        scaled_vignette_size,
        should_resample,
        synthesize_linear,
        synthesize_upstream,
        upstream_source_skip,
    )
    from util.image_io import to_uint8, write_rgb
    from util.metrics import psnr

    size = tuple(request["size_hw"])
    vignette = scaled_vignette_size(*size)
    pairs = PhotoPairs(request["source"], request["photos"], size, request["seed"])
    items = []
    for index in range(request["num"]):
        rng = np.random.default_rng([request["seed"], index])
        t_name = pairs.t_name(index)
        for _draw in range(MAX_DRAWS):
            r_name, T, R = pairs.draw(t_name, rng)
            if upstream_source_skip(T, R):
                continue
            if request["model"] == "upstream":
                sample = synthesize_upstream(T, R, rng, vignette_size=vignette)
            else:
                sample = synthesize_linear(T, R, rng)
            if not should_resample(sample["T_rgb"], sample["R_rgb"], sample["I_rgb"]):
                break
        stem = f"{index:02d}"
        images = {role: to_uint8(sample[f"{role}_rgb"]) for role in ("I", "T", "R")}
        for role, prefix in (("I", "testB"), ("T", "testA1"), ("R", "testA2")):
            write_rgb(folder / f"{prefix}_rgb" / f"{stem}.png", images[role])
            write_png16(folder / f"{prefix}_raw" / f"{stem}.png", raw_to_counts(sample[f"{role}_raw"], DEFAULT_PROFILE))
        baseline = psnr(images["T"], images["I"])
        params = {k: (list(v) if isinstance(v, tuple) else v) for k, v in sample["params"].items()}
        items.append({"stem": stem, "T_source": t_name, "R_source": r_name, "params": params,
                      "baseline_psnr_db": round(baseline, 4)})
        print(f"  {stem}: T {t_name}, R {r_name}, do-nothing PSNR {baseline:.2f} dB")
    return items


def make_val_sets(args) -> dict[str, Path]:
    """Build (or keep, when up to date) every set that has a source; returns ``{set name: folder}``."""
    out = Path(args.out)
    requests = build_requests(args)
    if not requests:
        raise UserError("no sources: give --zhang, --location_aware and/or --photos (defaults: ../shared/data/...)")
    made = {}
    for name, request in requests.items():
        folder = out / name
        made[name] = folder
        if not args.force and generated_folder.is_up_to_date(folder, request):
            print(f"{folder} is up to date")
            continue
        generated_folder.check_replaceable(folder, GENERATOR)
        print(f"building {folder}")
        items = generated_folder.build_folder(folder, request, functools.partial(_write_set, name, request))
        print(f"wrote {len(items)} item(s) to {folder}")
    return made


def _write_set(name: str, request: dict, folder: Path) -> list[dict]:
    """Write set ``name`` into the empty ``folder``; returns its manifest items."""
    if name == "real_zhang_heldout":
        items = _write_real(folder, request, ("blended", "transmission"))
    elif name == "real_location_aware":
        items = _write_real(folder, request, ("blend", "transmission"))
    else:
        items = _write_synthetic(folder, request)
    (folder / "camera.json").write_text('{"camera": "default"}\n', encoding="utf-8")
    return items


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} must look like HxW, e.g. 448x640") from None
    if h <= 0 or w <= 0 or h % 2 or w % 2 or h > w:
        raise argparse.ArgumentTypeError(f"{text}: height and width must be positive, even, and height <= width")
    return h, w


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=HelpFormatter)
    p.add_argument("--out", default=DEFAULT_OUT, help="folder that receives one sub-folder per set")
    p.add_argument("--zhang", default=str(SHARED / "reflection" / "zhang_real"),
                   help="Zhang et al.'s real pairs (blended/ + transmission/); empty = skip the set")
    p.add_argument("--location_aware", default=str(SHARED / "reflection" / "location_aware_sirr"),
                   help="location-aware SIRR pairs (blend/ + transmission/); empty = skip the set")
    p.add_argument("--photos", default=str(SHARED / "photos"),
                   help="photo folder for the synthetic set (= train.py's --dataroot); empty = skip the set")
    p.add_argument("--holdout_every", type=int, default=DEFAULT_HOLDOUT_EVERY, metavar="N",
                   help="the held-out split of train.py --holdout_every N (about 1 in N photos and Zhang pairs)")
    p.add_argument("--num_synthetic", type=int, default=DEFAULT_NUM_SYNTHETIC, help="synthetic triplets")
    p.add_argument("--size", type=_size, default=DEFAULT_SIZE, metavar="HxW",
                   help="synthetic RGB size (the default passes the official test resize unchanged)")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed of the synthetic set")
    p.add_argument("--force", action="store_true", help="rebuild even the sets that are up to date")
    args = p.parse_args(argv)
    if args.holdout_every < 1:
        p.error(f"--holdout_every {args.holdout_every} must be at least 1")
    if args.num_synthetic < 0:
        p.error(f"--num_synthetic {args.num_synthetic} must not be negative")
    return args


def main(argv=None) -> dict[str, Path]:
    args = parse_args(argv)
    for flag in ("zhang", "location_aware", "photos"):
        value = getattr(args, flag)
        if value and not Path(value).is_dir():
            raise UserError(f"--{flag} {value} is not a folder (pass --{flag} '' to skip that set)")
    return make_val_sets(args)


if __name__ == "__main__":
    run_cli(main)
