"""The reflection-free RAW of a camera photo: the photo's own Bayer mosaic with the reflection removed, as a DNG.

``remove_reflection.py --raw_out`` writes ``<stem>_T.dng`` beside ``<stem>_T.png``: the photo's RAW file at full
sensor resolution, with its CFA pattern, levels, white balance, colour matrices, orientation and EXIF
(:mod:`util.dng`), holding a mosaic without the reflection, for the photographer's own RAW developer.
:func:`reflection_free_mosaic` forms that mosaic from the network's outputs in one of :data:`RAW_MOSAIC_MODES`
(``--raw_mosaic``); :func:`write_reflection_free_dng` writes it.

* ``ratio`` (the default): the per-pixel gain T / I in linear camera RGB, from the network's RGB input I and its RGB
  result T, both taken back through the photo's own rendering (:func:`util.isp.srgb_to_camera`: sRGB curve, colour
  matrix, white balance), sampled on the CFA and applied to the photo's ORIGINAL mosaic:
  ``black + (mosaic - black) * gain``. The DNG then renders like T (the network's final, best output), keeps the
  sensor's own noise and detail, and where the network removes nothing the gain is exactly 1: the DNG holds the
  input's mosaic value for value. In a ratio, errors in our model of the camera's rendering largely cancel
  (per-channel gains exactly, brightness and tone curves to first order), which matters when the RGB side is the
  camera's JPEG rather than our own rendering.
* ``ratio_raw``: the same with the gain T_pred_raw / I_raw of the network's RAW branch (an intermediate output).
* ``inverse_isp``: T itself taken back to the sensor (sRGB curve, colour matrix and white balance inverted, sampled
  on the CFA, levels re-applied): exact only where our model of the rendering is, and T's 8 bits of sRGB become the
  mosaic's precision.
* ``t_raw``: the RAW branch's T_pred_raw as it is (clipped to [black, white] like every network output).

Gains are ``(T + RATIO_EPS) / (I + RATIO_EPS)`` with negatives clipped to 0 (colours outside the camera's gamut),
clipped to [0, RATIO_MAX]; a site is never pushed above the white level unless it was there already. Why ``ratio``
is the default, and the measurements behind it: README, "A reflection-free RAW for your RAW developer".
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from data.camera_raw import CameraRaw
from util.dng import DngSource, write_dng
from util.image_io import UINT16_MAX
from util.isp import CANONICAL_CHANNELS, cfa_offsets, mosaic_rgb, pack_raw, srgb_to_camera, unpack_raw

RAW_MOSAIC_MODES = ("ratio", "ratio_raw", "inverse_isp", "t_raw")
DEFAULT_RAW_MOSAIC = "ratio"
MODES_USING_T_PRED_RAW = ("ratio_raw", "t_raw")  # the modes that read the network's T_pred_raw (others T_pred_rgb)
# Added to T and I (linear, white = 1) before dividing: sRGB code 3 of 255 is 0.0009 linear; below that the 8-bit
# input cannot express a ratio, and the gain tends to 1 (nothing changed) there.
RATIO_EPS = 1e-3
RATIO_MAX = 4.0  # a transmission more than two stops brighter than the input is taken as noise of a near-black input
ROW_BAND = 256  # image rows taken to camera RGB at a time (even: keeps the CFA phase); bounds the float64 temporaries


def _float64(x) -> np.ndarray:
    """A (1, C, h, w) or (C, h, w) tensor or array as a (C, h, w) float64 numpy array."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    x = np.asarray(x, dtype=np.float64)
    return x[0] if x.ndim == 4 else x


def _gain(T_lin: np.ndarray, I_lin: np.ndarray) -> np.ndarray:
    """Linear gain (T + eps) / (I + eps) on values clipped at 0, clipped to [0, RATIO_MAX]; exactly 1 where T = I."""
    return np.clip((np.maximum(T_lin, 0) + RATIO_EPS) / (np.maximum(I_lin, 0) + RATIO_EPS), 0.0, RATIO_MAX)


def _on_cfa(fn, images, cfa: str) -> np.ndarray:
    """``fn(*bands)`` -> (3, rows, W) linear camera RGB, over bands of :data:`ROW_BAND` rows of the (1, 3, H, W)
    ``images``, sampled on the CFA: (H, W) float64, one value per site."""
    h, w = images[0].shape[-2:]
    sampled = np.empty((h, w), dtype=np.float64)
    for top in range(0, h, ROW_BAND):
        bands = [_float64(image[..., top : top + ROW_BAND, :]) for image in images]
        sampled[top : top + ROW_BAND] = mosaic_rgb(fn(*bands), cfa)
    return sampled


