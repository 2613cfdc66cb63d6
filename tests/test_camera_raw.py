"""data.camera_raw: real RAW files from ../shared/data, DNGs written with pidng for every Bayer pattern, orientation
codes against PIL's EXIF handling, JPEG partners, and each bad input's message."""

from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import rawpy
import torch
from PIL import Image, ImageOps

from data.camera_raw import (
    BELONG_MIN_CORRELATION,
    CameraRaw,
    _visible_tile,
    apply_orientation,
    is_camera_raw,
    load_jpeg_partner,
    photo_correlation,
    read_camera_raw,
    render_rgb,
    undo_orientation,
)
from util.errors import UserError
from util.isp import (
    CFA_PATTERNS,
    XYZ_TO_SRGB,
    cfa_offsets,
    normalize_raw,
    pack_raw,
    srgb_encode,
    srgb_to_cam_from_xyz_to_cam,
    unpack_raw,
)

BLACKMAGIC = "raw/imageio_Blackmagic.dng"
KODAK = "raw/rawpy_RAW_KODAK_DC50.KDC"
EXIF_ORIENTATION_TAG = 0x0112
EXIF_TO_LIBRAW_FLIP = {1: 0, 2: 1, 3: 3, 4: 2, 5: 4, 6: 6, 7: 7, 8: 5}  # dcraw: flip = "50132467"[orientation]
DNG_BLACK_BY_SITE = (60, 61, 62, 63)  # BlackLevel of the 2x2 tile, read row by row
DNG_WHITE = 4095
JPEG_QUALITY = 95
IDENTITY = np.eye(3)
CHECK_CROP = 2048  # the pattern check looks at a central window of at most this size
GREY_CARD = 0.18  # linear reflectance of a grey card
RATIONAL_DEN = 10000  # denominator of the DNG rationals written


# ----------------------------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------------------------


def write_dng(path: Path, data: np.ndarray, pattern="RGGB", black=DNG_BLACK_BY_SITE, white=DNG_WHITE, orientation=1,
              active_area=None, neutral=(0.5, 1.0, 0.25), xyz_to_cam=IDENTITY) -> Path:  # fmt: skip
    """Write ``data`` (uint16 (H, W) Bayer, or (H, W, 3) linear RGB) as an uncompressed DNG with pidng."""
    pidng_core = pytest.importorskip("pidng.core", reason="pidng (a real DNG writer) is not installed")
    from pidng.defs import CalibrationIlluminant, CFAPattern, DNGVersion, PhotometricInterpretation

    h, w = data.shape[:2]
    tags = pidng_core.DNGTags()
    Tag = pidng_core.Tag
    for tag, value in (
        (Tag.ImageWidth, w),
        (Tag.ImageLength, h),
        (Tag.TileWidth, w),
        (Tag.TileLength, h),
        (Tag.Orientation, orientation),
        (Tag.BlackLevelRepeatDim, [2, 2]),
        (Tag.BlackLevel, list(black)),
        (Tag.WhiteLevel, white),
        (Tag.ColorMatrix1, [[round(v * RATIONAL_DEN), RATIONAL_DEN] for v in np.ravel(xyz_to_cam)]),
        (Tag.CalibrationIlluminant1, CalibrationIlluminant.D65),
        (Tag.AsShotNeutral, [[round(v * RATIONAL_DEN), RATIONAL_DEN] for v in neutral]),
        (Tag.Make, "CR3Net"),
        (Tag.Model, "Synthetic DNG"),
        (Tag.UniqueCameraModel, "CR3Net Synthetic DNG"),
        (Tag.DNGVersion, DNGVersion.V1_4),
        (Tag.DNGBackwardVersion, DNGVersion.V1_2),
    ):
        tags.set(tag, value)
    if data.ndim == 3:
        tags.set(Tag.PhotometricInterpretation, PhotometricInterpretation.Linear_Raw)
        tags.set(Tag.SamplesPerPixel, 3)
        tags.set(Tag.BitsPerSample, [16, 16, 16])
    else:
        tags.set(Tag.PhotometricInterpretation, PhotometricInterpretation.Color_Filter_Array)
        tags.set(Tag.SamplesPerPixel, 1)
        tags.set(Tag.BitsPerSample, 16)
        tags.set(Tag.CFARepeatPatternDim, [2, 2])
        tags.set(Tag.CFAPattern, getattr(CFAPattern, pattern))
    if active_area is not None:
        tags.set(Tag.ActiveArea, list(active_area))
    writer = pidng_core.RAW2DNG()
    writer.options(tags, path=str(path.parent), compress=False)
    writer.convert(np.ascontiguousarray(data, dtype=np.uint16), filename=path.name)
    return path


