"""All RAW maths of the project: CFA packing, normalisation, mosaicing, demosaicing, transfer and tone curves,
colour matrices, white balance, a tiny invertible ISP and CFA-aware augmentation.

Conventions (repository-wide):

* A *mosaic* is a single-channel Bayer image ``(..., H, W)`` with H and W even; its CFA ``pattern`` names the
  2x2 tile read row by row (``"RGGB"``: R at (0, 0), G at (0, 1) and (1, 0), B at (1, 1)).
* A *packed* RAW is ``(..., 4, H/2, W/2)`` in the canonical channel order ``[R, G1, G2, B]`` whatever the
  sensor's pattern; G1 is the green sharing a row with R, G2 the green sharing a row with B.
* Normalised RAW is ``(x - black) / (white - black)`` in float32, never clipped.
* RGB is ``(..., 3, H, W)``; "linear camera RGB" is the demosaicked sensor signal before white balance and colour
  correction, "sRGB" the display-referred image in [0, 1].

Backends: every function accepts a numpy array or a torch tensor and returns the same kind (torch results keep
dtype and device and stay differentiable), except where a docstring says otherwise. Random functions take a
``numpy.random.Generator``. Invalid arguments (unknown pattern, odd sizes, odd crop offsets) raise ``ValueError``:
callers that handle user files turn them into ``util.errors.UserError`` with the file name.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

# ----------------------------------------------------------------------------------------------------------------
# CFA patterns, packing and normalisation
# ----------------------------------------------------------------------------------------------------------------

CFA_PATTERNS = ("RGGB", "BGGR", "GRBG", "GBRG")
CANONICAL_CHANNELS = ("R", "G1", "G2", "B")  # order of the 4 channels of every packed RAW


def _is_torch(x) -> bool:
    return isinstance(x, torch.Tensor)


def _stack(items, axis: int):
    return torch.stack(items, dim=axis) if _is_torch(items[0]) else np.stack(items, axis=axis)


def _clip(x, lo=None, hi=None):
    if _is_torch(x):
        return torch.clamp(x, min=lo, max=hi)
    return np.clip(x, lo, hi)


def _where(cond, a, b):
    return torch.where(cond, a, b) if _is_torch(cond) else np.where(cond, a, b)


def _maximum(x, v: float):
    return torch.clamp(x, min=v) if _is_torch(x) else np.maximum(x, v)


def _const(value, like):
    """``value`` (scalar or array-like) as an array/tensor of ``like``'s backend, float dtype and device."""
    if _is_torch(like):
        dtype = like.dtype if like.is_floating_point() else torch.float32
        return torch.as_tensor(np.asarray(value), dtype=dtype, device=like.device)
    dtype = like.dtype if np.issubdtype(np.asarray(like).dtype, np.floating) else np.float32
    return np.asarray(value, dtype=dtype)


def _channel_vector(value, like, nch: int):
    """A scalar stays 0-d; a length-``nch`` sequence becomes (nch, 1, 1) to broadcast on (..., C, h, w)."""
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        return _const(arr, like)
    if arr.shape != (nch,):
        raise ValueError(f"expected a scalar or {nch} per-channel values, got shape {arr.shape}")
    return _const(arr.reshape(nch, 1, 1), like)


def check_pattern(pattern: str) -> str:
    """Return ``pattern`` in upper case if it is one of :data:`CFA_PATTERNS`, else raise ``ValueError``."""
    p = str(pattern).upper()
    if p not in CFA_PATTERNS:
        raise ValueError(f"unknown CFA pattern {pattern!r}; expected one of {', '.join(CFA_PATTERNS)}")
    return p


