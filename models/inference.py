"""Running the generator on whole images: padding to the network's size multiple, precision, clamping."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from models.cr3net import SIZE_MULTIPLE, winograd_enabled
from util.precision import autocast, to_memory_format


def describe_path(precision: str, device, channels_last: bool) -> str:
    """How inference runs, for the start-up line of the command-line tools: e.g. ``fp32, NCHW, Winograd 3x3 (NNPACK)``
    or ``bf16, channels_last``."""
    text = f"{precision}, {'channels_last' if channels_last else 'NCHW'}"
    if precision == "fp32" and not channels_last and torch.device(device).type == "cpu" and winograd_enabled():
        text += ", Winograd 3x3 (NNPACK)"
    return text


def pad_amounts(h: int, w: int, multiple: int = SIZE_MULTIPLE) -> tuple[int, int]:
    return (-h) % multiple, (-w) % multiple


def separate(net, I_rgb, I_raw, precision: str = "fp32", channels_last: bool = True) -> dict[str, torch.Tensor]:
    """Predict T and R for a batch, at any even size.

    I_rgb: (B, 3, H, W) float32 sRGB [0, 1]; I_raw: (B, 4, H/2, W/2) float32 packed [R,G,G,B], normalised; H, W even.
    The images are padded (edge replication) to a multiple of ``SIZE_MULTIPLE``, run under ``precision`` autocast
    and cropped back. Returns the predictions as float32 tensors clamped to [0, 1] like upstream's test code:
    ``T_pred_rgb``, ``R_pred_rgb`` (B, 3, H, W) sRGB and ``T_pred_raw``, ``R_pred_raw`` (B, 4, H/2, W/2) packed
    [R, G1, G2, B], (x - black) / (white - black). (``T_rgb``, ``R_rgb``, ... name the ground truth, as in batches.)
    """
    h, w = I_rgb.shape[-2:]
    if I_raw.shape[-2:] != (h // 2, w // 2) or h % 2 or w % 2:
        raise ValueError(f"RGB {tuple(I_rgb.shape)} and packed RAW {tuple(I_raw.shape)} do not match (RAW = RGB / 2)")
    ph, pw = pad_amounts(h, w)
    if ph or pw:
        I_rgb = F.pad(I_rgb, (0, pw, 0, ph), mode="replicate")
        I_raw = F.pad(I_raw, (0, pw // 2, 0, ph // 2), mode="replicate")
    I_rgb = to_memory_format(I_rgb, channels_last)
    I_raw = to_memory_format(I_raw, channels_last)
    with autocast(I_rgb.device, precision):
        (R_pred_rgb, T_pred_rgb), (R_pred_raw, T_pred_raw) = net(I_rgb, I_raw)
    out = {"T_pred_rgb": T_pred_rgb[..., :h, :w], "R_pred_rgb": R_pred_rgb[..., :h, :w],
           "T_pred_raw": T_pred_raw[..., : h // 2, : w // 2], "R_pred_raw": R_pred_raw[..., : h // 2, : w // 2]}
    return {k: v.float().clamp(0, 1).contiguous() for k, v in out.items()}


class IdentityNet(torch.nn.Module):
    """The network that removes nothing: T = I and R = 0 in both domains, with CR3Net's forward signature.

    The "do nothing" reference where an output must reproduce its input exactly: the DNG of
    ``remove_reflection.py --raw_out`` then holds the photo's own mosaic (tests, ``scripts/measure_dng_modes.py``).
    """

    def forward(self, I_rgb, I_raw):
        return (torch.zeros_like(I_rgb), I_rgb), (torch.zeros_like(I_raw), I_raw)
