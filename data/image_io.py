"""The image files of the datasets beyond 8-bit RGB: 16-bit Bayer mosaics, and the photo crops of synthetic sets.

8-bit RGB photos are read and written with :mod:`util.image_io`. Every unreadable or unsuitable file raises
:class:`util.errors.UserError` naming the file. :func:`read_raw_mosaic` dispatches on the file extension (camera RAW
files go through :mod:`data.camera_raw`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from data.camera_raw import CAMERA_RAW_EXTENSIONS, read_camera_raw
from util.errors import UserError
from util.image_io import PIL_16BIT_GREY_MODES, UINT16_MAX, check_not_empty, read_rgb

# 16-bit single-channel Bayer mosaics, and camera RAW files (DNG, NEF, CR2, ...; read with rawpy)
RAW_MOSAIC_EXTENSIONS = (".png", ".tiff", ".tif", *CAMERA_RAW_EXTENSIONS)


def _read_png_mosaic(path: Path) -> np.ndarray:
    check_not_empty(path)
    try:
        with Image.open(path) as img:
            img.load()
            mode, bands = img.mode, img.getbands()
            if mode in PIL_16BIT_GREY_MODES or mode == "I":
                arr = np.asarray(img)
            else:
                arr = None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise UserError(f"cannot read image {path}: {err}") from err
    if arr is None:
        if len(bands) > 1:
            raise UserError(
                f"{path} has {len(bands)} channels ({mode}); expected a 16-bit single-channel Bayer mosaic"
            )
        raise UserError(f"{path} is an 8-bit image ({mode}); expected a 16-bit single-channel Bayer mosaic")
    if arr.dtype != np.uint16:
        if arr.size and (arr.min() < 0 or arr.max() > UINT16_MAX):
            raise UserError(f"{path} holds values outside 0..65535; expected a 16-bit Bayer mosaic")
        arr = arr.astype(np.uint16)
    return arr


def _read_tiff_mosaic(path: Path) -> np.ndarray:
    check_not_empty(path)
    try:
        arr = tifffile.imread(path)
    except Exception as err:  # tifffile raises many types for corrupt files
        raise UserError(f"cannot read image {path}: {err}") from err
    if arr.ndim == 3 and 1 in (arr.shape[0], arr.shape[-1]):
        arr = arr.squeeze(0) if arr.shape[0] == 1 else arr.squeeze(-1)
    if arr.ndim != 2:
        raise UserError(f"{path} has shape {arr.shape}; expected a 16-bit single-channel Bayer mosaic")
    if arr.dtype == np.uint8:
        raise UserError(f"{path} is an 8-bit image; expected a 16-bit single-channel Bayer mosaic")
    if arr.dtype != np.uint16:
        raise UserError(f"{path} has sample type {arr.dtype}; expected a 16-bit (uint16) single-channel Bayer mosaic")
    return arr


def _read_camera_raw_mosaic(path: Path) -> np.ndarray:
    return read_camera_raw(path).mosaic


# Extension -> reader: 16-bit PNG/TIFF mosaics, and camera RAW files through rawpy (data/camera_raw.py).
_MOSAIC_READERS = {".png": _read_png_mosaic, ".tif": _read_tiff_mosaic, ".tiff": _read_tiff_mosaic}
_MOSAIC_READERS.update(dict.fromkeys(CAMERA_RAW_EXTENSIONS, _read_camera_raw_mosaic))


def read_raw_mosaic(path) -> np.ndarray:
    """Read a Bayer mosaic as ``np.uint16`` (H, W), H and W even, in sensor counts (levels applied later).

    Dispatches on the extension (case-insensitive): ``.png``, ``.tif``/``.tiff`` 16-bit single-channel.
    8-bit, multi-channel, odd-sized, unreadable files and unknown extensions raise ``UserError``.
    """
    path = Path(path)
    reader = _MOSAIC_READERS.get(path.suffix.lower())
    if reader is None:
        raise UserError(
            f"cannot read RAW {path}: unsupported extension {path.suffix!r}; expected one of "
            f"{', '.join(_MOSAIC_READERS)}"
        )
    if not path.is_file():
        raise UserError(f"cannot read image {path}: no such file")
    mosaic = reader(path)
    h, w = mosaic.shape
    if h % 2 or w % 2:
        raise UserError(f"{path} is {w}x{h} (width x height); a Bayer mosaic needs an even width and height")
    return np.ascontiguousarray(mosaic)


def write_png16(path, mosaic_u16: np.ndarray) -> None:
    """Write a ``np.uint16`` (H, W) mosaic as a 16-bit greyscale PNG (parent folders created)."""
    mosaic_u16 = np.asarray(mosaic_u16)
    if mosaic_u16.dtype != np.uint16 or mosaic_u16.ndim != 2:
        raise ValueError(f"write_png16 needs a uint16 (H, W) array, got {mosaic_u16.dtype} {mosaic_u16.shape}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(mosaic_u16)).save(path, format="PNG")


def write_raw_mosaic(path, mosaic_u16: np.ndarray) -> None:
    """Write a ``np.uint16`` (H, W) mosaic as 16-bit PNG or TIFF, chosen by the extension of ``path``."""
    path = Path(path)
    ext = path.suffix.lower()
    if ext == ".png":
        write_png16(path, mosaic_u16)
    elif ext in (".tif", ".tiff"):
        mosaic_u16 = np.asarray(mosaic_u16)
        if mosaic_u16.dtype != np.uint16 or mosaic_u16.ndim != 2:
            raise ValueError(f"write_raw_mosaic needs a uint16 (H, W) array, got {mosaic_u16.dtype} {mosaic_u16.shape}")
        path.parent.mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(path, mosaic_u16)
    else:
        raise ValueError(f"write_raw_mosaic: unsupported extension {path.suffix!r}; use .png, .tif or .tiff")


def fit_photo(rgb_u8: np.ndarray, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A ``size`` = (H, W) view of a photo for a synthetic test set: a portrait photo is first laid down (transposed)
    when ``H <= W``, then cover-scaled (Lanczos) to at least ``size`` and cropped at a seeded offset (two draws of
    ``rng``). Returns a (H, W, 3) uint8 array (``scripts/make_val_sets.py``, :mod:`data.condition_sets`)."""
    h, w = rgb_u8.shape[:2]
    H, W = size
    if h > w and H <= W:  # portrait photos lie down, so that every item has the same landscape size
        rgb_u8 = np.ascontiguousarray(rgb_u8.transpose(1, 0, 2))
        h, w = w, h
    scale = max(H / h, W / w)
    new_w, new_h = max(W, round(w * scale)), max(H, round(h * scale))
    if (new_h, new_w) != (h, w):
        rgb_u8 = np.asarray(Image.fromarray(rgb_u8).resize((new_w, new_h), Image.Resampling.LANCZOS), dtype=np.uint8)
    top, left = int(rng.integers(0, new_h - H + 1)), int(rng.integers(0, new_w - W + 1))
    return rgb_u8[top : top + H, left : left + W]


