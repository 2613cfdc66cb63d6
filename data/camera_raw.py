"""Real camera RAW files (NEF, CR2, CR3, ARW, DNG, ...) read with rawpy (LibRaw), and their camera JPEG partners.

Geometry conventions:

* :attr:`CameraRaw.mosaic` is LibRaw's *visible* area (sensor margins dropped; a DNG's DefaultCrop is NOT applied),
  with its last row / column dropped where needed so that H and W are even. The mosaic keeps its origin, so
  :attr:`CameraRaw.cfa` names the 2x2 tile at (0, 0) of the mosaic; it accounts for a visible area that starts at an
  odd offset of the full sensor array.
* Everything the network sees (mosaic, :func:`render_rgb`, :func:`load_jpeg_partner`) stays in *sensor orientation*,
  pixel-aligned with the mosaic. The camera's orientation (:attr:`CameraRaw.orientation`, LibRaw's ``sizes.flip``)
  is applied with :func:`apply_orientation` only when results are saved for viewing.

Every unreadable, truncated, corrupt or non-Bayer file raises :class:`util.errors.UserError` naming the file.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rawpy
import tifffile
import torch
from PIL import Image
from scipy.ndimage import gaussian_filter

from data.cameras import CameraProfile
from util.errors import UserError
from util.image_io import read_rgb
from util.isp import (
    CANONICAL_CHANNELS,
    CFA_PATTERNS,
    cfa_offsets,
    normalize_raw,
    pack_raw,
    srgb_to_cam_from_xyz_to_cam,
)

# File extensions of the camera RAW formats LibRaw decodes (lower case).
CAMERA_RAW_EXTENSIONS = (
    ".3fr", ".ari", ".arw", ".bay", ".cap", ".cr2", ".cr3", ".crw", ".cs1", ".dc2", ".dcr", ".dcs", ".dng", ".drf",
    ".eip", ".erf", ".fff", ".gpr", ".iiq", ".k25", ".kc2", ".kdc", ".mdc", ".mef", ".mfw", ".mos", ".mrw", ".nef",
    ".nrw", ".orf", ".ori", ".pef", ".ptx", ".pxn", ".qtk", ".raf", ".raw", ".rw2", ".rwl", ".rwz", ".sr2", ".srf",
    ".srw", ".sti", ".x3f",
)  # fmt: skip

LIBRAW_VERSION = ".".join(map(str, rawpy.libraw_version))
BAYER_COLOUR_DESC = "RGBG"  # LibRaw's colour letters of an RGB Bayer sensor (indices 0..3; 3 = second green)
XTRANS_PATTERN_SIZE = 6  # Fujifilm X-Trans repeats a 6x6 tile
LIBRAW_FLIP_BITS = 7  # LibRaw/dcraw ``flip``: bit 0 mirror columns, bit 1 mirror rows, bit 2 transpose
FLIP_MIRROR_COLUMNS, FLIP_MIRROR_ROWS, FLIP_TRANSPOSE = 1, 2, 4

# Rendering: sRGB primaries with the sRGB transfer curve (LibRaw ``gamma`` = (power, toe slope)); LibRaw's default
# (2.222, 4.5) is the BT.709 curve instead.
SRGB_GAMMA_LIBRAW = (2.4, 12.92)
RENDER_BITS = 8
# LibRaw's default (0.75) replaces the white level by the photo's own maximum where that exceeds 75 % of it: a
# brightening that depends on the content (a photo whose brightest pixel is at 90 % of white renders 11 % brighter,
# a darker one not). 0 = always the file's white level, so that a rendering is a fixed function of the sensor values
# and the metadata: the reflection-free DNG (remove_reflection.py --raw_out) then renders like the T it came from.
ADJUST_MAXIMUM_THR = 0.0

# JPEG partner matching.
JPEG_MAX_ASPECT_DIFF = 0.02  # aspect ratios (W/H) of JPEG and RAW may differ by at most 2 %
# Same scale (centre-crop / pad, no resize) where each side is within 2 % or 16 px of the RAW's: cameras crop their
# JPEGs a few pixels differently from LibRaw's visible area.
JPEG_SAME_SCALE_TOL = 0.02
JPEG_SAME_SCALE_TOL_PX = 16
# Photo identity: Pearson correlation of band-passed grey thumbnails (thumbnail minus its Gaussian blur, so that a
# shared layout such as "bright sky above dark ground" does not count; plain thumbnails correlate up to 0.67 for
# unrelated photos). Measured on ../shared/data against the Kodak DC50 RAW: its LibRaw rendering 0.98 (0.78 shifted by
# 3 of 768 px), 49 unrelated photos at most 0.04, its rendering upside down 0.35.
BELONG_THUMB_LONG_SIDE = 128  # thumbnail long side (px)
BELONG_MAX_THUMB_SCALE = 0.25  # small images: thumbnails stay well below the half resolution of the packed RAW
BELONG_HIGHPASS_SIGMA = 3.0  # Gaussian sigma (thumbnail px) of the removed low-pass part
BELONG_MIN_CORRELATION = 0.5  # below this: the JPEG shows another photo
BELONG_MIN_STD = 1e-3  # band-passed thumbnails flatter than this carry no evidence either way: the check is skipped
PREVIEW_GAMMA = 2.2  # encoding of the grey RAW thumbnail used by that check
RGB_MAX = 255.0


def is_camera_raw(path) -> bool:
    """True where ``path`` has one of :data:`CAMERA_RAW_EXTENSIONS` (case-insensitive); the file is not opened."""
    return Path(path).suffix.lower() in CAMERA_RAW_EXTENSIONS


@dataclass(frozen=True, eq=False)
class CameraRaw:
    """The Bayer mosaic of one camera RAW file with the metadata needed to normalise and render it.

    * ``mosaic``: (H, W) uint16 sensor counts, LibRaw's visible area cropped to even H and W, sensor orientation.
    * ``cfa``: the 2x2 tile at (0, 0) of ``mosaic``, one of :data:`util.isp.CFA_PATTERNS`.
    * ``black``: per-channel black levels in the canonical packed order [R, G1, G2, B] (G1 shares a row with R).
    * ``white``: saturation level (LibRaw ``white_level``), same units.
    * ``wb_gains``: (3,) float64 as-shot white-balance multipliers [R, G, B] with G = 1, or None where the file
      records none.
    * ``ccm``: (3, 3) float64 camera RGB (white balanced) -> linear sRGB, rows summing to about 1, or None where
      LibRaw knows no colour matrix for the camera.
    * ``orientation``: LibRaw ``sizes.flip`` (0 none, 3 rotate 180, 5 rotate 90 CCW, 6 rotate 90 CW; 1, 2, 4, 7
      mirrored variants); see :func:`apply_orientation`.
    * ``camera``: "make model" where the file says so (TIFF-based formats), else "".
    """

    path: Path
    mosaic: np.ndarray
    cfa: str
    black: tuple[float, float, float, float]
    white: float
    wb_gains: np.ndarray | None
    ccm: np.ndarray | None
    orientation: int
    camera: str

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) of :attr:`mosaic`, also the size of :func:`render_rgb` and :func:`load_jpeg_partner` results."""
        return tuple(self.mosaic.shape)

    def packed(self) -> np.ndarray:
        """(4, H/2, W/2) float32, packed [R, G1, G2, B], (x - black) / (white - black), not clipped."""
        return normalize_raw(pack_raw(self.mosaic, self.cfa), self.black, self.white)

    def profile(self) -> CameraProfile:
        """A :class:`data.cameras.CameraProfile` built from the file's own CFA and levels."""
        return CameraProfile(f"file:{self.camera or self.path.name}", self.cfa, self.black, self.white)


