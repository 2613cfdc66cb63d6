"""data.rawrr_dataset, data.image_io and util.image_io on tiny datasets in tmp_path (16-bit PNG and TIFF mosaics)."""

import json
from argparse import Namespace

import numpy as np
import pytest
import tifffile
import torch
import torch.nn.functional as F
from PIL import Image

from data.image_io import read_raw_mosaic, write_png16, write_raw_mosaic
from data.rawrr_dataset import OFFICIAL_TEST_LONG_SIDE, RawrrDataset, official_test_size
from util.errors import UserError
from util.image_io import files_by_stem, quantize, read_rgb, to_uint8, write_rgb
from util.isp import normalize_raw, pack_raw, unpack_raw

H, W = 48, 64  # tiny 64x48 (width x height) images


def make_pair(root, prefix, stem, seed, raw_ext=".png", size=(H, W), raw_size=None):
    """Write <prefix>_rgb/<stem>.png and <prefix>_raw/<stem><raw_ext>; return (rgb u8, mosaic u16)."""
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)
    mosaic = rng.integers(400, 16383, size=raw_size or size, dtype=np.uint16)
    write_rgb(root / f"{prefix}_rgb" / f"{stem}.png", rgb)
    write_raw_mosaic(root / f"{prefix}_raw" / f"{stem}{raw_ext}", mosaic)
    return rgb, mosaic


def opt_for(root, **kw):
    return Namespace(dataroot=str(root), phase="test", eval_resize=kw.pop("eval_resize", "none"), num_test=0, **kw)


def expected_raw(mosaic, pattern="RGGB", black=400, white=16383):
    return normalize_raw(pack_raw(mosaic, pattern), black, white)


def test_image_io_round_trips_and_errors(tmp_path):
    mosaic = np.arange(H * W, dtype=np.uint16).reshape(H, W) * 7
    write_png16(tmp_path / "m.png", mosaic)
    np.testing.assert_array_equal(read_raw_mosaic(tmp_path / "m.png"), mosaic)
    write_raw_mosaic(tmp_path / "m.tif", mosaic)
    assert read_raw_mosaic(tmp_path / "m.tif").dtype == np.uint16
    np.testing.assert_array_equal(read_raw_mosaic(tmp_path / "m.tif"), mosaic)
    Image.fromarray(np.zeros((4, 6, 4), np.uint8), "RGBA").save(tmp_path / "a.png")
    assert read_rgb(tmp_path / "a.png").shape == (4, 6, 3)
    Image.fromarray(np.full((4, 6), 9, np.uint8), "L").save(tmp_path / "g.png")
    assert read_rgb(tmp_path / "g.png").shape == (4, 6, 3) and read_rgb(tmp_path / "g.png").max() == 9
    with pytest.raises(UserError, match="8-bit RGB or grey"):
        read_rgb(tmp_path / "m.png")
    with pytest.raises(UserError, match="channels"):
        read_raw_mosaic(tmp_path / "a.png")
    tifffile.imwrite(tmp_path / "c.tiff", np.zeros((4, 6, 3), np.uint16))
    with pytest.raises(UserError, match="single-channel"):
        read_raw_mosaic(tmp_path / "c.tiff")
    tifffile.imwrite(tmp_path / "b.tiff", np.zeros((4, 6), np.uint8))
    with pytest.raises(UserError, match="8-bit"):
        read_raw_mosaic(tmp_path / "b.tiff")
    with pytest.raises(UserError, match="unsupported extension"):
        read_raw_mosaic(tmp_path / "x.jpg")


