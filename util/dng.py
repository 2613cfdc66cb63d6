"""DNG files: a camera photo's Bayer mosaic with new values, written with the metadata of the photo's RAW file.

``remove_reflection.py --raw_out`` gives a photographer their photo back as a RAW file (``<stem>_T.dng``) that their
RAW developer (darktable, RawTherapee, Lightroom) opens like the original. :func:`read_source_metadata` collects what
the original says beyond its pixels; :func:`write_dng` writes a mosaic with it, with pidng (uncompressed 16-bit, one
tile, no preview image). What is carried over:

* **Mosaic geometry**: the caller's mosaic at full sensor resolution (LibRaw's visible area, as
  :func:`data.camera_raw.read_camera_raw` reads it), its CFA pattern, per-site black levels and white level, the
  orientation (LibRaw ``flip`` -> TIFF Orientation), and a DNG source's DefaultCrop (so developers crop alike).
* **Colour**: a DNG source's own colour tags, copied value for value (:data:`COPIED_COLOUR_TAGS`: ColorMatrix1/2,
  CameraCalibration1/2, illuminants, AnalogBalance, ForwardMatrix1/2, BaselineExposure, profile tags), and its
  AsShotNeutral. Other formats get LibRaw's XYZ -> camera matrix of the camera (Adobe's D65 matrices) as
  ColorMatrix1 (D65), or, for a camera LibRaw has no such matrix for (the Kodak DC50 KDC of ``../shared/data``: LibRaw
  renders it with a matrix from the file's Kodak tags, which rawpy does not expose), the matrix LibRaw renders the
  file with, measured from two of its renderings (:func:`measured_render_matrix`). The as-shot white balance is
  LibRaw's ``camera_whitebalance`` as AsShotNeutral. A linearisation table is not copied: the mosaic is written as
  LibRaw delivers it, already linearised.
* **EXIF**, in an EXIF IFD as cameras write it: make, model, exposure time, f-number, ISO, focal length and
  capture date (LibRaw's reading of the source, so every format LibRaw reads has them), and the capture date also
  as the TIFF DateTime.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
import rawpy
import tifffile

from util.errors import UserError
from util.files import atomic_write_bytes
from util.isp import CFA_PATTERNS, XYZ_TO_SRGB

# LibRaw/dcraw ``flip`` (bit 0 mirror columns, bit 1 mirror rows, bit 2 transpose) -> TIFF Orientation 1..8
LIBRAW_FLIP_TO_TIFF_ORIENTATION = {0: 1, 1: 2, 3: 3, 2: 4, 4: 5, 6: 6, 7: 7, 5: 8}
TIFF_DNG_VERSION = 50706
TIFF_NEW_SUBFILE_TYPE = 254
TIFF_PHOTOMETRIC_CFA = 32803
TIFF_DATETIME_FORMAT = "%Y:%m:%d %H:%M:%S"
EXIF_VERSION = b"0230"  # EXIF 2.3
ILLUMINANT_D65 = 21  # EXIF LightSource code of CalibrationIlluminant1 for a D65 matrix
MATRIX_DENOMINATOR = 10_000  # SRATIONAL denominator of the matrices we compute (Adobe's own files use 10000)
RATIONAL_MAX_DENOMINATOR = 1_000_000  # other rationals: closest fraction with a denominator at most this
SHORT_MAX = 65535  # TIFF SHORT; an ISO above it is written as 65535 (the EXIF convention for "at least")
# DNG colour and profile tags copied from a DNG source, by pidng ``Tag`` name (the ones pidng can write)
COPIED_COLOUR_TAGS = (
    "ColorMatrix1", "ColorMatrix2", "CameraCalibration1", "CameraCalibration2", "CalibrationIlluminant1",
    "CalibrationIlluminant2", "AnalogBalance", "ForwardMatrix1", "ForwardMatrix2", "BaselineExposure",
    "BaselineExposureOffset", "BaselineNoise", "BaselineSharpness", "LinearResponseLimit", "DefaultBlackRender",
    "CameraCalibrationSignature", "ProfileCalibrationSignature", "ProfileName", "ProfileEmbedPolicy",
    "ProfileHueSatMapDims", "ProfileHueSatMapData1", "ProfileHueSatMapData2", "ProfileToneCurve",
)  # fmt: skip
# measured_render_matrix: LibRaw's linear 16-bit renderings, pixels strictly inside (0, 65535) in both
RENDER_MAX = 65535
MIN_FIT_PIXELS = 64
MIN_MATRIX_DET = 1e-6  # a fitted matrix closer to singular than this is not used


@dataclass(frozen=True, eq=False)
class DngSource:
    """What a DNG of a photo keeps from the photo's RAW file besides the pixels (see the module docstring).

    ``colour``: pidng ``Tag`` name -> value in pidng's form (rationals as ``[numerator, denominator]`` pairs), written
    as they are; always holds ColorMatrix1 and CalibrationIlluminant1, and AsShotNeutral where the source records a
    white balance. ``exposure_time``, ``f_number``, ``focal_length`` (mm), ``iso``: None where the source says
    nothing. ``default_crop``: (x, y, width, height) in mosaic pixels, or None. ``render_matrix``: (3, 3) camera RGB
    (white balanced) -> linear sRGB that LibRaw renders the source with, where rawpy does not expose it and it was
    measured (:func:`measured_render_matrix`), else None.
    """

    path: Path
    make: str = ""
    model: str = ""
    unique_camera_model: str = ""
    colour: dict = field(default_factory=dict)
    exposure_time: float | None = None
    f_number: float | None = None
    iso: float | None = None
    focal_length: float | None = None
    capture_time: dt.datetime | None = None
    default_crop: tuple[int, int, int, int] | None = None
    render_matrix: np.ndarray | None = None


def _pidng():
    """pidng's core and dng modules; a one-line ``UserError`` where it is not installed."""
    try:
        from pidng import core, dng
    except ImportError as err:
        raise UserError(
            "writing DNG files needs pidng: pip install pidng==4.0.9 (see requirements.txt; it compiles a small C "
            "extension, so a C compiler must be present)"
        ) from err
    return core, dng