# ----------------------------------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------------------------------


class _Records(logging.Handler):
    """Collects the messages of a logger (here tifffile's, which logs unreadable tags as errors and goes on)."""

    def __init__(self):
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def _tiff_truncation(path: Path) -> str | None:
    """Why a TIFF-based RAW (DNG, NEF, CR2, ARW, KDC, ...) is cut short, or None where nothing shows it is.

    Two signs, read with tifffile from the IFDs and their SubIFDs: a tag whose value lies past the end of the file,
    and an image strip or tile that ends past it. None also where the file is not TIFF-based (CR3, RAF, ...) or
    tifffile cannot follow it: LibRaw's reading then stands alone. tifffile's own messages are kept off the console.
    """
    log, records = logging.getLogger("tifffile"), _Records()
    level, propagate = log.level, log.propagate
    log.addHandler(records)
    log.setLevel(logging.WARNING)
    log.propagate = False
    try:
        size, end = path.stat().st_size, 0
        with tifffile.TiffFile(path) as tif:
            pages = list(tif.pages)
            while pages:
                page = pages.pop()
                if page.pages is not None:  # SubIFDs (DNG, NEF: the mosaic often lives there)
                    page.pages.useframes = False
                    pages.extend(page.pages)
                offsets, counts = page.dataoffsets, page.databytecounts
                if offsets and counts and len(offsets) == len(counts):
                    end = max(end, max(int(o) + int(c) for o, c in zip(offsets, counts, strict=True)))
    except Exception:
        return None
    finally:
        log.removeHandler(records)
        log.setLevel(level)
        log.propagate = propagate
    if end > size:
        return f"its image data run to byte {end:,}, the file has {size:,} bytes"
    if any("invalid value offset" in m for m in records.messages):
        return f"its tags point past the end of its {size:,} bytes"
    return None


