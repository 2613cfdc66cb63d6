"""Image files and 8-bit images: the one RGB reader and writer, the one quantiser, and the one pairing of files by stem.

* :func:`read_rgb`: an 8-bit photo or result as ``np.uint8`` (H, W, 3); every unreadable or unsuitable file is a
  :class:`util.errors.UserError` naming it (``cannot read image <path>: ...``).
* :func:`read_photo`: a photo of 8 or 16 bits per sample as float32 in [0, 1] at its full precision (a photographer's
  16-bit TIFF or PNG export for ``remove_reflection.py``).
* :func:`write_rgb` / :func:`write_rgb16`: 8-bit images in the format of the extension, 16-bit RGB TIFFs; written
  whole or not at all (:func:`util.files.atomic_write`).
* :func:`quantize` / :func:`to_uint8`: float sRGB in [0, 1] to 8 bits as ``x.clamp(0, 1).mul(255).round().byte()``,
  the images that are saved and scored; :func:`to_uint16` the same to 16 bits.
* :func:`files_by_stem`: the files of a folder keyed by stem; pairs (RGB + RAW, result + reference, RAW + JPEG) are
  matched by file stem, never by sorted position.

16-bit Bayer mosaics and camera RAW files are read in :mod:`data.image_io`.
"""

from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, overload

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from util.errors import UserError
from util.files import atomic_write, link_problem

RGB_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
UINT8_MAX = 255  # the top code of 8-bit images (quantize)
UINT16_MAX = 65535  # the top code of 16-bit images and mosaics (to_uint16)
# Pillow modes of 8-bit images, expanded to RGB by read_rgb (alpha dropped, grey and palette to 3 channels)
PIL_8BIT_MODES = ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "La")


# ---------------------------------------------------------------------------------------------------- quantisation


def quantize(x: torch.Tensor) -> torch.Tensor:
    """Float sRGB in [0, 1] (any shape; values outside are clamped) -> uint8 of the same shape:
    ``x.clamp(0, 1).mul(255).round().byte()``, the repository's one 8-bit quantisation."""
    return x.clamp(0, 1).mul(UINT8_MAX).round().byte()


def _float_chw(image) -> torch.Tensor:
    """A float image as a CPU tensor (3, H, W): torch (3, H, W) or (1, 3, H, W), or numpy (H, W, 3)."""
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected a numpy (H, W, 3) image, got shape {image.shape}")
        tensor = torch.from_numpy(image).permute(2, 0, 1)
    elif isinstance(image, torch.Tensor):
        tensor = image[0] if image.ndim == 4 and image.shape[0] == 1 else image
        if tensor.ndim != 3 or tensor.shape[0] != 3:
            raise ValueError(f"expected a (3, H, W) or (1, 3, H, W) tensor, got shape {tuple(image.shape)}")
    else:
        raise TypeError(f"expected a torch.Tensor or numpy.ndarray, got {type(image).__name__}")
    if not tensor.is_floating_point():
        raise ValueError(f"expected a float image in [0, 1], got dtype {tensor.dtype}")
    return tensor.detach().cpu()


def to_uint8(image) -> np.ndarray:
    """Quantise a float image to (H, W, 3) uint8 exactly as the repository saves it (:func:`quantize`).

    ``image``: torch float tensor (3, H, W) or (1, 3, H, W), or numpy float array (H, W, 3); sRGB in [0, 1]
    (values outside are clamped). Computed in the input's own float type.
    """
    return quantize(_float_chw(image)).permute(1, 2, 0).contiguous().numpy()


def to_uint16(image) -> np.ndarray:
    """Quantise a float image to (H, W, 3) uint16 for 16-bit files (``remove_reflection.py --format tiff16``).

    Same inputs as :func:`to_uint8`; quantisation ``x.clamp(0, 1).mul(65535).round()`` in float64, so an 8-bit value
    v / 255 becomes exactly v * 257.
    """
    quantised = _float_chw(image).double().clamp(0, 1).mul(UINT16_MAX).round().to(torch.int32)
    return quantised.permute(1, 2, 0).contiguous().numpy().astype(np.uint16)