def test_files_by_stem_and_rgb_only(tmp_path):
    for name in ("b.png", "a.PNG", "a.bmp", ".hidden.png"):
        Image.fromarray(np.zeros((4, 6), np.uint8), "L").save(tmp_path / name, format=name.split(".")[-1])
    (tmp_path / "notes.txt").write_text("not an image")
    assert files_by_stem(tmp_path, (".png", ".bmp")) == {"a": [tmp_path / "a.PNG", tmp_path / "a.bmp"],
                                                        "b": [tmp_path / "b.png"]}
    assert files_by_stem(tmp_path, (".png",), unique=True) == {"a": tmp_path / "a.PNG", "b": tmp_path / "b.png"}
    with pytest.raises(UserError, match=r": a\.PNG and a\.bmp share a stem; keep one of them"):
        files_by_stem(tmp_path, (".png", ".bmp"), unique=True)
    with pytest.raises(UserError, match=r"missing is not a folder"):
        files_by_stem(tmp_path / "missing", (".png",))
    with pytest.raises(UserError, match=r"b\.png: image mode L, expected 8-bit RGB"):
        read_rgb(tmp_path / "b.png", rgb_only=True)
    with pytest.raises(UserError, match=r"cannot read image .*nothing\.png: no such file"):
        read_rgb(tmp_path / "nothing.png")
    x = torch.tensor([[[-0.5, 0.0, 0.5, 1.0, 2.0]]]).expand(3, 1, 5)
    assert quantize(x).dtype == torch.uint8 and quantize(x).tolist()[0][0] == [0, 0, 128, 255, 255]
    x = torch.rand(3, 5, 7, generator=torch.Generator().manual_seed(0)) * 1.2 - 0.1
    assert np.array_equal(to_uint8(x), quantize(x).permute(1, 2, 0).numpy())  # one quantiser, two layouts
    assert np.array_equal(to_uint8(x.permute(1, 2, 0).numpy()), to_uint8(x))