def check_dng_writer() -> None:
    """Raise the one-line ``UserError`` of a missing pidng now (before any inference), not at the first DNG."""
    _pidng()


# ----------------------------------------------------------------------------------------------------------------
# Reading the source's metadata
# ----------------------------------------------------------------------------------------------------------------


def _rational_pairs(value, source_rational: bool, signed: bool) -> list[list[int]]:
    """A tag value as pidng's ``[[numerator, denominator], ...]``: rationals kept exactly, numbers approximated."""
    flat = list(np.ravel(value)) if not isinstance(value, (int, float)) else [value]
    if source_rational:
        return [[int(n), int(d)] for n, d in zip(flat[0::2], flat[1::2], strict=True)]
    pairs = []
    for v in flat:
        f = Fraction(float(v)).limit_denominator(RATIONAL_MAX_DENOMINATOR)
        if not signed and f < 0:
            raise ValueError(f"negative value {v} for an unsigned rational")
        pairs.append([f.numerator, f.denominator])
    return pairs


def _pidng_value(tag_name: str, tiff_tag: tuple) -> list | str:
    """A tag value read by tifffile, ``(value, TIFF type code)``, in the form pidng's ``DNGTags.set`` takes for the
    pidng tag ``tag_name``."""
    core, dng = _pidng()
    kind = getattr(core.Tag, tag_name)[1]
    value, dtype = tiff_tag
    source_rational = dtype in (5, 10)  # TIFF RATIONAL, SRATIONAL
    if kind in (dng.Type.Rational, dng.Type.Srational):
        return _rational_pairs(value, source_rational, signed=kind == dng.Type.Srational)
    if kind == dng.Type.Ascii:
        return _ascii(value)
    if isinstance(value, bytes):
        return list(value)
    flat = np.ravel(np.asarray(value, dtype=np.float64))
    if source_rational:
        flat = flat[0::2] / flat[1::2]
    if kind in (dng.Type.Float, dng.Type.Double):
        return [float(v) for v in flat]
    return [int(round(v)) for v in flat]