RAF_MAGIC = b"FUJIFILMCCD-RAW"
CR3_BRAND = b"crx "  # the major brand of a Canon CR3 (ISO base media file format)
# RAF header: big-endian (offset, length) pairs of the embedded JPEG, the CFA header and the CFA data (dcraw's reading)
RAF_SECTIONS = ((84, "embedded JPEG"), (92, "CFA header"), (100, "CFA data"))
RAF_HEADER_BYTES = 108


def _bmff_truncation(f, size: int, brand: bytes) -> str | None:
    """Why an ISO base media file (Canon CR3) is cut short: a top-level box that runs past the end of the file, or,
    for a CR3 (major brand ``crx``), no media data box ``mdat`` at all (a cut exactly between two boxes, before the
    image data)."""
    pos, kinds = 0, []
    while pos < size:
        f.seek(pos)
        head = f.read(16)
        large = len(head) >= 8 and int.from_bytes(head[:4], "big") == 1  # a 64-bit size follows the type
        if len(head) < (16 if large else 8):
            return f"its last box header at byte {pos:,} is cut off (the file has {size:,} bytes)"
        length, kind = int.from_bytes(head[8:16] if large else head[:4], "big"), head[4:8].decode("latin-1")
        kinds.append(kind)
        if length == 0:  # the last box, to the end of the file
            break
        if length < 8:
            return f"its box {kind!r} at byte {pos:,} has an impossible size ({length})"
        if pos + length > size:
            return f"its box {kind!r} runs to byte {pos + length:,}, the file has {size:,} bytes"
        pos += length
    if brand == CR3_BRAND and "mdat" not in kinds:
        return f"it ends at byte {size:,} after its boxes {', '.join(kinds)}, before its image data ('mdat')"
    return None