def cfa_offsets(pattern: str) -> dict[str, tuple[int, int]]:
    """(row, col) offsets inside the 2x2 tile of ``R``, ``G1`` (green in the R row), ``G2`` (green in the B row), ``B``.

    Example: ``cfa_offsets("GBRG") == {"R": (1, 0), "G1": (1, 1), "G2": (0, 0), "B": (0, 1)}``.
    """
    p = check_pattern(pattern)
    sites = {"R": [], "G": [], "B": []}
    for i, colour in enumerate(p):
        sites[colour].append((i // 2, i % 2))
    r, b = sites["R"][0], sites["B"][0]
    g_r_row = [g for g in sites["G"] if g[0] == r[0]][0]
    g_b_row = [g for g in sites["G"] if g[0] == b[0]][0]
    return {"R": r, "G1": g_r_row, "G2": g_b_row, "B": b}


def _check_even(h: int, w: int, what: str) -> None:
    if h % 2 or w % 2:
        raise ValueError(f"{what} must have even height and width for a 2x2 CFA, got {h}x{w}")


def pack_raw(mosaic, pattern: str):
    """Pack a Bayer mosaic ``(..., H, W)`` (any dtype) into ``(..., 4, H/2, W/2)`` canonical ``[R, G1, G2, B]``.

    Keeps dtype (uint16 stays uint16). Odd H or W raises ``ValueError``.
    """
    off = cfa_offsets(pattern)
    _check_even(mosaic.shape[-2], mosaic.shape[-1], "a Bayer mosaic")
    return _stack([mosaic[..., r::2, c::2] for r, c in (off[k] for k in CANONICAL_CHANNELS)], axis=-3)


def unpack_raw(packed, pattern: str):
    """Inverse of :func:`pack_raw`: ``(..., 4, h, w)`` canonical ``[R, G1, G2, B]`` -> mosaic ``(..., 2h, 2w)``."""
    off = cfa_offsets(pattern)
    if packed.ndim < 3 or packed.shape[-3] != 4:
        raise ValueError(f"packed RAW must have shape (..., 4, h, w), got {tuple(packed.shape)}")
    lead, (h, w) = tuple(packed.shape[:-3]), tuple(packed.shape[-2:])
    # tile[..., dr, dc, :, :] = the channel sitting at offset (dr, dc) of the 2x2 tile
    by_site = {off[k]: packed[..., i, :, :] for i, k in enumerate(CANONICAL_CHANNELS)}
    rows = [_stack([by_site[(dr, dc)] for dc in (0, 1)], axis=-3) for dr in (0, 1)]
    tile = _stack(rows, axis=-4)  # (..., 2, 2, h, w)
    n = len(lead)
    order = (*range(n), n + 2, n, n + 3, n + 1)  # -> (..., h, 2, w, 2)
    tile = tile.permute(*order) if _is_torch(tile) else tile.transpose(order)
    return tile.reshape(*lead, 2 * h, 2 * w)


def normalize_raw(x, black, white):
    """``(x - black) / (white - black)`` as float32, not clipped.

    ``x``: mosaic ``(..., H, W)`` or packed ``(..., 4, h, w)`` of sensor counts (any dtype).
    ``black``/``white``: scalars, or per-channel 4-vectors in canonical ``[R, G1, G2, B]`` order (then ``x`` must be
    packed). Raises ``ValueError`` where any ``white <= black``.
    """
    if np.any(np.asarray(white, dtype=np.float64) <= np.asarray(black, dtype=np.float64)):
        raise ValueError(f"white level {white} must exceed black level {black}")
    xf = x.to(torch.float32) if _is_torch(x) else np.asarray(x).astype(np.float32)
    b, w = _channel_vector(black, xf, 4), _channel_vector(white, xf, 4)
    return (xf - b) / (w - b)


def denormalize_raw(x, black, white):
    """Inverse of :func:`normalize_raw`: ``x * (white - black) + black`` as float32 sensor counts (not rounded)."""
    xf = x.to(torch.float32) if _is_torch(x) else np.asarray(x).astype(np.float32)
    b, w = _channel_vector(black, xf, 4), _channel_vector(white, xf, 4)
    return xf * (w - b) + b


def mosaic_rgb(rgb, pattern: str):
    """Sample a full-resolution image ``(..., 3, H, W)`` (linear camera RGB) on the CFA -> mosaic ``(..., H, W)``."""
    off = cfa_offsets(pattern)
    if rgb.ndim < 3 or rgb.shape[-3] != 3:
        raise ValueError(f"RGB image must have shape (..., 3, H, W), got {tuple(rgb.shape)}")
    _check_even(rgb.shape[-2], rgb.shape[-1], "an image to mosaic")
    channel_of = {"R": 0, "G1": 1, "G2": 1, "B": 2}
    packed = _stack(
        [rgb[..., channel_of[k], off[k][0] :: 2, off[k][1] :: 2] for k in CANONICAL_CHANNELS], axis=-3
    )
    return unpack_raw(packed, pattern)


# Bilinear demosaicking kernels applied to the zero-filled colour planes of an RGGB mosaic.
_KERNEL_GREEN = [[0.0, 0.25, 0.0], [0.25, 1.0, 0.25], [0.0, 0.25, 0.0]]
_KERNEL_RED_BLUE = [[0.25, 0.5, 0.25], [0.5, 1.0, 0.5], [0.25, 0.5, 0.25]]


def demosaic_bilinear(x, pattern: str | None = None):
    """Bilinear demosaicking to full-resolution linear camera RGB ``(..., 3, H, W)``.

    ``x`` is either a mosaic ``(..., H, W)`` in CFA ``pattern`` (output on the sensor's own pixel grid), or, when
    ``pattern`` is None, a packed RAW ``(..., 4, h, w)`` canonical ``[R, G1, G2, B]`` (output on the grid of an RGGB
    sensor, i.e. for other sensors shifted by at most one pixel, which is what packed RAW defines).
    Implemented in torch (differentiable, dtype/device kept; integer input becomes float32); numpy input returns a
    float32 numpy array. Borders use reflection, which keeps the CFA phase. Site values are kept exactly: the
    output sampled back on the CFA equals the input.
    """
    was_numpy = not _is_torch(x)
    t = torch.as_tensor(np.asarray(x)) if was_numpy else x
    if not t.is_floating_point():
        t = t.to(torch.float32)
    if pattern is None:
        mosaic, pattern = unpack_raw(t, "RGGB"), "RGGB"
    else:
        mosaic = t
        _check_even(mosaic.shape[-2], mosaic.shape[-1], "a Bayer mosaic")
    off = cfa_offsets(pattern)
    lead, (hh, ww) = tuple(mosaic.shape[:-2]), tuple(mosaic.shape[-2:])
    m = mosaic.reshape(-1, 1, hh, ww)
    mask = torch.zeros(3, hh, ww, dtype=t.dtype, device=t.device)
    for key, channel in (("R", 0), ("G1", 1), ("G2", 1), ("B", 2)):
        mask[channel, off[key][0] :: 2, off[key][1] :: 2] = 1
    planes = F.pad(m * mask, (1, 1, 1, 1), mode="reflect")
    kernels = torch.tensor([_KERNEL_RED_BLUE, _KERNEL_GREEN, _KERNEL_RED_BLUE], dtype=t.dtype, device=t.device)
    out = F.conv2d(planes, kernels.unsqueeze(1), groups=3).reshape(*lead, 3, hh, ww)
    return out.numpy().astype(np.float32) if was_numpy else out


# ----------------------------------------------------------------------------------------------------------------
# Transfer functions and tone curve (all clamp their input to [0, 1] first)
# ----------------------------------------------------------------------------------------------------------------

SRGB_LINEAR_THRESHOLD = 0.0031308  # IEC 61966-2-1: linear segment below this linear value
SRGB_ENCODED_THRESHOLD = 0.04045  # the same break point on the encoded side
SRGB_SLOPE = 12.92
SRGB_GAMMA = 2.4
SRGB_OFFSET = 0.055
DEFAULT_GAMMA = 2.2  # Brooks et al. 2019 and upstream's synthesis use a plain 2.2 power law
_POW_EPS = 1e-8  # keeps pow() gradients finite at 0


def srgb_encode(x):
    """Linear [0, 1] -> sRGB-encoded [0, 1] (IEC 61966-2-1 piecewise curve); input clamped to [0, 1]."""
    x = _clip(x, 0.0, 1.0)
    # 1.055 * x^(1/2.4) - 0.055, written so that x = 1 maps to exactly 1.0
    curve = 1 + (1 + SRGB_OFFSET) * (_maximum(x, SRGB_LINEAR_THRESHOLD) ** (1 / SRGB_GAMMA) - 1)
    return _where(x <= SRGB_LINEAR_THRESHOLD, x * SRGB_SLOPE, curve)


def srgb_decode(y):
    """sRGB-encoded [0, 1] -> linear [0, 1]; input clamped to [0, 1]."""
    y = _clip(y, 0.0, 1.0)
    curve = ((_maximum(y, SRGB_ENCODED_THRESHOLD) + SRGB_OFFSET) / (1 + SRGB_OFFSET)) ** SRGB_GAMMA
    return _where(y <= SRGB_ENCODED_THRESHOLD, y / SRGB_SLOPE, curve)


def gamma_encode(x, gamma: float = DEFAULT_GAMMA):
    """Linear [0, 1] -> ``x ** (1 / gamma)``; input clamped to [0, 1]; exactly 0 at 0 with a finite gradient."""
    x = _clip(x, 0.0, 1.0)
    return _where(x > 0, _maximum(x, _POW_EPS) ** (1 / gamma), x * 0)


def gamma_decode(y, gamma: float = DEFAULT_GAMMA):
    """Encoded [0, 1] -> linear ``y ** gamma``; input clamped to [0, 1]."""
    return _clip(y, 0.0, 1.0) ** gamma


def smoothstep(x):
    """Global tone curve of Brooks et al. 2019: ``3x^2 - 2x^3`` on x clamped to [0, 1]."""
    x = _clip(x, 0.0, 1.0)
    return 3 * x**2 - 2 * x**3


def inverse_smoothstep(y):
    """Inverse of :func:`smoothstep` on [0, 1]: ``0.5 - sin(asin(1 - 2y) / 3)``; y clamped to [0, 1] first."""
    y = _clip(y, 0.0, 1.0)
    if _is_torch(y):
        return 0.5 - torch.sin(torch.asin(1 - 2 * y) / 3)
    return 0.5 - np.sin(np.arcsin(1 - 2 * y) / 3)


# ----------------------------------------------------------------------------------------------------------------
# Colour matrices and white balance (Brooks et al. 2019, "Unprocessing Images for Learned Raw Denoising")
# ----------------------------------------------------------------------------------------------------------------

# Linear sRGB (D65) -> CIE XYZ, IEC 61966-2-1 / Lindbloom.
SRGB_TO_XYZ = np.array(
    [[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]]
)
XYZ_TO_SRGB = np.linalg.inv(SRGB_TO_XYZ)  # exact inverse of SRGB_TO_XYZ (matches the published 3.2404542, ... table)

# XYZ -> camera matrices of four cameras, as listed by Brooks et al. 2019 (from their DNG colour profiles).
BROOKS_XYZ_TO_CAM = np.array(
    [
        [[1.0234, -0.2969, -0.2266], [-0.5625, 1.6328, -0.0469], [-0.0703, 0.2188, 0.6406]],
        [[0.4913, -0.0541, -0.0202], [-0.613, 1.3513, 0.2906], [-0.1564, 0.2151, 0.7183]],
        [[0.838, -0.263, -0.0639], [-0.2887, 1.0725, 0.2496], [-0.0627, 0.1427, 0.5438]],
        [[0.6596, -0.2079, -0.0562], [-0.4782, 1.3016, 0.1933], [-0.097, 0.1581, 0.5181]],
    ]
)

# Brooks et al. 2019 white-balance ranges.
RGB_GAIN_MEAN, RGB_GAIN_STD = 0.8, 0.1  # rgb_gain = 1 / N(0.8, 0.1)
RED_GAIN_RANGE = (1.9, 2.4)
BLUE_GAIN_RANGE = (1.5, 1.9)
HIGHLIGHT_INFLECTION = 0.9  # safe gain inversion: above this grey level gains fade towards 1


def srgb_to_cam_from_xyz_to_cam(xyz_to_cam) -> np.ndarray:
    """Compose ``xyz_to_cam @ SRGB_TO_XYZ`` and normalise each row to sum 1 (so sRGB white maps to camera white)."""
    m = np.asarray(xyz_to_cam, dtype=np.float64) @ SRGB_TO_XYZ
    return m / m.sum(axis=-1, keepdims=True)


def random_ccm(rng: np.random.Generator) -> np.ndarray:
    """Random sRGB -> camera matrix (3, 3) float64: a random convex combination of :data:`BROOKS_XYZ_TO_CAM`
    composed with :data:`SRGB_TO_XYZ`, rows normalised to sum 1 (Brooks et al. 2019)."""
    weights = rng.uniform(1e-8, 1.0, size=len(BROOKS_XYZ_TO_CAM))
    xyz_to_cam = np.tensordot(weights / weights.sum(), BROOKS_XYZ_TO_CAM, axes=1)
    return srgb_to_cam_from_xyz_to_cam(xyz_to_cam)


def apply_ccm(rgb, matrix):
    """``out[..., i, :, :] = sum_j matrix[i, j] * rgb[..., j, :, :]`` for ``rgb`` (..., 3, H, W) and a 3x3 matrix."""
    if rgb.shape[-3] != 3:
        raise ValueError(f"expected an RGB image (..., 3, H, W), got {tuple(rgb.shape)}")
    m = _const(matrix, rgb)
    if _is_torch(rgb):
        return torch.einsum("ij,...jhw->...ihw", m, rgb)
    return np.einsum("ij,...jhw->...ihw", m, rgb)


def random_gains(rng: np.random.Generator) -> tuple[float, float, float]:
    """``(rgb_gain, red_gain, blue_gain)`` with Brooks et al. 2019 ranges: rgb_gain = 1 / N(0.8, 0.1),
    red_gain ~ U(1.9, 2.4), blue_gain ~ U(1.5, 1.9)."""
    rgb_gain = 1.0 / rng.normal(RGB_GAIN_MEAN, RGB_GAIN_STD)
    red_gain = rng.uniform(*RED_GAIN_RANGE)
    blue_gain = rng.uniform(*BLUE_GAIN_RANGE)
    return float(rgb_gain), float(red_gain), float(blue_gain)


def _gain_vector(like, red_gain: float, blue_gain: float, rgb_gain: float):
    nch = like.shape[-3]
    if nch == 3:
        gains = [red_gain, 1.0, blue_gain]
    elif nch == 4:
        gains = [red_gain, 1.0, 1.0, blue_gain]
    else:
        raise ValueError(f"expected RGB (..., 3, H, W) or packed RAW (..., 4, h, w), got {tuple(like.shape)}")
    return _channel_vector(np.asarray(gains) * rgb_gain, like, nch)


def apply_gains(x, red_gain: float, blue_gain: float, rgb_gain: float = 1.0):
    """White balance: multiply R by ``red_gain * rgb_gain``, G by ``rgb_gain``, B by ``blue_gain * rgb_gain``.

    ``x``: linear camera RGB (..., 3, H, W) or packed RAW (..., 4, h, w) in [R, G1, G2, B] order.
    """
    return x * _gain_vector(x, red_gain, blue_gain, rgb_gain)


def invert_gains(x, red_gain: float, blue_gain: float, rgb_gain: float = 1.0):
    """Undo :func:`apply_gains` with Brooks et al.'s highlight-preserving safe inversion.

    Where the channel-mean grey level exceeds :data:`HIGHLIGHT_INFLECTION` the inverse gains fade quadratically
    towards 1 (never below the exact inverse), so saturated highlights are not pulled below white and stay
    saturated after re-applying the gains. Below the inflection it is the exact inverse. ``x`` as in apply_gains.
    """
    inverse = _gain_vector(x, 1.0 / red_gain, 1.0 / blue_gain, 1.0 / rgb_gain)
    gray = x.mean(-3, keepdims=True) if not _is_torch(x) else x.mean(dim=-3, keepdim=True)
    mask = (_clip(gray - HIGHLIGHT_INFLECTION, 0.0, 1.0 - HIGHLIGHT_INFLECTION) / (1.0 - HIGHLIGHT_INFLECTION)) ** 2
    safe = mask + (1 - mask) * inverse
    safe = torch.maximum(safe, inverse) if _is_torch(x) else np.maximum(safe, inverse)
    return x * safe


def srgb_to_camera(srgb, ccm_cam_to_srgb, wb_gains):
    """Take an sRGB image back through a camera photo's own rendering: sRGB (..., 3, H, W) in [0, 1] -> linear camera
    RGB (..., 3, H, W) relative to the white level, before white balance.

    The inverse of a LibRaw-style rendering without tone curve (:func:`data.camera_raw.render_rgb`): the sRGB curve
    decoded, ``ccm_cam_to_srgb`` (camera RGB, white balanced -> linear sRGB, (3, 3)) inverted, the white balance
    ``wb_gains`` ([R, G, B]) divided out after normalising it to a smallest gain of 1, as LibRaw applies it. Exact for
    values the rendering did not clip; not clipped itself (colours outside the camera's gamut come back negative).
    """
    gains = np.asarray(wb_gains, dtype=np.float64)
    if gains.shape != (3,) or not np.all(gains > 0):
        raise ValueError(f"white-balance gains must be 3 positive numbers [R, G, B], got {wb_gains}")
    camera = apply_ccm(srgb_decode(srgb), np.linalg.inv(np.asarray(ccm_cam_to_srgb, dtype=np.float64)))
    return camera / _channel_vector(gains / gains.min(), camera, 3)


# ----------------------------------------------------------------------------------------------------------------
# A small invertible ISP
# ----------------------------------------------------------------------------------------------------------------

TRANSFERS = ("gamma", "srgb")


@dataclass
class ISPParams:
    """Parameters of :func:`process` / :func:`unprocess`.

    ``ccm_srgb_to_cam``: (3, 3) linear sRGB -> camera RGB; ``red_gain``/``blue_gain``: white-balance gains of the
    forward ISP; ``rgb_gain``: global brightness gain of the forward ISP.
    """

    ccm_srgb_to_cam: np.ndarray = field(default_factory=lambda: np.eye(3))
    red_gain: float = 1.0
    blue_gain: float = 1.0
    rgb_gain: float = 1.0

    @property
    def ccm_cam_to_srgb(self) -> np.ndarray:
        """(3, 3) camera RGB -> linear sRGB, the inverse of ``ccm_srgb_to_cam``."""
        return np.linalg.inv(np.asarray(self.ccm_srgb_to_cam, dtype=np.float64))

    @classmethod
    def random(cls, rng: np.random.Generator) -> ISPParams:
        """Brooks et al. 2019 random camera: :func:`random_ccm` and :func:`random_gains`."""
        ccm = random_ccm(rng)
        rgb_gain, red_gain, blue_gain = random_gains(rng)
        return cls(ccm, red_gain, blue_gain, rgb_gain)

    @classmethod
    def identity(cls) -> ISPParams:
        """Identity colour matrix and unit gains: process/unprocess reduce to the transfer and tone curves."""
        return cls(np.eye(3), 1.0, 1.0, 1.0)


def _check_transfer(transfer: str) -> None:
    if transfer not in TRANSFERS:
        raise ValueError(f"unknown transfer {transfer!r}; expected one of {', '.join(TRANSFERS)}")


def unprocess(srgb, params: ISPParams, transfer: str = "gamma"):
    """sRGB (..., 3, H, W) in [0, 1] -> linear camera RGB (..., 3, H, W) in [0, 1].

    Inverse smoothstep, inverse transfer (``"gamma"``: x^2.2 as Brooks et al.; ``"srgb"``: IEC curve),
    sRGB -> camera matrix, safe inverse white balance, clip to [0, 1].
    """
    _check_transfer(transfer)
    x = inverse_smoothstep(srgb)
    x = gamma_decode(x) if transfer == "gamma" else srgb_decode(x)
    x = apply_ccm(x, params.ccm_srgb_to_cam)
    x = invert_gains(x, params.red_gain, params.blue_gain, params.rgb_gain)
    return _clip(x, 0.0, 1.0)


def process(linear_cam, params: ISPParams, transfer: str = "gamma"):
    """Linear camera RGB (..., 3, H, W) -> sRGB (..., 3, H, W) in [0, 1]: the forward ISP inverted by :func:`unprocess`.

    White balance (:func:`apply_gains`), camera -> sRGB matrix, clip to [0, 1], transfer encode, smoothstep.
    """
    _check_transfer(transfer)
    x = apply_gains(linear_cam, params.red_gain, params.blue_gain, params.rgb_gain)
    x = _clip(apply_ccm(x, params.ccm_cam_to_srgb), 0.0, 1.0)
    x = gamma_encode(x) if transfer == "gamma" else srgb_encode(x)
    return smoothstep(x)


# ----------------------------------------------------------------------------------------------------------------
# CFA-aware augmentation
# ----------------------------------------------------------------------------------------------------------------


def flip_pattern(pattern: str, horizontal: bool) -> str:
    """CFA pattern of a mosaic after a horizontal (left-right) or vertical (up-down) flip (even H and W)."""
    p = check_pattern(pattern)
    return p[1] + p[0] + p[3] + p[2] if horizontal else p[2:] + p[:2]


def bayer_flip(mosaic, pattern: str, horizontal: bool):
    """Flip a mosaic ``(..., H, W)`` (even H, W) and return ``(flipped, new_pattern)``.

    No pixel is lost: the CFA pattern changes instead (RGGB flipped left-right is GRBG). Packing the result with
    ``new_pattern`` gives exactly the spatially flipped packed RAW of the original, so flipping a canonical packed
    RAW ``(..., 4, h, w)`` along its last two axes is itself a CFA-correct flip.
    """
    _check_even(mosaic.shape[-2], mosaic.shape[-1], "a Bayer mosaic")
    axis = -1 if horizontal else -2
    flipped = torch.flip(mosaic, dims=(axis,)) if _is_torch(mosaic) else np.flip(mosaic, axis=axis).copy()
    return flipped, flip_pattern(pattern, horizontal)


def even_crop(mosaic, top: int, left: int, h: int, w: int):
    """Crop ``mosaic[..., top:top+h, left:left+w]`` keeping the CFA phase.

    ``top``, ``left``, ``h`` and ``w`` must be even and the window inside the image, else ``ValueError``.
    """
    if top % 2 or left % 2:
        raise ValueError(f"crop offsets must be even to keep the CFA phase, got top={top}, left={left}")
    _check_even(h, w, "a crop of a Bayer mosaic")
    H, W = mosaic.shape[-2], mosaic.shape[-1]
    if top < 0 or left < 0 or h <= 0 or w <= 0 or top + h > H or left + w > W:
        raise ValueError(f"crop top={top}, left={left}, {h}x{w} does not fit a {H}x{W} mosaic")
    return mosaic[..., top : top + h, left : left + w]


# ----------------------------------------------------------------------------------------------------------------
# Dashboard preview
# ----------------------------------------------------------------------------------------------------------------

PREVIEW_MAX_GAIN = 8.0  # gray-world gains are limited to [1/8, 8] so a colour-less patch does not explode


def raw_preview(packed, gains: tuple[float, float] | None = None):
    """Quick sRGB view ``(..., 3, h, w)`` in [0, 1] of a normalised packed RAW ``(..., 4, h, w)``.

    Averages the two greens, white-balances R and B (``gains=(red_gain, blue_gain)``, or per-image gray-world
    gains when None), clips and sRGB-encodes. For display only: no colour matrix, no tone curve.
    """
    if packed.shape[-3] != 4:
        raise ValueError(f"packed RAW must have shape (..., 4, h, w), got {tuple(packed.shape)}")
    if _is_torch(packed):
        packed = packed.detach().to(torch.float32)
    else:
        packed = np.asarray(packed, dtype=np.float32)
    r, g, b = packed[..., 0, :, :], (packed[..., 1, :, :] + packed[..., 2, :, :]) / 2, packed[..., 3, :, :]
    rgb = _stack([r, g, b], axis=-3)
    if gains is None:
        means = rgb.mean(axis=(-2, -1), keepdims=True) if not _is_torch(rgb) else rgb.mean(dim=(-2, -1), keepdim=True)
        means = _maximum(means, 1e-6)
        gain = _clip(means[..., 1:2, :, :] / means, 1 / PREVIEW_MAX_GAIN, PREVIEW_MAX_GAIN)
        rgb = rgb * gain
    else:
        rgb = apply_gains(rgb, gains[0], gains[1])
    return srgb_encode(rgb)