class PhotoPairs:
    """Seeded (T, R) source crops for a synthetic test set, from ``names`` (paths relative to ``root``): item
    ``index`` takes its T photo from one seeded permutation of all names (so every folder contributes), and each draw
    a different R photo and a :func:`fit_photo` crop of both (``scripts/make_val_sets.py``,
    :mod:`data.condition_sets`). Photos are read once and cached."""

    def __init__(self, root, names: list[str], size: tuple[int, int], seed: int):
        self.root, self.names, self.size = Path(root), list(names), tuple(size)
        self.order = np.random.default_rng(seed).permutation(len(self.names))
        self._cache: dict[str, np.ndarray] = {}

    def photo(self, name: str) -> np.ndarray:
        if name not in self._cache:
            self._cache[name] = read_rgb(self.root / name)
        return self._cache[name]

    def t_name(self, index: int) -> str:
        return self.names[int(self.order[index % len(self.names)])]

    def draw(self, t_name: str, rng: np.random.Generator):
        """``(r_name, T, R)``: a random other photo, and ``size`` crops of both as (3, H, W) float tensors in [0, 1]
        (three kinds of ``rng`` draws, in this order: the R photo, T's crop offset, R's crop offset)."""
        import torch

        r_index = int(rng.integers(len(self.names) - 1))
        r_name = self.names[r_index + (r_index >= self.names.index(t_name))]  # a different photo

        def as_tensor(u8: np.ndarray):
            return torch.from_numpy(np.ascontiguousarray(u8.transpose(2, 0, 1))).float() / 255

        T = as_tensor(fit_photo(self.photo(t_name), self.size, rng))
        R = as_tensor(fit_photo(self.photo(r_name), self.size, rng))
        return r_name, T, R