# ---------------------------------------------------------------------------------------------------- reading


def read_rgb(path, *, rgb_only: bool = False, exif_orientation: bool = False) -> np.ndarray:
    """Read an 8-bit photo as a writable ``np.uint8`` (H, W, 3): alpha dropped, grey and palette expanded to RGB.

    ``rgb_only``: refuse every mode but 8-bit RGB (results as test.py saves them, for ``python -m util.metrics``).
    ``exif_orientation``: apply the file's EXIF orientation (the viewing orientation of a camera JPEG).
    A missing, empty, unreadable or truncated file, a 16-bit (RGB, RGBA, grey) or float image, and a decompression
    bomb (more pixels than twice Pillow's ``Image.MAX_IMAGE_PIXELS``) raise ``UserError`` naming the file: nothing is
    reduced to 8 bits behind the user's back. Between Pillow's limit and twice it, one ``warning:`` line naming the
    file goes to stderr and the image is read.
    """
    path = _existing_file(path)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", Image.DecompressionBombWarning)
            rgb = _decode_rgb(path, rgb_only, exif_orientation)
    except UserError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        unidentified = isinstance(err, UnidentifiedImageError)
        raise UserError((unidentified and raw_in_disguise(path, None)) or f"cannot read image {path}: {err}") from err
    for warning in caught:
        if issubclass(warning.category, Image.DecompressionBombWarning):
            print(f"warning: {path}: {warning.message}", file=sys.stderr)
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return np.ascontiguousarray(rgb)


def _decode_rgb(path: Path, rgb_only: bool, exif_orientation: bool) -> np.ndarray:
    with Image.open(path) as img:
        mode = img.mode
        if img.format == "TIFF" and (problem := raw_in_disguise(path, img.size)):
            raise UserError(problem)
        if mode not in PIL_8BIT_MODES:
            raise UserError(
                f"cannot read image {path}: expected an 8-bit RGB or grey photo, got PIL mode {mode} "
                "(a 16-bit Bayer mosaic belongs in a *_raw folder)"
            )
        if rgb_only and mode != "RGB":
            raise UserError(f"cannot read image {path}: image mode {mode}, expected 8-bit RGB as saved by test.py")
        depth = _sample_bits(img)
        if depth > 8:
            raise UserError(
                f"cannot read image {path}: it has {depth}-bit samples ({mode}); save it as an 8-bit RGB photo "
                "(the network takes the camera's 8-bit sRGB; a Bayer mosaic belongs in a *_raw folder)"
            )
        img.load()
        if exif_orientation:
            img = ImageOps.exif_transpose(img)
        if img.mode == "P" and "transparency" in img.info:
            img = img.convert("RGBA")
        return np.array(img.convert("RGB"), dtype=np.uint8)  # a writable copy (np.asarray's is read-only)


# Pillow modes of 16-bit grey images (PNG, TIFF): read at full precision by Pillow itself
PIL_16BIT_GREY_MODES = ("I;16", "I;16B", "I;16L", "I;16N")
# EXIF orientation (tag 0x0112) -> numpy steps turning the stored (H, W, ...) array to the viewing orientation, as
# Pillow's ImageOps.exif_transpose does for 8-bit images: 'lr' mirror columns, 'ud' mirror rows, 't' transpose,
# applied in order
_EXIF_STEPS = {1: "", 2: "lr", 3: "lr ud", 4: "ud", 5: "t", 6: "t lr", 7: "t lr ud", 8: "t ud"}
EXIF_ORIENTATION_TAG = 0x0112
TIFF_BITS_PER_SAMPLE_TAG = 258


def exif_orient(array: np.ndarray, orientation: int) -> np.ndarray:
    """Turn a stored (H, W[, C]) array to its viewing orientation by EXIF ``orientation`` 1..8 (any other value: as
    stored), as :func:`PIL.ImageOps.exif_transpose` does for the images Pillow can hold."""
    for step in _EXIF_STEPS.get(orientation, "").split():
        if step == "t":
            array = np.swapaxes(array, 0, 1)
        else:
            array = np.flip(array, 1 if step == "lr" else 0)
    return np.ascontiguousarray(array)