def rendering_model(raw: CameraRaw, render_matrix: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(camera RGB -> linear sRGB matrix, white-balance gains [R, G, B]) with which the photo is taken to be rendered.

    ``raw.ccm`` where LibRaw exposes it, else ``render_matrix`` (:attr:`util.dng.DngSource.render_matrix`, measured),
    else the identity; ``raw.wb_gains`` or ones.
    """
    if raw.ccm is not None:
        ccm = raw.ccm
    else:
        ccm = render_matrix if render_matrix is not None else np.eye(3)
    gains = raw.wb_gains if raw.wb_gains is not None else np.ones(3)
    return np.asarray(ccm, dtype=np.float64), np.asarray(gains, dtype=np.float64)


def reflection_free_mosaic(raw: CameraRaw, I_rgb, out: dict, mode: str = DEFAULT_RAW_MOSAIC,
                           render_matrix: np.ndarray | None = None) -> np.ndarray:
    """The photo's mosaic with the reflection removed: (H, W) uint16 sensor counts, same CFA and levels as ``raw``.

    ``I_rgb``: the network's RGB input (1, 3, H, W) float [0, 1] (sensor orientation, pixel-aligned with
    ``raw.mosaic``); ``out``: its predictions (:func:`models.tiling.separate_tiled`: ``T_pred_rgb`` (1, 3, H, W) sRGB,
    ``T_pred_raw`` (1, 4, H/2, W/2) packed, normalised, both float in [0, 1]; a mode reads only one of them);
    ``mode``: one of :data:`RAW_MOSAIC_MODES` (see the module docstring); ``render_matrix``: see
    :func:`rendering_model`.
    """
    if mode not in RAW_MOSAIC_MODES:
        raise ValueError(f"unknown mosaic mode {mode!r}; expected one of {', '.join(RAW_MOSAIC_MODES)}")
    black = np.asarray(raw.black, dtype=np.float64).reshape(4, 1, 1)
    white = float(raw.white)
    counts = pack_raw(raw.mosaic, raw.cfa).astype(np.float64)  # (4, H/2, W/2) canonical [R, G1, G2, B]
    ccm, gains = rendering_model(raw, render_matrix)
    if mode in ("ratio", "ratio_raw"):
        if mode == "ratio":
            def ratio(T_band, I_band):
                return _gain(srgb_to_camera(T_band, ccm, gains), srgb_to_camera(I_band, ccm, gains))

            gain = pack_raw(_on_cfa(ratio, (out["T_pred_rgb"], I_rgb), raw.cfa), raw.cfa)
        else:
            gain = _gain(_float64(out["T_pred_raw"]), np.clip(raw.packed().astype(np.float64), 0.0, 1.0))
        new = black + (counts - black) * gain
        new = np.minimum(new, np.maximum(white, counts))
    else:
        if mode == "inverse_isp":
            camera = _on_cfa(lambda T_band: srgb_to_camera(T_band, ccm, gains), (out["T_pred_rgb"],), raw.cfa)
            normalised = pack_raw(camera, raw.cfa)
        else:
            normalised = _float64(out["T_pred_raw"])
        new = np.minimum(black + normalised * (white - black), white)
    packed = np.clip(np.round(new), 0, UINT16_MAX).astype(np.uint16)
    return np.ascontiguousarray(unpack_raw(packed, raw.cfa))


def black_by_site(raw: CameraRaw) -> list[float]:
    """``raw.black`` ([R, G1, G2, B]) in the order of the CFA tile's sites read row by row (DNG BlackLevel)."""
    offsets = cfa_offsets(raw.cfa)
    by_offset = {offsets[k]: b for k, b in zip(CANONICAL_CHANNELS, raw.black, strict=True)}
    return [by_offset[(i, j)] for i in (0, 1) for j in (0, 1)]


def write_reflection_free_dng(path, raw: CameraRaw, mosaic: np.ndarray, source: DngSource,
                              description: str = "") -> Path:
    """Write ``mosaic`` (from :func:`reflection_free_mosaic`) as a DNG with ``raw``'s geometry, levels and orientation
    and ``source``'s metadata (:func:`util.dng.read_source_metadata`); whole or not at all. Returns ``path``."""
    return write_dng(path, mosaic, raw.cfa, black_by_site(raw), raw.white, raw.orientation, source, description)
