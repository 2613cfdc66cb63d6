"""Held-out synthetic test sets split by condition: where a camera's RAW should help, and where it should not matter.

Every set is made with the physical model that training uses (:func:`data.synthesis.synthesize_physical`) from the
photos that ``train.py --holdout_every N`` never trains on (:func:`data.splits.is_held_out` over
:func:`data.rawrr_train_dataset.synthesis_photo_paths` of the same ``--dataroot``), with a fixed change of
:class:`data.synthesis.PhysicalConfig` per condition (:data:`CONDITIONS`):

* ``normal``: the model's defaults (exposure 1, reflection gain 0.15-0.6, shot noise 1e-4-1e-3);
* ``highlights``: exposure x1.4-2.0 (log-uniform). The ISP's white balance and colour matrix lift values before it
  clips, so the rendered RGB saturates where the RAW still has headroom: a highlight that the reflection pushed over
  white is lost in the RGB but not in the RAW;
* ``low_light``: exposure x0.3-0.6 and shot noise 1e-3-1.2e-2 (the high end of Brooks et al.'s range; the read
  noise follows it): a dark, noisy scene, which the 8-bit RGB keeps less of than the 14-bit RAW;
* ``strong_reflection``: reflection gain 0.45-0.6 (the top of the training range);
* ``weak_reflection``: reflection gain 0.15-0.25 (its bottom).

The scenes are the same in every set: item ``i`` takes the same two photos and crops (T and R from two different
held-out photos, each cover-scaled and cropped to ``size`` by :func:`data.image_io.fit_photo`; a pair whose R source
is far darker than its T source, or either source darker than upstream's skip levels, is redrawn), and its synthesis
draws from ``default_rng([seed, i, SYNTHESIS_STREAM])`` in every condition, so the camera, glass, blur, ghost and
noise draws are shared and the sets differ by their condition only. No skip rule is applied to the mixtures (it
would select different scenes per condition): a faint reflection stays in, and the manifest's do-nothing PSNR says so.

Layout: ``<out>/<condition>/`` in the upstream test layout (``testB`` = I, ``testA1`` = T, ``testA2`` = R; RGB as
8-bit PNG rendered from the RAW by the model's ISP, RAW as 16-bit Bayer PNG in the default camera profile),
``camera.json`` and ``manifest.json`` (request, every draw, do-nothing PSNR, the fraction of input pixels with an RGB
channel at 255 and of input RAW sites at white). Deterministic: the same request gives byte-identical files, and a
set is rebuilt only when its request changes. ``scripts/make_condition_sets.py`` is the command;
``scripts/raw_vs_rgb.py`` builds them itself.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from data.cameras import DATASET_PROFILE_FILE, DEFAULT_PROFILE
from data.image_io import PhotoPairs, write_png16
from data.rawrr_train_dataset import synthesis_photo_paths
from data.splits import DEFAULT_HOLDOUT_EVERY, is_held_out
from data.synthesis import (
    DEFAULT_PHYSICAL_CONFIG,
    SKIP_R_MAX,
    SKIP_T_MAX,
    PhysicalConfig,
    params_to_json,
    raw_to_counts,
    synthesize_physical,
    upstream_source_skip,
)
from util import generated_folder
from util.errors import UserError
from util.image_io import to_uint8, write_rgb
from util.metrics import psnr

GENERATOR = "data/condition_sets.py"
FORMAT_VERSION = 1  # bump when the written data changes for the same request
DEFAULT_NUM = 12  # images per condition
DEFAULT_SIZE = (256, 384)  # (H, W) of every image: cheap to evaluate on a CPU, a multiple of 8 (no padding)
DEFAULT_SEED = 0
SYNTHESIS_STREAM = 1  # item i synthesises from default_rng([seed, i, SYNTHESIS_STREAM]) in every condition
MAX_DRAWS = 50  # photo-pair redraws before the last pair is kept
ROLE_FOLDERS = {"I": "testB", "T": "testA1", "R": "testA2"}
RGB_WHITE = 255  # an 8-bit channel at 255 is clipped


class Condition(NamedTuple):
    overrides: dict  # PhysicalConfig fields that differ from its defaults
    description: str


CONDITIONS: dict[str, Condition] = {
    "normal": Condition({}, "physical model's defaults: exposure 1, reflection gain 0.15-0.6, shot noise 1e-4-1e-3"),
    "highlights": Condition({"exposure": (1.4, 2.0)},
                            "exposure x1.4-2.0: the RGB clips where the RAW keeps headroom"),
    "low_light": Condition({"exposure": (0.3, 0.6), "shot_noise": (1e-3, 1.2e-2)},
                           "exposure x0.3-0.6, shot noise 1e-3-1.2e-2 (read noise follows)"),
    "strong_reflection": Condition({"reflection_gain": (0.45, 0.6)}, "reflection gain 0.45-0.6"),
    "weak_reflection": Condition({"reflection_gain": (0.15, 0.25)}, "reflection gain 0.15-0.25"),
}


def condition_config(name: str) -> PhysicalConfig:
    """The :class:`data.synthesis.PhysicalConfig` of one condition."""
    if name not in CONDITIONS:
        raise UserError(f"unknown condition {name!r}; choose from {', '.join(CONDITIONS)}")
    return dataclasses.replace(DEFAULT_PHYSICAL_CONFIG, **CONDITIONS[name].overrides)


def parse_size_hw(text: str) -> tuple[int, int]:
    """``"HxW"`` -> (H, W), both positive and even (Bayer mosaics); :class:`UserError` otherwise."""
    try:
        h, w = (int(v) for v in str(text).lower().split("x"))
    except ValueError:
        raise UserError(f"size {text!r} must look like HxW, e.g. 256x384") from None
    if h <= 0 or w <= 0 or h % 2 or w % 2:
        raise UserError(f"size {text}: height and width must be positive and even (Bayer mosaic)")
    return h, w


def held_out_photos(photos, holdout_every: int) -> list[str]:
    """Names (paths relative to ``photos``, sorted) of the synthesis photos that ``train.py --dataroot photos
    --holdout_every N`` leaves out."""
    root = Path(photos)
    if not root.is_dir():
        raise UserError(f"photo folder {root} is not a folder")
    t_paths, r_paths = synthesis_photo_paths(root)
    names = sorted({p.relative_to(root).as_posix() for p in (*t_paths, *r_paths)})
    return [name for name in names if is_held_out(name, holdout_every)]


def build_requests(photos, holdout_every: int, num: int, size, seed: int, conditions) -> dict[str, dict]:
    """The request of each condition's set (what its files depend on; JSON types): equal requests, equal files."""
    if holdout_every < 1:
        raise UserError(f"--holdout_every {holdout_every} must be at least 1: the sets are made of held-out photos")
    if num < 1:
        raise UserError(f"{num} images per condition: give at least 1")
    h, w = parse_size_hw(f"{size[0]}x{size[1]}")
    held = held_out_photos(photos, holdout_every)
    if len(held) < 2:
        raise UserError(f"{photos} has {len(held)} held-out photo(s) under --holdout_every {holdout_every}; the "
                        "condition sets need at least 2 (add photos or lower --holdout_every)")
    base = {"generator": GENERATOR, "format": FORMAT_VERSION, "photos_root": str(Path(photos).resolve()),
            "photos": held, "holdout_every": holdout_every, "num": num, "size_hw": [h, w], "seed": seed,
            "camera": DEFAULT_PROFILE.name}
    requests = {}
    for name in conditions:
        config = dataclasses.asdict(condition_config(name))
        requests[name] = json.loads(json.dumps({**base, "condition": name, "physical_config": config}))
    return requests