def read_photo(path, *, exif_orientation: bool = True) -> tuple[np.ndarray, int]:
    """A photo for the network as float32 (H, W, 3) sRGB in [0, 1] at the precision it is stored in, and that
    precision in bits per sample: 8 (JPEG, 8-bit PNG / TIFF / WebP / ..., read by :func:`read_rgb`: ``v / 255``) or
    16 (16-bit PNG or TIFF, RGB, RGBA or grey: ``v / 65535``; alpha dropped, grey expanded). So a 16-bit export of
    a photo, as RAW developers write them, is not cut to 8 bits; a 16-bit file whose values are an 8-bit photo's
    times 257 gives exactly that photo's floats.

    ``exif_orientation``: apply the file's EXIF (TIFF) orientation, the viewing orientation. Floating-point and
    32-bit images, and every file :func:`read_rgb` refuses for another reason, raise ``UserError`` naming the file.
    """
    path = _existing_file(path)
    try:
        with Image.open(path) as img:
            mode, depth = img.mode, _sample_bits(img)
            if mode in PIL_8BIT_MODES and depth <= 8:
                values = None
            elif img.format == "TIFF":
                if problem := raw_in_disguise(path, img.size):
                    raise UserError(problem)
                values, orientation = _read_tiff(path)
            elif mode == "F" or (mode.startswith("I") and mode not in PIL_16BIT_GREY_MODES and depth != 16):
                raise UserError(_deep_samples(path, "floating-point" if mode == "F" else "32-bit integer"))
            else:
                values = _read_16bit_png(path, img, mode)
                orientation = img.getexif().get(EXIF_ORIENTATION_TAG, 1)  # after the pixels: it may load the image
    except UserError:
        raise
    except UnidentifiedImageError as err:  # Pillow reads no floating-point RGB TIFF, for one
        if problem := raw_in_disguise(path, None):
            raise UserError(problem) from err
        if not _is_tiff(path):
            raise UserError(f"cannot read image {path}: {err}") from err
        values, orientation = _read_tiff(path)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise UserError(f"cannot read image {path}: {err}") from err
    if values is None:
        return read_rgb(path, exif_orientation=exif_orientation).astype(np.float32) / UINT8_MAX, 8
    if values.ndim == 2:
        values = values[..., None]
    values = np.repeat(values[..., :1], 3, axis=2) if values.shape[2] in (1, 2) else values[..., :3]  # alpha dropped
    if exif_orientation:
        values = exif_orient(values, orientation)
    return values.astype(np.float32) / UINT16_MAX, 16


def raw_in_disguise(path: Path, image_size: tuple[int, int] | None) -> str | None:
    """The error for an image file that holds a camera RAW (a NEF, KDC or DNG renamed ``.jpg`` or ``.tif``: Pillow
    reads the small preview in front of the sensor data, or nothing), else None. ``image_size``: the (width,
    height) Pillow found, None where it found no image. A RAW is what LibRaw opens at another size than that (LibRaw
    also opens a plain 16-bit grey TIFF, as the image it is)."""
    try:
        import rawpy

        with rawpy.imread(str(path)) as raw:
            sizes = raw.sizes
    except Exception:  # LibRaw's many ways of saying "not a RAW file"
        return None
    if image_size in ((sizes.raw_width, sizes.raw_height), (sizes.width, sizes.height)):
        return None
    preview = f" (read as an image it is only its {image_size[0]}x{image_size[1]} preview)" if image_size else ""
    return (f"cannot read image {path}: it holds a camera RAW file ({sizes.width}x{sizes.height} sensor pixels), not "
            f"an RGB image{preview}; give it the RAW extension of its camera (.dng, .NEF, .CR2, .KDC, ...) so that it "
            "is read as a RAW")


def _deep_samples(path: Path, kind: str) -> str:
    return (f"cannot read image {path}: it has {kind} samples; export the photo as a 16-bit TIFF or PNG (read at full "
            "precision) or as an 8-bit one")


