"""util.image_io.read_photo: photos of 8 and 16 bits per sample at full precision (remove_reflection.py's input)."""

import struct
import zlib

import numpy as np
import pytest
import tifffile
from PIL import Image, ImageOps

import remove_reflection
from tests.tiny_data import save_random_generator
from util.errors import UserError
from util.image_io import exif_orient, read_photo, read_rgb

# Adam7's seven passes: first column, first row, column step, row step
ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def filtered_rows(data: np.ndarray, bpp: int) -> bytes:
    """PNG scanlines of the bytes ``data`` (rows x bytes), each row filtered with PNG's five filters in turn."""
    rows, prev = [], np.zeros(data.shape[1], np.int32)
    for y, raw in enumerate(data):
        kind = y % 5
        left = np.concatenate([np.zeros(bpp, np.int32), raw[:-bpp]])
        up_left = np.concatenate([np.zeros(bpp, np.int32), prev[:-bpp]])
        if kind == 4:
            p = left + prev - up_left
            pa, pb, pc = np.abs(p - left), np.abs(p - prev), np.abs(p - up_left)
            predicted = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, prev, up_left))
        else:
            predicted = [np.zeros_like(raw), left, prev, (left + prev) // 2][kind]
        rows.append(bytes([kind]) + ((raw - predicted) % 256).astype(np.uint8).tobytes())
        prev = raw
    return b"".join(rows)


def write_png16(path, values: np.ndarray, interlaced: bool = False) -> None:
    """A 16-bit PNG (grey, grey+alpha, RGB or RGBA by the channel count) whose rows use PNG's five filters in turn
    (none, Sub, Up, Average, Paeth), as encoders choose them row by row, optionally Adam7-interlaced; written by
    hand (Pillow writes neither)."""
    values = values if values.ndim == 3 else values[..., None]
    h, w, c = values.shape
    bpp = 2 * c

    def as_bytes(v):
        return v.astype(">u2").reshape(v.shape[0], -1).view(np.uint8).astype(np.int32)

    if interlaced:
        passes = [values[y0::dy, x0::dx] for x0, y0, dx, dy in ADAM7]
        payload = b"".join(filtered_rows(as_bytes(v), bpp) for v in passes if v.size)
    else:
        payload = filtered_rows(as_bytes(values), bpp)

    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    header = struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, int(interlaced))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(payload))
                     + chunk(b"IEND", b""))


@pytest.fixture
def deep():
    return np.random.default_rng(0).integers(0, 65536, size=(12, 17, 3), dtype=np.uint16)


def test_16bit_png_is_read_exactly_whatever_the_row_filters(tmp_path, deep):
    write_png16(tmp_path / "rgb.png", deep)
    write_png16(tmp_path / "rgba.png", np.dstack([deep, deep[..., :1]]))
    write_png16(tmp_path / "grey.png", deep[..., 1])
    assert np.asarray(Image.open(tmp_path / "rgb.png")).dtype == np.uint8  # Pillow alone keeps the high bytes
    expected = deep.astype(np.float32) / 65535
    for name in ("rgb.png", "rgba.png"):
        rgb, bits = read_photo(tmp_path / name)
        assert bits == 16 and rgb.dtype == np.float32
        np.testing.assert_array_equal(rgb, expected)
    grey, bits = read_photo(tmp_path / "grey.png")
    assert bits == 16
    np.testing.assert_array_equal(grey, np.repeat(expected[..., 1:2], 3, axis=2))
    # Adam7-interlaced: seven sub-images, each with its own filtered rows
    for name, values in (("rgb_i.png", deep), ("rgba_i.png", np.dstack([deep, deep[..., :1]])),
                         ("grey_i.png", deep[..., 1])):
        write_png16(tmp_path / name, values, interlaced=True)
        assert Image.open(tmp_path / name).info.get("interlace") == 1
        rgb, bits = read_photo(tmp_path / name)
        assert bits == 16
        np.testing.assert_array_equal(rgb, expected if values.ndim == 3 else np.repeat(expected[..., 1:2], 3, axis=2))


