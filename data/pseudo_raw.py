"""A RAW for photos that have none: the sRGB image taken back through a fixed, neutral inverse ISP.

Real through-glass pairs are rarely published with their RAW files (Zhang et al. 2018, the location-aware SIRR set:
RGB only). Training on them and evaluating on them both need the RAW input of CR3Net, so this one module makes it,
the same way everywhere (``scripts/make_rgb_only_set.py``, ``scripts/make_val_sets.py``, real pairs in training):

    sRGB -> inverse smoothstep -> x^2.2 -> identity colour matrix and white balance -> RGGB mosaic
         -> sensor counts of the default camera profile (black 400, white 16383), rounded

The RAW branch then sees a plausible linear image, but no information that the RGB does not have.

``--raw_source rgb`` (train.py, test.py, training validation) gives *every* image this RAW, whatever RAW its data
has: the RGB-only twin of the network, what a user without a RAW file has (``scripts/raw_vs_rgb.py`` compares the
two twins). ``--raw_source sensor`` (the default) keeps the data's own RAW.
"""

from __future__ import annotations

import numpy as np
import torch

from data.cameras import DEFAULT_PROFILE, CameraProfile
from util.isp import ISPParams, denormalize_raw, mosaic_rgb, normalize_raw, pack_raw, unprocess

PSEUDO_RAW_CFA = "RGGB"  # the canonical packed order is the same for every pattern; RGGB keeps it simplest
RAW_SOURCES = ("sensor", "rgb")  # --raw_source: the data's own RAW, or the RAW made from the RGB by this module
DEFAULT_RAW_SOURCE = "sensor"


def pseudo_raw_mosaic(rgb_u8: np.ndarray, profile: CameraProfile = DEFAULT_PROFILE) -> np.ndarray:
    """(H, W, 3) uint8 sRGB -> (H, W) uint16 Bayer mosaic in ``profile``'s CFA and levels (H, W even)."""
    srgb = torch.from_numpy(np.array(rgb_u8)).permute(2, 0, 1).float() / 255.0
    linear = unprocess(srgb, ISPParams.identity()).clamp(0, 1)
    mosaic = mosaic_rgb(linear, profile.cfa).numpy()
    return np.round(denormalize_raw(mosaic, profile.black, profile.white)).astype(np.uint16)


def pseudo_packed_raw(srgb: torch.Tensor, profile: CameraProfile = DEFAULT_PROFILE) -> torch.Tensor:
    """sRGB (3, H, W) float in [0, 1] -> packed (4, H/2, W/2) float32 [R, G1, G2, B], (x - black) / (white - black).

    Equal to packing and normalising :func:`pseudo_raw_mosaic` of the same image (the counts are rounded the same
    way), without the uint8 round trip, for images that are already float (resized training crops).
    """
    linear = unprocess(srgb.to(torch.float32).clamp(0, 1), ISPParams.identity()).clamp(0, 1)
    mosaic = torch.round(denormalize_raw(mosaic_rgb(linear, profile.cfa), profile.black, profile.white))
    return normalize_raw(pack_raw(mosaic, profile.cfa), profile.black, profile.white).to(torch.float32)


def write_pseudo_raw_pair(out, stem: str, blend_u8: np.ndarray, transmission_u8: np.ndarray) -> tuple[int, int]:
    """Write one RGB-only pair into the test layout under ``out``: ``testB_rgb``/``testB_raw`` (the photo through
    glass) and ``testA1_rgb``/``testA1_raw`` (its ground-truth transmission), RAW by :func:`pseudo_raw_mosaic`.

    The two images must have the same size; an odd height or width loses its last row or column (Bayer mosaics are
    even). Returns the size written (H, W). The caller writes the dataset's ``camera.json`` (``{"camera":
    "default"}``, the profile of the pseudo-RAW).
    """
    from pathlib import Path

    from data.image_io import write_png16
    from util.image_io import write_rgb

    if blend_u8.shape != transmission_u8.shape:
        raise ValueError(f"{stem}: the photo is {blend_u8.shape} but its transmission {transmission_u8.shape}")
    h, w = blend_u8.shape[0] // 2 * 2, blend_u8.shape[1] // 2 * 2
    for prefix, rgb in (("testB", blend_u8), ("testA1", transmission_u8)):
        rgb = np.ascontiguousarray(rgb[:h, :w])
        write_rgb(Path(out) / f"{prefix}_rgb" / f"{stem}.png", rgb)
        write_png16(Path(out) / f"{prefix}_raw" / f"{stem}.png", pseudo_raw_mosaic(rgb))
    return h, w