def test_pairs_by_stem_not_sorted_position(tmp_path):
    # sorted file names: testB_rgb = [x.png, x.q.png], testB_raw = [x.q.png, x.tiff]: positions disagree
    rgb_x, raw_x = make_pair(tmp_path, "testB", "x", 1, raw_ext=".tiff")
    rgb_q, raw_q = make_pair(tmp_path, "testB", "x.q", 2, raw_ext=".png")
    assert sorted(p.name for p in (tmp_path / "testB_raw").iterdir()) == ["x.q.png", "x.tiff"]
    ds = RawrrDataset(opt_for(tmp_path))
    assert len(ds) == 2
    by_stem = {ds[i]["stem"]: ds[i] for i in range(len(ds))}
    for stem, rgb, raw in (("x", rgb_x, raw_x), ("x.q", rgb_q, raw_q)):
        item = by_stem[stem]
        assert item["I_rgb"].dtype == torch.float32 and item["I_rgb"].shape == (3, H, W)
        np.testing.assert_allclose(item["I_rgb"].numpy(), rgb.transpose(2, 0, 1) / 255.0, atol=1e-7)
        assert item["I_raw"].shape == (4, H // 2, W // 2)
        np.testing.assert_allclose(item["I_raw"].numpy(), expected_raw(raw), atol=1e-7)
        assert item["size"] == (H, W) and item["camera"] == "default"
        assert item["paths"]["I_raw"].endswith(f"{stem}.tiff" if stem == "x" else f"{stem}.png")
        assert not any(k.startswith(("T_", "R_")) for k in item)


def test_ground_truth_and_camera_profile(tmp_path):
    make_pair(tmp_path, "testB", "a", 1)
    _, t_raw = make_pair(tmp_path, "testA1", "a", 2, raw_ext=".tif")
    r_rgb, _ = make_pair(tmp_path, "testA2", "a", 3)
    (tmp_path / "camera.json").write_text(json.dumps({"camera": "nikon_d90"}))
    item = RawrrDataset(opt_for(tmp_path))[0]
    assert set(item) == {"stem", "I_rgb", "I_raw", "T_rgb", "T_raw", "R_rgb", "R_raw", "paths", "size", "camera"}
    assert item["camera"] == "nikon_d90"
    np.testing.assert_allclose(item["T_raw"].numpy(), expected_raw(t_raw, "GBRG", 0, 4095), atol=1e-7)
    np.testing.assert_allclose(item["R_rgb"].numpy(), r_rgb.transpose(2, 0, 1) / 255.0, atol=1e-7)
    assert set(item["paths"]) == {"I_rgb", "I_raw", "T_rgb", "T_raw", "R_rgb", "R_raw"}


def test_wogt_layout_has_no_gt_keys_and_num_test(tmp_path):
    for i, stem in enumerate("cab"):
        make_pair(tmp_path, "wogtB", stem, i)
    ds = RawrrDataset(Namespace(dataroot=str(tmp_path), phase="test", eval_resize="none", num_test=2))
    assert [ds[i]["stem"] for i in range(len(ds))] == ["a", "b"]
    assert set(ds[0]) == {"stem", "I_rgb", "I_raw", "paths", "size", "camera"}


def test_missing_partner(tmp_path):
    make_pair(tmp_path, "testB", "a", 1)
    make_pair(tmp_path, "testB", "b", 2)
    (tmp_path / "testB_raw" / "b.png").unlink()
    with pytest.raises(UserError, match="b.png") as info:
        RawrrDataset(opt_for(tmp_path))
    assert "testB_raw" in str(info.value) and "b.tiff" in str(info.value)
    (tmp_path / "testB_rgb" / "b.png").unlink()
    make_pair(tmp_path, "testA1", "a", 3)
    (tmp_path / "testA1_rgb" / "a.png").unlink()
    with pytest.raises(UserError, match="testA1_rgb"):
        RawrrDataset(opt_for(tmp_path))


def test_no_input_folders(tmp_path):
    (tmp_path / "trainA1_rgb").mkdir()
    with pytest.raises(UserError) as info:
        RawrrDataset(opt_for(tmp_path))
    assert "testB_rgb" in str(info.value) and "wogtB_rgb" in str(info.value)


@pytest.mark.parametrize("problem", ["8bit", "odd", "mismatch", "truncated"])
def test_bad_files(tmp_path, problem):
    if problem == "8bit":
        make_pair(tmp_path, "testB", "a", 1)
        Image.fromarray(np.zeros((H, W), np.uint8), "L").save(tmp_path / "testB_raw" / "a.png")
        expected = "8-bit image"
    elif problem == "odd":
        make_pair(tmp_path, "testB", "a", 1, raw_ext=".tiff", size=(H, W - 1))
        expected = "63x48"
    elif problem == "mismatch":
        make_pair(tmp_path, "testB", "a", 1, raw_size=(H, W - 2))
        expected = "64x48 but its RAW"
    else:
        make_pair(tmp_path, "testB", "a", 1)
        path = tmp_path / "testB_rgb" / "a.png"
        path.write_bytes(path.read_bytes()[:200])
        expected = "cannot read image"
    ds = RawrrDataset(opt_for(tmp_path))
    with pytest.raises(UserError, match=expected) as info:
        ds[0]
    assert "a.png" in str(info.value) or "a.tiff" in str(info.value)
    if problem == "mismatch":
        assert "testB_rgb" in str(info.value) and "testB_raw" in str(info.value) and "62x48" in str(info.value)


def test_official_size_rule():
    assert OFFICIAL_TEST_LONG_SIDE == 640
    assert official_test_size(750, 1000) == (448, 640)
    assert official_test_size(1000, 750) == (640, 448)
    assert official_test_size(448, 640) == (448, 640)
    assert official_test_size(3000, 3000) == (640, 640)
    assert official_test_size(600, 1000) == (384, 640)  # 0.6 * 320 / 32 = 6 -> 6 * 64
    with pytest.raises(UserError, match="eval_resize none"):
        official_test_size(20, 1000)


def test_official_geometry(tmp_path):
    h, w = 750, 1000
    for prefix, seed in (("testB", 1), ("testA1", 2), ("testA2", 3)):
        make_pair(tmp_path, prefix, "big", seed, size=(h, w))
    # input: each packed channel = its own level + a left-to-right ramp, RGB = a top-to-bottom ramp
    levels = np.array([1000, 2000, 3000, 4000], np.float64)[:, None, None]
    packed = levels + np.linspace(0, 8000, w // 2)[None, None, :] + np.zeros((4, h // 2, 1))
    mosaic = unpack_raw(packed.round().astype(np.uint16), "RGGB")
    write_raw_mosaic(tmp_path / "testB_raw" / "big.png", mosaic)
    rgb = np.broadcast_to(np.linspace(0, 255, h).round().astype(np.uint8)[:, None, None], (h, w, 3)).copy()
    write_rgb(tmp_path / "testB_rgb" / "big.png", rgb)

    item = RawrrDataset(opt_for(tmp_path, eval_resize="official"))[0]
    for role in "ITR":
        assert item[f"{role}_rgb"].shape == (3, 448, 640)
        assert item[f"{role}_raw"].shape == (4, 224, 320)
    assert item["size"] == (h, w)
    I_raw, I_rgb = item["I_raw"].numpy(), item["I_rgb"].numpy()
    # channels are not mixed and the orientation is kept: RAW varies along W only, RGB along H only
    level_steps = np.broadcast_to((levels - levels[0]) / (16383 - 400), I_raw.shape)
    np.testing.assert_allclose(I_raw - I_raw[:1], level_steps, atol=1e-5)
    np.testing.assert_allclose(np.diff(I_raw, axis=1), 0, atol=1e-5)
    assert np.all(np.diff(I_raw, axis=2) > 0)
    np.testing.assert_allclose(np.diff(I_rgb, axis=2), 0, atol=1e-6)
    assert I_rgb[:, 0].max() < 0.01 and I_rgb[:, -1].min() > 0.99
    ref = F.interpolate(
        torch.from_numpy(expected_raw(mosaic))[None], size=(224, 320), mode="bilinear", antialias=True
    )[0]
    np.testing.assert_allclose(I_raw, ref.numpy(), atol=1e-6)
    native = RawrrDataset(opt_for(tmp_path, eval_resize="none"))[0]
    assert native["I_rgb"].shape == (3, h, w) and native["I_raw"].shape == (4, h // 2, w // 2)


def test_official_size_passes_unchanged(tmp_path):
    rgb, mosaic = make_pair(tmp_path, "wogtB", "a", 1, size=(448, 640))
    item = RawrrDataset(opt_for(tmp_path, eval_resize="official"))[0]
    np.testing.assert_array_equal(item["I_rgb"].numpy(), rgb.transpose(2, 0, 1).astype(np.float32) / 255.0)
    np.testing.assert_array_equal(item["I_raw"].numpy(), expected_raw(mosaic))


def test_bad_options(tmp_path):
    make_pair(tmp_path, "testB", "a", 1)
    with pytest.raises(UserError, match="official, none"):
        RawrrDataset(opt_for(tmp_path, eval_resize="bicubic"))
    with pytest.raises(UserError, match="--phase"):
        RawrrDataset(Namespace(dataroot=str(tmp_path), phase="train", eval_resize="none", num_test=0))


def test_read_rgb_on_shared_photo(shared_data):
    photo = shared_data / "photos" / "kodak24" / "kodim01.png"
    if not photo.is_file():
        pytest.skip(f"{photo} is absent")
    rgb = read_rgb(photo)
    assert rgb.dtype == np.uint8 and rgb.shape == (500, 500, 3) and rgb.std() > 10


def write_png_rgb16(path, rgb_u16):
    """A 16-bit RGB PNG, written by hand (Pillow writes no 16-bit RGB PNG; cameras and editors do)."""
    import struct
    import zlib

    h, w, _ = rgb_u16.shape
    rows = b"".join(b"\x00" + rgb_u16[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)  # bit depth 16, colour type 2 (RGB)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
                     + chunk(b"IEND", b""))


def test_16bit_rgb_is_refused_not_reduced(tmp_path):
    rgb16 = np.random.default_rng(0).integers(0, 65536, size=(4, 6, 3), dtype=np.uint16)
    write_png_rgb16(tmp_path / "deep.png", rgb16)
    assert Image.open(tmp_path / "deep.png").mode == "RGB"  # Pillow would silently keep the top 8 bits
    with pytest.raises(UserError, match=r"deep\.png: it has 16-bit samples \(RGB\); save it as an 8-bit RGB photo"):
        read_rgb(tmp_path / "deep.png")
    tifffile.imwrite(tmp_path / "deep.tif", rgb16, photometric="rgb")
    with pytest.raises(UserError, match=r"deep\.tif: it has 16-bit samples"):
        read_rgb(tmp_path / "deep.tif")
    tifffile.imwrite(tmp_path / "float.tif", rgb16.astype(np.float32) / 65535, photometric="rgb")
    with pytest.raises(UserError, match=r"cannot read image .*float\.tif"):
        read_rgb(tmp_path / "float.tif")
    # through the dataset: one line naming the file
    make_pair(tmp_path / "set", "testB", "a", 1, size=(4, 6))
    write_png_rgb16(tmp_path / "set" / "testB_rgb" / "a.png", rgb16)
    with pytest.raises(UserError, match=r"testB_rgb/a\.png: it has 16-bit samples"):
        RawrrDataset(opt_for(tmp_path / "set"))[0]


def test_empty_files_are_named(tmp_path):
    make_pair(tmp_path, "testB", "a", 1)
    (tmp_path / "testB_rgb" / "a.png").write_bytes(b"")
    with pytest.raises(UserError, match=r"testB_rgb/a\.png: the file is empty \(0 bytes\)"):
        RawrrDataset(opt_for(tmp_path))[0]
    make_pair(tmp_path, "testB", "a", 1)
    (tmp_path / "testB_raw" / "a.png").write_bytes(b"")
    with pytest.raises(UserError, match=r"testB_raw/a\.png: the file is empty"):
        RawrrDataset(opt_for(tmp_path))[0]


def test_links_and_folders_named_like_images(tmp_path):
    make_pair(tmp_path, "testB", "a", 1)
    # a looping link where a data folder belongs: not "holds no test data"
    (tmp_path / "testA1_rgb").symlink_to(tmp_path / "testA1_rgb")
    with pytest.raises(UserError, match=r"testA1_rgb is a symbolic link that loops back on itself"):
        RawrrDataset(opt_for(tmp_path))
    (tmp_path / "testA1_rgb").unlink()
    # the dataroot itself a loop
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    with pytest.raises(UserError, match=r"loop is a symbolic link that loops"):
        RawrrDataset(opt_for(tmp_path / "loop"))
    # an image link that points nowhere, and a folder named like an image: named, not "no partner"
    (tmp_path / "testB_rgb" / "b.png").symlink_to(tmp_path / "gone.png")
    with pytest.raises(UserError, match=r"b\.png is a symbolic link to .*gone\.png, which does not exist"):
        RawrrDataset(opt_for(tmp_path))
    (tmp_path / "testB_rgb" / "b.png").unlink()
    (tmp_path / "testB_raw" / "b.tiff").mkdir()
    with pytest.raises(UserError, match=r"b\.tiff is a folder, not an image file"):
        RawrrDataset(opt_for(tmp_path))
    (tmp_path / "testB_raw" / "b.tiff").rmdir()
    (tmp_path / "testA2_raw").write_text("not a folder")
    with pytest.raises(UserError, match=r"testA2_raw is a file, not a folder"):
        RawrrDataset(opt_for(tmp_path))


def test_ambiguous_partner(tmp_path):
    make_pair(tmp_path, "testB", "a", 1)
    make_pair(tmp_path, "testB", "a", 1, raw_ext=".tiff")
    with pytest.raises(UserError, match=r"ambiguous partner for .*a\.png: a\.png, a\.tiff in .*testB_raw; keep one"):
        RawrrDataset(opt_for(tmp_path))


def test_missing_partner_message_is_short(tmp_path):
    make_pair(tmp_path, "testB", "a", 1)
    (tmp_path / "testB_raw" / "a.png").unlink()
    with pytest.raises(UserError) as info:
        RawrrDataset(opt_for(tmp_path))
    message = str(info.value).replace(str(tmp_path), "")
    assert "a.png / a.tiff / a.tif or a camera RAW file a.dng / a.nef" in message
    assert "kinds, see README" in message and ".x3f" not in message and len(message) < 200, message