def test_16bit_tiff_layouts(tmp_path, deep):
    expected = deep.astype(np.float32) / 65535
    tifffile.imwrite(tmp_path / "rgb.tif", deep, photometric="rgb")
    tifffile.imwrite(tmp_path / "planar.tif", np.moveaxis(deep, 2, 0), photometric="rgb", planarconfig="separate")
    tifffile.imwrite(tmp_path / "rgba.tif", np.dstack([deep, deep[..., :1]]), photometric="rgb",
                     extrasamples=["unassalpha"])
    for name in ("rgb.tif", "planar.tif", "rgba.tif"):
        rgb, bits = read_photo(tmp_path / name)
        assert bits == 16, name
        np.testing.assert_array_equal(rgb, expected, err_msg=name)
    tifffile.imwrite(tmp_path / "grey.tif", deep[..., 0])
    np.testing.assert_array_equal(read_photo(tmp_path / "grey.tif")[0], np.repeat(expected[..., :1], 3, axis=2))
    # Pillow reads a plane-by-plane 16-bit TIFF as 8-bit samples: read_rgb refuses it instead of returning garbage
    with pytest.raises(UserError, match=r"planar\.tif: it has 16-bit samples"):
        read_rgb(tmp_path / "planar.tif")


def test_8bit_photos_read_as_before_and_16bit_copies_of_them_read_identically(tmp_path):
    rgb_u8 = np.random.default_rng(1).integers(0, 256, size=(10, 14, 3), dtype=np.uint8)
    Image.fromarray(rgb_u8).save(tmp_path / "p.png")
    tifffile.imwrite(tmp_path / "p16.tif", rgb_u8.astype(np.uint16) * 257, photometric="rgb")
    write_png16(tmp_path / "p16.png", rgb_u8.astype(np.uint16) * 257)
    eight, bits = read_photo(tmp_path / "p.png")
    assert bits == 8
    np.testing.assert_array_equal(eight, read_rgb(tmp_path / "p.png").astype(np.float32) / 255)
    for name in ("p16.tif", "p16.png"):
        sixteen, bits = read_photo(tmp_path / name)
        assert bits == 16
        np.testing.assert_array_equal(sixteen, eight)  # v * 257 / 65535 == v / 255, in float32 too


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_of_8_and_16bit_files_as_pillow_turns_them(tmp_path, orientation):
    stored = np.random.default_rng(orientation).integers(0, 256, size=(6, 9, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(stored).save(tmp_path / "o.jpg", exif=exif, quality=100)
    with Image.open(tmp_path / "o.jpg") as img:
        jpeg = np.asarray(img)
        viewed = np.asarray(ImageOps.exif_transpose(img))
    np.testing.assert_array_equal(exif_orient(jpeg, orientation), viewed)
    np.testing.assert_array_equal(read_photo(tmp_path / "o.jpg")[0], viewed.astype(np.float32) / 255)
    tifffile.imwrite(tmp_path / "o16.tif", stored.astype(np.uint16) * 257, photometric="rgb", metadata=None,
                     extratags=[(274, "H", 1, orientation, True)])
    np.testing.assert_array_equal(read_photo(tmp_path / "o16.tif")[0],
                                  exif_orient(stored, orientation).astype(np.float32) / 255)
    np.testing.assert_array_equal(read_photo(tmp_path / "o16.tif", exif_orientation=False)[0],
                                  stored.astype(np.float32) / 255)


def test_float_32bit_and_unsupported_deep_files_are_named(tmp_path, deep):
    tifffile.imwrite(tmp_path / "float.tif", deep.astype(np.float32) / 65535, photometric="rgb")  # Pillow: unknown
    Image.fromarray(deep[..., 0].astype(np.float32) / 65535, "F").save(tmp_path / "grey_float.tif")
    tifffile.imwrite(tmp_path / "int32.tif", deep[..., 0].astype(np.uint32))
    write_png16(tmp_path / "grey_alpha.png", deep[..., :2])
    cases = {"float.tif": "floating-point samples; export the photo as a 16-bit TIFF or PNG",
             "grey_float.tif": "floating-point samples", "int32.tif": "uint32",
             "grey_alpha.png": "not read at full precision here; export it as a 16-bit TIFF"}
    for name, needle in cases.items():
        with pytest.raises(UserError, match=rf"cannot read image .*{name}: .*{needle}"):
            read_photo(tmp_path / name)


def test_remove_reflection_takes_16bit_exports(tmp_path):
    """A photographer's 16-bit export runs at its precision: the 16-bit copy of an 8-bit photo gives exactly the 8-bit
    photo's results, and values between two 8-bit levels reach the network."""
    weights = save_random_generator(tmp_path / "w.pth", ngf=8, num_cab=1)
    rgb_u8 = np.random.default_rng(2).integers(0, 256, size=(30, 41, 3), dtype=np.uint8)
    (tmp_path / "in").mkdir()
    Image.fromarray(rgb_u8).save(tmp_path / "in" / "eight.png")
    tifffile.imwrite(tmp_path / "in" / "deep.tif", rgb_u8.astype(np.uint16) * 257, photometric="rgb")
    write_png16(tmp_path / "in" / "deeppng.png", rgb_u8.astype(np.uint16) * 257)
    between = np.minimum(rgb_u8.astype(np.uint16) * 257 + 100, 65535)  # under half a level: 8 bits would round it off
    tifffile.imwrite(tmp_path / "in" / "between.tif", between, photometric="rgb")
    code = remove_reflection.main([str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--checkpoint", str(weights),
                                   "--gpu_ids", "-1", "--precision", "fp32", "--format", "tiff16"])
    assert code == 0
    eight = tifffile.imread(tmp_path / "out" / "eight_T.tif")
    assert eight.shape == (30, 41, 3) and eight.dtype == np.uint16
    for name in ("deep_T.tif", "deeppng_T.tif"):
        np.testing.assert_array_equal(tifffile.imread(tmp_path / "out" / name), eight)
    assert not np.array_equal(tifffile.imread(tmp_path / "out" / "between_T.tif"), eight)


def test_results_carry_the_inputs_colour_profile(tmp_path, capsys):
    """Results are in the colour encoding of their input: a photo with an embedded ICC profile (Adobe RGB, ProPhoto
    from a RAW developer) gets the same profile in T, R and the page's previews, so that they look like it; a
    profile other than sRGB is named in a note."""
    from PIL import ImageCms

    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    other = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()  # stands for any non-sRGB profile
    weights = save_random_generator(tmp_path / "w.pth", ngf=8, num_cab=1)
    rgb_u8 = np.random.default_rng(3).integers(0, 256, size=(24, 32, 3), dtype=np.uint8)
    (tmp_path / "in").mkdir()
    Image.fromarray(rgb_u8).save(tmp_path / "in" / "s.jpg", icc_profile=srgb, quality=95)
    Image.fromarray(rgb_u8).save(tmp_path / "in" / "w.png", icc_profile=other)
    tifffile.imwrite(tmp_path / "in" / "d.tif", rgb_u8.astype(np.uint16) * 257, photometric="rgb", iccprofile=other)
    Image.fromarray(rgb_u8).save(tmp_path / "in" / "plain.png")
    common = ["--checkpoint", str(weights), "--gpu_ids", "-1", "--save_reflection"]
    assert remove_reflection.main([str(tmp_path / "in"), "-o", str(tmp_path / "png"), "--page", *common]) == 0
    notes = capsys.readouterr().out
    assert "note: w.png is in the colour space 'Lab identity built-in'" in notes and "d.tif is in" in notes
    assert "s.jpg is in" not in notes
    for stem, profile in (("s", srgb), ("w", other), ("d", other), ("plain", None)):
        for name in (f"{stem}_T.png", f"{stem}_R.png", f"previews/{stem}_T.jpg", f"previews/{stem}_I.jpg"):
            with Image.open(tmp_path / "png" / name) as img:
                assert img.info.get("icc_profile") == profile, name
    assert remove_reflection.main([str(tmp_path / "in"), "-o", str(tmp_path / "t16"), "--format", "tiff16",
                                   *common]) == 0
    assert remove_reflection.main([str(tmp_path / "in"), "-o", str(tmp_path / "jpg"), "--format", "jpg",
                                   *common]) == 0
    with tifffile.TiffFile(tmp_path / "t16" / "d_T.tif") as tif:
        assert tif.pages[0].tags["InterColorProfile"].value == other
    with Image.open(tmp_path / "jpg" / "w_R.jpg") as img:
        assert img.info.get("icc_profile") == other


def test_results_carry_the_inputs_exif_upright(tmp_path):
    """The camera, exposure and date of a photo stay with its results (a photo library sorts by them); the results
    are written upright, so their EXIF says orientation 1 and gives the upright pixel dimensions."""
    weights = save_random_generator(tmp_path / "w.pth", ngf=8, num_cab=1)
    exif = Image.Exif()
    exif[0x0112], exif[0x010F], exif[0x0110] = 6, "Canon", "EOS R5"  # orientation: rotate 90 degrees to view
    sub = exif.get_ifd(0x8769)
    sub[0x9003], sub[0x829A], sub[0xA002], sub[0xA003] = "2026:12:01 10:00:00", 0.004, 32, 24
    (tmp_path / "in").mkdir()
    rgb_u8 = np.random.default_rng(4).integers(0, 256, size=(24, 32, 3), dtype=np.uint8)
    Image.fromarray(rgb_u8).save(tmp_path / "in" / "shot.jpg", exif=exif, quality=95)
    (tmp_path / "tiff").mkdir()
    for fmt in ("png", "jpg"):
        out = tmp_path / fmt
        assert remove_reflection.main([str(tmp_path / "in"), "-o", str(out), "--format", fmt, "--checkpoint",
                                       str(weights), "--gpu_ids", "-1"]) == 0
        with Image.open(out / f"shot_T.{fmt}") as img:
            assert img.size == (24, 32)  # upright
            written = img.getexif()
        assert written[0x0112] == 1 and written[0x010F] == "Canon" and written[0x0110] == "EOS R5"
        sub = written.get_ifd(0x8769)
        assert sub[0x9003] == "2026:12:01 10:00:00" and float(sub[0x829A]) == 0.004
        assert (sub[0xA002], sub[0xA003]) == (24, 32)
    # a 16-bit TIFF: its camera tags travel, its own layout (strip offsets, bits per sample, ...) does not
    tifffile.imwrite(tmp_path / "tiff" / "t.tif", rgb_u8.astype(np.uint16) * 257, photometric="rgb",
                     extratags=[(271, "s", 0, "Nikon", True)])
    assert remove_reflection.main([str(tmp_path / "tiff" / "t.tif"), "-o", str(tmp_path / "tout"), "--checkpoint",
                                   str(weights), "--gpu_ids", "-1"]) == 0
    with Image.open(tmp_path / "tout" / "t_T.png") as img:
        written = img.getexif()
    assert written[0x010F] == "Nikon" and 273 not in written and 258 not in written


def test_a_camera_raw_under_an_image_name_is_named_not_read_as_its_preview(tmp_path, deep):
    """A RAW renamed .jpg / .tif (a DNG, or a TIFF-based RAW whose first image is a small preview, as Kodak's KDC)
    gets one line saying what it is, from read_rgb and read_photo alike, and through remove_reflection.py."""
    pytest.importorskip("pidng")
    from tests.test_camera_raw import scene_dng

    scene_dng(tmp_path / "cam.dng", h=64, w=96, seed=1)
    (tmp_path / "cam.dng").rename(tmp_path / "cam.tif")
    for reader in (read_rgb, read_photo):
        with pytest.raises(UserError, match=r"cam\.tif: it holds a camera RAW file \(96x64 sensor pixels\), not an "
                                            r"RGB image; give it the RAW extension"):
            reader(tmp_path / "cam.tif")
    tifffile.imwrite(tmp_path / "grey.tif", deep[..., 0])  # LibRaw opens it too, as the image it is
    assert read_photo(tmp_path / "grey.tif")[1] == 16


def test_a_kodak_raw_renamed_jpg_is_not_read_as_its_96x64_preview(shared_data, tmp_path):
    kdc = shared_data / "raw" / "rawpy_RAW_KODAK_DC50.KDC"
    if not kdc.is_file():
        pytest.skip(f"{kdc} is not there")
    (tmp_path / "kdc.jpg").write_bytes(kdc.read_bytes())
    assert Image.open(tmp_path / "kdc.jpg").size == (96, 64)  # what Pillow alone would give
    with pytest.raises(UserError, match=r"kdc\.jpg: it holds a camera RAW file \(.*\(read as an image it is only "
                                        r"its 96x64 preview\)"):
        read_rgb(tmp_path / "kdc.jpg")
    weights = save_random_generator(tmp_path / "w.pth", ngf=8, num_cab=1)
    with pytest.raises(UserError, match=r"kdc\.jpg: it holds a camera RAW file"):
        remove_reflection.main([str(tmp_path / "kdc.jpg"), "-o", str(tmp_path / "out"), "--checkpoint", str(weights),
                                "--gpu_ids", "-1"])
