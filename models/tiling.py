"""Tiled inference: bounded memory on photos of any size, overlapping tiles blended without seams.

Each tile (``tile`` x ``tile`` RGB pixels, its packed RAW half of that) runs through
:func:`models.inference.separate`; neighbouring tiles overlap by ``overlap`` pixels and are blended with weights
that ramp linearly across the overlap, so every output pixel is a convex combination of the predictions that cover
it. Memory is that of one tile on the device plus the full-size float32 outputs on the host.
"""

from __future__ import annotations

import math

import torch

from models.cr3net import SIZE_MULTIPLE
from models.inference import separate
from util.errors import UserError

DEFAULT_TILE = 512  # RGB pixels; 0 = whole image
DEFAULT_OVERLAP = 64  # RGB pixels; capped at half the tile when not given


def check_tiling(tile: int, overlap: int | None, default_overlap: int = DEFAULT_OVERLAP) -> int:
    """Validate ``--tile`` / ``--tile_overlap`` as :func:`separate_tiled` needs them; return the overlap to use.

    ``tile``: 0 (whole image) or a positive multiple of ``SIZE_MULTIPLE`` (the network's size step; tiles of any
    such size run, the smallest with little context). ``overlap``: even (the packed RAW is half the RGB resolution),
    0..tile/2 (more would make tiles advance by less than they overlap; :func:`separate_tiled` used to shrink it
    silently); ``None`` = ``default_overlap`` capped at tile/2. Raises ``UserError`` naming the flag.
    """
    if tile < 0 or tile % SIZE_MULTIPLE:
        nearest = max(SIZE_MULTIPLE, round(abs(tile) / SIZE_MULTIPLE) * SIZE_MULTIPLE)
        raise UserError(f"--tile {tile} must be 0 (whole image) or a positive multiple of {SIZE_MULTIPLE}, "
                        f"e.g. {nearest}")
    if overlap is None:
        return min(default_overlap, tile // 2 // 2 * 2) if tile else default_overlap
    if overlap < 0 or overlap % 2:
        raise UserError(f"--tile_overlap {overlap} must be an even number of pixels >= 0 (the RAW is half the RGB "
                        "resolution)")
    if tile and overlap > tile // 2:
        raise UserError(f"--tile_overlap {overlap} is more than half of --tile {tile}; use at most {tile // 2 // 2 * 2}"
                        " or a larger tile")
    return overlap


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Even start offsets covering [0, length) with tiles of ``tile`` overlapping by at least ``overlap``."""
    if length <= tile:
        return [0]
    step = max(2, (tile - overlap) // 2 * 2)
    starts = list(range(0, length - tile, step))
    starts.append((length - tile) // 2 * 2)
    return sorted(set(starts))


def _ramp(length: int, start: int, size: int, total: int, overlap: int) -> torch.Tensor:
    """1-D blend weights of one tile: linear ramps over the overlap at interior edges, 1 elsewhere."""
    w = torch.ones(size)
    if overlap <= 0:
        return w
    ramp = (torch.arange(overlap, dtype=torch.float32) + 0.5) / overlap
    n = min(overlap, size)
    if start > 0:
        w[:n] = torch.minimum(w[:n], ramp[:n])
    if start + size < total:
        w[size - n:] = torch.minimum(w[size - n:], ramp[:n].flip(0))
    return w


def fitted_tile(h: int, w: int, max_tile: int, overlap: int = DEFAULT_OVERLAP) -> tuple[int, int]:
    """Rectangular tiles (height, width) for an h x w image: as few per axis as tiles of ``max_tile`` would need, each
    as small as covers the image with that many (multiples of ``SIZE_MULTIPLE``, at most ``max_tile``).

    Square tiles of ``max_tile`` waste work where the image is not a whole number of tile steps: a 1224 px side takes
    three 512 px tiles (1536 px computed) with a 64 px overlap, or three fitted ones of 456 px (1368 px). (0, 0)
    where ``max_tile`` is 0 (run whole). For :func:`separate_tiled` on the working image of
    :mod:`models.work_resolution`.
    """
    if max_tile <= 0:
        return 0, 0
    overlap = min(overlap, max_tile // 2) // 2 * 2
    return _fitted_length(h, max_tile, overlap), _fitted_length(w, max_tile, overlap)


def _fitted_length(length: int, max_tile: int, overlap: int) -> int:
    if length <= max_tile:
        return max_tile  # one tile along this axis
    count = math.ceil((length - overlap) / (max_tile - overlap))
    size = math.ceil((length + (count - 1) * overlap) / count)
    return min(max_tile, math.ceil(size / SIZE_MULTIPLE) * SIZE_MULTIPLE)


def separate_tiled(net, I_rgb, I_raw, tile: int | tuple[int, int] = DEFAULT_TILE, overlap: int = DEFAULT_OVERLAP,
                   device="cpu", precision: str = "fp32", channels_last: bool = True,
                   progress=None) -> dict[str, torch.Tensor]:
    """Like :func:`models.inference.separate` for one image, tile by tile.

    I_rgb: (1, 3, H, W) float32 [0, 1] and I_raw: (1, 4, H/2, W/2) packed, normalised, on any device (the CPU for
    large photos); ``tile`` a multiple of ``SIZE_MULTIPLE`` (0 = run whole), or (height, width) of rectangular tiles,
    each a multiple of ``SIZE_MULTIPLE`` (:func:`fitted_tile`). Tiles are moved to ``device`` one at a time. Returns
    CPU float32 predictions ``T_pred_rgb``, ``R_pred_rgb`` (1, 3, H, W) and ``T_pred_raw``, ``R_pred_raw``
    (1, 4, H/2, W/2) in [0, 1].
    ``progress``: optional callable(done, total) after each tile.
    """
    _, _, h, w = I_rgb.shape
    tile_h, tile_w = (int(tile[0]), int(tile[1])) if isinstance(tile, tuple | list) else (int(tile), int(tile))
    if tile_h <= 0 or tile_w <= 0 or (h <= tile_h and w <= tile_w):
        out = separate(net, I_rgb.to(device), I_raw.to(device), precision, channels_last)
        return {k: v.cpu() for k, v in out.items()}
    if tile_h % SIZE_MULTIPLE or tile_w % SIZE_MULTIPLE:
        raise ValueError(f"tile size {tile} must be a multiple of {SIZE_MULTIPLE}")
    overlap = min(overlap, min(tile_h, tile_w) // 2) // 2 * 2
    th, tw = min(tile_h, h), min(tile_w, w)
    ys, xs = tile_starts(h, th, overlap), tile_starts(w, tw, overlap)
    acc = {"T_pred_rgb": torch.zeros(1, 3, h, w), "R_pred_rgb": torch.zeros(1, 3, h, w),
           "T_pred_raw": torch.zeros(1, 4, h // 2, w // 2), "R_pred_raw": torch.zeros(1, 4, h // 2, w // 2)}
    weight_rgb = torch.zeros(1, 1, h, w)
    weight_raw = torch.zeros(1, 1, h // 2, w // 2)
    total, done = len(ys) * len(xs), 0
    for y in ys:
        wy, wy_raw = _ramp(h, y, th, h, overlap), _ramp(h // 2, y // 2, th // 2, h // 2, overlap // 2)
        for x in xs:
            wx, wx_raw = _ramp(w, x, tw, w, overlap), _ramp(w // 2, x // 2, tw // 2, w // 2, overlap // 2)
            out = separate(net, I_rgb[..., y:y + th, x:x + tw].to(device),
                           I_raw[..., y // 2:(y + th) // 2, x // 2:(x + tw) // 2].to(device), precision, channels_last)
            win = (wy[:, None] * wx[None, :])[None, None]
            win_raw = (wy_raw[:, None] * wx_raw[None, :])[None, None]
            for k in ("T_pred_rgb", "R_pred_rgb"):
                acc[k][..., y:y + th, x:x + tw] += out[k].cpu() * win
            for k in ("T_pred_raw", "R_pred_raw"):
                acc[k][..., y // 2:(y + th) // 2, x // 2:(x + tw) // 2] += out[k].cpu() * win_raw
            weight_rgb[..., y:y + th, x:x + tw] += win
            weight_raw[..., y // 2:(y + th) // 2, x // 2:(x + tw) // 2] += win_raw
            done += 1
            if progress is not None:
                progress(done, total)
    for k in ("T_pred_rgb", "R_pred_rgb"):
        acc[k] /= weight_rgb
    for k in ("T_pred_raw", "R_pred_raw"):
        acc[k] /= weight_raw
    return acc