def _is_tiff(path: Path) -> bool:
    with open(path, "rb") as file:
        return file.read(4) in (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+")


def _read_tiff(path: Path) -> tuple[np.ndarray, int]:
    """The first image of a TIFF as uint16 (H, W) or (H, W, C) (8-bit samples times 257) and its orientation tag."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            values = page.asarray()
            tag = page.tags.get("Orientation")
            orientation = int(tag.value) if tag is not None else 1
            separate = page.planarconfig == tifffile.PLANARCONFIG.SEPARATE
    except (tifffile.TiffFileError, ValueError, OSError) as err:
        raise UserError(f"cannot read image {path}: {err}") from err
    if separate and values.ndim == 3:
        values = np.moveaxis(values, 0, 2)  # stored plane by plane
    if values.dtype.kind == "f":
        raise UserError(_deep_samples(path, "floating-point"))
    if values.dtype not in (np.uint8, np.uint16) or values.ndim not in (2, 3):
        raise UserError(_deep_samples(path, f"{values.dtype} (shape {values.shape})"))
    if values.dtype == np.uint8:
        values = values.astype(np.uint16) * 257
    return values, orientation


def _read_16bit_png(path: Path, img: Image.Image, mode: str) -> np.ndarray:
    """The stored samples of a 16-bit PNG as uint16 (H, W) or (H, W, C)."""
    if mode in PIL_16BIT_GREY_MODES or mode == "I":  # Pillow before 10.? opened 16-bit grey PNGs as mode "I"
        return np.asarray(img).astype(np.uint16)
    # Pillow keeps only the high byte of each sample of 16-bit RGB(A) (raw modes 'RGB;16B', 'RGBA;16B'). Decoding
    # the same data again with the little-endian raw mode, which has the same bytes per pixel and so unfilters the
    # rows alike, gives the low bytes; together they are the stored values.
    tile = tuple(img.tile[0]) if len(img.tile) == 1 else (None,) * 4  # (codec, extents, offset, args)
    args = tile[3]
    rawmode = args if isinstance(args, str) else args[0] if isinstance(args, tuple) and args else None
    if rawmode not in ("RGB;16B", "RGBA;16B"):
        raise UserError(
            f"cannot read image {path}: a 16-bit PNG of PIL mode {mode} is not read at full precision here; export "
            "it as a 16-bit TIFF, or as an 8-bit photo"
        )
    high = np.asarray(img, dtype=np.uint8)
    with Image.open(path) as again:
        swapped = rawmode[:-1] + "L"
        swapped_args = swapped if isinstance(args, str) else (swapped, *args[1:])
        if hasattr(again.tile[0], "_replace"):  # Pillow 11 and later: a named tuple
            again.tile = [again.tile[0]._replace(args=swapped_args)]
        else:
            again.tile = [(*tile[:3], swapped_args)]
        low = np.asarray(again, dtype=np.uint8)
    return high.astype(np.uint16) << 8 | low


@dataclass(frozen=True)
class EmbeddedMetadata:
    """What a photo file carries besides its pixels that its results should carry too (:func:`embedded_metadata`)."""

    icc: bytes | None = None  # ICC colour profile
    profile: str = ""  # its description ("sRGB IEC61966-2.1", "Adobe RGB (1998)", ...)
    exif: bytes | None = None  # EXIF (camera, exposure, date, ...) for an upright copy of the image

    def save_options(self) -> dict:
        """Pillow save options embedding them (PNG, JPEG, WebP)."""
        return {key: value for key, value in (("icc_profile", self.icc), ("exif", self.exif)) if value}


EXIF_IFD_TAG, EXIF_PIXEL_WIDTH_TAG, EXIF_PIXEL_HEIGHT_TAG = 0x8769, 0xA002, 0xA003
# The first IFD's tags that describe the shot rather than the file's own layout, kept in the results' EXIF: image
# description, make, model, orientation, resolution (x, y, unit), software, date, artist, copyright, and the
# pointers to the EXIF and GPS IFDs. A TIFF's strip offsets, sample format, compression, ... are left behind.
EXIF_SHOT_TAGS = (270, 271, 272, 274, 282, 283, 296, 305, 306, 315, 33432, EXIF_IFD_TAG, 0x8825)


def embedded_metadata(path, size: tuple[int, int] | None = None) -> EmbeddedMetadata:
    """The ICC colour profile (and its description) and the EXIF of an image file (JPEG, PNG, TIFF, WebP), the EXIF
    made to describe an upright copy: orientation 1 and, where ``size`` (width, height) of that copy is given, its
    pixel dimensions. Empty where there is none or the file cannot be read (its reader names that problem)."""
    try:
        with Image.open(path) as img:
            icc = img.info.get("icc_profile") or None
            exif = img.getexif()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return EmbeddedMetadata()
    exif_bytes = None
    for tag in [tag for tag in exif if tag not in EXIF_SHOT_TAGS]:
        del exif[tag]
    if len(exif):
        exif[EXIF_ORIENTATION_TAG] = 1
        sub = exif.get_ifd(EXIF_IFD_TAG)
        if size is not None and EXIF_PIXEL_WIDTH_TAG in sub:
            sub[EXIF_PIXEL_WIDTH_TAG], sub[EXIF_PIXEL_HEIGHT_TAG] = size
        try:
            exif_bytes = exif.tobytes()
        except Exception:  # an entry Pillow cannot write back: the results go without EXIF, as before
            exif_bytes = None
    description = ""
    if icc is not None:
        try:
            import io

            from PIL import ImageCms

            description = ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(icc))).strip()
        except Exception:  # a damaged profile, or Pillow without littlecms: the bytes are still passed on
            description = "unnamed profile"
    return EmbeddedMetadata(icc, description, exif_bytes)


def is_srgb_profile(description: str) -> bool:
    """Whether a profile's description names sRGB (``sRGB IEC61966-2.1``, ``sRGB built-in``, ...)."""
    return "srgb" in description.lower().replace(" ", "")


def _sample_bits(img: Image.Image) -> int:
    """Bits per sample of a PNG or TIFF as stored, before Pillow reduces 16-bit RGB(A) to 8 bits on load
    (its tile's raw mode, e.g. ``RGB;16B``); 8 for every other format."""
    if img.format == "TIFF":  # the tag, not the tiles: Pillow reads a 16-bit TIFF stored plane by plane as 8-bit
        bits = img.tag_v2.get(TIFF_BITS_PER_SAMPLE_TAG, 8)
        return max(bits) if isinstance(bits, tuple) else int(bits)
    if img.format != "PNG":
        return 8
    for tile in getattr(img, "tile", None) or ():
        args = tile[3] if len(tile) > 3 else None
        rawmode = args[0] if isinstance(args, tuple) and args else args
        if isinstance(rawmode, str) and ";" in rawmode:
            digits = "".join(ch for ch in rawmode.split(";", 1)[1] if ch.isdigit())
            if digits and int(digits) > 8:
                return int(digits)
    return 8


def extra_frames(path) -> int:
    """How many frames (pages) an image file holds beyond the first, which is all that is read: an animated GIF /
    WebP / PNG, a multi-page TIFF. A camera JPEG's multi-picture (MPO) previews do not count; 0 where the file cannot
    be opened."""
    try:
        with Image.open(path) as img:
            return 0 if img.format == "MPO" else max(int(getattr(img, "n_frames", 1)) - 1, 0)
    except Exception:  # the readers name unreadable files
        return 0


def _existing_file(path) -> Path:
    """``path`` as a Path; ``UserError`` naming it where it is missing, a broken link or empty."""
    path = Path(path)
    if not path.exists():
        raise UserError(link_problem(path) or f"cannot read image {path}: no such file")
    check_not_empty(path)
    return path


def check_not_empty(path: Path) -> None:
    """``UserError`` for a file of 0 bytes (a copy that failed); other problems are left to the reader to name."""
    try:
        empty = path.stat().st_size == 0
    except OSError:
        return  # the reader names the problem (no such file, a looping link, ...)
    if empty:
        raise UserError(f"cannot read image {path}: the file is empty (0 bytes); copy it again or remove it")


# ---------------------------------------------------------------------------------------------------- writing


# zlib level of written PNGs: 3 encodes a 640x448 photo 3-4x faster than Pillow's default 6, for files about 6 %
# larger (lossless either way)
PNG_COMPRESS_LEVEL = 3


def write_rgb(path, rgb_u8: np.ndarray, **save_options) -> None:
    """Write a ``np.uint8`` (H, W, 3) image; format from the extension (parent folders created).

    Written whole or not at all (:func:`util.files.atomic_write`): a full disk or a missing permission is a
    ``UserError`` naming ``path``. ``save_options`` go to Pillow (e.g. ``quality=95`` for JPEG); PNGs are written with
    zlib level :data:`PNG_COMPRESS_LEVEL` unless ``compress_level`` is given.
    """
    rgb_u8 = np.asarray(rgb_u8)
    if rgb_u8.dtype != np.uint8 or rgb_u8.ndim != 3 or rgb_u8.shape[-1] != 3:
        raise ValueError(f"write_rgb needs a uint8 (H, W, 3) array, got {rgb_u8.dtype} {rgb_u8.shape}")
    path = Path(path)
    image_format = Image.registered_extensions().get(path.suffix.lower())
    if image_format is None:
        raise ValueError(f"write_rgb: unknown image extension {path.suffix!r}")
    if image_format == "PNG":
        save_options.setdefault("compress_level", PNG_COMPRESS_LEVEL)
    image = Image.fromarray(np.ascontiguousarray(rgb_u8))
    atomic_write(path, lambda tmp: image.save(tmp, format=image_format, **save_options))


def write_rgb16(path, rgb_u16: np.ndarray, icc_profile: bytes | None = None) -> None:
    """Write a ``np.uint16`` (H, W, 3) image as a 16-bit RGB TIFF (deflate with horizontal prediction: lossless),
    with ``icc_profile`` embedded where given.

    Written whole or not at all, like :func:`write_rgb`.
    """
    import tifffile

    rgb_u16 = np.asarray(rgb_u16)
    if rgb_u16.dtype != np.uint16 or rgb_u16.ndim != 3 or rgb_u16.shape[-1] != 3:
        raise ValueError(f"write_rgb16 needs a uint16 (H, W, 3) array, got {rgb_u16.dtype} {rgb_u16.shape}")
    image = np.ascontiguousarray(rgb_u16)
    atomic_write(Path(path), lambda tmp: tifffile.imwrite(tmp, image, photometric="rgb", compression="zlib",
                                                           predictor=True, metadata=None, iccprofile=icc_profile))


# ---------------------------------------------------------------------------------------------------- pairing


@overload
def files_by_stem(folder, extensions, *, unique: Literal[False] = ...) -> dict[str, list[Path]]: ...
@overload
def files_by_stem(folder, extensions, *, unique: Literal[True]) -> dict[str, Path]: ...


def files_by_stem(folder, extensions, *, unique: bool = False):
    """The visible files of ``folder`` whose suffix (lower case) is in ``extensions``, keyed by file stem (case kept).

    Returns ``{stem: [paths, sorted by name]}``; with ``unique``, ``{stem: path}`` and two files of one stem
    (``a.png`` and ``a.bmp``) raise ``UserError`` ("share a stem"). Names starting with ``.`` are skipped. A missing
    ``folder``, and a name with such a suffix that is not a readable file (a folder ``x.png/``, a symbolic link that
    loops or points nowhere), raise ``UserError`` naming it, instead of being skipped and reported later as a
    missing partner.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(link_problem(folder) or f"{folder} is not a folder")
    groups: dict[str, list[Path]] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.suffix.lower() not in extensions:
            continue
        if path.is_file():
            groups.setdefault(path.stem, []).append(path)
        elif path.is_dir():
            raise UserError(f"{path} is a folder, not an image file; rename it or move it out of {folder}")
        else:
            raise UserError(link_problem(path) or f"{path} is not a regular file; move it out of {folder}")
    if not unique:
        return groups
    for paths in groups.values():
        if len(paths) > 1:
            raise UserError(f"{folder}: {paths[0].name} and {paths[1].name} share a stem; keep one of them")
    return {stem: paths[0] for stem, paths in groups.items()}
