"""Test-time RAW+RGB reflection-removal dataset (upstream layout, pairs matched by file stem).

Layout under ``opt.dataroot`` (folder names as upstream):

* with ground truth: ``testB_rgb`` + ``testB_raw`` = input I; optional ``testA1_rgb`` + ``testA1_raw`` =
  transmission T and ``testA2_rgb`` + ``testA2_raw`` = reflection R;
* without ground truth: ``wogtB_rgb`` + ``wogtB_raw`` (used only when there is no ``testB_rgb``).

``x.png`` in a ``*_rgb`` folder pairs with ``x.png`` / ``x.tiff`` / ``x.tif`` in the matching ``*_raw`` folder.
Each RAW mosaic is packed and normalised with its camera profile (:func:`data.cameras.resolve_profile`).
With ``--raw_source rgb`` every RAW is instead made from its RGB image at the evaluation geometry by the fixed
inverse ISP of :mod:`data.pseudo_raw` (the RGB-only twin of ``scripts/raw_vs_rgb.py``), and the ``*_raw`` folders
may then be left out: an RGB-only set (``testB_rgb``, optional ``testA1_rgb`` / ``testA2_rgb``) evaluates as is.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from data.camera_raw import CAMERA_RAW_EXTENSIONS, is_camera_raw, load_jpeg_partner, read_camera_raw, render_rgb
from data.cameras import DEFAULT_PROFILE, resolve_profile
from data.image_io import RAW_MOSAIC_EXTENSIONS, read_raw_mosaic
from data.pseudo_raw import DEFAULT_RAW_SOURCE, RAW_SOURCES, pseudo_packed_raw
from util.errors import UserError
from util.files import link_problem
from util.image_io import RGB_EXTENSIONS, files_by_stem, read_rgb
from util.isp import normalize_raw, pack_raw

OFFICIAL_TEST_LONG_SIDE = 640  # upstream test-time resize: the RGB long side becomes 640 px
OFFICIAL_TEST_SHORT_HALF = 320  # upstream computes the short side at half scale (RAW resolution) ...
OFFICIAL_TEST_SHORT_STEP = 32  # ... rounded down to a multiple of 32 there, i.e. of 64 at RGB resolution
# --eval_resize / --val_resize: upstream's test-time size (official_test_size), or the native size
EVAL_RESIZE_CHOICES = ("official", "none")
DEFAULT_EVAL_RESIZE = "official"
RGB_MAX = 255.0

INPUT_FOLDERS = ("testB", "wogtB")  # input I with ground truth / without ground truth
GT_FOLDERS = {"T": "testA1", "R": "testA2"}


class MissingRawFolder(UserError):
    """A ``*_rgb`` folder without its ``*_raw`` folder under ``--raw_source sensor`` (an RGB-only set)."""


def official_test_size(h: int, w: int) -> tuple[int, int]:
    """Upstream's test-time RGB size (H, W) for an RGB image of size (h, w).

    The long side becomes :data:`OFFICIAL_TEST_LONG_SIDE` (640), the short side
    ``floor(short / long * 320 / 32) * 32 * 2`` (a multiple of 64); the packed RAW is half of each.
    E.g. (750, 1000) -> (448, 640). Raises ``UserError`` where the short side would be 0 (aspect ratio over 10:1).
    """
    long_side, short_side = max(h, w), min(h, w)
    new_short = (
        math.floor(short_side / long_side * OFFICIAL_TEST_SHORT_HALF / OFFICIAL_TEST_SHORT_STEP)
        * OFFICIAL_TEST_SHORT_STEP
        * 2
    )
    if new_short == 0:
        raise UserError(
            f"an image of {w}x{h} (width x height) is too elongated for --eval_resize official; use --eval_resize none"
        )
    return (OFFICIAL_TEST_LONG_SIDE, new_short) if h >= w else (new_short, OFFICIAL_TEST_LONG_SIDE)


def describe_candidates(stem: str, extensions) -> str:
    """``x.png / x.tiff / x.tif or a camera RAW file x.dng / x.nef / ... (45 kinds)``: the names looked for, short."""
    plain = [ext for ext in extensions if ext not in CAMERA_RAW_EXTENSIONS]
    camera = [ext for ext in extensions if ext in CAMERA_RAW_EXTENSIONS]
    text = " / ".join(stem + ext for ext in plain)
    if camera:
        examples = [ext for ext in (".dng", ".nef", ".cr2", ".arw") if ext in camera] or camera[:3]
        text += (f"{' or ' if plain else ''}a camera RAW file {' / '.join(stem + e for e in examples)} / ... "
                 f"({len(camera)} kinds, see README)")
    return text


def single_partner(stem: str, candidates: dict[str, list[Path]], folder: Path, extensions, wanted_by: Path) -> Path:
    """The one file of ``candidates`` (from :func:`util.image_io.files_by_stem` on ``folder``) with this stem.

    Raises :class:`UserError` naming ``wanted_by`` when there is none or more than one.
    """
    found = candidates.get(stem, [])
    if not found:
        raise UserError(f"no partner for {wanted_by}: looked for {describe_candidates(stem, extensions)} in {folder}")
    if len(found) > 1:
        raise UserError(
            f"ambiguous partner for {wanted_by}: {', '.join(sorted(p.name for p in found))} in {folder}; keep one"
        )
    return found[0]


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear, antialiased resize of a (C, h, w) float tensor to ``size``; unchanged if already that size."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x.unsqueeze(0), size=size, mode="bilinear", align_corners=False, antialias=True).squeeze(0)


def load_pair(rgb_path, raw_path, dataroot=None):
    """Read one RGB image and its RAW: ``(rgb (H, W, 3) uint8, mosaic (H, W) uint16, CameraProfile)``.

    A camera RAW file (DNG, NEF, ...) brings its own CFA and levels; its camera JPEG is aligned to the mosaic, and
    with ``rgb_path=None`` the RGB is rendered from the RAW. A PNG/TIFF mosaic takes the profile from
    :func:`data.cameras.resolve_profile`. RAW and RGB of different sizes raise ``UserError`` naming both files.
    """
    if is_camera_raw(raw_path):
        cam = read_camera_raw(raw_path)
        mosaic, profile = cam.mosaic, cam.profile()
        if rgb_path is None:
            rgb = render_rgb(cam)
        elif Path(rgb_path).suffix.lower() in (".jpg", ".jpeg"):
            rgb = load_jpeg_partner(rgb_path, cam)
        else:
            rgb = read_rgb(rgb_path)
    else:
        rgb, mosaic = read_rgb(rgb_path), read_raw_mosaic(raw_path)
        profile = resolve_profile(raw_path, dataroot)
    if mosaic.shape != rgb.shape[:2]:
        (rh, rw), (mh, mw) = rgb.shape[:2], mosaic.shape
        raise UserError(f"size mismatch: {rgb_path} is {rw}x{rh} but its RAW {raw_path} is {mw}x{mh} (width x height)")
    return rgb, mosaic, profile


class RawrrDataset(Dataset):
    """RAW+RGB test pairs for reflection removal.

    Item (a dict):

    * ``stem``: file stem shared by all files of the item;
    * ``I_rgb``: (3, H, W) float32 in [0, 1], sRGB as saved by the camera;
    * ``I_raw``: (4, H/2, W/2) float32, packed [R, G1, G2, B], (x - black) / (white - black), not clipped;
    * ``T_rgb``, ``T_raw``, ``R_rgb``, ``R_raw``: same, present only where the ground-truth folders exist;
    * ``paths``: dict ``{"I_rgb": str, "I_raw": str, ...}`` of the files read;
    * ``size``: (h, w) of the original RGB before any resize;
    * ``camera``: name of the camera profile of ``I_raw``.

    ``opt.eval_resize``: ``"official"`` resizes to :func:`official_test_size` (RAW to half of it), ``"none"`` keeps
    the native size. ``opt.num_test`` > 0 keeps the first ``num_test`` stems in sorted order. ``opt.raw_source``:
    ``"sensor"`` (default) reads the RAW files; ``"rgb"`` replaces every ``*_raw`` by
    :func:`data.pseudo_raw.pseudo_packed_raw` of its RGB after the resize (the RAW files are still read and checked,
    so both give the same errors), and ``camera`` is then the pseudo-RAW's profile. With ``"rgb"`` the ``*_raw``
    folders may be absent (an RGB-only set: ``testB_rgb`` [+ ``testA1_rgb``, ``testA2_rgb``]); ``paths`` then has
    ``""`` for the missing RAW, and with ``eval_resize="none"`` an odd height or width loses its last row / column
    (the pseudo-RAW's Bayer mosaic is even), as in ``scripts/make_rgb_only_set.py``.
    """

    @staticmethod
    def modify_commandline_options(parser, is_train):
        """No dataset-specific flags: ``--eval_resize`` and ``--num_test`` are shared options."""
        return parser

    def __init__(self, opt):
        self.opt = opt
        self.root = Path(opt.dataroot)
        phase = getattr(opt, "phase", "test")
        if phase != "test":
            raise UserError(f"RawrrDataset reads test data only (--phase test), got --phase {phase}")
        self.eval_resize = getattr(opt, "eval_resize", DEFAULT_EVAL_RESIZE)
        if self.eval_resize not in EVAL_RESIZE_CHOICES:
            raise UserError(f"--eval_resize {self.eval_resize!r} is not one of {', '.join(EVAL_RESIZE_CHOICES)}")
        self.raw_source = getattr(opt, "raw_source", None) or DEFAULT_RAW_SOURCE
        if self.raw_source not in RAW_SOURCES:
            raise UserError(f"--raw_source {self.raw_source!r} is not one of {', '.join(RAW_SOURCES)}")
        if not self.root.is_dir():
            raise UserError(link_problem(self.root) or f"--dataroot {self.root} is not a folder")
        for prefix in (*INPUT_FOLDERS, *GT_FOLDERS.values()):
            for kind in ("rgb", "raw"):
                sub = self.root / f"{prefix}_{kind}"
                if os.path.lexists(sub) and not sub.is_dir():
                    raise UserError(link_problem(sub) or f"{sub} is a file, not a folder; rename or remove it")

        prefix = next((p for p in INPUT_FOLDERS if (self.root / f"{p}_rgb").is_dir()), None)
        if prefix is None:
            expected = " or ".join(f"{p}_rgb + {p}_raw" for p in INPUT_FOLDERS)
            raise UserError(f"{self.root} holds no test data: expected {expected} (optionally testA1_*, testA2_*)")
        roles = {"I": prefix}
        if prefix == "testB":
            for role, gt_prefix in GT_FOLDERS.items():
                have_rgb, have_raw = ((self.root / f"{gt_prefix}_{kind}").is_dir() for kind in ("rgb", "raw"))
                if have_rgb:
                    roles[role] = gt_prefix
                elif have_raw:
                    raise UserError(f"{self.root} has {gt_prefix}_raw but no {gt_prefix}_rgb")
        # roles without a *_raw folder: allowed with --raw_source rgb, which makes every RAW from its RGB anyway
        self.rgb_only = {role for role, p in roles.items() if not (self.root / f"{p}_raw").is_dir()}
        if self.rgb_only and self.raw_source != "rgb":
            p = roles["I"] if "I" in self.rgb_only else roles[sorted(self.rgb_only)[0]]
            raise MissingRawFolder(
                f"{self.root} has {p}_rgb but no {p}_raw folder for the RAW mosaics; for RGB-only test data give "
                "--raw_source rgb (each RAW is then made from its RGB image by the fixed inverse ISP), or write RAW "
                "files for it with scripts/make_rgb_only_set.py"
            )
        self.roles = roles
        self.items = self._pair(roles)
        num_test = int(getattr(opt, "num_test", 0) or 0)
        if num_test > 0:
            self.items = self.items[:num_test]

    def _pair(self, roles: dict[str, str]) -> list[dict]:
        folders = {
            (role, kind): self.root / f"{p}_{kind}"
            for role, p in roles.items()
            for kind in ("rgb", "raw")
            if kind == "rgb" or role not in self.rgb_only
        }
        listing = {
            key: files_by_stem(folder, RGB_EXTENSIONS if key[1] == "rgb" else RAW_MOSAIC_EXTENSIONS)
            for key, folder in folders.items()
        }
        for role in self.rgb_only:
            listing[(role, "raw")] = {}
        i_rgb = listing[("I", "rgb")]
        # a camera RAW file (DNG, NEF, ...) needs no RGB partner: its RGB is then rendered from the RAW
        rendered = {s for s, raws in listing[("I", "raw")].items() if s not in i_rgb and is_camera_raw(raws[0])}
        if not i_rgb and not rendered:
            raise UserError(f"{folders[('I', 'rgb')]} holds no images ({', '.join(RGB_EXTENSIONS)})")
        for stem, raws in listing[("I", "raw")].items():
            if stem not in i_rgb and stem not in rendered:
                rgb_folder = folders[("I", "rgb")]
                raise UserError(f"no partner for {raws[0]}: looked for {stem}.png (or .jpg, .tif, ...) in {rgb_folder}")
        items = []
        for stem in sorted(set(i_rgb) | rendered):
            paths = {}
            for role in roles:
                if role in self.rgb_only:
                    paths[f"{role}_raw"] = None  # made from the RGB image (--raw_source rgb)
                for kind in ("raw", "rgb") if role not in self.rgb_only else ("rgb",):
                    folder, found = folders[(role, kind)], listing[(role, kind)]
                    if kind == "rgb" and stem not in found and is_camera_raw(paths[f"{role}_raw"]):
                        paths[f"{role}_rgb"] = None  # rendered from the camera RAW file
                        continue
                    exts = RGB_EXTENSIONS if kind == "rgb" else RAW_MOSAIC_EXTENSIONS
                    wanted_by = i_rgb[stem][0] if stem in i_rgb else paths.get("I_raw", folder / stem)
                    paths[f"{role}_{kind}"] = single_partner(stem, found, folder, exts, wanted_by)
            items.append({"stem": stem, "paths": paths})
        return items

    def __len__(self) -> int:
        return len(self.items)

    def _load_pair(self, role: str, paths: dict[str, Path]):
        rgb_path, raw_path = paths[f"{role}_rgb"], paths[f"{role}_raw"]
        if raw_path is None:  # an RGB-only folder (--raw_source rgb): __getitem__ makes the RAW after the resize
            rgb = torch.from_numpy(np.ascontiguousarray(read_rgb(rgb_path).transpose(2, 0, 1))).float() / RGB_MAX
            return rgb, None, DEFAULT_PROFILE
        rgb, mosaic, profile = load_pair(rgb_path, raw_path, self.root)
        raw = normalize_raw(pack_raw(mosaic, profile.cfa), profile.black, profile.white)
        rgb_t = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).float() / RGB_MAX
        return rgb_t, torch.from_numpy(np.ascontiguousarray(raw)), profile

    def __getitem__(self, index: int) -> dict:
        entry = self.items[index]
        paths = entry["paths"]
        item = {"stem": entry["stem"], "paths": {k: str(v) if v is not None else "" for k, v in paths.items()}}
        size = None
        for role in self.roles:
            rgb, raw, profile = self._load_pair(role, paths)
            h, w = rgb.shape[-2:]
            if size is None:
                size, item["camera"] = (h, w), profile.name
            elif (h, w) != size:
                raise UserError(
                    f"size mismatch: {paths[f'{role}_rgb']} is {w}x{h} but {paths['I_rgb']} is "
                    f"{size[1]}x{size[0]} (width x height)"
                )
            if self.eval_resize == "official":
                new_h, new_w = official_test_size(h, w)
                rgb = _resize(rgb, (new_h, new_w))
                raw = None if raw is None else _resize(raw, (new_h // 2, new_w // 2))
            elif raw is None:  # no mosaic to keep it even: an odd size loses its last row / column
                rgb = rgb[:, : h - h % 2, : w - w % 2]
            if self.raw_source == "rgb":  # the RAW an RGB-only photo gives, made at the size the network sees
                raw = pseudo_packed_raw(rgb)
            item[f"{role}_rgb"], item[f"{role}_raw"] = rgb, raw
        if self.raw_source == "rgb":
            item["camera"] = DEFAULT_PROFILE.name
        item["size"] = size
        return item
