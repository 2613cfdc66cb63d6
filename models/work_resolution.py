"""Full-resolution results at the cost of a small image: the network at a working resolution, its result carried to
full resolution by a guided filter with the full-resolution photo as the guide (``--work_megapixels``).

The network's cost grows with the pixels it sees: a 24-megapixel photo in tiles takes hours at ngf 64 on a small CPU.
Here the photo (RGB and packed RAW) is scaled down (bilinear, antialiased) to about ``work_megapixels``
(:func:`work_size`) and the network runs there (:func:`models.tiling.separate_tiled`, in tiles fitted to the working
image when it is larger than ``tile``). Its estimate is then brought to full resolution with the fast guided filter
(K. He and J. Sun 2015, "Fast Guided Filter", after K. He, J. Sun and X. Tang 2013, "Guided Image Filtering"), in
linear light (sRGB decoded with :func:`util.isp.srgb_decode`; the packed RAW is linear already):

1. at working resolution, every output X (T, R) becomes a *representation* ``p`` relative to the input I
   (:data:`REPRESENTATIONS`; default ``gain``: ``p = X_lin / max(I_lin, GAIN_FLOOR)`` clipped to [0, GAIN_MAX]);
2. in every (2r+1) x (2r+1) window of the working image, channel by channel, ``p ~ a * I_lin + b`` is fitted by
   ridge regression (``eps``), and ``a``, ``b`` are averaged over the windows covering each pixel
   (:func:`guided_coefficients`);
3. the averaged ``a`` and ``b`` are upsampled bilinearly to full resolution and applied to the full-resolution input:
   ``q = a * I_lin + b`` (in bands of :data:`BAND_ROWS` rows, so the memory is that of the outputs);
4. ``X_lin = q * I_lin`` (gain), re-encoded with the sRGB curve for ``*_rgb``.

Why a gain (``gain``, the default) rather than the output itself (``direct``) or the light removed (``difference``,
``I_lin - T_lin``): the light that reaches the sensor adds up linearly, I = t T + R, and a gain says which share of
each pixel's light belongs to T (or R). It is exactly 1 where the network removes nothing, so the result is then the
input value for value, as ``--raw_out``'s ``ratio`` mode (:mod:`data.raw_out`); detail finer than the working
resolution (and the photo's own noise) is kept in proportion, never subtracted into negative values, and the result
stays within [0, GAIN_MAX * I]. Where the guided filter cannot fit a window (a flat or dark one, whose variance is
below ``eps``) it falls back to the window's mean gain, which still carries the full-resolution detail of the photo;
``direct`` falls back to the mean of T there (a blurred T), and ``difference`` subtracts a blurred copy of a sharp
reflection from the full-resolution photo. The other two stay available to measure
(``scripts/measure_work_resolution.py --representations gain direct difference``).

Radius and eps (:data:`DEFAULT_GUIDE_RADIUS`, :data:`DEFAULT_GUIDE_EPS`): windows of 3 x 3 working pixels (r = 1;
the averaged coefficients then reach 5 x 5, about 17 x 17 full-resolution pixels at 24 -> 2 MP), since larger windows
spread a gain across the edges where it changes; ``eps = 1e-4`` (linear light squared, white = 1): a window whose
input varies by less than about 1 % of white (standard deviation 0.01) keeps a near-constant gain. These defaults
come from that reasoning and a numpy simulation made while writing this module (a perfect working-resolution T of
two 1-megapixel photos, 4x fewer pixels per side, blurred and sharp reflections), where r = 1 beat r = 2 by 2-3 dB
and eps from 1e-5 to 1e-3 moved the gain's result by under 1 dB; the README's measurements with the network decide.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from models.cr3net import SIZE_MULTIPLE
from models.tiling import DEFAULT_OVERLAP, DEFAULT_TILE, fitted_tile, separate_tiled
from util.errors import UserError
from util.isp import srgb_decode, srgb_encode

REPRESENTATIONS = ("gain", "direct", "difference")  # what is carried to full resolution (module docstring)
DEFAULT_REPRESENTATION = "gain"
DEFAULT_GUIDE_RADIUS = 1  # working-resolution pixels: windows of 3 x 3 (0 = no guidance: p upsampled bilinearly)
DEFAULT_GUIDE_EPS = 1e-4  # (linear light, white = 1)^2: windows with a standard deviation under ~0.01 keep a flat p
MIN_WORK_MEGAPIXELS = 0.05  # about 270 x 180 px: below that the network sees too little of the scene
MEGAPIXEL = 1_000_000
GAIN_FLOOR = 1e-3  # linear: sRGB code 3 of 255 is 0.0009; darker inputs cannot express a share of their light
GAIN_MAX = 2.0  # T may be brighter than I (the glass's transmittance removed); beyond a stop it is a dark pixel's noise
BAND_ROWS = 256  # full-resolution rows upsampled at a time: bounds the temporaries (3 x 256 x 6000 floats = 18 MB)
OUTPUT_KEYS = ("T_pred_rgb", "R_pred_rgb", "T_pred_raw", "R_pred_raw")  # the predictions, as models.inference


def check_work_resolution(megapixels: float, radius: int | None, eps: float | None) -> tuple[int, float]:
    """Validate ``--work_megapixels``, ``--guide_radius`` and ``--guide_eps`` (``None`` = not given); return the
    radius and eps to use. Raises ``UserError`` naming the flag: a working size that is not 0 (off) and not at least
    :data:`MIN_WORK_MEGAPIXELS`, a guide flag without ``--work_megapixels``, a negative radius, an eps that is not a
    positive number. Whether the working size is below a photo's size is known only per photo (:func:`work_size`:
    a photo that is not larger runs at its full resolution)."""
    if not math.isfinite(megapixels) or megapixels < 0 or 0 < megapixels < MIN_WORK_MEGAPIXELS:
        raise UserError(f"--work_megapixels {megapixels} must be 0 (off: the network at full resolution) or at least "
                        f"{MIN_WORK_MEGAPIXELS}, e.g. 2")
    if not megapixels:
        for flag, value in (("--guide_radius", radius), ("--guide_eps", eps)):
            if value is not None:
                raise UserError(f"{flag} {value} applies to --work_megapixels only; add --work_megapixels 2 or drop it")
        return DEFAULT_GUIDE_RADIUS, DEFAULT_GUIDE_EPS
    radius = DEFAULT_GUIDE_RADIUS if radius is None else radius
    eps = DEFAULT_GUIDE_EPS if eps is None else eps
    if radius < 0:
        raise UserError(f"--guide_radius {radius} is negative; give working-resolution pixels, e.g. "
                        f"{DEFAULT_GUIDE_RADIUS} (0 = no guidance)")
    if not (math.isfinite(eps) and eps > 0):
        raise UserError(f"--guide_eps {eps} must be a positive number (linear light squared), e.g. "
                        f"{DEFAULT_GUIDE_EPS:g}")
    return radius, eps


def work_size(h: int, w: int, megapixels: float) -> tuple[int, int] | None:
    """The working RGB size (height, width) for an h x w photo: about ``megapixels`` million pixels, the photo's aspect
    ratio, both sides multiples of ``SIZE_MULTIPLE`` (so the packed RAW, half of it, runs unpadded); ``None`` where
    the photo is not larger than that (it then runs at its full resolution)."""
    if megapixels <= 0 or h * w <= megapixels * MEGAPIXEL:
        return None
    scale = math.sqrt(megapixels * MEGAPIXEL / (h * w))
    size_h, size_w = (max(SIZE_MULTIPLE, round(n * scale / SIZE_MULTIPLE) * SIZE_MULTIPLE) for n in (h, w))
    if size_h >= h or size_w >= w:
        return None
    return size_h, size_w


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear, antialiased resize of (N, C, h, w) float to ``size`` (as ``--eval_resize official``): every output is
    a convex combination of inputs, so [0, 1] stays [0, 1]."""
    return F.interpolate(x.float(), size=size, mode="bilinear", align_corners=False, antialias=True)


