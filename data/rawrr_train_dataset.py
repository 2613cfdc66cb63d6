"""Training data for RAW+RGB reflection removal: synthetic triplets from photographs, mixed per sample with real ones.

Sources under ``opt.dataroot``:

* photos for synthesis: ``trainA1_rgb`` (transmission sources) and ``trainA2_rgb`` (reflection sources) when both
  exist (upstream layout); otherwise every image found recursively under ``dataroot`` (outside the folders of the
  upstream layout, :data:`LAYOUT_FOLDER_PATTERNS`), T and R then drawn as two different photos of that one pool;
* real samples (optional), matched by file stem, under ``dataroot`` and each ``--real_dataroot`` folder:
  triplets in ``real_T_rgb``, ``real_T_raw``, ``real_R_rgb``, ``real_R_raw``, ``real_I_rgb``, ``real_I_raw``; or
  pairs without R (``real_I_*`` + ``real_T_*``); or pairs without RAW (``real_I_rgb`` + ``real_T_rgb``, with or
  without ``real_R_rgb``; under ``--real_dataroot`` also ``blended`` + ``transmission`` or ``blend`` +
  ``transmission``, the layouts of the published RGB-only sets). Each RAW mosaic is packed with its camera profile
  (:func:`data.cameras.resolve_profile`; camera RAW files such as DNG use their own metadata and their camera JPEG
  is aligned to the mosaic, as in :mod:`data.rawrr_dataset`). Where a set has no RAW, the RAW of every image is
  made from its RGB crop by the fixed neutral inverse ISP of :mod:`data.pseudo_raw` (as for the validation sets);
  where it has no R, the sample says so (``has_R`` False) and the trainer leaves the R losses out for it.

``--holdout_every N`` leaves out the photos and real pairs that :func:`data.splits.is_held_out` picks (photos by
their path relative to the photo folder, pairs by stem): the items ``scripts/make_val_sets.py`` validates on.

``--raw_source rgb`` replaces the RAW of every sample (synthetic or real, input and targets) by the one the fixed
inverse ISP of :mod:`data.pseudo_raw` makes from its RGB, after everything else is drawn: the RGB images, the order
and every random draw are those of ``--raw_source sensor``, so the two differ in the RAW input only.

Each item is real with probability ``opt.real_ratio``, decided per sample (upstream decides for a whole batch from
its first sample). All randomness of item ``index`` comes from ``np.random.default_rng([seed, epoch, index])``:
the data of a run is a pure function of (seed, epoch, index), so a resumed run sees exactly the same samples and
DataLoader workers never repeat each other. Call :meth:`RawrrTrainDataset.set_epoch` before each epoch (with
``persistent_workers=False``, the default, workers copy the dataset at the start of each epoch).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

from data.image_io import RAW_MOSAIC_EXTENSIONS
from data.pseudo_raw import DEFAULT_RAW_SOURCE, RAW_SOURCES, pseudo_packed_raw
from data.rawrr_dataset import load_pair, single_partner
from data.splits import is_held_out
from data.synthesis import (
    DEFAULT_PHYSICAL_CONFIG,
    SYN_MODELS,
    PhysicalConfig,
    should_resample,
    synthesize,
    upstream_max_size,
    upstream_source_skip,
)
from util.errors import UserError
from util.image_io import RGB_EXTENSIONS, files_by_stem, read_rgb
from util.isp import bayer_flip, even_crop, normalize_raw, pack_raw
from util.registry import add_flag_once

DEFAULT_CROP_SIZE = 256  # RGB crop; the packed RAW crop is half of it (upstream: 256 / 128)
DEFAULT_REAL_RATIO = 0.3  # upstream: a sample is real with probability 0.3
DEFAULT_SAMPLES_PER_EPOCH = 4000  # upstream: --dataset_size 4000
CROP_MULTIPLE = 8  # the generator downsamples the packed RAW twice: RGB sides must be multiples of 8
REAL_CROP_FRACTION = 0.7  # upstream: real triplets are cropped to a square of 0.7 x the short side, then resized
PHOTO_MAX_SHORT_SIDE = 512  # photos are cached with the short side at most this (never below the crop)
MAX_RESAMPLES = 20  # redraws of a synthetic sample failing the skip rule before the last draw is kept
RGB_MAX = 255.0
PHOTOS_QUIET_BELOW = 50  # photo pools at least this large announce their (slow) loading

SYN_FOLDERS = ("trainA1_rgb", "trainA2_rgb")  # T sources, R sources
REAL_FOLDERS = {
    key: f"real_{key}" for key in ("T_rgb", "T_raw", "R_rgb", "R_raw", "I_rgb", "I_raw")
}  # item key -> folder
# RGB-only real pairs (input, ground-truth transmission) under --real_dataroot, besides the real_* layout:
# Zhang et al. 2018 (blended/transmission) and the location-aware SIRR set (blend/transmission).
PAIR_FOLDERS = (("blended", "transmission"), ("blend", "transmission"))
# Folders of the upstream layout that never hold photos for synthesis in the recursive fallback.
LAYOUT_FOLDER_PATTERNS = ("real_*", "test*_rgb", "test*_raw", "wogt*_rgb", "wogt*_raw", "train*_raw", "trainB_rgb")
ROLES = ("I", "T", "R")


def _range_option(opt, name: str, low: float, high: float) -> tuple[float, float]:
    """``opt.<name>`` as a ``(lo, hi)`` range inside [low, high], or the physical model's default when absent."""
    default = getattr(DEFAULT_PHYSICAL_CONFIG, name)
    value = getattr(opt, name, None)
    if value is None:
        return default
    if len(value) != 2:
        raise UserError(f"--{name} takes two numbers, LO HI; got {value}")
    lo, hi = (float(v) for v in value)
    if not low <= lo <= hi <= high:
        raise UserError(f"--{name} {lo:g} {hi:g}: need {low:g} <= LO <= HI <= {high:g}")
    return lo, hi