def scene(h: int, w: int, seed: int) -> np.ndarray:
    """Linear RGB (3, h, w) float64 in [0.05, 0.9]: a gradient with random coloured rectangles (edges to match on)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    img = np.stack([0.2 + 0.2 * xx, 0.25 + 0.1 * yy, 0.3 - 0.1 * xx])
    for _ in range(12):
        y0, x0 = rng.integers(0, h - 8), rng.integers(0, w - 8)
        y1, x1 = y0 + rng.integers(6, h // 2), x0 + rng.integers(6, w // 2)
        img[:, y0:y1, x0:x1] = rng.uniform(0.05, 0.9, size=(3, 1, 1))
    return img


def scene_dng(path: Path, h=96, w=128, seed=0, orientation=1, pattern="RGGB") -> CameraRaw:
    """A DNG of :func:`scene` (white 4095, black 60..63) read back with read_camera_raw."""
    black = np.array(DNG_BLACK_BY_SITE, dtype=np.float64).reshape(2, 2)
    offsets = cfa_offsets(pattern)
    canon_black = np.array([black[offsets[k]] for k in ("R", "G1", "G2", "B")]).reshape(4, 1, 1)
    linear = scene(h, w, seed)
    packed = np.stack([linear[0, ::2, ::2], linear[1, ::2, ::2], linear[1, 1::2, 1::2], linear[2, 1::2, 1::2]])
    counts = np.round(packed * (DNG_WHITE - canon_black) + canon_black).astype(np.uint16)
    # camera RGB = linear sRGB and neutral white balance: LibRaw renders the scene without saturating it
    mosaic = unpack_raw(counts, pattern)
    write_dng(path, mosaic, pattern=pattern, orientation=orientation, neutral=(1.0, 1.0, 1.0), xyz_to_cam=XYZ_TO_SRGB)
    return read_camera_raw(path)


def save_jpeg(path: Path, rgb: np.ndarray, exif_orientation: int | None = None) -> Path:
    img = Image.fromarray(np.ascontiguousarray(rgb))
    exif = Image.Exif()
    if exif_orientation is not None:
        exif[EXIF_ORIENTATION_TAG] = exif_orientation
    img.save(path, quality=JPEG_QUALITY, exif=exif)
    return path


def chroma_correlation(packed: np.ndarray, rgb_u8: np.ndarray) -> float:
    """Correlation of the packed RAW's (R - B) contrast with the rendered image's (R - B) at half resolution."""
    h, w = packed.shape[-2:]
    half = rgb_u8.astype(np.float64).reshape(h, 2, w, 2, 3).mean(axis=(1, 3))
    x = packed[0] / packed[0].mean() - packed[3] / packed[3].mean()
    y = half[..., 0] / half[..., 0].mean() - half[..., 2] / half[..., 2].mean()
    return float(np.corrcoef(x.ravel(), y.ravel())[0, 1])


def check_pattern_against_rendering(raw: CameraRaw, rgb: np.ndarray) -> None:
    """The detected CFA is the one of the four whose packing agrees best with LibRaw's rendering, and G1 ~ G2."""
    h, w = raw.size
    top, left = (h - min(h, CHECK_CROP)) // 4 * 2, (w - min(w, CHECK_CROP)) // 4 * 2  # even: keeps the CFA phase
    window = (slice(top, top + min(h, CHECK_CROP)), slice(left, left + min(w, CHECK_CROP)))
    raw, rgb = replace(raw, mosaic=raw.mosaic[window]), rgb[window]
    scores = {p: chroma_correlation(pack_raw(raw.mosaic, p).astype(np.float64), rgb) for p in CFA_PATTERNS}
    best, second = sorted(scores.values())[::-1][:2]
    assert scores[raw.cfa] == best and best > 0.3 and best - second > 0.2, scores
    packed = raw.packed()
    g1, g2 = packed[1].mean(), packed[2].mean()
    assert abs(g1 - g2) / ((g1 + g2) / 2) < 0.03