def _ascii(text) -> str:
    """pidng writes 7-bit ASCII only: other characters become ``?``; NULs and surrounding blanks are dropped."""
    if isinstance(text, bytes):
        text = text.decode("latin-1")
    return str(text).replace("\x00", "").strip().encode("ascii", "replace").decode("ascii")


def _raw_ifd(tif: tifffile.TiffFile):
    """The IFD that holds a DNG's Bayer mosaic: IFD0, or one of its SubIFDs (NewSubfileType 0, CFA); else None."""
    first = tif.pages[0]
    candidates = [first]
    if first.pages is not None:  # SubIFDs
        first.pages.useframes = False  # full pages, with their tags
        candidates += list(first.pages)
    for page in candidates:
        tags = page.tags
        subfile = tags[TIFF_NEW_SUBFILE_TYPE].value if TIFF_NEW_SUBFILE_TYPE in tags else 0
        if int(subfile) == 0 and page.photometric == TIFF_PHOTOMETRIC_CFA:
            return page
    return None


def _read_tiff_tags(path: Path) -> tuple[dict, bool, tuple | None]:
    """IFD0 tags (name -> (value, TIFF type code)), whether the file is a DNG, and a DNG's DefaultCrop values.

    Formats that are not TIFF-based (CR3, RAF, ...) give ({}, False, None): their metadata then come from LibRaw.
    """
    try:
        with tifffile.TiffFile(path) as tif:
            ifd0 = tif.pages[0]
            tags = {tag.name: (tag.value, int(tag.dtype)) for tag in ifd0.tags.values()}
            is_dng = TIFF_DNG_VERSION in ifd0.tags
            crop = None
            if is_dng:
                try:
                    raw_ifd = _raw_ifd(tif)
                    if raw_ifd is not None and all(n in raw_ifd.tags for n in ("DefaultCropOrigin", "DefaultCropSize")):
                        crop = (raw_ifd.tags["DefaultCropOrigin"].value, raw_ifd.tags["DefaultCropSize"].value)
                except Exception:  # an unusual SubIFD layout: the crop is optional
                    crop = None
            return tags, is_dng, crop
    except Exception:  # not TIFF-based, or a header tifffile does not follow: LibRaw's reading stands alone
        return {}, False, None


def _number_pair(value) -> tuple[float, float]:
    """(x, y) of a DefaultCrop tag: two SHORT/LONG numbers or two RATIONALs."""
    flat = [float(v) for v in np.ravel(value)]
    if len(flat) == 4:
        return flat[0] / flat[1], flat[2] / flat[3]
    return flat[0], flat[1]


