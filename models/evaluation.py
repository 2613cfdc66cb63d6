"""Evaluation of a model on a test loader: one row of metrics per image, and their means.

test.py and training validation both run :func:`evaluate`. Each item's input, predictions and ground truth are
quantised to 8 bits (``util.image_io.to_uint8``) and scored exactly as quantised, which is exactly as saved (PNG is
lossless), by ``util.metrics.score_separation``; means come from ``util.metrics.mean_rows``. The metric convention is
``util.metrics.METRIC_CONVENTION``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import numpy as np

from util.image_io import to_uint8
from util.metrics import LPIPS, mean_rows, score_separation
from util.tone import curve_scores, tone_scores

# the 8-bit images of one item, by util.metrics.score_separation's names (which are also test.py's file names,
# <stem>_T.png, <stem>_T_gt.png, ...), and the model's visuals they come from: predictions *_pred_rgb, ground truth
# under the batch's names
IMAGE_SOURCES = {"I": "I_rgb", "T": "T_pred_rgb", "R": "R_pred_rgb", "T_gt": "T_rgb", "R_gt": "R_rgb"}
# per-image metric columns in test.py's metrics.csv order: T and R predictions vs their ground truth, I (the input,
# doing nothing) vs ground-truth T
METRIC_COLUMNS = tuple(f"{k}_{m}" for k in ("T", "R", "I") for m in ("psnr", "ssim", "lpips"))
# per-image tone columns (util.tone, where T has ground truth): the input times T's own per-channel gain over it,
# scored like T; T's PSNR minus that; T's brightness over the input's; T's PSNR minus the input through T's own
# per-channel tone curve (the stricter separation); the PSNR between T and that curve of the input
TONE_COLUMNS = ("tone_psnr", "separation_psnr", "tone_ratio", "beyond_curve_psnr", "curve_fidelity_psnr")
MEAN_KEYS = (*METRIC_COLUMNS, "gain_psnr", "seconds")


def evaluate_item(model, batch: dict, lpips_model: LPIPS | None = None,
                  save: Callable[[str, dict[str, np.ndarray]], dict[str, str]] | None = None) -> dict:
    """Run ``model`` on one test item (a batch of one) and score it.

    ``model``: ``set_input(batch)``, ``test()`` returning visuals (the input ``I_rgb``, the predictions ``T_pred_rgb``,
    ``R_pred_rgb`` and, with ground truth, ``T_rgb`` / ``R_rgb``: (1, 3, H, W) float sRGB [0, 1]) and
    ``inference_seconds`` (``models.rawrr_model.RAWRRModel``). ``save(stem, images)``: optional, writes the 8-bit
    images before they are scored and returns their file names. Returns the row: ``stem``, ``seconds``, ``images``
    (with ``save``), the metrics of ``score_separation``, and where T has ground truth ``gain_psnr`` (T PSNR minus the
    input's) and :data:`TONE_COLUMNS`.
    """
    stem = batch["stem"][0]
    model.set_input(batch)
    visuals = model.test()
    images = {kind: to_uint8(visuals[key]) for kind, key in IMAGE_SOURCES.items() if key in visuals}
    row = {"stem": stem, "seconds": model.inference_seconds}
    if save is not None:
        row["images"] = save(stem, images)
    row.update(score_separation(images, lpips_model))
    if "T_psnr" in row:
        row["gain_psnr"] = row["T_psnr"] - row["I_psnr"]
        triple = (images["I"], images["T"], images["T_gt"])
        row.update({k: v for k, v in {**tone_scores(*triple), **curve_scores(*triple)}.items() if k in TONE_COLUMNS})
    return row


def mean_metrics(rows: list[dict], keys: Iterable[str] = MEAN_KEYS) -> dict[str, float]:
    """Means of ``keys`` over ``rows`` (``util.metrics.mean_rows``: keys without a value are left out); with
    ``gain_psnr`` among the keys also ``worst_gain_psnr``, the smallest finite per-image gain (NaN if none)."""
    keys = tuple(keys)
    means = mean_rows(rows, keys)
    if "gain_psnr" in keys:
        gains = [r["gain_psnr"] for r in rows if "gain_psnr" in r and math.isfinite(r["gain_psnr"])]
        means["worst_gain_psnr"] = min(gains) if gains else float("nan")
    return means


def evaluate(model, loader, lpips_model: LPIPS | None = None, *, keys: Iterable[str] = MEAN_KEYS, limit: int = 0,
             save=None, rows: list[dict] | None = None,
             on_row: Callable[[int, dict], None] | None = None) -> tuple[list[dict], dict[str, float]]:
    """Score every item of ``loader`` (at most ``limit`` when > 0) with :func:`evaluate_item`; returns the rows and
    :func:`mean_metrics` of ``keys``.

    ``rows``: a list to append each row to as it is made, so that a caller keeps the rows done when a later item
    fails; ``on_row(number, row)`` (number from 1) is called after each. ``lpips_model`` None: no ``*_lpips``.
    The model is used as it is (callers put it in eval mode).
    """
    rows = [] if rows is None else rows
    for i, batch in enumerate(loader):
        if limit > 0 and i >= limit:
            break
        rows.append(evaluate_item(model, batch, lpips_model, save))
        if on_row is not None:
            on_row(i + 1, rows[-1])
    return rows, mean_metrics(rows, keys)
