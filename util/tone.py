"""Tone against separation: how much of a predicted T's PSNR a global per-channel gain on the input explains.

A network that has not learned to separate can still beat "do nothing" by changing the brightness and tint of
every image. :func:`tone_scores` scores, for one 8-bit (input, predicted T, ground-truth T) triple, the input
multiplied per RGB channel by the prediction's own global gain ``mean(T) / mean(I)`` ("tone of T on I": the
prediction's tone with the input's content), and the input times the least-squares per-channel gain against the
ground truth (an oracle: the most any global gain can score). ``models.evaluation`` adds the first to every row
test.py writes; ``scripts/tone_check.py`` reports all of them from saved results.
"""

from __future__ import annotations

import numpy as np

from util.metrics import psnr


def channel_means(image_u8: np.ndarray) -> np.ndarray:
    """Mean of each RGB channel of an (H, W, 3) image, float64 (3,)."""
    return image_u8.reshape(-1, 3).astype(np.float64).mean(axis=0)


def gain_image(image_u8: np.ndarray, gains: np.ndarray) -> np.ndarray:
    """``image_u8`` (H, W, 3) multiplied per channel by ``gains`` (3,), rounded and clamped to uint8 as saved
    images are."""
    scaled = image_u8.astype(np.float64) * np.asarray(gains, dtype=np.float64).reshape(1, 1, 3)
    return np.clip(np.round(scaled), 0, 255).astype(np.uint8)


def tone_scores(I_u8: np.ndarray, T_u8: np.ndarray, gt_u8: np.ndarray) -> dict[str, float]:
    """For one triple of 8-bit (H, W, 3) images: ``tone_psnr`` (I times T's per-channel gain over I, vs the ground
    truth), ``separation_psnr`` (T's PSNR minus ``tone_psnr``), ``best_gain_psnr`` (I times the least-squares
    per-channel gain ``<I, T_gt> / <I, I>``, vs the ground truth) and ``tone_ratio`` (``mean(T) / mean(I)`` over all
    channels). PSNR as :func:`util.metrics.psnr`."""
    if not (I_u8.shape == T_u8.shape == gt_u8.shape):
        raise ValueError(f"image shapes differ: I {I_u8.shape}, T {T_u8.shape}, T_gt {gt_u8.shape}")
    mean_I = channel_means(I_u8)
    mean_T = channel_means(T_u8)
    I64 = I_u8.reshape(-1, 3).astype(np.float64)
    gt64 = gt_u8.reshape(-1, 3).astype(np.float64)
    best = (I64 * gt64).sum(axis=0) / np.maximum((I64 * I64).sum(axis=0), 1e-6)
    tone = psnr(gt_u8, gain_image(I_u8, mean_T / np.maximum(mean_I, 1e-6)))
    return {
        "tone_psnr": tone,
        "separation_psnr": psnr(gt_u8, T_u8) - tone,
        "best_gain_psnr": psnr(gt_u8, gain_image(I_u8, best)),
        "tone_ratio": float(mean_T.sum() / max(mean_I.sum(), 1e-6)),
    }