# ----------------------------------------------------------------------------------------------------------------
# Real files from ../shared/data
# ----------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def blackmagic(shared_data):
    """(CameraRaw, rendered RGB) of the 9 Mpx Blackmagic DNG, decoded once for the module."""
    raw = read_camera_raw(shared_data / BLACKMAGIC)
    return raw, render_rgb(raw)


def test_blackmagic_dng_metadata_and_levels(blackmagic):
    raw, rgb = blackmagic
    assert raw.cfa == "RGGB"
    assert raw.mosaic.dtype == np.uint16 and raw.size == (2176, 4128)
    assert raw.black == (512.0, 512.0, 512.0, 512.0)
    assert raw.white == 65535.0  # the 12-bit data are linearised to 16 bits by the DNG's LinearizationTable
    assert raw.orientation == 0 and raw.camera == "Blackmagic Pocket Cinema Camera 4K"
    np.testing.assert_allclose(raw.wb_gains, [1 / 0.4533, 1.0, 1 / 0.53], rtol=1e-3)  # AsShotNeutral
    assert raw.ccm.shape == (3, 3)
    np.testing.assert_allclose(raw.ccm.sum(axis=1), 1.0, atol=0.02)
    assert rgb.shape == (2176, 4128, 3) and rgb.dtype == np.uint8
    packed = raw.packed()
    assert packed.shape == (4, 1088, 2064) and packed.dtype == np.float32
    assert -0.01 < packed.min() and packed.max() <= 1.0
    assert 0.02 < packed.mean() < 0.5
    profile = raw.profile()
    assert (profile.cfa, profile.black, profile.white) == ("RGGB", raw.black, raw.white)


def test_blackmagic_dng_pattern_agrees_with_rendering(blackmagic):
    check_pattern_against_rendering(*blackmagic)


def test_kodak_kdc(shared_data):
    raw = read_camera_raw(shared_data / KODAK)
    assert raw.cfa == "GRBG" and raw.size == (512, 768) and raw.mosaic.dtype == np.uint16
    assert raw.black == (0.0, 0.0, 0.0, 0.0) and raw.white == 16383.0
    assert raw.orientation == 0 and "Kodak" in raw.camera
    packed = raw.packed()
    assert 0.0 <= packed.min() and packed.max() <= 1.0 and 0.05 < packed.mean() < 0.5
    rgb = render_rgb(shared_data / KODAK)
    assert rgb.shape == (512, 768, 3)
    check_pattern_against_rendering(raw, rgb)


def test_kodak_jpeg_partner_and_a_lookalike_photo(shared_data, tmp_path):
    raw = read_camera_raw(shared_data / KODAK)
    rgb = render_rgb(raw)
    own = load_jpeg_partner(save_jpeg(tmp_path / "own.jpg", rgb), raw)
    assert own.shape == rgb.shape and np.abs(own.astype(int) - rgb).mean() < 3
    # kodim16 shares the KDC's coarse layout (bright sky above a dark band): plain thumbnails correlate at 0.67
    other = Image.open(shared_data / "photos/kodak24/kodim16.png").convert("RGB").resize((768, 512))
    with pytest.raises(UserError, match="does not belong to RAW"):
        load_jpeg_partner(save_jpeg(tmp_path / "other.jpg", np.asarray(other)), raw)