def _container_truncation(path: Path) -> str | None:
    """Why a RAW file of a non-TIFF container (Canon CR3: ISO base media boxes; Fujifilm RAF: a header of offsets) is
    cut short, or None where nothing shows it is (or the file is neither): LibRaw may read such a file without an
    error, as it does a DNG cut before its image data."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(RAF_HEADER_BYTES)
        if head[4:8] == b"ftyp":
            return _bmff_truncation(f, size, head[8:12])
        if head.startswith(RAF_MAGIC):
            if len(head) < RAF_HEADER_BYTES:
                return f"its {RAF_HEADER_BYTES}-byte RAF header is cut off at {size:,} bytes"
            for at, section in RAF_SECTIONS:
                offset, length = (int.from_bytes(head[i : i + 4], "big") for i in (at, at + 4))
                if offset and offset + length > size:
                    return f"its {section} runs to byte {offset + length:,}, the file has {size:,} bytes"
    return None


@contextlib.contextmanager
def _open_raw(path: Path):
    """Open and unpack ``path`` with LibRaw; every LibRaw failure becomes a ``UserError`` naming the file.

    A file cut before the end of its image data (TIFF-based, CR3 or RAF) is refused before LibRaw sees it: LibRaw
    reads a DNG cut before its image data without an error, into an uninitialised buffer.
    """
    if not path.is_file():
        raise UserError(f"cannot read camera RAW {path}: no such file")
    cut = _tiff_truncation(path) or _container_truncation(path)
    if cut is not None:
        raise UserError(f"cannot read camera RAW {path}: the file is truncated or damaged ({cut}); copy it again")
    raw = rawpy.RawPy()
    try:
        try:
            raw.open_file(str(path))
            raw.unpack()
        except rawpy.LibRawFileUnsupportedError as err:
            hint = "Foveon (.x3f) sensors have no Bayer mosaic" if path.suffix.lower() == ".x3f" else None
            raise UserError(
                f"cannot read camera RAW {path}: LibRaw {LIBRAW_VERSION} does not support this file "
                f"({hint or 'unknown camera or format, or not a RAW file'}); convert it to DNG with Adobe DNG Converter"
            ) from err
        except rawpy.LibRawIOError as err:
            msg = "the file is truncated or unreadable; copy it again"
            raise UserError(f"cannot read camera RAW {path}: {msg}") from err
        except rawpy.LibRawDataError as err:
            raise UserError(f"cannot read camera RAW {path}: the image data are corrupt; copy it again") from err
        except (rawpy.LibRawError, OSError) as err:
            raise UserError(f"cannot read camera RAW {path}: {err}") from err
        yield raw
    finally:
        raw.close()


def _camera_name(path: Path) -> str:
    """The "make model" string from the TIFF tags of TIFF-based RAW formats (DNG, NEF, CR2, ARW, KDC, ...), else ""."""
    try:
        with tifffile.TiffFile(path) as tif:
            tags = tif.pages[0].tags
            make, model, unique = (str(tags[c].value).strip() if c in tags else "" for c in (271, 272, 50708))
    except Exception:  # not TIFF-based (CR3, RAF, ...), or unusual header: the name is optional
        return ""
    if model:
        return model if not make or model.lower().startswith(make.lower()) else f"{make} {model}"
    return unique


def _visible_tile(raw, path: Path) -> tuple[str, dict[str, int]]:
    """CFA pattern of the 2x2 tile at (0, 0) of the visible area and the LibRaw colour index of each canonical site.

    rawpy's ``raw_pattern`` is indexed from the origin of the full sensor array, so the visible area's tile is read
    at offsets (top_margin, left_margin).
    """
    try:
        pattern = raw.raw_pattern
    except NotImplementedError as err:  # a LibRaw filter layout rawpy cannot describe (e.g. Leaf CatchLight)
        raise UserError(f"{path} has an unsupported colour filter layout; a 2x2 RGB Bayer sensor is needed") from err
    if pattern is None or raw.raw_type != rawpy.RawType.Flat:
        raise UserError(
            f"{path} holds an image that is already demosaicked (linear DNG, sRAW or 3-colour sensor data), not a "
            "Bayer mosaic; use the camera's undemosaicked RAW file"
        )
    n = pattern.shape[0]
    if n == XTRANS_PATTERN_SIZE:
        raise UserError(f"{path} comes from an X-Trans sensor (6x6 colour filter); only 2x2 Bayer sensors are usable")
    if raw.num_colors == 1 or n == 1:
        raise UserError(f"{path} comes from a monochrome sensor (no colour filter); a 2x2 Bayer sensor is needed")
    desc = raw.color_desc.decode("ascii", "replace")
    if desc != BAYER_COLOUR_DESC or n % 2:
        raise UserError(f"{path} has an unsupported colour filter ({desc}, {n}x{n} tile); a 2x2 RGB Bayer is needed")
    top, left = raw.sizes.top_margin, raw.sizes.left_margin
    index = np.array([[pattern[(i + top) % n, (j + left) % n] for j in range(n)] for i in range(n)])
    letters = np.array([[desc[k] for k in row] for row in index])
    if not all(letters[i, j] == letters[i % 2, j % 2] for i in range(n) for j in range(n)):
        raise UserError(f"{path} has a {n}x{n} colour filter tile that is not a 2x2 Bayer pattern")
    cfa = "".join(letters[:2, :2].reshape(-1))
    if cfa not in CFA_PATTERNS:
        raise UserError(f"{path} has an unsupported colour filter tile {cfa}; expected {', '.join(CFA_PATTERNS)}")
    offsets = cfa_offsets(cfa)
    return cfa, {k: int(index[offsets[k]]) for k in CANONICAL_CHANNELS}


def _wb_gains(raw) -> np.ndarray | None:
    """As-shot multipliers [R, G, B] / G from LibRaw's ``cam_mul`` (indexed R, G, B, G2), or None if absent."""
    mul = np.asarray(raw.camera_whitebalance[:3], dtype=np.float64)
    if not np.all(np.isfinite(mul)) or np.any(mul <= 0):
        return None
    return mul / mul[1]


