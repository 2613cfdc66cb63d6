"""Tiny RAW+RGB test sets for tests: smooth random scenes, mixed in linear light, in the upstream layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from data.cameras import DEFAULT_PROFILE
from data.image_io import write_png16
from util.image_io import write_rgb
from util.isp import ISPParams, denormalize_raw, mosaic_rgb, srgb_decode, srgb_encode, unprocess


def smooth_image(rng, h, w):
    """(3, h, w) float32 sRGB in [0.05, 0.95]: random low-frequency colour field."""
    coarse = torch.from_numpy(rng.random((1, 3, max(2, h // 16), max(2, w // 16)), dtype=np.float32))
    return (F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False)[0].clamp(0, 1) * 0.9 + 0.05)


def to_mosaic_u16(linear_cam, profile=DEFAULT_PROFILE):
    mosaic = mosaic_rgb(linear_cam.clamp(0, 1), profile.cfa)
    return np.round(denormalize_raw(mosaic.numpy(), profile.black, profile.white)).astype(np.uint16)


def make_test_set(root, n=3, h=64, w=96, seed=0, with_gt=True, layout="testB") -> Path:
    """Write ``n`` triplets I = T + 0.4 R (linear light); identity ISP so RGB and RAW agree."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    params = ISPParams.identity()
    for i in range(n):
        T = smooth_image(rng, h, w)
        R = smooth_image(rng, h, w)
        T_lin, R_lin = srgb_decode(T), srgb_decode(R) * 0.4
        I_lin = (T_lin + R_lin).clamp(0, 1)
        stem = f"img{i:02d}"
        items = {layout: I_lin}
        if with_gt:
            items.update({"testA1": T_lin, "testA2": R_lin})
        for prefix, lin in items.items():
            rgb = (srgb_encode(lin).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            write_rgb(root / f"{prefix}_rgb" / f"{stem}.png", rgb)
            write_png16(root / f"{prefix}_raw" / f"{stem}.png", to_mosaic_u16(unprocess(srgb_encode(lin), params)))
    return root


def save_random_generator(path, ngf=8, num_cab=2, seed=0):
    from models.checkpoint import save_generator_weights
    from models.networks import define_G

    torch.manual_seed(seed)
    save_generator_weights(define_G(ngf=ngf, num_cab=num_cab), path)
    return path
