"""Tone against separation: how much of a predicted T's PSNR a global per-channel gain on the input explains.

A network that has not learned to separate can still beat "do nothing" by changing the brightness and tint of
every image. :func:`tone_scores` scores, for one 8-bit (input, predicted T, ground-truth T) triple, the input
multiplied per RGB channel by the prediction's own global gain ``mean(T) / mean(I)`` ("tone of T on I": the
prediction's tone with the input's content), and the input times the least-squares per-channel gain against the
ground truth (an oracle: the most any global gain can score). ``models.evaluation`` adds the first to every row
test.py writes; ``scripts/tone_check.py`` reports all of them from saved results.

A global gain is not the only thing a network can do without separating: it can also bend the tone curve (darken the
highlights more than the shadows, where reflections add their light in training). :func:`curve_scores` measures
that with the best *per-channel curve* of the input, a 256-entry lookup table per RGB channel (each input value
mapped to the mean of the target over the pixels of that value): a pointwise function of the input's own value,
which can change tone and contrast but cannot move or remove a structure in the image.
"""

from __future__ import annotations

import numpy as np
import torch

from util.metrics import psnr

CURVE_BINS = 256  # 8-bit input values: the entries of a per-channel curve's lookup table


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


def channel_curve(x: torch.Tensor, values: torch.Tensor, bins: int = CURVE_BINS) -> torch.Tensor:
    """The least-squares per-channel curve of ``values`` onto ``x``, at every pixel: per sample and channel, the mean
    of ``x`` over the pixels where ``values`` is the same. ``x``: (B, C, H, W) float (differentiable; the result has
    its dtype); ``values``: (B, C, H, W) integers in [0, bins) (e.g. an 8-bit input). The projection behind
    :func:`curve_image` and the training loss :func:`models.losses.curve_residual`."""
    b, c = x.shape[:2]
    index = values.long() + torch.arange(b * c, device=x.device).view(b, c, 1, 1) * bins
    flat_index = index.reshape(-1)
    sums = torch.zeros(b * c * bins, device=x.device, dtype=x.dtype).index_add(0, flat_index, x.reshape(-1))
    counts = torch.bincount(flat_index, minlength=b * c * bins).clamp(min=1).to(x.dtype)
    return (sums / counts)[index]


def curve_image(image_u8: np.ndarray, target_u8: np.ndarray) -> np.ndarray:
    """The least-squares per-channel curve of ``image_u8`` onto ``target_u8`` (both (H, W, 3) uint8), applied:
    each channel value v of the image becomes the mean of the target's channel over the pixels where the image's is
    v (:func:`channel_curve`, in float64: exact sums of 8-bit values), rounded to uint8."""
    if image_u8.shape != target_u8.shape:
        raise ValueError(f"image shapes differ: {image_u8.shape} and {target_u8.shape}")
    target, values = (torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None] for a in (target_u8, image_u8))
    curve = channel_curve(target.double(), values)
    return curve.round().clamp(0, 255).to(torch.uint8)[0].permute(1, 2, 0).numpy()


def curve_scores(I_u8: np.ndarray, T_u8: np.ndarray, gt_u8: np.ndarray) -> dict[str, float]:
    """For one triple of 8-bit (H, W, 3) images: ``curve_psnr`` (the prediction's own per-channel curve of I,
    :func:`curve_image` of I onto T, vs the ground truth: what the model's tone curve alone scores),
    ``beyond_curve_psnr`` (T's PSNR minus ``curve_psnr``: the part of the gain no tone curve of the input explains),
    ``curve_fidelity_psnr`` (PSNR between T and that curve of I: high, e.g. 35 dB, where T is little more than a tone
    curve of its input) and ``best_curve_psnr`` (I's least-squares curve onto the ground truth, vs the ground truth:
    the most any per-channel curve can score)."""
    if not (I_u8.shape == T_u8.shape == gt_u8.shape):
        raise ValueError(f"image shapes differ: I {I_u8.shape}, T {T_u8.shape}, T_gt {gt_u8.shape}")
    curve = curve_image(I_u8, T_u8)
    scored = psnr(gt_u8, curve)
    return {
        "curve_psnr": scored,
        "beyond_curve_psnr": psnr(gt_u8, T_u8) - scored,
        "curve_fidelity_psnr": psnr(T_u8, curve),
        "best_curve_psnr": psnr(gt_u8, curve_image(I_u8, gt_u8)),
    }