def _ccm(raw, path: Path) -> np.ndarray | None:
    """Camera RGB -> linear sRGB (3, 3), the matrix LibRaw renders with, or None where it has none.

    DNGs carry it in ``color_matrix`` (LibRaw derives it from the file's ColorMatrix tags); other cameras get it
    from LibRaw's XYZ -> camera table (``rgb_xyz_matrix``), composed with sRGB -> XYZ, rows normalised to 1, inverted.
    """
    from_file = np.asarray(raw.color_matrix, dtype=np.float64)[:, :3]
    xyz_to_cam = np.asarray(raw.rgb_xyz_matrix, dtype=np.float64)[:3]
    file_ok = np.any(from_file != 0) and np.all(np.isfinite(from_file))
    if file_ok and path.suffix.lower() == ".dng":
        return from_file
    if np.any(xyz_to_cam != 0) and np.all(np.isfinite(xyz_to_cam)):
        with contextlib.suppress(np.linalg.LinAlgError, ValueError, FloatingPointError):
            return np.linalg.inv(srgb_to_cam_from_xyz_to_cam(xyz_to_cam))
    return from_file if file_ok else None


def read_camera_raw(path) -> CameraRaw:
    """Read the Bayer mosaic and metadata of a camera RAW file with rawpy (LibRaw); see :class:`CameraRaw`.

    Raises ``UserError`` naming the file where it is missing, unsupported, truncated or corrupt, where the sensor is
    not a 2x2 RGB Bayer (X-Trans, Foveon, monochrome) or the data are already demosaicked (linear DNG), and where
    its white level does not exceed its black level.
    """
    path = Path(path)
    with _open_raw(path) as raw:
        cfa, colour_index = _visible_tile(raw, path)
        visible = raw.raw_image_visible
        h, w = visible.shape[0] - visible.shape[0] % 2, visible.shape[1] - visible.shape[1] % 2
        if h == 0 or w == 0:
            raise UserError(f"{path} has an empty image area ({visible.shape[1]}x{visible.shape[0]})")
        mosaic = np.array(visible[:h, :w], dtype=np.uint16, copy=True)
        levels = raw.black_level_per_channel
        black = tuple(float(levels[colour_index[k]]) for k in CANONICAL_CHANNELS)
        white = float(raw.white_level)
        wb_gains, ccm, orientation = _wb_gains(raw), _ccm(raw, path), int(raw.sizes.flip)
    if white <= max(black):
        raise UserError(f"{path}: white level {white:g} does not exceed black levels {black}; the file is unusable")
    if orientation & ~LIBRAW_FLIP_BITS:
        orientation = 0  # LibRaw only emits 0..7; anything else is treated as "no rotation"
    return CameraRaw(path, mosaic, cfa, black, white, wb_gains, ccm, orientation, _camera_name(path))


# ----------------------------------------------------------------------------------------------------------------
# Rendering and orientation
# ----------------------------------------------------------------------------------------------------------------


def render_rgb(source, demosaic_algorithm: rawpy.DemosaicAlgorithm | None = None) -> np.ndarray:
    """Render a camera RAW file with LibRaw: (H, W, 3) uint8 sRGB, pixel-aligned with :attr:`CameraRaw.mosaic`.

    ``source``: a path or a :class:`CameraRaw` (its file is decoded again). Camera (as-shot) white balance, LibRaw's
    colour matrix to sRGB primaries, the sRGB transfer curve, no automatic brightening (neither LibRaw's histogram
    brightening nor its raising of the white level to the photo's maximum), highlights clipped, full
    resolution (never half-size), ``demosaic_algorithm`` (default LibRaw's AHD). No orientation is applied
    (``user_flip=0``): the result is in sensor orientation, cropped like the mosaic, so pixel (y, x) of the result
    and of the mosaic see the same scene point; rotate results for viewing with :func:`apply_orientation`.
    Raises ``UserError`` as :func:`read_camera_raw` does, and where LibRaw's output is not the visible area
    (stretched pixel aspect, Fuji SuperCCD).
    """
    if isinstance(source, CameraRaw):
        path, size = source.path, source.size
    else:
        path, size = Path(source), None
    with _open_raw(path) as raw:
        if size is None:
            _visible_tile(raw, path)  # same refusals as read_camera_raw
            vh, vw = raw.sizes.height, raw.sizes.width
            size = (vh - vh % 2, vw - vw % 2)
        try:
            rgb = raw.postprocess(
                demosaic_algorithm=demosaic_algorithm,
                half_size=False,
                use_camera_wb=True,
                no_auto_bright=True,
                output_color=rawpy.ColorSpace.sRGB,
                output_bps=RENDER_BITS,
                gamma=SRGB_GAMMA_LIBRAW,
                user_flip=0,
                adjust_maximum_thr=ADJUST_MAXIMUM_THR,
            )
        except (rawpy.LibRawError, OSError) as err:
            raise UserError(f"cannot render camera RAW {path}: {err}") from err
    h, w = size
    if rgb.shape[0] < h or rgb.shape[1] < w:
        raise UserError(
            f"cannot render {path} pixel-aligned with its mosaic: LibRaw output is {rgb.shape[1]}x{rgb.shape[0]}, "
            f"the mosaic {w}x{h} (width x height)"
        )
    return np.ascontiguousarray(rgb[:h, :w])