def _set_files(stems) -> list[str]:
    return [DATASET_PROFILE_FILE, *generated_folder.layout_files(stems, ROLE_FOLDERS.values())]


def is_up_to_date(folder: Path, request: dict) -> bool:
    """True where ``folder`` holds a complete set made from ``request``."""
    return generated_folder.is_up_to_date(folder, request, _set_files)


def _poor_sources(T: torch.Tensor, R: torch.Tensor) -> bool:
    """Upstream's rules on the two source photos: a reflection source far darker than the transmission's (an
    invisible reflection), or a source darker than the skip levels."""
    return upstream_source_skip(T, R) or float(T.max()) < SKIP_T_MAX or float(R.max()) < SKIP_R_MAX


def _scenes(request: dict) -> list[dict]:
    """The (T, R) source crops of every item: the same for every condition of one request."""
    pairs = PhotoPairs(request["photos_root"], request["photos"], request["size_hw"], request["seed"])
    scenes = []
    for index in range(request["num"]):
        rng = np.random.default_rng([request["seed"], index])
        t_name = pairs.t_name(index)
        for _draw in range(MAX_DRAWS):
            r_name, T, R = pairs.draw(t_name, rng)
            if not _poor_sources(T, R):
                break
        scenes.append({"T_source": t_name, "R_source": r_name, "T": T, "R": R})
    return scenes


