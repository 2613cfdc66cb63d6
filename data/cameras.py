"""Camera profiles: the CFA pattern and black/white levels that turn a Bayer mosaic into a normalised packed RAW.

Upstream picks these constants from substrings of file names; we look them up in a table, selected per image or
per dataset by a small JSON file (see :func:`resolve_profile`). The default is upstream's 14-bit RGGB camera.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from util.errors import UserError
from util.isp import CFA_PATTERNS

DATASET_PROFILE_FILE = "camera.json"  # per-dataset profile, in the dataset root
PACKED_CHANNELS = 4  # a per-channel black level lists [R, G1, G2, B]
CHANNEL_NAMES = ("R", "G1", "G2", "B")
MAX_LEVEL = 65535  # mosaics are read as uint16
# fewest counts from black to white that a real sensor records (6 bits; cameras have 10 to 16): white 1 or 4 is a
# level given in other units (normalised, or another file's bit depth)
MIN_LEVEL_RANGE = 64


@dataclass(frozen=True)
class CameraProfile:
    """CFA pattern and levels of one camera.

    ``black``/``white``: sensor counts of zero light and saturation; scalars, or ``black`` as a 4-tuple in the
    canonical packed order [R, G1, G2, B]. A packed mosaic is normalised as (x - black) / (white - black).
    """

    name: str
    cfa: str
    black: float | tuple[float, float, float, float]
    white: float

    def __post_init__(self):
        if self.cfa not in CFA_PATTERNS:
            raise ValueError(f"camera profile {self.name!r}: unknown CFA {self.cfa!r}; expected {CFA_PATTERNS}")
        if np.any(np.asarray(self.black, dtype=np.float64) >= self.white):
            raise ValueError(f"camera profile {self.name!r}: white {self.white} must exceed black {self.black}")


# The cameras of upstream's test data (RAW_RGB_RR), by the levels its loader applies.
CAMERA_PROFILES: dict[str, CameraProfile] = {
    p.name: p
    for p in (
        CameraProfile("default", "RGGB", 400, 16383),  # 14-bit RGGB camera: files matching no other rule upstream
        CameraProfile("huawei_bggr", "BGGR", 256, 4095),
        CameraProfile("huawei_grbg", "GRBG", 256, 4095),
        CameraProfile("nikon_d90", "GBRG", 0, 4095),
        CameraProfile("honor", "RGGB", 64, 1023),
    )
}
DEFAULT_PROFILE = CAMERA_PROFILES["default"]


def _profile_from_json(json_path: Path) -> CameraProfile:
    """Parse ``{"camera": name}`` or ``{"cfa": ..., "black": ..., "white": ...}``; UserError naming the file."""
    names = ", ".join(CAMERA_PROFILES)
    hint = f'use {{"camera": <one of {names}>}} or {{"cfa": <{"|".join(CFA_PATTERNS)}>, "black": ..., "white": ...}}'
    try:
        spec = json.loads(json_path.read_text(encoding="utf-8"), parse_constant=_refuse_constant)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"cannot read camera profile {json_path}: {err}; {hint}") from err
    except ValueError as err:  # NaN / Infinity, which Python's json would otherwise accept
        raise UserError(f"camera profile {json_path}: {err}; levels are finite sensor counts") from err
    if not isinstance(spec, dict):
        raise UserError(f"camera profile {json_path} must hold a JSON object; {hint}")
    if "camera" in spec:
        if len(spec) > 1:
            others = ", ".join(sorted(k for k in spec if k != "camera"))
            raise UserError(f"camera profile {json_path} gives a camera name and also {others}; {hint}")
        name = spec["camera"]
        if not isinstance(name, str) or name not in CAMERA_PROFILES:
            raise UserError(f"camera profile {json_path}: unknown camera {name!r}; valid cameras: {names}")
        return CAMERA_PROFILES[name]
    missing = [k for k in ("cfa", "black", "white") if k not in spec]
    if missing:
        raise UserError(f"camera profile {json_path} lacks {', '.join(missing)}; {hint}")
    unknown = sorted(set(spec) - {"cfa", "black", "white"})
    if unknown:
        raise UserError(f"camera profile {json_path}: unknown key(s) {', '.join(unknown)}; {hint}")
    cfa = str(spec["cfa"]).upper()
    if cfa not in CFA_PATTERNS:
        patterns = ", ".join(CFA_PATTERNS)
        raise UserError(f"camera profile {json_path}: unknown CFA pattern {spec['cfa']!r}; valid patterns: {patterns}")
    black, white = spec["black"], spec["white"]
    try:
        if isinstance(black, list):
            if len(black) != PACKED_CHANNELS:
                raise ValueError("black must be a number or a list of 4 numbers [R, G1, G2, B]")
            black = tuple(float(_number(v)) for v in black)
        else:
            black = float(_number(black))
        white = float(_number(white))
    except (TypeError, ValueError) as err:
        raise UserError(f"camera profile {json_path}: {err}") from err
    problem = level_problem(black, white)
    if problem:
        raise UserError(f"camera profile {json_path}: {problem}")
    return CameraProfile(f"custom:{json_path.name}", cfa, black, white)


def level_problem(black, white) -> str | None:
    """What is wrong with these levels (sensor counts of a 16-bit mosaic), or None.

    ``black``: a number or 4 numbers [R, G1, G2, B]; ``white``: a number. Refused: negative black, white above
    65535, white not above every black level, and fewer than :data:`MIN_LEVEL_RANGE` counts between them.
    """
    blacks = np.atleast_1d(np.asarray(black, dtype=np.float64))
    if not np.all(np.isfinite(blacks)) or not np.isfinite(white):
        return f"black {black} and white {white} must be finite numbers"
    if np.any(blacks < 0):
        return f"black level {black} is negative; black and white levels are sensor counts (0..{MAX_LEVEL})"
    if white > MAX_LEVEL:
        return f"white level {white:g} exceeds {MAX_LEVEL}, the largest value of a 16-bit mosaic"
    if np.any(blacks >= white):
        if blacks.size == 1:
            return f"white level {white:g} must exceed black level {blacks[0]:g}"
        bad = ", ".join(f"{c} {b:g}" for c, b in zip(CHANNEL_NAMES, blacks, strict=True) if b >= white)
        return f"white level {white:g} must exceed the black level of every channel (not: {bad})"
    if white - blacks.max() < MIN_LEVEL_RANGE:
        return (
            f"only {white - blacks.max():g} counts between black {black} and white {white:g}, fewer than any camera "
            f"records ({MIN_LEVEL_RANGE}); give the levels in sensor counts of this file (e.g. white 4095 for 12 bits)"
        )
    return None


def _refuse_constant(name):
    raise ValueError(f"{name} is not a level")


def _number(v):
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ValueError(f"expected a number for black/white levels, got {v!r}")
    return v


def resolve_profile(raw_path, dataroot=None) -> CameraProfile:
    """Camera profile of one RAW file.

    Precedence: ``<stem>.json`` beside ``raw_path``; else ``camera.json`` in ``dataroot``; else
    :data:`DEFAULT_PROFILE`. Unknown camera name or key, bad CFA, malformed JSON and impossible levels (NaN,
    Infinity, negative black, white above 65535 or not above every black level, fewer than 64 counts between
    them) raise ``UserError`` naming the JSON file.
    """
    raw_path = Path(raw_path)
    beside = raw_path.with_name(raw_path.stem + ".json")
    if beside.is_file():
        return _profile_from_json(beside)
    if dataroot is not None:
        dataset_json = Path(dataroot) / DATASET_PROFILE_FILE
        if dataset_json.is_file():
            return _profile_from_json(dataset_json)
    return DEFAULT_PROFILE