def _check_flip(flip: int) -> int:
    flip = int(flip)
    if flip & ~LIBRAW_FLIP_BITS:
        raise ValueError(f"orientation must be a LibRaw flip code 0..7, got {flip}")
    return flip


def _flip(x, axis: int):
    return torch.flip(x, dims=(axis,)) if isinstance(x, torch.Tensor) else np.flip(x, axis=axis)


def _swap(x, a: int, b: int):
    return torch.transpose(x, a, b) if isinstance(x, torch.Tensor) else np.swapaxes(x, a, b)


def apply_orientation(array, flip: int, axes: tuple[int, int] = (0, 1)):
    """Turn an image from sensor orientation to viewing orientation (LibRaw/dcraw ``flip`` semantics).

    ``array``: numpy array or torch tensor whose rows and columns are ``axes`` (default (0, 1) for (H, W[, C]);
    use (-2, -1) for (..., C, H, W)). ``flip``: :attr:`CameraRaw.orientation`; 0 none, 3 rotate 180, 6 rotate 90
    clockwise, 5 rotate 90 counter-clockwise, and mirrored variants 1, 2, 4, 7 (bit 0 mirrors columns, bit 1 rows,
    bit 2 then transposes). Returns a view where possible (numpy); call ``np.ascontiguousarray`` before saving.
    """
    flip = _check_flip(flip)
    rows, cols = axes
    if flip & FLIP_MIRROR_ROWS:
        array = _flip(array, rows)
    if flip & FLIP_MIRROR_COLUMNS:
        array = _flip(array, cols)
    if flip & FLIP_TRANSPOSE:
        array = _swap(array, rows, cols)
    return array


def undo_orientation(array, flip: int, axes: tuple[int, int] = (0, 1)):
    """Inverse of :func:`apply_orientation`: viewing orientation -> sensor orientation."""
    flip = _check_flip(flip)
    rows, cols = axes
    if flip & FLIP_TRANSPOSE:
        array = _swap(array, rows, cols)
    if flip & FLIP_MIRROR_COLUMNS:
        array = _flip(array, cols)
    if flip & FLIP_MIRROR_ROWS:
        array = _flip(array, rows)
    return array


# ----------------------------------------------------------------------------------------------------------------
# JPEG partners
# ----------------------------------------------------------------------------------------------------------------


def _fit_axis(img: np.ndarray, target: int, axis: int) -> np.ndarray:
    """Centre-crop or edge-pad ``img`` along ``axis`` (0 or 1) to ``target`` pixels."""
    size = img.shape[axis]
    if size > target:
        start = (size - target) // 2
        return img[start : start + target] if axis == 0 else img[:, start : start + target]
    if size < target:
        before = (target - size) // 2
        pad = [(0, 0)] * img.ndim
        pad[axis] = (before, target - size - before)
        return np.pad(img, pad, mode="edge")
    return img