def _default_crop(crop, size: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """A DNG source's DefaultCrop as (x, y, width, height) inside a mosaic of ``size`` (H, W), or None."""
    if crop is None:
        return None
    (x, y), (cw, ch) = (_number_pair(v) for v in crop)
    h, w = size
    x, y = int(round(x)), int(round(y))
    cw, ch = min(int(round(cw)), w - x), min(int(round(ch)), h - y)
    if x < 0 or y < 0 or cw <= 0 or ch <= 0:
        return None
    return x, y, cw, ch


def _matrix_srational(matrix: np.ndarray) -> list[list[int]]:
    return [[int(round(v * MATRIX_DENOMINATOR)), MATRIX_DENOMINATOR] for v in np.ravel(matrix)]


def measured_render_matrix(raw: rawpy.RawPy) -> np.ndarray | None:
    """The (3, 3) camera RGB (white balanced) -> linear sRGB matrix that LibRaw renders ``raw`` with, or None.

    rawpy exposes the matrices LibRaw derives from its table or a DNG's tags, not one it reads from maker tags
    (Kodak's). This renders the photo at half size twice, linear 16-bit with the camera white balance, in sRGB and
    in the camera's own colours, and fits the matrix between them by least squares over the pixels that neither
    rendering clips. Its rows sum to 1 (white stays white) where LibRaw's does.
    """
    common = dict(half_size=True, use_camera_wb=True, no_auto_bright=True, output_bps=16, gamma=(1, 1), user_flip=0)
    srgb = raw.postprocess(output_color=rawpy.ColorSpace.sRGB, **common).reshape(-1, 3).astype(np.float64)
    cam = raw.postprocess(output_color=rawpy.ColorSpace.raw, **common).reshape(-1, 3).astype(np.float64)
    inside = np.all((srgb > 0) & (srgb < RENDER_MAX) & (cam > 0) & (cam < RENDER_MAX), axis=1)
    if inside.sum() < MIN_FIT_PIXELS:
        return None
    matrix, *_ = np.linalg.lstsq(cam[inside], srgb[inside], rcond=None)
    return matrix.T


def _other_format_colour(raw: rawpy.RawPy) -> tuple[np.ndarray, np.ndarray | None]:
    """ColorMatrix1 (XYZ -> camera, D65) of a source that is not a DNG, and the measured render matrix or None.

    LibRaw's (Adobe's) D65 matrix of the camera where LibRaw has one: the one it renders the source with. Otherwise
    the matrix LibRaw renders with is measured (:func:`measured_render_matrix`) and written so that D65 white maps to
    camera (1, 1, 1), the camera's white-balanced space in which LibRaw applies it; where even that fails, camera RGB
    is taken as linear sRGB.
    """
    table = np.asarray(raw.rgb_xyz_matrix, dtype=np.float64)[:3]
    if np.any(table != 0) and np.all(np.isfinite(table)):
        return table, None
    try:
        render = measured_render_matrix(raw)
    except (rawpy.LibRawError, OSError):  # the file was read and rendered before: not expected, and not fatal here
        render = None
    if render is None or not np.all(np.isfinite(render)) or abs(np.linalg.det(render)) < MIN_MATRIX_DET:
        return XYZ_TO_SRGB, None
    return np.linalg.inv(render) @ XYZ_TO_SRGB, render


def _libraw_exif(raw: rawpy.RawPy) -> dict:
    other = getattr(raw, "other", None)  # rawpy >= 0.22
    if other is None:
        return {}

    def positive(v):
        v = float(v)
        return v if np.isfinite(v) and v > 0 else None

    try:
        when = other.timestamp
        if when is not None and when.timestamp() <= 0:  # LibRaw's 0: no date
            when = None
    except (ValueError, OverflowError, OSError):  # a date the platform cannot represent: left out
        when = None
    return dict(exposure_time=positive(other.shutter_speed), f_number=positive(other.aperture),
                iso=positive(other.iso_speed), focal_length=positive(other.focal_length), capture_time=when)


# shot_exif: EXIF tags of an RGB result (first IFD: make, model, orientation, date; EXIF IFD: exposure time, f-number,
# ISO, date taken, focal length, pixel dimensions)
EXIF_MAKE, EXIF_MODEL, EXIF_ORIENTATION, EXIF_DATETIME, EXIF_IFD = 271, 272, 274, 306, 0x8769
EXIF_EXPOSURE_TIME, EXIF_F_NUMBER, EXIF_ISO, EXIF_FOCAL_LENGTH = 33434, 33437, 34855, 37386
EXIF_DATETIME_ORIGINAL, EXIF_PIXEL_X, EXIF_PIXEL_Y = 36867, 40962, 40963


def shot_exif(source: DngSource, size: tuple[int, int]) -> bytes | None:
    """EXIF for an RGB result (PNG, JPEG) of the photo that ``source`` describes, an upright image of ``size``
    (width, height): make, model, capture date, exposure time, f-number, ISO and focal length where the RAW file
    records them (LibRaw's reading, so every format LibRaw reads), orientation 1. None where it records none."""
    from PIL import Image

    exif = Image.Exif()
    for tag, value in ((EXIF_MAKE, source.make), (EXIF_MODEL, source.model)):
        if value:
            exif[tag] = value
    shot = {EXIF_EXPOSURE_TIME: source.exposure_time, EXIF_F_NUMBER: source.f_number, EXIF_FOCAL_LENGTH:
            source.focal_length, EXIF_ISO: None if source.iso is None else min(round(source.iso), SHORT_MAX)}
    shot = {tag: value for tag, value in shot.items() if value is not None}
    if source.capture_time is not None:
        exif[EXIF_DATETIME] = shot[EXIF_DATETIME_ORIGINAL] = source.capture_time.strftime(TIFF_DATETIME_FORMAT)
    if not len(exif) and not shot:
        return None
    exif[EXIF_ORIENTATION] = 1
    sub = exif.get_ifd(EXIF_IFD)
    sub.update(shot)
    sub[EXIF_PIXEL_X], sub[EXIF_PIXEL_Y] = size
    return exif.tobytes()


def read_source_metadata(path, size: tuple[int, int], colour_tags: bool = True) -> DngSource:
    """What a DNG of the photo at ``path`` carries besides its pixels; ``size``: (H, W) of the mosaic to write.
    ``colour_tags=False``: the camera and the shot only (enough for :func:`shot_exif`), no ``colour``: for a camera
    LibRaw has no matrix for, the colour tags cost two renderings of the photo.

    Raises ``UserError`` naming the file where LibRaw cannot open it.
    """
    path = Path(path)
    raw = rawpy.RawPy()
    try:
        try:
            raw.open_file(str(path))
        except (rawpy.LibRawError, OSError) as err:
            raise UserError(f"cannot read the metadata of camera RAW {path}: {err}") from err
        tags, is_dng, crop = _read_tiff_tags(path)
        make, model, unique = (_ascii(tags[n][0]) if n in tags else "" for n in ("Make", "Model", "UniqueCameraModel"))
        colour, render_matrix = {}, None
        if colour_tags:
            if is_dng:
                for name in COPIED_COLOUR_TAGS:
                    if name in tags:
                        colour[name] = _pidng_value(name, tags[name])
            if "ColorMatrix1" not in colour:
                xyz_to_camera, render_matrix = _other_format_colour(raw)
                colour["ColorMatrix1"] = _matrix_srational(xyz_to_camera)
                colour["CalibrationIlluminant1"] = [ILLUMINANT_D65]
                for name in ("ColorMatrix2", "CalibrationIlluminant2", "CameraCalibration1", "CameraCalibration2",
                             "ForwardMatrix1", "ForwardMatrix2"):
                    colour.pop(name, None)  # they would not match the matrix written
            if is_dng and "AsShotNeutral" in tags:
                colour["AsShotNeutral"] = _pidng_value("AsShotNeutral", tags["AsShotNeutral"])
            else:
                mul = np.asarray(raw.camera_whitebalance[:3], dtype=np.float64)
                if np.all(np.isfinite(mul)) and np.all(mul > 0):
                    colour["AsShotNeutral"] = _rational_pairs(mul[1] / mul, source_rational=False, signed=False)
        exif = _libraw_exif(raw)
    finally:
        raw.close()
    if not unique:
        unique = f"{make} {model}".strip() if not model.lower().startswith(make.lower()) else model
    return DngSource(path, make, model, unique or "Unknown camera", colour, default_crop=_default_crop(crop, size),
                     render_matrix=render_matrix, **exif)


# ----------------------------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------------------------


def _sub_ifd_tag(dng, tag, ifd):
    """pidng's tag that points to a sub-IFD (the EXIF IFD). pidng 4.0.9 lays sub-IFDs out and writes them, but its
    ``dngTag`` fails to build one (``setValue`` adds bytes to a str); this sets that placeholder as bytes."""

    class SubIfdTag(dng.dngTag):
        def setValue(self, value):
            self.Value = b"\x00" * 4
            self.subIFD = value[0]

    return SubIfdTag(tag, [ifd])


def _exif_ifd(source: DngSource, core, dng):
    """pidng IFD of the EXIF tags that the source has (None where it has none)."""
    Tag = core.Tag
    entries = []
    if source.exposure_time is not None:
        entries.append((Tag.ExposureTime, _rational_pairs(source.exposure_time, False, signed=False)))
    if source.f_number is not None:
        entries.append((Tag.FNumber, _rational_pairs(source.f_number, False, signed=False)))
    if source.iso is not None:
        entries.append((Tag.PhotographicSensitivity, [min(int(round(source.iso)), SHORT_MAX)]))
    if source.capture_time is not None:
        entries.append((Tag.DateTimeOriginal, source.capture_time.strftime(TIFF_DATETIME_FORMAT)))
    if source.focal_length is not None:
        entries.append((Tag.FocalLength, _rational_pairs(source.focal_length, False, signed=False)))
    if not entries:
        return None
    ifd = dng.dngIFD()
    ifd.tags = [dng.dngTag(tag, value) for tag, value in [(Tag.ExifVersion, list(EXIF_VERSION)), *entries]]
    return ifd


def write_dng(path, mosaic: np.ndarray, cfa: str, black_by_site, white: float, orientation: int, source: DngSource,
              description: str = "") -> Path:
    """Write ``mosaic`` as a DNG at ``path`` (whole or not at all) with ``source``'s metadata; returns ``path``.

    ``mosaic``: (H, W) uint16, H and W even, sensor orientation; ``cfa``: its 2x2 tile at (0, 0), one of
    :data:`util.isp.CFA_PATTERNS`; ``black_by_site``: the 4 black levels of that tile read row by row (DNG
    BlackLevel with BlackLevelRepeatDim 2x2), ``white``: the white level, both in the mosaic's counts;
    ``orientation``: LibRaw ``flip`` (0..7). ``description`` goes into ImageDescription. A full disk or a missing
    permission is a one-line ``UserError`` naming ``path``.
    """
    core, dng = _pidng()
    mosaic = np.asarray(mosaic)
    if mosaic.dtype != np.uint16 or mosaic.ndim != 2 or mosaic.shape[0] % 2 or mosaic.shape[1] % 2:
        raise ValueError(f"write_dng needs an even-sized (H, W) uint16 mosaic, got {mosaic.dtype} {mosaic.shape}")
    if cfa not in CFA_PATTERNS:
        raise ValueError(f"unknown CFA pattern {cfa!r}; expected one of {', '.join(CFA_PATTERNS)}")
    black = [int(round(b)) for b in black_by_site]
    if len(black) != 4 or min(black) < 0 or not max(black) < white <= SHORT_MAX:
        raise ValueError(f"black levels {black} and white level {white} must satisfy 0 <= black < white <= 65535")
    h, w = mosaic.shape
    Tag = core.Tag
    tags = core.DNGTags()
    entries = [
        (Tag.ImageWidth, w), (Tag.ImageLength, h), (Tag.TileWidth, w), (Tag.TileLength, h),
        (Tag.BitsPerSample, 16), (Tag.SamplesPerPixel, 1), (Tag.PhotometricInterpretation, TIFF_PHOTOMETRIC_CFA),
        (Tag.Orientation, LIBRAW_FLIP_TO_TIFF_ORIENTATION[int(orientation)]),
        (Tag.CFARepeatPatternDim, [2, 2]), (Tag.CFAPattern, ["RGB".index(c) for c in cfa]),  # TIFF/EP: R 0, G 1, B 2
        (Tag.BlackLevelRepeatDim, [2, 2]), (Tag.BlackLevel, black), (Tag.WhiteLevel, int(round(white))),
        (Tag.UniqueCameraModel, _ascii(source.unique_camera_model) or "Unknown camera"),
    ]  # fmt: skip
    entries += [(getattr(Tag, name), value) for name, value in source.colour.items()]
    if source.make:
        entries.append((Tag.Make, _ascii(source.make)))
    if source.model:
        entries.append((Tag.Model, _ascii(source.model)))
    if source.capture_time is not None:
        entries.append((Tag.DateTime, source.capture_time.strftime(TIFF_DATETIME_FORMAT)))
    if description:
        entries.append((Tag.ImageDescription, _ascii(description)))
    if source.default_crop is not None:
        x, y, cw, ch = source.default_crop
        entries += [(Tag.DefaultCropOrigin, [x, y]), (Tag.DefaultCropSize, [cw, ch])]
    for tag, value in entries:
        tags.set(tag, value)
    exif = _exif_ifd(source, core, dng)
    if exif is not None:
        tags.__tags__[Tag.EXIF_IFD] = _sub_ifd_tag(dng, Tag.EXIF_IFD, exif)  # DNGTags.set cannot build it
    writer = core.RAW2DNG()
    writer.options(tags, path="", compress=False)
    data = bytes(writer.convert(np.ascontiguousarray(mosaic)))  # no file name: pidng returns the file's bytes
    return atomic_write_bytes(path, data)