def physical_config_from(opt) -> PhysicalConfig:
    """The physical model's ranges with ``--reflection_gain``, ``--transmittance``, ``--exposure`` and
    ``--shot_noise`` applied (the last two are log-uniform, so their ``LO`` must be above 0)."""
    return dataclasses.replace(
        DEFAULT_PHYSICAL_CONFIG,
        reflection_gain=_range_option(opt, "reflection_gain", 0.0, 10.0),
        transmittance=_range_option(opt, "transmittance", 0.01, 1.0),
        exposure=_range_option(opt, "exposure", 0.01, 100.0),
        shot_noise=_range_option(opt, "shot_noise", 1e-8, 0.1),
    )


def _to_tensor(rgb_u8: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float32 in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(rgb_u8.transpose(2, 0, 1))).float() / RGB_MAX


def _resize_u8_bilinear(rgb_u8: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Upstream's photo resize (OpenCV INTER_LINEAR: bilinear, half-pixel centres, no antialiasing) -> uint8."""
    x = torch.from_numpy(np.ascontiguousarray(rgb_u8.transpose(2, 0, 1))).float().unsqueeze(0)
    y = F.interpolate(x, size=size, mode="bilinear", align_corners=False).squeeze(0)
    return y.round().clamp(0, 255).byte().numpy().transpose(1, 2, 0).copy()


def _resize_tensor(x: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear, antialiased resize of a (C, h, w) float tensor to (C, size, size); unchanged if already so."""
    if tuple(x.shape[-2:]) == (size, size):
        return x
    return F.interpolate(x.unsqueeze(0), size=(size, size), mode="bilinear", align_corners=False, antialias=True)[0]


def synthesis_photo_paths(root) -> tuple[list[Path], list[Path]]:
    """The photos that training synthesises from: ``(T sources, R sources)``, sorted.

    ``trainA1_rgb`` and ``trainA2_rgb`` when ``root`` has both (upstream layout); otherwise every image found
    recursively under ``root`` outside hidden folders and the folders of :data:`LAYOUT_FOLDER_PATTERNS`, as one pool:
    then the two lists are the same object. :class:`UserError` when a pool is empty, only one of the two upstream
    folders exists, or the single pool holds fewer than 2 photos. ``scripts/make_condition_sets.py`` takes its
    held-out photos from the same list.
    """
    root = Path(root)
    a1, a2 = (root / name for name in SYN_FOLDERS)
    if a1.is_dir() or a2.is_dir():
        if not (a1.is_dir() and a2.is_dir()):
            have, lack = (a1, a2) if a1.is_dir() else (a2, a1)
            raise UserError(f"{root} has {have.name} but no {lack.name}: give both (T, R sources) or neither")
        lists = []
        for folder in (a1, a2):
            paths = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in RGB_EXTENSIONS)
            if not paths:
                raise UserError(f"photo folder {folder} holds no images ({', '.join(RGB_EXTENSIONS)})")
            lists.append(paths)
        return lists[0], lists[1]

    def excluded(path: Path) -> bool:
        parts = path.relative_to(root).parts[:-1]
        return any(p.startswith(".") or any(fnmatch.fnmatch(p, pat) for pat in LAYOUT_FOLDER_PATTERNS) for p in parts)

    paths = sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and p.suffix.lower() in RGB_EXTENSIONS and not p.name.startswith(".") and not excluded(p)
    )
    if not paths:
        raise UserError(
            f"photo folder {root} holds no images for synthesis (looked recursively for "
            f"{', '.join(RGB_EXTENSIONS)}, or in {' and '.join(SYN_FOLDERS)})"
        )
    if len(paths) < 2:
        raise UserError(
            f"photo folder {root} holds only 1 photo ({paths[0].name}); synthesis needs at least 2 so that "
            "T and R come from different photos"
        )
    return paths, paths


class RawrrTrainDataset(Dataset):
    """Training samples (synthetic or real) for ``--phase train``.

    Item (a dict):

    * ``I_rgb``, ``T_rgb``, ``R_rgb``: (3, S, S) float32 in [0, 1], sRGB, S = ``opt.crop_size``;
    * ``I_raw``, ``T_raw``, ``R_raw``: (4, S/2, S/2) float32, packed [R, G1, G2, B], (x - black) / (white - black);
    * ``is_real``: 0-d bool tensor, True for a captured (real) sample;
    * ``has_R``: 0-d bool tensor, False for a real pair without a reflection layer (``R_rgb``/``R_raw`` are zeros
      then, placeholders that the trainer's masked R losses ignore);
    * ``source``: str, ``"real:<stem>"`` or ``"syn:<T photo>|<R photo>"`` (paths relative to ``dataroot``).

    Options (``opt``): ``dataroot``; ``syn_model`` (``physical`` | ``upstream``, see :mod:`data.synthesis`);
    ``real_ratio`` (probability that a sample is real); ``crop_size`` (RGB side, multiple of 8);
    ``samples_per_epoch`` (``len``); ``seed``; ``reflection_gain``, ``transmittance``, ``exposure`` and
    ``shot_noise`` (``(lo, hi)`` ranges of the physical model, :class:`data.synthesis.PhysicalConfig`; its defaults
    when absent); ``raw_source``
    (``sensor``, the default, or ``rgb``: every RAW made from its RGB, see the module doc).

    Synthetic samples: two different photos; ``physical``: a random ``S x S`` window of each (photos are cached
    with their short side reduced to at most max(512, S); a photo smaller than S is an error), each flipped at
    random, then mixed; ``upstream``: each photo resized to ``S x S`` (as upstream's 256 x 256) and mixed
    unflipped, with upstream's two skip rules. Samples failing :func:`data.synthesis.should_resample` are redrawn.

    Real samples with RAW: a square window of side max(S, 0.7 x short side) at even offsets of the mosaic (CFA phase
    kept), random horizontal/vertical flips done on the mosaic (:func:`util.isp.bayer_flip`, the CFA pattern
    follows), then packed and normalised with the file's camera profile, and resized to S (RGB) / S/2 (packed RAW) as
    upstream. RGB-only real pairs: a square window of a random side between S and that square (so the network sees
    them at several scales), flipped, resized to S, and the RAW of each image made from the resized crop
    (:func:`data.pseudo_raw.pseudo_packed_raw`).
    """

    @staticmethod
    def modify_commandline_options(parser, is_train):
        """Add ``--syn_model``, ``--real_ratio``, ``--crop_size``, ``--samples_per_epoch`` and the other dataset flags
        unless defined already (``--seed`` is a shared option)."""
        add_flag_once(
            parser,
            "--syn_model",
            default="physical",
            choices=SYN_MODELS,
            help="synthetic RAW+RGB model: physical = camera model (unprocess, noise, ISP); upstream = the "
            "authors' x^2.2 mixing",
        )
        add_flag_once(
            parser,
            "--real_ratio",
            type=float,
            default=DEFAULT_REAL_RATIO,
            help="probability that a training sample is a real triplet (real_* folders), decided per sample",
        )
        add_flag_once(
            parser,
            "--crop_size",
            type=int,
            default=DEFAULT_CROP_SIZE,
            help="side of the square RGB training crop (multiple of 8); the packed RAW crop is half of it",
        )
        add_flag_once(
            parser,
            "--samples_per_epoch",
            type=int,
            default=DEFAULT_SAMPLES_PER_EPOCH,
            help="training samples per epoch (upstream: 4000)",
        )
        add_flag_once(
            parser,
            "--real_dataroot",
            nargs="+",
            default=[],
            metavar="DIR",
            help="more folders of real samples (used with probability --real_ratio): real_* triplets or pairs, "
            "or RGB-only pairs in blended/ + transmission/ (Zhang et al.) or blend/ + transmission/",
        )
        add_flag_once(
            parser,
            "--upstream_ratio",
            type=float,
            default=0.0,
            help="--syn_model physical: probability that a synthetic sample is mixed with upstream's model "
            "(Zhang et al. 2018's x^2.2 mixing, as in the authors' code) on the same random crops instead",
        )
        add_flag_once(
            parser,
            "--pseudo_raw_ratio",
            type=float,
            default=0.0,
            help="probability that a synthetic sample's RAW (input and targets) is replaced by the RAW made back "
            "from its RGB by the fixed inverse ISP (data/pseudo_raw.py), as for photos without a RAW file",
        )
        add_flag_once(
            parser,
            "--holdout_every",
            type=int,
            default=0,
            metavar="N",
            help="never train on the ~1 in N photos and real pairs that scripts/make_val_sets.py --holdout_every N "
            "validates on (0 = train on everything)",
        )
        range_flags = (  # PhysicalConfig field (= flag name), help
            ("reflection_gain", "range of the reflection's linear gain (glass reflectance x "
             "relative brightness of the reflected scene)"),
            ("transmittance", "range of the glass transmittance applied to T"),
            ("exposure", "log-uniform range of a gain on all light reaching the sensor (targets "
             "included): above 1 the RGB clips where the RAW keeps headroom, below 1 the scene is dark (1 1: no "
             "draw)"),
            ("shot_noise", "log-uniform range of the shot-noise variance per unit signal (Brooks et "
             "al. 2019: 1e-4 to 1.2e-2 in all; the read noise follows)"),
        )
        for field, text in range_flags:
            add_flag_once(
                parser,
                f"--{field}",
                type=float,
                nargs=2,
                metavar=("LO", "HI"),
                default=list(getattr(DEFAULT_PHYSICAL_CONFIG, field)),
                help=f"--syn_model physical: {text}",
            )
        return parser

    def __init__(self, opt):
        self.opt = opt
        phase = getattr(opt, "phase", "train")
        if phase != "train":
            raise UserError(f"RawrrTrainDataset is for --phase train, got --phase {phase}")
        self.root = Path(opt.dataroot)
        if not self.root.is_dir():
            raise UserError(f"--dataroot {self.root} is not a folder")
        self.syn_model = getattr(opt, "syn_model", "physical")
        if self.syn_model not in SYN_MODELS:
            raise UserError(f"--syn_model {self.syn_model!r} is not one of {', '.join(SYN_MODELS)}")
        self.real_ratio = float(getattr(opt, "real_ratio", DEFAULT_REAL_RATIO))
        if not 0.0 <= self.real_ratio <= 1.0:
            raise UserError(f"--real_ratio {self.real_ratio} must lie in [0, 1]")
        self.crop = int(getattr(opt, "crop_size", DEFAULT_CROP_SIZE))
        if self.crop <= 0 or self.crop % CROP_MULTIPLE:
            raise UserError(f"--crop_size {self.crop} must be a positive multiple of {CROP_MULTIPLE}")
        if self.syn_model == "upstream" and self.crop > upstream_max_size():
            raise UserError(
                f"--crop_size {self.crop} is too large for --syn_model upstream (its vignette allows at most "
                f"{upstream_max_size()}); lower --crop_size or use --syn_model physical"
            )
        self.length = int(getattr(opt, "samples_per_epoch", DEFAULT_SAMPLES_PER_EPOCH))
        if self.length <= 0:
            raise UserError(f"--samples_per_epoch {self.length} must be positive")
        self.seed = int(opt.seed)  # --seed of options/base_options.py
        self.physical_config = physical_config_from(opt)
        self.upstream_ratio = float(getattr(opt, "upstream_ratio", 0.0) or 0.0)
        if not 0.0 <= self.upstream_ratio <= 1.0:
            raise UserError(f"--upstream_ratio {self.upstream_ratio} must lie in [0, 1]")
        self.pseudo_raw_ratio = float(getattr(opt, "pseudo_raw_ratio", 0.0) or 0.0)
        if not 0.0 <= self.pseudo_raw_ratio <= 1.0:
            raise UserError(f"--pseudo_raw_ratio {self.pseudo_raw_ratio} must lie in [0, 1]")
        self.raw_source = getattr(opt, "raw_source", None) or DEFAULT_RAW_SOURCE
        if self.raw_source not in RAW_SOURCES:
            raise UserError(f"--raw_source {self.raw_source!r} is not one of {', '.join(RAW_SOURCES)}")
        self.holdout_every = int(getattr(opt, "holdout_every", 0) or 0)
        if self.holdout_every < 0:
            raise UserError(f"--holdout_every {self.holdout_every} must be 0 (no hold-out) or positive")
        self.real_roots = [Path(p) for p in (getattr(opt, "real_dataroot", None) or [])]
        self.epoch = 0

        self.real_items = self._find_real(self.root, pair_layouts=False)
        for root in self.real_roots:
            found = self._find_real(root, pair_layouts=True)
            if not found:
                raise UserError(
                    f"--real_dataroot {root} holds no real samples: expected real_I_rgb + real_T_rgb (optionally "
                    f"real_*_raw, real_R_*) or {' or '.join(f'{a}/ + {b}/' for a, b in PAIR_FOLDERS)}"
                )
            self.real_items += found
        self.held_out_real = 0
        if self.holdout_every:
            kept = [e for e in self.real_items if not is_held_out(e["stem"], self.holdout_every)]
            self.held_out_real = len(self.real_items) - len(kept)
            self.real_items = kept
        if self.real_ratio > 0 and not self.real_items:
            if self.real_ratio >= 1:
                raise UserError(
                    f"--real_ratio 1 needs real samples, but {self.root} has no {', '.join(REAL_FOLDERS.values())} "
                    "and no --real_dataroot was given"
                )
            print(
                f"note: {self.root} has no real_* samples and no --real_dataroot was given; all training samples are "
                "synthetic (--real_ratio ignored)"
            )
            self.real_ratio = 0.0
        # photos: lists of (name relative to dataroot, uint8 (H, W, 3)); T and R pools are the same list when shared
        self.T_photos, self.R_photos, self.shared_pool = [], [], True
        if self.real_ratio < 1:
            self._load_photos()

    # ------------------------------------------------------------------ sources
    def _find_real(self, root: Path, pair_layouts: bool) -> list[dict]:
        """Real samples under ``root``: ``[{"stem", "paths": {"I_rgb": Path, "T_rgb": ..., ...}}]``, sorted by stem.

        ``paths`` holds ``I_rgb`` and ``T_rgb`` always, ``R_rgb`` where the set has R, and ``<role>_raw`` for each of
        those roles where the set has RAW. ``pair_layouts`` also accepts the folders of :data:`PAIR_FOLDERS`.
        """
        if not root.is_dir():
            raise UserError(f"--real_dataroot {root} is not a folder")
        folders = {key: root / name for key, name in REAL_FOLDERS.items() if (root / name).is_dir()}
        if not folders and pair_layouts:
            for blend, trans in PAIR_FOLDERS:
                if (root / blend).is_dir() and (root / trans).is_dir():
                    folders = {"I_rgb": root / blend, "T_rgb": root / trans}
                    break
        if not folders:
            return []
        roles = ["I", "T"] + (["R"] if "R_rgb" in folders or "R_raw" in folders else [])
        kinds = ["rgb"] + (["raw"] if any(key.endswith("_raw") for key in folders) else [])
        wanted = [f"{role}_{kind}" for role in roles for kind in kinds]
        missing = [key for key in wanted if key not in folders]
        if missing:
            have = ", ".join(sorted(folders[k].name for k in folders))
            lack = ", ".join(REAL_FOLDERS[k] for k in missing)
            raise UserError(
                f"{root} has {have} but lacks {lack}: real samples need real_I_rgb + real_T_rgb, real_R_rgb for the "
                "reflection, and a *_raw folder beside every *_rgb folder once any has one"
            )
        listing = {
            key: files_by_stem(folders[key], RGB_EXTENSIONS if key.endswith("rgb") else RAW_MOSAIC_EXTENSIONS)
            for key in wanted
        }
        anchor = listing["I_rgb"]
        if not anchor:
            raise UserError(f"{folders['I_rgb']} holds no images ({', '.join(RGB_EXTENSIONS)})")
        for files in listing.values():
            for stem, paths in files.items():
                if stem not in anchor:
                    raise UserError(f"no partner for {paths[0]}: looked for {stem}.* in {folders['I_rgb']}")
        items = []
        for stem in sorted(anchor):
            i_rgb = single_partner(stem, anchor, folders["I_rgb"], RGB_EXTENSIONS, folders["I_rgb"])
            paths = {}
            for key, files in listing.items():
                exts = RGB_EXTENSIONS if key.endswith("rgb") else RAW_MOSAIC_EXTENSIONS
                paths[key] = single_partner(stem, files, folders[key], exts, i_rgb)
            items.append({"stem": stem, "paths": paths, "root": root})
        return items

    def _photo_paths(self) -> tuple[list[Path], list[Path]]:
        t_paths, r_paths = synthesis_photo_paths(self.root)
        self.shared_pool = t_paths is r_paths
        return t_paths, r_paths

    def _prepare_photo(self, path: Path) -> np.ndarray:
        rgb = read_rgb(path)
        h, w = rgb.shape[:2]
        if self.syn_model == "upstream":
            return _resize_u8_bilinear(rgb, (self.crop, self.crop))
        if min(h, w) < self.crop:
            raise UserError(
                f"photo {path} is {w}x{h} (width x height), smaller than --crop_size {self.crop}; "
                "remove it or lower --crop_size"
            )
        target = max(self.crop, PHOTO_MAX_SHORT_SIDE)
        if min(h, w) > target:
            scale = target / min(h, w)
            size = (max(self.crop, round(w * scale)), max(self.crop, round(h * scale)))
            rgb = np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.LANCZOS), dtype=np.uint8)
        return rgb

    def _load_photos(self) -> None:
        t_paths, r_paths = self._photo_paths()
        self.held_out_photos = 0
        if self.holdout_every:
            def keep(paths):
                return [p for p in paths if not is_held_out(p.relative_to(self.root).as_posix(), self.holdout_every)]

            before = len(set(t_paths) | set(r_paths))
            t_paths, r_paths = keep(t_paths), keep(r_paths)
            self.held_out_photos = before - len(set(t_paths) | set(r_paths))
            if len(set(t_paths) | set(r_paths)) < 2 or not t_paths or not r_paths:
                raise UserError(
                    f"--holdout_every {self.holdout_every} leaves too few photos for synthesis in {self.root}; "
                    "add photos or lower --holdout_every (0 = no hold-out)"
                )
        cache: dict[Path, tuple[str, np.ndarray]] = {}
        unique = list(dict.fromkeys([*t_paths, *r_paths]))
        verbose = getattr(self.opt, "rank", 0) == 0 and len(unique) > PHOTOS_QUIET_BELOW
        if verbose:
            held = f" ({self.held_out_photos} held out by --holdout_every)" if self.held_out_photos else ""
            print(f"reading {len(unique)} photos for synthesis from {self.root}{held} ...", flush=True)
        start = time.perf_counter()
        for path in unique:
            cache[path] = (path.relative_to(self.root).as_posix(), self._prepare_photo(path))
        if verbose:
            print(f"read {len(unique)} photos in {time.perf_counter() - start:.0f} s", flush=True)
        self.T_photos = [cache[p] for p in t_paths]
        self.R_photos = [cache[p] for p in r_paths]

    # ------------------------------------------------------------------ sampling
    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose samples ``__getitem__`` returns (part of each item's random seed)."""
        self.epoch = int(epoch)

    def rng_for(self, index: int) -> np.random.Generator:
        """The generator of item ``index`` in the current epoch: ``default_rng([seed, epoch, index])``."""
        return np.random.default_rng([self.seed, self.epoch, int(index)])

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} samples")
        rng = self.rng_for(index)
        item = self._real_sample(rng) if rng.random() < self.real_ratio else self._synthetic_sample(rng)
        if self.raw_source == "rgb":  # the RGB-only twin: no draw here, so everything but the RAW stays the same
            for role in ROLES:
                if role != "R" or bool(item["has_R"]):  # a missing R keeps its zero placeholder
                    item[f"{role}_raw"] = pseudo_packed_raw(item[f"{role}_rgb"]).contiguous()
        return item

    def _pick_photos(self, rng: np.random.Generator):
        ti = int(rng.integers(len(self.T_photos)))
        if self.shared_pool:
            ri = int(rng.integers(len(self.R_photos) - 1))
            ri += ri >= ti  # a different photo of the same pool
        else:
            ri = int(rng.integers(len(self.R_photos)))
        return self.T_photos[ti], self.R_photos[ri]

    def _random_view(self, rgb_u8: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        """A random crop_size window of a cached photo, flipped at random: (3, S, S) float32 in [0, 1]."""
        h, w = rgb_u8.shape[:2]
        top = int(rng.integers(0, h - self.crop + 1))
        left = int(rng.integers(0, w - self.crop + 1))
        view = rgb_u8[top : top + self.crop, left : left + self.crop]
        if rng.random() < 0.5:
            view = view[:, ::-1]
        if rng.random() < 0.5:
            view = view[::-1]
        return _to_tensor(view)

    def _synthetic_sample(self, rng: np.random.Generator) -> dict:
        model = self.syn_model
        if self.upstream_ratio > 0 and model != "upstream" and rng.random() < self.upstream_ratio:
            model = "upstream_view"  # upstream's mixing on this sample's random windows
        out = None
        for _ in range(MAX_RESAMPLES):
            (t_name, t_img), (r_name, r_img) = self._pick_photos(rng)
            if model == "upstream":
                T, R = _to_tensor(t_img), _to_tensor(r_img)
            else:
                T, R = self._random_view(t_img, rng), self._random_view(r_img, rng)
            if model != "physical" and upstream_source_skip(T, R):
                continue
            out = synthesize(model.replace("_view", ""), T, R, rng, config=self.physical_config)
            out["source"] = f"syn:{t_name}|{r_name}"
            if not should_resample(out["T_rgb"], out["R_rgb"], out["I_rgb"]):
                break
        if out is None:  # every draw failed the source rule: keep the last pair anyway
            out = synthesize(model.replace("_view", ""), T, R, rng, config=self.physical_config)
            out["source"] = f"syn:{t_name}|{r_name}"
        if model == "upstream_view":
            out["source"] += "|upstream"
        item = {key: out[key].contiguous() for key in ("I_rgb", "T_rgb", "R_rgb", "I_raw", "T_raw", "R_raw")}
        if self.pseudo_raw_ratio > 0 and rng.random() < self.pseudo_raw_ratio:
            # what a photo without its RAW file gives the network: the RAW made back from the RGB
            for role in ROLES:
                item[f"{role}_raw"] = pseudo_packed_raw(item[f"{role}_rgb"]).contiguous()
            out["source"] += "|pseudo_raw"
        item["is_real"] = torch.tensor(False)
        item["has_R"] = torch.tensor(True)
        item["source"] = out["source"]
        return item

    def _real_sample(self, rng: np.random.Generator) -> dict:
        entry = self.real_items[int(rng.integers(len(self.real_items)))]
        paths = entry["paths"]
        roles = [role for role in ROLES if f"{role}_rgb" in paths]
        has_raw = "I_raw" in paths
        loaded = {}
        size = None
        for role in roles:
            rgb_path = paths[f"{role}_rgb"]
            if has_raw:
                rgb, mosaic, profile = load_pair(rgb_path, paths[f"{role}_raw"], entry["root"])
            else:
                rgb, mosaic, profile = read_rgb(rgb_path), None, None
            if size is None:
                size = rgb.shape[:2]
            elif rgb.shape[:2] != size:
                raise UserError(
                    f"size mismatch: {rgb_path} is {rgb.shape[1]}x{rgb.shape[0]} but {paths['I_rgb']} is "
                    f"{size[1]}x{size[0]} (width x height)"
                )
            loaded[role] = (rgb, mosaic, profile)
        h, w = size
        if min(h, w) < self.crop:
            raise UserError(
                f"real sample {paths['I_rgb']} is {w}x{h} (width x height), smaller than --crop_size {self.crop}; "
                "remove it or lower --crop_size"
            )
        largest = max(self.crop, int(min(h, w) * REAL_CROP_FRACTION) // 2 * 2)
        if has_raw:  # upstream: one square of 0.7 x the short side
            side = largest
        else:  # RGB-only pairs: a random scale between that square and a crop at full resolution
            side = int(rng.integers(self.crop // 2, largest // 2 + 1)) * 2
        top = 2 * int(rng.integers(0, (h - side) // 2 + 1))
        left = 2 * int(rng.integers(0, (w - side) // 2 + 1))
        flip_h, flip_v = bool(rng.random() < 0.5), bool(rng.random() < 0.5)
        item = {}
        for role, (rgb, mosaic, profile) in loaded.items():
            rgb = rgb[top : top + side, left : left + side]
            if flip_h:
                rgb = rgb[:, ::-1]
            if flip_v:
                rgb = rgb[::-1]
            item[f"{role}_rgb"] = _resize_tensor(_to_tensor(rgb), self.crop).contiguous()
            if mosaic is None:  # no RAW in this set: the fixed inverse ISP of the resized crop
                item[f"{role}_raw"] = pseudo_packed_raw(item[f"{role}_rgb"]).contiguous()
                continue
            mosaic, pattern = even_crop(mosaic, top, left, side, side), profile.cfa
            if flip_h:
                mosaic, pattern = bayer_flip(mosaic, pattern, horizontal=True)
            if flip_v:
                mosaic, pattern = bayer_flip(mosaic, pattern, horizontal=False)
            raw = torch.from_numpy(
                np.ascontiguousarray(normalize_raw(pack_raw(mosaic, pattern), profile.black, profile.white))
            )
            item[f"{role}_raw"] = _resize_tensor(raw, self.crop // 2).contiguous()
        item["has_R"] = torch.tensor("R" in loaded)
        if "R" not in loaded:  # placeholders of the right shape; the trainer masks the R losses of this sample
            item["R_rgb"] = torch.zeros_like(item["T_rgb"])
            item["R_raw"] = torch.zeros_like(item["T_raw"])
        item["is_real"] = torch.tensor(True)
        item["source"] = f"real:{entry['stem']}"
        return item