def _grey_thumbnail(grey: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Box-filter a float (H, W) image to ``size`` (h, w)."""
    img = Image.fromarray(np.ascontiguousarray(grey, dtype=np.float32))  # mode "F"
    return np.asarray(img.resize((size[1], size[0]), Image.Resampling.BOX), dtype=np.float64)


def _raw_grey(raw: CameraRaw) -> np.ndarray:
    """Grey preview (H/2, W/2) of the mosaic: white balanced, clipped to [0, 1], gamma 2.2 encoded."""
    packed = raw.packed()
    gains = raw.wb_gains if raw.wb_gains is not None else np.ones(3)
    grey = (packed[0] * gains[0] + (packed[1] + packed[2]) / 2 * gains[1] + packed[3] * gains[2]) / 3
    return np.clip(grey, 0.0, 1.0) ** (1 / PREVIEW_GAMMA)


def photo_correlation(rgb_u8: np.ndarray, raw: CameraRaw) -> float | None:
    """How much ``rgb_u8`` ((H, W, 3) uint8 at the mosaic size, sensor orientation) looks like the RAW's photo.

    Pearson correlation in [-1, 1] of band-passed grey thumbnails (long side :data:`BELONG_THUMB_LONG_SIDE`) of the
    image and of the white-balanced mosaic; None where either is flat (no evidence either way).
    """
    h, w = raw.size
    scale = min(BELONG_THUMB_LONG_SIDE / max(h, w), BELONG_MAX_THUMB_SCALE)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    thumbs = (
        _grey_thumbnail(rgb_u8.astype(np.float32).mean(axis=-1) / RGB_MAX, size),
        _grey_thumbnail(_raw_grey(raw), size),
    )
    a, b = (t - gaussian_filter(t, BELONG_HIGHPASS_SIGMA, mode="nearest") for t in thumbs)
    a, b = a.ravel(), b.ravel()
    if a.std() < BELONG_MIN_STD or b.std() < BELONG_MIN_STD:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def load_jpeg_partner(jpeg_path, raw: CameraRaw) -> np.ndarray:
    """The camera JPEG of ``raw`` as (H, W, 3) uint8 sRGB aligned with ``raw.mosaic`` (same size, sensor orientation).

    Steps: read, apply the JPEG's EXIF orientation (viewing orientation), undo the RAW's orientation (sensor
    orientation), then match the mosaic size: within :data:`JPEG_SAME_SCALE_TOL` (or :data:`JPEG_SAME_SCALE_TOL_PX`)
    of it per side, centre-crop or edge-pad (cameras crop a few pixels differently); otherwise resize (Lanczos) by
    one factor so that it covers the mosaic, then centre-crop. No sub-pixel registration is done.
    Raises ``UserError`` "the JPEG X does not belong to RAW Y" where the aspect ratios differ by more than
    :data:`JPEG_MAX_ASPECT_DIFF` or :func:`photo_correlation` is below :data:`BELONG_MIN_CORRELATION` (another
    photo, or a wrong orientation).
    """
    jpeg_path = Path(jpeg_path)
    rgb = np.ascontiguousarray(undo_orientation(read_rgb(jpeg_path, exif_orientation=True), raw.orientation))
    (h, w), (jh, jw) = raw.size, rgb.shape[:2]
    mismatch = f"the JPEG {jpeg_path} does not belong to RAW {raw.path}"
    aspect_diff = abs((jw / jh) / (w / h) - 1)
    if aspect_diff > JPEG_MAX_ASPECT_DIFF:
        raise UserError(
            f"{mismatch}: it is {jw}x{jh} (width x height, sensor orientation), the RAW {w}x{h}; aspect ratios differ "
            f"by {aspect_diff:.1%} (at most {JPEG_MAX_ASPECT_DIFF:.0%} allowed)"
        )
    same_scale = all(
        abs(n - jn) <= max(JPEG_SAME_SCALE_TOL_PX, JPEG_SAME_SCALE_TOL * n) for n, jn in ((h, jh), (w, jw))
    )
    if not same_scale:
        scale = max(h / jh, w / jw)
        new_size = (max(w, round(jw * scale)), max(h, round(jh * scale)))
        rgb = np.asarray(Image.fromarray(rgb).resize(new_size, Image.Resampling.LANCZOS), dtype=np.uint8)
    rgb = np.ascontiguousarray(_fit_axis(_fit_axis(rgb, h, 0), w, 1))
    corr = photo_correlation(rgb, raw)
    if corr is not None and corr < BELONG_MIN_CORRELATION:
        raise UserError(
            f"{mismatch}: their details correlate at {corr:.2f} (< {BELONG_MIN_CORRELATION}): it shows another photo "
            "or is rotated differently; pair each RAW with the JPEG the camera saved with it (same file stem)"
        )
    return rgb