def box_mean(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean of (N, C, h, w) ``x`` over the (2r+1) x (2r+1) window around each pixel, clipped at the border (the mean of
    the pixels inside the image); separable, so its cost does not grow with the window's area."""
    if radius <= 0:
        return x
    k = 2 * radius + 1
    x = F.avg_pool2d(x, (1, k), stride=1, padding=(0, radius), count_include_pad=False)
    return F.avg_pool2d(x, (k, 1), stride=1, padding=(radius, 0), count_include_pad=False)


def guided_coefficients(guide: torch.Tensor, p: torch.Tensor, radius: int = DEFAULT_GUIDE_RADIUS,
                        eps: float = DEFAULT_GUIDE_EPS) -> tuple[torch.Tensor, torch.Tensor]:
    """The guided filter's averaged linear coefficients (A, B), channel by channel: ``p ~ A * guide + B``.

    ``guide``, ``p``: (N, C, h, w) float32 of the same shape (each channel of ``p`` guided by the same channel of
    ``guide``). In each window, ``a = cov(guide, p) / (var(guide) + eps)``, ``b = mean(p) - a mean(guide)``; A and B
    are their means over the windows covering a pixel. ``A * guide + B`` is He et al.'s filtered ``p``; upsampled and
    applied to a finer guide it is the fast guided filter. A constant ``p`` gives A = 0, B = p exactly; ``p`` linear
    in the guide gives A, B of that line (up to eps / var).
    """
    mean_i = box_mean(guide, radius)
    mean_p = box_mean(p, radius)
    cov = box_mean(guide * p, radius) - mean_i * mean_p
    var = (box_mean(guide * guide, radius) - mean_i * mean_i).clamp(min=0)
    a = cov / (var + eps)
    b = mean_p - a * mean_i
    return box_mean(a, radius), box_mean(b, radius)


def _source_index(n_in: int, n_out: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Where ``F.interpolate(mode="bilinear", align_corners=False)`` samples ``n_in`` values for ``n_out`` outputs:
    lower and upper neighbour indices and the weight of the upper one."""
    src = ((torch.arange(n_out, device=device, dtype=torch.float32) + 0.5) * (n_in / n_out) - 0.5).clamp(min=0)
    lower = src.floor().long().clamp(max=n_in - 1)
    upper = (lower + 1).clamp(max=n_in - 1)
    return lower, upper, src - lower


def _upsample_rows(x: torch.Tensor, rows, cols, band: slice) -> torch.Tensor:
    """Rows ``band`` of ``x`` (N, C, h, w) upsampled bilinearly to the full size that ``rows`` and ``cols``
    (:func:`_source_index`) describe: (N, C, len(band), W)."""
    lower, upper, weight = (v[band] for v in rows)
    x = torch.lerp(x[..., lower, :], x[..., upper, :], weight[:, None])
    lower, upper, weight = cols
    return torch.lerp(x[..., lower], x[..., upper], weight)


def upsample_bilinear(x: torch.Tensor, size: tuple[int, int], band_rows: int = BAND_ROWS) -> torch.Tensor:
    """``F.interpolate(x, size, mode="bilinear", align_corners=False)`` computed in bands of ``band_rows`` rows (the
    sampling that :func:`upsample_separation` applies to the guided filter's coefficients)."""
    rows, cols = _source_index(x.shape[-2], size[0], x.device), _source_index(x.shape[-1], size[1], x.device)
    return torch.cat([_upsample_rows(x, rows, cols, slice(top, min(top + band_rows, size[0])))
                      for top in range(0, size[0], band_rows)], dim=-2)


def to_representation(X_lin: torch.Tensor, I_lin: torch.Tensor, representation: str = DEFAULT_REPRESENTATION):
    """What the guided filter carries to full resolution for an output ``X_lin`` of the input ``I_lin`` (linear)."""
    if representation == "gain":
        return (X_lin / I_lin.clamp(min=GAIN_FLOOR)).clamp(0, GAIN_MAX)
    if representation == "difference":
        return I_lin - X_lin
    if representation == "direct":
        return X_lin
    raise ValueError(f"unknown representation {representation!r}; expected one of {', '.join(REPRESENTATIONS)}")


def from_representation(q: torch.Tensor, I_lin: torch.Tensor, representation: str = DEFAULT_REPRESENTATION):
    """Inverse of :func:`to_representation` at full resolution: the output in linear light, clipped to [0, 1]."""
    if representation == "gain":
        X_lin = q.clamp(0, GAIN_MAX) * I_lin
    elif representation == "difference":
        X_lin = I_lin - q
    elif representation == "direct":
        X_lin = q
    else:
        raise ValueError(f"unknown representation {representation!r}; expected one of {', '.join(REPRESENTATIONS)}")
    return X_lin.clamp(0, 1)


def _linear_raw(x: torch.Tensor) -> torch.Tensor:
    return x.clamp(0, 1)  # normalised RAW is linear; the network's RAW outputs are clipped to [0, 1] the same way


# per domain: (decode to linear light, encode back); the packed RAW is linear already
_DOMAINS = {"rgb": (srgb_decode, srgb_encode), "raw": (_linear_raw, _linear_raw)}


def run_at_work_resolution(net, I_rgb, I_raw, size: tuple[int, int], device="cpu", precision: str = "fp32",
                           channels_last: bool = True, tile: int = DEFAULT_TILE, overlap: int = DEFAULT_OVERLAP,
                           progress=None) -> dict[str, torch.Tensor]:
    """The network on the photo scaled down to ``size`` (:func:`work_size`).

    ``I_rgb`` (1, 3, H, W) float [0, 1] sRGB and ``I_raw`` (1, 4, H/2, W/2) packed, normalised, on any device; ``tile``:
    the largest tile side at working resolution (0 = the working image whole; tiles fitted to it by
    :func:`models.tiling.fitted_tile`). Returns CPU float32 ``I_rgb``, ``I_raw`` (the working input) and the network's
    predictions ``T_pred_rgb``, ``R_pred_rgb``, ``T_pred_raw``, ``R_pred_raw`` at working resolution.
    """
    I_work_rgb = resize(I_rgb, size)
    I_work_raw = resize(I_raw, (size[0] // 2, size[1] // 2))
    out = separate_tiled(net, I_work_rgb, I_work_raw, fitted_tile(*size, tile, overlap), overlap, device, precision,
                         channels_last, progress)
    return {"I_rgb": I_work_rgb.cpu(), "I_raw": I_work_raw.cpu(), **out}


def upsample_separation(I_rgb, I_raw, work: dict[str, torch.Tensor], radius: int = DEFAULT_GUIDE_RADIUS,
                        eps: float = DEFAULT_GUIDE_EPS, representation: str = DEFAULT_REPRESENTATION,
                        keys=OUTPUT_KEYS, band_rows: int = BAND_ROWS) -> dict[str, torch.Tensor]:
    """The working-resolution result ``work`` (:func:`run_at_work_resolution`) at the full resolution of ``I_rgb``
    (1, 3, H, W) and ``I_raw`` (1, 4, H/2, W/2), guided by them (module docstring, steps 1-4).

    ``keys``: the outputs wanted, from :data:`OUTPUT_KEYS` (``*_raw`` need ``I_raw``; it may be ``None`` otherwise).
    The work is done on ``I_rgb``'s device, band by band; returns CPU float32 tensors in [0, 1] (``*_rgb`` sRGB,
    ``*_raw`` packed, normalised), like :func:`models.tiling.separate_tiled`.
    """
    unknown = [k for k in keys if k not in OUTPUT_KEYS]
    if unknown:
        raise ValueError(f"unknown outputs {unknown}; expected some of {', '.join(OUTPUT_KEYS)}")
    if representation not in REPRESENTATIONS:
        raise ValueError(f"unknown representation {representation!r}; expected one of {', '.join(REPRESENTATIONS)}")
    result = {}
    for domain, full in (("rgb", I_rgb), ("raw", I_raw)):
        wanted = [k for k in keys if k.endswith(f"_{domain}")]
        if not wanted:
            continue
        decode, encode = _DOMAINS[domain]
        device = full.device
        guide_low = decode(work[f"I_{domain}"].float())
        coefficients = {}
        for key in wanted:
            p = to_representation(decode(work[key].float()), guide_low, representation)
            coefficients[key] = [c.to(device) for c in guided_coefficients(guide_low, p, radius, eps)]
        n, c, h, w = full.shape
        rows = _source_index(guide_low.shape[-2], h, device)
        cols = _source_index(guide_low.shape[-1], w, device)
        outs = {key: torch.empty((n, c, h, w), dtype=torch.float32) for key in wanted}
        for top in range(0, h, band_rows):
            band = slice(top, min(top + band_rows, h))
            guide = decode(full[..., band, :].float())
            for key in wanted:
                A, B = coefficients[key]
                q = _upsample_rows(A, rows, cols, band) * guide + _upsample_rows(B, rows, cols, band)
                outs[key][..., band, :] = encode(from_representation(q, guide, representation)).cpu()
        result.update(outs)
    return result


def separate_at_work_resolution(net, I_rgb, I_raw, work_megapixels: float, device="cpu", precision: str = "fp32",
                                channels_last: bool = True, tile: int = DEFAULT_TILE, overlap: int = DEFAULT_OVERLAP,
                                radius: int = DEFAULT_GUIDE_RADIUS, eps: float = DEFAULT_GUIDE_EPS,
                                representation: str = DEFAULT_REPRESENTATION, keys=OUTPUT_KEYS,
                                progress=None) -> dict[str, torch.Tensor]:
    """Like :func:`models.tiling.separate_tiled`, with the network at about ``work_megapixels`` (module docstring).

    ``I_rgb`` (1, 3, H, W) float32 [0, 1] sRGB, ``I_raw`` (1, 4, H/2, W/2) packed, normalised, on any device (the CPU
    for large photos); the network runs on ``device`` under ``precision``, in tiles of at most ``tile`` working pixels
    (0 = whole). Returns CPU float32 ``keys`` (default all of ``T_pred_rgb``, ``R_pred_rgb`` (1, 3, H, W),
    ``T_pred_raw``, ``R_pred_raw`` (1, 4, H/2, W/2)) in [0, 1] at full resolution. A photo not larger than the
    working size (:func:`work_size`) runs at its full resolution, in tiles of ``tile``
    (:func:`models.tiling.separate_tiled`, every output).
    """
    size = work_size(I_rgb.shape[-2], I_rgb.shape[-1], work_megapixels)
    if size is None:
        return separate_tiled(net, I_rgb, I_raw, tile, overlap, device, precision, channels_last, progress)
    work = run_at_work_resolution(net, I_rgb, I_raw, size, device, precision, channels_last, tile, overlap, progress)
    return upsample_separation(I_rgb, I_raw, work, radius, eps, representation, keys)