def _write_set(folder: Path, request: dict, scenes: list[dict]) -> list[dict]:
    config = condition_config(request["condition"])
    items = []
    for index, scene in enumerate(scenes):
        rng = np.random.default_rng([request["seed"], index, SYNTHESIS_STREAM])
        sample = synthesize_physical(scene["T"], scene["R"], rng, DEFAULT_PROFILE, config)
        stem = f"{index:02d}"
        images = {role: to_uint8(sample[f"{role}_rgb"]) for role in ROLE_FOLDERS}
        for role, prefix in ROLE_FOLDERS.items():
            write_rgb(folder / f"{prefix}_rgb" / f"{stem}.png", images[role])
            write_png16(folder / f"{prefix}_raw" / f"{stem}.png", raw_to_counts(sample[f"{role}_raw"], DEFAULT_PROFILE))
        baseline = psnr(images["T"], images["I"])
        clipped = float((images["I"] == RGB_WHITE).any(axis=2).mean())
        saturated = float((sample["I_raw"] >= 1).float().mean())
        items.append({"stem": stem, "T_source": scene["T_source"], "R_source": scene["R_source"],
                      "params": params_to_json(sample["params"]), "baseline_psnr_db": round(baseline, 4),
                      "rgb_clipped_fraction": round(clipped, 6), "raw_saturated_fraction": round(saturated, 6)})
        print(f"  {stem}: T {scene['T_source']}, R {scene['R_source']}, do-nothing PSNR {baseline:.2f} dB, "
              f"RGB clipped {100 * clipped:.1f} %, RAW saturated {100 * saturated:.1f} %", flush=True)
    (folder / DATASET_PROFILE_FILE).write_text(json.dumps({"camera": DEFAULT_PROFILE.name}) + "\n", encoding="utf-8")
    return items


def make_condition_sets(out, photos, holdout_every: int = DEFAULT_HOLDOUT_EVERY, num: int = DEFAULT_NUM,
                        size=DEFAULT_SIZE, seed: int = DEFAULT_SEED, conditions=None, force: bool = False
                        ) -> dict[str, Path]:
    """Build (or keep, when up to date) the set of each of ``conditions`` (default: all of :data:`CONDITIONS`) in
    ``<out>/<condition>``; returns ``{condition: folder}``. A set is written beside its folder first, then renamed
    into place; a non-empty folder that this module did not make raises :class:`UserError`."""
    out = Path(out)
    conditions = list(conditions or CONDITIONS)
    requests = build_requests(photos, holdout_every, num, size, seed, conditions)
    made, todo = {}, []
    for name, request in requests.items():
        folder = out / name
        made[name] = folder
        if not force and is_up_to_date(folder, request):
            print(f"{folder} is up to date", flush=True)
            continue
        generated_folder.check_replaceable(folder, GENERATOR)
        todo.append(name)
    if not todo:
        return made
    scenes = _scenes(requests[todo[0]])  # requests differ only in their condition
    for name in todo:
        folder, request = made[name], requests[name]
        print(f"building {folder}: {CONDITIONS[name].description}", flush=True)
        items = generated_folder.build_folder(folder, request, functools.partial(_write_set, request=request,
                                                                                  scenes=scenes))
        print(f"wrote {len(items)} item(s) to {folder}", flush=True)
    return made
