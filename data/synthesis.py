"""Synthetic RAW+RGB reflection triplets (I, T, R) from two ordinary sRGB photographs.

Two models, both returning the same dict of CPU ``torch.float32`` tensors:

* ``I_rgb``, ``T_rgb``, ``R_rgb``: (3, H, W) in [0, 1], sRGB;
* ``I_raw``, ``T_raw``, ``R_raw``: (4, H/2, W/2), packed canonical [R, G1, G2, B] on an RGGB grid,
  normalised (x - black) / (white - black);
* ``params``: a dict of the random draws (see each function).

:func:`synthesize_upstream` reproduces the mixing of the authors' training code (Fan-style: x^2.2, Gaussian blur,
over-exposure correction, Gaussian vignette, RGGB mosaic of the linear mix, no camera model, no noise).

:func:`synthesize_physical` (the default) is a camera model: both photos are *unprocessed* to camera RAW with one
random camera (Brooks et al. 2019, "Unprocessing Images for Learned Raw Denoising"), mixed in linear light, corrupted
with shot and read noise, quantised to the sensor's black/white levels, and every RGB image is *rendered from its
RAW* by :func:`render_rgb_from_raw` (white balance with highlight clipping, bilinear demosaic, then
:func:`util.isp.process`), so RAW and RGB describe the same scene exactly as a camera's pair does.

All randomness comes from the ``numpy.random.Generator`` passed in; the same generator state gives bit-identical
outputs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.special import ndtr

from data.cameras import DEFAULT_PROFILE, CameraProfile
from util.isp import (
    ISPParams,
    apply_ccm,
    apply_gains,
    demosaic_bilinear,
    denormalize_raw,
    gamma_decode,
    inverse_smoothstep,
    mosaic_rgb,
    normalize_raw,
    pack_raw,
    process,
    unpack_raw,
)

SYN_MODELS = ("physical", "upstream")

# ----------------------------------------------------------------------------------------------------------------
# Upstream constants (RAW_RGB_RR models/networks.py SynData and models/RAWRR_model.py)
# ----------------------------------------------------------------------------------------------------------------
UPSTREAM_GAMMA = 2.2  # linearisation x^2.2 and re-encoding x^(1/2.2)
UPSTREAM_SIGMAS = np.linspace(2.0, 5.0, 80)  # blur sigma picked uniformly from these 80 values
UPSTREAM_OVEREXPOSURE_RANGE = (1.08, 1.18)  # factor on (mean of over-exposed pixels - 1): 1.08 + U[0, 1) / 10
UPSTREAM_T_SCALE_RANGE = (0.8, 1.0)  # T is scaled by 1 - U[0, 1) / 5, i.e. in (0.8, 1]
UPSTREAM_VIGNETTE_SIZE = 560  # side of the Gaussian vignette from which a random window is cut
UPSTREAM_VIGNETTE_NSIG = 3  # the vignette spans +-3 standard deviations
UPSTREAM_VIGNETTE_MARGIN = 10  # window offsets are drawn in [0, 560 - size - 10)
_OVEREXPOSURE_EPS = 1e-6  # upstream's guard in the mean of the over-exposed pixels

# The skip rule of upstream's training loop: samples this dark carry no signal and are redrawn.
SKIP_T_MAX = 0.15  # max(T_rgb) below this
SKIP_R_MAX = 0.15  # max(R_rgb) below this
SKIP_I_MAX = 0.10  # max(I_rgb) below this
UPSTREAM_SOURCE_MEAN_RATIO = 0.5  # upstream also redraws when mean(T source) * 0.5 > mean(R source)


@dataclass(frozen=True)
class PhysicalConfig:
    """Ranges of the random draws of :func:`synthesize_physical` (all uniform unless stated).

    ``transmittance``: glass transmittance applied to T. ``reflection_gain``: reflectance of the glass times the
    relative brightness of the reflected scene, applied to R (linear). ``blur_sigma``: Gaussian blur of R in pixels
    of the output image (out-of-focus reflection). ``ghost_probability``: chance of a double reflection (front and
    back surface of the glass); the second copy is shifted by ``ghost_shift`` pixels (integer, each axis, random
    sign, not both 0) and weighted ``ghost_strength`` relative to the first. ``spatial_sigma``: the reflection is
    modulated by a Gaussian blob centred anywhere in the image with this standard deviation (fraction of the long
    side), never below ``spatial_floor``. ``shot_noise``: log-uniform range of Brooks et al.'s shot-noise variance
    per unit signal (their full range is [1e-4, 1.2e-2]; we keep its cleaner, low-ISO part); the read-noise variance
    follows their log-linear relation ``log(read) = 2.18 log(shot) + 1.2 + N(0, 0.26)``. ``lens_sigma``: Gaussian
    blur of both scenes before they reach the sensor (lens + optical low-pass filter, as in real cameras): without it,
    pixel-sharp photos alias on the Bayer grid and bilinear demosaicking adds strong zipper and colour-moire
    artefacts (on Kodak crops it renders 21-29 dB PSNR from the source; 0.7 px halves the error of the demosaic).
    ``exposure``: log-uniform range of a gain on all the light reaching the sensor (the scene through the glass and,
    alike, the targets T and R): above 1 the rendered RGB clips where the RAW still has headroom (the ISP's white
    balance and colour matrix push values up before its clip), below 1 the scene is dark. Drawn only when the range
    is not a single value, so the default (1, 1) draws nothing and leaves every other draw as it was.
    """

    transmittance: tuple[float, float] = (0.75, 1.0)
    reflection_gain: tuple[float, float] = (0.15, 0.6)
    blur_sigma: tuple[float, float] = (0.5, 5.0)
    ghost_probability: float = 0.5
    ghost_shift: tuple[int, int] = (2, 8)
    ghost_strength: tuple[float, float] = (0.3, 0.8)
    spatial_sigma: tuple[float, float] = (0.5, 1.5)
    spatial_floor: float = 0.3
    shot_noise: tuple[float, float] = (1e-4, 1e-3)
    lens_sigma: float = 0.7
    exposure: tuple[float, float] = (1.0, 1.0)


DEFAULT_PHYSICAL_CONFIG = PhysicalConfig()
# Brooks et al. 2019: read-noise variance as a function of shot-noise variance.
READ_NOISE_SLOPE = 2.18
READ_NOISE_INTERCEPT = 1.20
READ_NOISE_STD = 0.26
ISP_TRANSFER = "gamma"  # the physical model's ISP uses Brooks et al.'s 2.2 power law + smoothstep tone curve


# ----------------------------------------------------------------------------------------------------------------
# Shared helpers
# ----------------------------------------------------------------------------------------------------------------


def _as_image(x, name: str) -> torch.Tensor:
    """A (3, H, W) float32 CPU tensor from numpy or torch input; ValueError on a wrong shape or odd size."""
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).detach().to("cpu")
    t = t.to(torch.float32)
    if t.ndim != 3 or t.shape[0] != 3:
        raise ValueError(f"{name} must be an sRGB image (3, H, W), got shape {tuple(t.shape)}")
    if t.shape[1] % 2 or t.shape[2] % 2:
        raise ValueError(f"{name} must have an even height and width (Bayer mosaic), got {tuple(t.shape[1:])}")
    return t


def pack_linear(linear_rgb: torch.Tensor) -> torch.Tensor:
    """Sample linear RGB (..., 3, H, W) on an RGGB CFA and pack it: (..., 4, H/2, W/2) canonical [R, G1, G2, B]."""
    return pack_raw(mosaic_rgb(linear_rgb, "RGGB"), "RGGB")


def gaussian_kernel_size(sigma: float) -> int:
    """Upstream's kernel size for a blur of ``sigma`` px: ``2 * ceil(2 sigma) + 1`` (odd)."""
    return int(2 * math.ceil(2 * sigma) + 1)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of an image (C, H, W) or (B, C, H, W) float tensor, each channel separately.

    Kernel: ``gaussian_kernel_size(sigma)`` taps, normalised to sum 1 (the separable form of upstream's 2-D kernel,
    equal up to float rounding); borders reflected (replicated where the image is smaller than the kernel radius).
    ``sigma <= 0`` returns ``x`` unchanged.
    """
    if sigma <= 0:
        return x
    size = gaussian_kernel_size(sigma)
    pad = (size - 1) // 2
    coords = torch.arange(size, dtype=torch.float64) - pad
    k1 = torch.exp(-(coords**2) / (2 * sigma**2))
    k1 = (k1 / k1.sum()).to(x.dtype)
    batched = x if x.ndim == 4 else x.unsqueeze(0)
    b, c, h, w = batched.shape
    mode = "reflect" if pad < min(h, w) else "replicate"
    y = F.pad(batched.reshape(b * c, 1, h, w), (pad, pad, pad, pad), mode=mode)
    y = F.conv2d(y, k1.view(1, 1, 1, size))
    y = F.conv2d(y, k1.view(1, 1, size, 1))
    y = y.reshape(b, c, h, w)
    return y if x.ndim == 4 else y.squeeze(0)


def should_resample(T_rgb, R_rgb, I_rgb) -> bool:
    """Upstream's skip rule: True where ``max(T_rgb) < 0.15``, ``max(R_rgb) < 0.15`` or ``max(I_rgb) < 0.1``.

    Arguments: one sample's sRGB images (3, H, W) in [0, 1] (numpy or torch); the caller redraws such samples.
    """
    return bool(float(T_rgb.max()) < SKIP_T_MAX or float(R_rgb.max()) < SKIP_R_MAX or float(I_rgb.max()) < SKIP_I_MAX)


def upstream_source_skip(T_srgb, R_srgb) -> bool:
    """Upstream's second rule, checked on the source photos before mixing: ``mean(T) * 0.5 > mean(R)``
    (a reflection source far darker than the transmission gives an invisible reflection)."""
    return bool(float(T_srgb.mean()) * UPSTREAM_SOURCE_MEAN_RATIO > float(R_srgb.mean()))


# ----------------------------------------------------------------------------------------------------------------
# Upstream model
# ----------------------------------------------------------------------------------------------------------------


def upstream_vignette(size: int = UPSTREAM_VIGNETTE_SIZE, nsig: float = UPSTREAM_VIGNETTE_NSIG) -> np.ndarray:
    """Upstream's vignette (size, size) float64 in (0, 1], peak 1 at the centre.

    Each 1-D factor is the mass of a standard normal in ``size`` equal bins spanning +-(nsig + half a bin); the 2-D
    mask is the square root of their outer product, scaled to a maximum of 1.
    """
    half_bin = (2 * nsig + 1.0) / size / 2
    edges = np.linspace(-nsig - half_bin, nsig + half_bin, size + 1)
    mass = np.diff(ndtr(edges))
    mask = np.sqrt(np.outer(mass, mass))
    return mask / mask.max()


_VIGNETTE_CACHE: dict[int, torch.Tensor] = {}


def _vignette_tensor(size: int = UPSTREAM_VIGNETTE_SIZE) -> torch.Tensor:
    if size not in _VIGNETTE_CACHE:
        _VIGNETTE_CACHE[size] = torch.from_numpy(upstream_vignette(size)).to(torch.float32)
    return _VIGNETTE_CACHE[size]


def scaled_vignette_size(h: int, w: int) -> int:
    """A vignette side that keeps upstream's proportions for an image of (h, w): upstream cuts 256 x 256 windows
    from its 560 x 560 vignette, so an image with long side L gets ``ceil(560 * L / 256)`` (at least 560)."""
    return max(UPSTREAM_VIGNETTE_SIZE, math.ceil(UPSTREAM_VIGNETTE_SIZE * max(h, w) / 256))


def upstream_max_size() -> int:
    """Largest height/width :func:`synthesize_upstream` accepts (the vignette window must fit: 549)."""
    return UPSTREAM_VIGNETTE_SIZE - UPSTREAM_VIGNETTE_MARGIN - 1


def synthesize_upstream(T_srgb, R_srgb, rng: np.random.Generator, vignette_size: int = UPSTREAM_VIGNETTE_SIZE) -> dict:
    """Upstream's synthetic triplet from two sRGB photos of the same size.

    ``T_srgb``, ``R_srgb``: (3, H, W) in [0, 1] (numpy or torch), H and W even and at most ``vignette_size`` - 11
    (549 with upstream's 560 vignette; :func:`scaled_vignette_size` gives a larger vignette of the same proportions
    for larger images, as ``scripts/make_val_sets.py`` uses).
    Steps (upstream ``SynData``): t = T^2.2, r = R^2.2; r_blur = Gaussian blur of r with sigma drawn from
    :data:`UPSTREAM_SIGMAS`; per channel, m = mean of (r_blur + t) over its pixels above 1 (1 where none),
    r_blur = clamp(r_blur - (m - 1) * U[1.08, 1.18), 0, 1); r_mask = r_blur * a random window of the 560x560
    vignette; I = r_mask + t * U(0.8, 1].

    Returns (see module doc) ``T_rgb`` = ``T_srgb`` itself (upstream's target), ``R_rgb`` = r_mask^(1/2.2),
    ``I_rgb`` = clamp(I, 0, 1)^(1/2.2); ``T_raw``, ``R_raw`` = packed RGGB mosaic of t and r_mask,
    ``I_raw`` = clamp(packed mosaic of I, 0, 1) -- no white balance, colour matrix, black level or noise.
    ``params``: ``sigma``, ``overexposure_factor``, ``t_scale``, ``vignette_offset`` (top, left).
    """
    T = _as_image(T_srgb, "T_srgb")
    R = _as_image(R_srgb, "R_srgb")
    if T.shape != R.shape:
        raise ValueError(f"T and R must have the same size, got {tuple(T.shape)} and {tuple(R.shape)}")
    h, w = T.shape[1:]
    largest = vignette_size - UPSTREAM_VIGNETTE_MARGIN - 1
    if max(h, w) > largest:
        raise ValueError(f"upstream synthesis with a {vignette_size} px vignette needs images of at most {largest} px "
                         f"a side, got {h}x{w}")
    sigma = float(UPSTREAM_SIGMAS[rng.integers(0, len(UPSTREAM_SIGMAS))])
    factor = float(rng.uniform(*UPSTREAM_OVEREXPOSURE_RANGE))
    t_scale = float(UPSTREAM_T_SCALE_RANGE[1] - rng.random() * (UPSTREAM_T_SCALE_RANGE[1] - UPSTREAM_T_SCALE_RANGE[0]))
    limit = vignette_size - UPSTREAM_VIGNETTE_MARGIN
    left = int(rng.integers(0, limit - w))
    top = int(rng.integers(0, limit - h))

    t = T.clamp(0, 1) ** UPSTREAM_GAMMA
    r = R.clamp(0, 1) ** UPSTREAM_GAMMA
    r_blur = gaussian_blur(r, sigma)
    blend = r_blur + t
    over = (blend > 1).to(blend.dtype)
    mean_over = (blend * over).sum(dim=(1, 2), keepdim=True) / (over.sum(dim=(1, 2), keepdim=True) + _OVEREXPOSURE_EPS)
    r_blur = (r_blur - (mean_over.clamp(min=1) - 1) * factor).clamp(0, 1)
    r_mask = r_blur * _vignette_tensor(vignette_size)[top : top + h, left : left + w]
    mix = r_mask + t * t_scale

    inv = 1 / UPSTREAM_GAMMA
    return {
        "I_rgb": (mix.clamp(0, 1) ** inv).clamp(0, 1),
        "T_rgb": T.clone(),
        "R_rgb": r_mask**inv,
        "I_raw": pack_linear(mix).clamp(0, 1),
        "T_raw": pack_linear(t),
        "R_raw": pack_linear(r_mask),
        "params": {"sigma": sigma, "overexposure_factor": factor, "t_scale": t_scale, "vignette_offset": (top, left)},
    }


# ----------------------------------------------------------------------------------------------------------------
# Physical model
# ----------------------------------------------------------------------------------------------------------------


def render_rgb_from_raw(packed_raw, params) -> torch.Tensor:
    """The forward ISP of the physical model: sRGB (..., 3, 2h, 2w) in [0, 1] from a packed RAW (..., 4, h, w).

    ``packed_raw``: canonical [R, G1, G2, B], normalised (x - black) / (white - black) (numpy or torch).
    ``params``: the :class:`util.isp.ISPParams` of the sample, or the ``params`` dict returned by
    :func:`synthesize_physical` (its ``"isp"`` entry). Steps, in the order of Brooks et al.'s ``process``: white
    balance (:func:`util.isp.apply_gains`) and clip to [0, 1] -- a sensor-saturated pixel becomes neutral white
    instead of the pink that the colour matrix makes of unequal over-range channels --, bilinear demosaic on the
    RGGB grid of packed RAW, then :func:`util.isp.process` with unit gains (camera -> sRGB matrix, clip,
    x^(1/2.2), smoothstep). ``synthesize_physical`` builds every RGB output with this very function, so applying it
    to the returned RAW reproduces the returned RGB exactly.
    """
    isp = params["isp"] if isinstance(params, dict) else params
    if not isinstance(isp, ISPParams):
        raise TypeError(f"params must be ISPParams or a synthesize_physical params dict, got {type(params).__name__}")
    x = torch.as_tensor(np.asarray(packed_raw)) if not isinstance(packed_raw, torch.Tensor) else packed_raw
    balanced = apply_gains(x.to(torch.float32), isp.red_gain, isp.blue_gain, isp.rgb_gain).clamp(0, 1)
    colour_only = ISPParams(np.asarray(isp.ccm_srgb_to_cam, dtype=np.float64))  # gains already applied
    return process(demosaic_bilinear(balanced), colour_only, transfer=ISP_TRANSFER)


def unprocess_scene(srgb: torch.Tensor, isp: ISPParams) -> torch.Tensor:
    """sRGB (3, H, W) in [0, 1] -> linear camera RGB (3, H, W) in [0, 1], the scene as the sensor records it.

    As :func:`util.isp.unprocess` (inverse smoothstep, x^2.2, sRGB -> camera matrix) but with the *exact* inverse
    white balance instead of Brooks et al.'s highlight-preserving one: the physical model re-exposes the scene
    (glass transmittance, added reflection), and a highlight kept at camera (1, 1, 1) turns pink once scaled below
    saturation, while an exactly inverted white stays neutral at every exposure. Clipped to [0, 1].
    """
    x = gamma_decode(inverse_smoothstep(srgb))
    x = apply_ccm(x, isp.ccm_srgb_to_cam)
    x = apply_gains(x, 1.0 / isp.red_gain, 1.0 / isp.blue_gain, 1.0 / isp.rgb_gain)
    return x.clamp(0, 1)


def quantize_raw(packed: torch.Tensor, profile: CameraProfile) -> torch.Tensor:
    """Round a normalised packed RAW (4, h, w) to the profile's integer sensor counts in [0, white] and normalise
    again: values above 1 saturate at 1, values below 0 survive down to count 0 (noise below the black level)."""
    counts = torch.round(denormalize_raw(packed, profile.black, profile.white)).clamp(0, profile.white)
    return normalize_raw(counts, profile.black, profile.white)


def raw_to_counts(packed, profile: CameraProfile = DEFAULT_PROFILE) -> np.ndarray:
    """Normalised packed RAW (4, h, w) -> ``np.uint16`` Bayer mosaic (2h, 2w) in the profile's CFA and levels.

    Inverse of ``normalize_raw(pack_raw(mosaic, profile.cfa), black, white)`` for values produced by
    :func:`quantize_raw` (exact: float32 holds these counts to far better than half a count).
    """
    x = packed if isinstance(packed, torch.Tensor) else torch.as_tensor(np.asarray(packed))
    counts = torch.round(denormalize_raw(x.to(torch.float32), profile.black, profile.white)).clamp(0, profile.white)
    return unpack_raw(counts.numpy().astype(np.uint16), profile.cfa)


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def _shift(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Translate (C, H, W) by (dy, dx) integer pixels, filling the uncovered border by edge replication."""
    h, w = x.shape[-2:]
    py, px = abs(dy), abs(dx)
    padded = F.pad(x.unsqueeze(0), (px, px, py, py), mode="replicate").squeeze(0)
    return padded[:, py - dy : py - dy + h, px - dx : px - dx + w]


def _spatial_gain(h: int, w: int, rng: np.random.Generator, cfg: PhysicalConfig) -> tuple[torch.Tensor, dict]:
    cy, cx = float(rng.uniform(0, h)), float(rng.uniform(0, w))
    sy, sx = (float(rng.uniform(*cfg.spatial_sigma)) * max(h, w) for _ in range(2))
    yy = (torch.arange(h, dtype=torch.float32) + 0.5 - cy).view(h, 1)
    xx = (torch.arange(w, dtype=torch.float32) + 0.5 - cx).view(1, w)
    blob = torch.exp(-(yy**2) / (2 * sy**2) - xx**2 / (2 * sx**2))
    gain = cfg.spatial_floor + (1 - cfg.spatial_floor) * blob
    return gain, {"center": (cy, cx), "sigma": (sy, sx)}


def synthesize_physical(
    T_srgb,
    R_srgb,
    rng: np.random.Generator,
    profile: CameraProfile = DEFAULT_PROFILE,
    config: PhysicalConfig | None = None,
) -> dict:
    """A camera-consistent synthetic triplet from two sRGB photos of the same size (our default model).

    ``T_srgb``, ``R_srgb``: (3, H, W) in [0, 1] (numpy or torch), H and W even. ``profile``: black/white levels
    used for quantisation (the returned packed RAW is on the RGGB grid whatever ``profile.cfa``; the profile's CFA
    matters only when :func:`raw_to_counts` writes a mosaic). ``config``: ranges, :class:`PhysicalConfig`.

    In linear camera RGB (``isp = ISPParams.random(rng)``, one camera for the whole sample):

    * ``T_lin = lens(unprocess_scene(T_srgb, isp))``, ``R_lin = lens(unprocess_scene(R_srgb, isp))`` (``lens``:
      Gaussian blur of ``config.lens_sigma`` px, the camera's optical low-pass);
    * reflection component ``R_comp = e * g * S * ghost(blur(R_lin, sigma))``: Gaussian blur (applied together with
      the lens blur, as one blur of sqrt(lens_sigma^2 + sigma^2)), optional double image
      ``(x + k * shift(x)) / (1 + k)``, smooth spatial gain ``S`` in [floor, 1], reflection gain ``g``, exposure
      ``e`` (``config.exposure``; 1 by default), which also scales ``T_lin``;
    * ``I_lin = a * T_lin + R_comp`` (glass transmittance ``a``);
    * ``I_raw`` = packed RGGB mosaic of ``I_lin`` + Gaussian noise of variance ``shot * I + read``, quantised to
      sensor counts (saturating at white); ``T_raw``/``R_raw`` = packed mosaics of ``T_lin`` (without the glass:
      the scene as photographed with the glass removed, as in real captured triplets) and of ``R_comp`` (the
      reflection exactly as it adds to I, noise-free), quantised the same way;
    * ``X_rgb = render_rgb_from_raw(X_raw, isp)`` for X in I, T, R. So ``R_rgb`` is the ISP's rendering of the
      reflection layer alone; the ISP is non-linear, hence ``I_rgb != T_rgb + R_rgb``.

    ``params``: ``isp`` (ISPParams), ``transmittance``, ``reflection_gain``, ``blur_sigma``, ``ghost`` (None or
    ``{"shift": (dy, dx), "strength": k}``), ``spatial`` (``center``, ``sigma``), ``shot_noise``, ``read_noise``
    (variances in normalised units), ``exposure``, ``camera``. :func:`params_to_json` makes it JSON-safe.
    """
    cfg = config or DEFAULT_PHYSICAL_CONFIG
    T = _as_image(T_srgb, "T_srgb")
    R = _as_image(R_srgb, "R_srgb")
    if T.shape != R.shape:
        raise ValueError(f"T and R must have the same size, got {tuple(T.shape)} and {tuple(R.shape)}")
    h, w = T.shape[1:]

    isp = ISPParams.random(rng)
    transmittance = float(rng.uniform(*cfg.transmittance))
    reflection_gain = float(rng.uniform(*cfg.reflection_gain))
    sigma = float(rng.uniform(*cfg.blur_sigma))
    ghost = None
    if rng.random() < cfg.ghost_probability:
        dy, dx = 0, 0
        while dy == 0 and dx == 0:
            dy, dx = (int(rng.integers(-cfg.ghost_shift[1], cfg.ghost_shift[1] + 1)) for _ in range(2))
            if max(abs(dy), abs(dx)) < cfg.ghost_shift[0]:
                dy, dx = 0, 0
        ghost = {"shift": (dy, dx), "strength": float(rng.uniform(*cfg.ghost_strength))}
    spatial, spatial_params = _spatial_gain(h, w, rng, cfg)
    shot = _log_uniform(rng, *cfg.shot_noise)
    read = float(math.exp(READ_NOISE_SLOPE * math.log(shot) + READ_NOISE_INTERCEPT + rng.normal(0.0, READ_NOISE_STD)))
    low, high = (float(v) for v in cfg.exposure)
    exposure = low if low == high else _log_uniform(rng, low, high)  # no draw for a fixed exposure (the default)

    T_lin = exposure * gaussian_blur(unprocess_scene(T, isp), cfg.lens_sigma)  # x 1.0 changes no bit
    R_lin = gaussian_blur(unprocess_scene(R, isp), math.hypot(cfg.lens_sigma, sigma))
    if ghost is not None:
        k = ghost["strength"]
        R_lin = (R_lin + k * _shift(R_lin, *ghost["shift"])) / (1 + k)
    R_comp = exposure * reflection_gain * spatial * R_lin
    I_lin = transmittance * T_lin + R_comp

    I_clean = pack_linear(I_lin)
    noise_std = torch.sqrt(shot * I_clean.clamp(min=0) + read)
    gauss = torch.from_numpy(rng.standard_normal(size=tuple(I_clean.shape)).astype(np.float32))
    I_raw = quantize_raw(I_clean + noise_std * gauss, profile)
    T_raw = quantize_raw(pack_linear(T_lin), profile)
    R_raw = quantize_raw(pack_linear(R_comp), profile)

    params = {
        "isp": isp,
        "transmittance": transmittance,
        "reflection_gain": reflection_gain,
        "blur_sigma": sigma,
        "ghost": ghost,
        "spatial": spatial_params,
        "shot_noise": shot,
        "read_noise": read,
        "exposure": exposure,
        "camera": profile.name,
    }
    return {
        "I_rgb": render_rgb_from_raw(I_raw, isp),
        "T_rgb": render_rgb_from_raw(T_raw, isp),
        "R_rgb": render_rgb_from_raw(R_raw, isp),
        "I_raw": I_raw,
        "T_raw": T_raw,
        "R_raw": R_raw,
        "params": params,
    }


def params_to_json(params: dict) -> dict:
    """A JSON-serialisable copy of a ``params`` dict (ISPParams -> dict of lists/floats, tuples -> lists)."""

    def convert(v):
        if isinstance(v, ISPParams):
            return {k: convert(x) for k, x in asdict(v).items()}
        if isinstance(v, np.ndarray):
            return v.tolist()
        if isinstance(v, dict):
            return {k: convert(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [convert(x) for x in v]
        if isinstance(v, np.generic):
            return v.item()
        return v

    return convert(params)


LINEAR_WEIGHT_RANGE = (0.2, 0.8)  # synthesize_linear: weight of the reflection added in linear light
LINEAR_SIGMA_RANGE = (0.0, 4.0)  # synthesize_linear: Gaussian blur of the reflection, pixels


def synthesize_linear(T_srgb, R_srgb, rng: np.random.Generator) -> dict:
    """Plain linear mixing, the simplest model of the field (no vignette, no over-exposure correction, no camera):
    ``I = clip(T^2.2 + w * blur(R^2.2), 0, 1)^(1/2.2)`` with ``w`` uniform in :data:`LINEAR_WEIGHT_RANGE` and the
    blur's sigma uniform in :data:`LINEAR_SIGMA_RANGE`. Targets: ``T_rgb`` = ``T_srgb``, ``R_rgb`` = the added
    reflection ``(w * blur(R^2.2))^(1/2.2)``; RAW = packed RGGB mosaics of the linear images (as upstream's).
    ``params``: ``weight``, ``sigma``. Used for a validation set that no training run uses (scripts/make_val_sets.py).
    """
    T = _as_image(T_srgb, "T_srgb")
    R = _as_image(R_srgb, "R_srgb")
    if T.shape != R.shape:
        raise ValueError(f"T and R must have the same size, got {tuple(T.shape)} and {tuple(R.shape)}")
    weight = float(rng.uniform(*LINEAR_WEIGHT_RANGE))
    sigma = float(rng.uniform(*LINEAR_SIGMA_RANGE))
    t = T.clamp(0, 1) ** UPSTREAM_GAMMA
    r = weight * gaussian_blur(R.clamp(0, 1) ** UPSTREAM_GAMMA, sigma)
    mix = (t + r).clamp(0, 1)
    inv = 1 / UPSTREAM_GAMMA
    return {
        "I_rgb": mix**inv,
        "T_rgb": T.clone(),
        "R_rgb": r.clamp(0, 1) ** inv,
        "I_raw": pack_linear(mix),
        "T_raw": pack_linear(t),
        "R_raw": pack_linear(r.clamp(0, 1)),
        "params": {"weight": weight, "sigma": sigma},
    }


def synthesize(
    model: str,
    T_srgb,
    R_srgb,
    rng: np.random.Generator,
    profile: CameraProfile = DEFAULT_PROFILE,
    config: PhysicalConfig | None = None,
) -> dict:
    """Dispatch to :func:`synthesize_physical` (``profile``, ``config``), :func:`synthesize_upstream` or
    :func:`synthesize_linear` by ``model`` (one of :data:`SYN_MODELS`, or ``"linear"``)."""
    if model == "physical":
        return synthesize_physical(T_srgb, R_srgb, rng, profile, config)
    if model == "upstream":
        return synthesize_upstream(T_srgb, R_srgb, rng)
    if model == "linear":
        return synthesize_linear(T_srgb, R_srgb, rng)
    raise ValueError(f"unknown synthesis model {model!r}; expected one of {', '.join(SYN_MODELS)}")