# ----------------------------------------------------------------------------------------------------------------
# DNGs written with pidng
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pattern", CFA_PATTERNS)
def test_dng_every_pattern_round_trips(tmp_path, pattern):
    rng = np.random.default_rng(CFA_PATTERNS.index(pattern))
    h, w = 32, 48  # LibRaw refuses images under 22 px
    lows = np.array([1000, 2000, 2500, 3000]).reshape(4, 1, 1)  # distinct value range per canonical channel
    packed = (lows + rng.integers(0, 400, size=(4, h // 2, w // 2))).astype(np.uint16)
    path = write_dng(tmp_path / f"{pattern}.dng", unpack_raw(packed, pattern), pattern=pattern)
    raw = read_camera_raw(path)
    assert raw.cfa == pattern and raw.size == (h, w)
    by_site = np.array(DNG_BLACK_BY_SITE, dtype=float).reshape(2, 2)
    expected_black = tuple(by_site[cfa_offsets(pattern)[k]] for k in ("R", "G1", "G2", "B"))
    assert raw.black == expected_black and raw.white == DNG_WHITE
    np.testing.assert_array_equal(pack_raw(raw.mosaic, raw.cfa), packed)
    np.testing.assert_allclose(raw.packed(), normalize_raw(packed, expected_black, DNG_WHITE), rtol=1e-6)
    np.testing.assert_allclose(raw.wb_gains, [2.0, 1.0, 4.0], rtol=1e-6)  # AsShotNeutral (0.5, 1, 0.25)
    # ColorMatrix1 = identity (XYZ -> camera): camera -> sRGB is the inverse of the row-normalised sRGB -> XYZ
    np.testing.assert_allclose(raw.ccm, np.linalg.inv(srgb_to_cam_from_xyz_to_cam(np.eye(3))), atol=1e-4)
    assert raw.orientation == 0 and raw.camera == "CR3Net Synthetic DNG"
    assert render_rgb(raw).shape == (h, w, 3)


@pytest.mark.parametrize("pattern", ["RGGB", "GBRG"])
def test_render_applies_as_shot_white_balance_without_brightening(tmp_path, pattern):
    # a grey card at 18 % linear, as a camera with AsShotNeutral (0.5, 1, 0.25) records it
    black = np.array([np.array(DNG_BLACK_BY_SITE).reshape(2, 2)[cfa_offsets(pattern)[k]] for k in "R G1 G2 B".split()])
    level = GREY_CARD * np.array([0.5, 1.0, 1.0, 0.25])
    packed = np.round(level * (DNG_WHITE - black) + black).reshape(4, 1, 1) * np.ones((4, 16, 24))
    raw = read_camera_raw(write_dng(tmp_path / "grey.dng", unpack_raw(packed.astype(np.uint16), pattern), pattern))
    rgb = render_rgb(raw)[8:-8, 8:-8].reshape(-1, 3).astype(float)
    # neutral grey at the sRGB code of 18 %: camera white balance, sRGB curve (not BT.709's 104), no auto-brightening
    np.testing.assert_allclose(rgb.mean(axis=0), srgb_encode(GREY_CARD) * 255, atol=2)


def test_dng_active_area_at_odd_offset(tmp_path):
    h, w = 32, 48
    data = (np.arange(h * w).reshape(h, w) + 100).astype(np.uint16)  # unique values locate the visible origin
    area_top, area_left = 1, 1  # DNG: the CFA pattern is anchored at the ActiveArea's top-left corner
    path = write_dng(tmp_path / "act.dng", data, "RGGB", white=65535, active_area=(area_top, area_left, h - 1, w - 1))
    raw = read_camera_raw(path)
    top, left = np.argwhere(data == raw.mosaic[0, 0])[0]
    mh, mw = raw.size
    assert mh % 2 == 0 and mw % 2 == 0
    np.testing.assert_array_equal(raw.mosaic, data[top : top + mh, left : left + mw])
    site = [(top + i - area_top) % 2 * 2 + (left + j - area_left) % 2 for i in (0, 1) for j in (0, 1)]
    expected = "".join("RGGB"[k] for k in site)
    assert raw.cfa == expected


def test_visible_tile_follows_odd_margins_and_refuses_non_bayer():
    def fake(pattern, top=0, left=0, desc=b"RGBG", colors=3, raw_type=rawpy.RawType.Flat):
        pattern = None if pattern is None else np.asarray(pattern, dtype=np.uint8)
        sizes = SimpleNamespace(top_margin=top, left_margin=left)
        return SimpleNamespace(raw_pattern=pattern, raw_type=raw_type, num_colors=colors, color_desc=desc, sizes=sizes)

    rggb = [[0, 1], [3, 2]]  # LibRaw indices R, G, B, G2 from the sensor origin
    assert _visible_tile(fake(rggb), "f") == ("RGGB", {"R": 0, "G1": 1, "G2": 3, "B": 2})
    assert _visible_tile(fake(rggb, top=1), "f") == ("GBRG", {"R": 0, "G1": 1, "G2": 3, "B": 2})
    assert _visible_tile(fake(rggb, left=1), "f")[0] == "GRBG"
    assert _visible_tile(fake(rggb, top=3, left=1), "f")[0] == "BGGR"
    with pytest.raises(UserError, match="X-Trans"):
        _visible_tile(fake(np.zeros((6, 6))), "f")
    with pytest.raises(UserError, match="monochrome"):
        _visible_tile(fake([[6]], colors=1), "f")
    with pytest.raises(UserError, match="already demosaicked"):
        _visible_tile(fake(None, raw_type=rawpy.RawType.Stack), "f")
    with pytest.raises(UserError, match="unsupported colour filter"):
        _visible_tile(fake([[0, 1], [2, 3]], desc=b"GMCY", colors=4), "f")


# ----------------------------------------------------------------------------------------------------------------
# Orientation
# ----------------------------------------------------------------------------------------------------------------


def test_orientation_codes_match_exif_and_invert():
    img = np.arange(3 * 5 * 3, dtype=np.uint8).reshape(3, 5, 3)
    for exif_code, flip in EXIF_TO_LIBRAW_FLIP.items():
        pil = Image.fromarray(img)
        exif = pil.getexif()
        exif[EXIF_ORIENTATION_TAG] = exif_code
        pil.info["exif"] = exif.tobytes()
        viewed = np.asarray(ImageOps.exif_transpose(pil))
        np.testing.assert_array_equal(apply_orientation(img, flip), viewed)
        np.testing.assert_array_equal(undo_orientation(viewed, flip), img)
        chw = torch.from_numpy(img.transpose(2, 0, 1).copy())
        np.testing.assert_array_equal(apply_orientation(chw, flip, axes=(-2, -1)).numpy().transpose(1, 2, 0), viewed)
    np.testing.assert_array_equal(apply_orientation(img, 6), np.rot90(img, -1))  # 90 degrees clockwise
    np.testing.assert_array_equal(apply_orientation(img, 5), np.rot90(img, 1))
    with pytest.raises(ValueError, match="0..7"):
        apply_orientation(img, 9)


@pytest.mark.parametrize(("tiff_orientation", "flip"), [(3, 3), (6, 6), (8, 5)])
def test_dng_orientation_is_read(tmp_path, tiff_orientation, flip):
    data = np.full((32, 48), 1000, dtype=np.uint16)
    raw = read_camera_raw(write_dng(tmp_path / "o.dng", data, orientation=tiff_orientation))
    assert raw.orientation == flip and raw.size == (32, 48)  # the mosaic itself stays in sensor orientation
    assert render_rgb(raw).shape == (32, 48, 3)


# ----------------------------------------------------------------------------------------------------------------
# JPEG partners
# ----------------------------------------------------------------------------------------------------------------


def test_jpeg_partner_alignment(tmp_path):
    raw = scene_dng(tmp_path / "p.dng", orientation=6)  # camera held upright: view = sensor rotated 90 degrees CW
    sensor = render_rgb(raw)
    h, w = raw.size
    viewed = np.ascontiguousarray(apply_orientation(sensor, raw.orientation))
    assert viewed.shape == (w, h, 3)

    def error(a, border=0):
        diff = np.abs(a.astype(int) - sensor)
        return diff[border : h - border, border : w - border].mean()

    # pixels stored rotated, no EXIF orientation
    assert error(load_jpeg_partner(save_jpeg(tmp_path / "a.jpg", viewed), raw)) < 3
    # pixels stored in sensor orientation, EXIF says "rotate 90 CW" (6)
    assert error(load_jpeg_partner(save_jpeg(tmp_path / "b.jpg", sensor, exif_orientation=6), raw)) < 3
    # the camera cropped 2 px on every side: padded back, the interior stays aligned
    cropped = load_jpeg_partner(save_jpeg(tmp_path / "c.jpg", viewed[2:-2, 2:-2]), raw)
    assert cropped.shape == sensor.shape and error(cropped, border=2) < 3
    for shift, axis in ((1, 0), (-1, 0), (1, 1), (-1, 1)):  # the best alignment, not one pixel off
        assert error(np.roll(cropped, shift, axis=axis), border=2) > 1.3 * error(cropped, border=2)
    # half-size JPEG: resized back
    half = np.asarray(Image.fromarray(viewed).resize((h // 2, w // 2), Image.Resampling.LANCZOS))
    assert error(load_jpeg_partner(save_jpeg(tmp_path / "d.jpg", half), raw)) < 8


def test_jpeg_partner_refusals(tmp_path):
    raw = scene_dng(tmp_path / "p.dng", orientation=6)
    sensor = render_rgb(raw)
    assert photo_correlation(sensor, raw) > 0.9
    other = render_rgb(scene_dng(tmp_path / "q.dng", seed=1))  # another photo, same size
    assert photo_correlation(other, raw) < BELONG_MIN_CORRELATION
    with pytest.raises(UserError, match=r"the JPEG .*q\.jpg does not belong to RAW .*p\.dng.*correlate"):
        load_jpeg_partner(save_jpeg(tmp_path / "q.jpg", apply_orientation(other, 6)), raw)
    # sensor-orientation pixels without the EXIF tag: after undoing the RAW's rotation the shape is transposed
    with pytest.raises(UserError, match="does not belong to RAW .*aspect ratios differ"):
        load_jpeg_partner(save_jpeg(tmp_path / "s.jpg", sensor), raw)
    with pytest.raises(UserError, match="no such file"):
        load_jpeg_partner(tmp_path / "missing.jpg", raw)


# ----------------------------------------------------------------------------------------------------------------
# Bad files
# ----------------------------------------------------------------------------------------------------------------


def test_is_camera_raw():
    assert is_camera_raw("a/b.NEF") and is_camera_raw("x.cr3") and is_camera_raw(Path("y.dng"))
    assert not is_camera_raw("x.png") and not is_camera_raw("x.tiff") and not is_camera_raw("x.jpg")


def test_truncated_dng(shared_data, tmp_path):
    cut = tmp_path / "cut.dng"
    cut.write_bytes((shared_data / BLACKMAGIC).read_bytes()[:1_000_000])
    with pytest.raises(UserError, match=r"cut\.dng.*truncated"):
        read_camera_raw(cut)
    with pytest.raises(UserError, match=r"cut\.dng.*truncated"):
        render_rgb(cut)


def test_dng_cut_before_its_image_data(shared_data, tmp_path, capfd):
    """LibRaw opens the first 2,000 bytes of the Blackmagic DNG (its header, no image data) without an error and
    hands back an uninitialised mosaic; the file's own strip offsets show it is cut, and tifffile stays quiet."""
    cut = tmp_path / "head.dng"
    cut.write_bytes((shared_data / BLACKMAGIC).read_bytes()[:2000])
    with rawpy.imread(str(cut)) as probe:  # the case this guards against: no LibRaw error
        assert probe.raw_image_visible.shape == (2176, 4128)
    for read in (read_camera_raw, render_rgb):
        with pytest.raises(UserError, match=r"head\.dng: the file is truncated or damaged \(its image data run to "
                                            r"byte 3,359,558, the file has 2,000 bytes\)"):
            read(cut)
    tags_cut = tmp_path / "tags.dng"  # cut inside the tag values: the strip offsets themselves are gone
    tags_cut.write_bytes((shared_data / BLACKMAGIC).read_bytes()[:500])
    with pytest.raises(UserError, match=r"tags\.dng: the file is truncated or damaged \(its tags point past"):
        read_camera_raw(tags_cut)
    assert "TiffTag" not in capfd.readouterr().err
    assert read_camera_raw(shared_data / BLACKMAGIC).mosaic.shape == (2176, 4128)  # the whole file still reads


def box(kind: bytes, payload: bytes, large: bool = False) -> bytes:
    """One ISO base media box, with a 32-bit size or (``large``) the 64-bit form."""
    if large:
        return (1).to_bytes(4, "big") + kind + (16 + len(payload)).to_bytes(8, "big") + payload
    return (8 + len(payload)).to_bytes(4, "big") + kind + payload


def test_cr3_and_raf_cut_short_are_refused_before_libraw(tmp_path, monkeypatch):
    """Non-TIFF containers: a CR3 (ISO base media boxes) cut inside a box or before its image data box, and a RAF cut
    inside a section its header points to, are refused naming the file, before LibRaw opens them; whole files pass
    the check."""
    from data.camera_raw import _container_truncation

    cr3 = (box(b"ftyp", b"crx \x00\x00\x00\x01crx isom") + box(b"moov", bytes(40))
           + box(b"mdat", bytes(range(256)) * 8, large=True))
    raf = bytearray(b"FUJIFILMCCD-RAW 0201FF383501" + bytes(80))
    for at, (offset, length) in zip((84, 92, 100), ((108, 100), (208, 50), (258, 2000)), strict=True):
        raf[at : at + 8] = offset.to_bytes(4, "big") + length.to_bytes(4, "big")
    raf = bytes(raf) + bytes(2150)
    for name, data in (("x.cr3", cr3), ("x.raf", raf)):
        whole = tmp_path / name
        whole.write_bytes(data)
        assert _container_truncation(whole) is None, name
        ends = [*range(16, len(data), 97), *([24, 24 + 48] if name == "x.cr3" else [])]  # and between two CR3 boxes
        for end in ends:  # from the end of the RAF magic
            cut = tmp_path / f"cut_{end}_{name}"
            cut.write_bytes(data[:end])
            assert _container_truncation(cut) is not None, (name, end)
    monkeypatch.setattr(rawpy, "RawPy", pytest.fail)  # refused before LibRaw
    (tmp_path / "c.cr3").write_bytes(cr3[:1000])
    with pytest.raises(UserError, match=r"c\.cr3: the file is truncated or damaged \(its box 'mdat' runs to byte "
                                        r"2,136, the file has 1,000 bytes\); copy it again"):
        read_camera_raw(tmp_path / "c.cr3")
    (tmp_path / "b.cr3").write_bytes(cr3[:72])  # ftyp and moov whole, the image data gone
    with pytest.raises(UserError, match=r"b\.cr3: the file is truncated or damaged \(it ends at byte 72 after its "
                                        r"boxes ftyp, moov, before its image data \('mdat'\)\)"):
        read_camera_raw(tmp_path / "b.cr3")
    (tmp_path / "f.raf").write_bytes(raf[:1000])
    with pytest.raises(UserError, match=r"f\.raf: the file is truncated or damaged \(its CFA data runs to byte 2,258"):
        read_camera_raw(tmp_path / "f.raf")
    (tmp_path / "h.raf").write_bytes(raf[:60])
    with pytest.raises(UserError, match=r"h\.raf: .*its 108-byte RAF header is cut off at 60 bytes"):
        read_camera_raw(tmp_path / "h.raf")


def test_bad_files(tmp_path):
    junk = tmp_path / "junk.nef"
    junk.write_bytes(np.random.default_rng(0).bytes(50_000))
    with pytest.raises(UserError, match=r"junk\.nef.*does not support"):
        read_camera_raw(junk)
    with pytest.raises(UserError, match=r"missing\.cr2: no such file"):
        read_camera_raw(tmp_path / "missing.cr2")
    small = write_dng(tmp_path / "small.dng", np.full((32, 48), 500, np.uint16))
    cut = tmp_path / "cut_small.dng"
    cut.write_bytes(small.read_bytes()[:1500])
    with pytest.raises(UserError, match=r"cut_small\.dng.*truncated"):
        read_camera_raw(cut)


def test_linear_dng_is_refused(tmp_path):
    rgb = np.random.default_rng(0).integers(100, 4000, size=(32, 48, 3)).astype(np.uint16)
    path = write_dng(tmp_path / "linear.dng", rgb)
    with rawpy.imread(str(path)) as probe:  # make sure pidng wrote what LibRaw reads as a demosaicked image
        assert probe.raw_type == rawpy.RawType.Stack
    with pytest.raises(UserError, match=r"linear\.dng.*already demosaicked"):
        read_camera_raw(path)
    with pytest.raises(UserError, match=r"linear\.dng.*already demosaicked"):
        render_rgb(path)
