"""remove_reflection.py for photographers: the reflection-free DNG (--raw_out), 16-bit TIFFs (--format tiff16) and the
before/after page (--page), on the real RAW files of ../shared/data and on pidng DNGs of all four CFA patterns.

Two stand-in networks make the expected results known: :class:`models.inference.IdentityNet` removes nothing (the DNG
must then hold the photo's own mosaic, value for value), :class:`GainNet` removes a fixed share of the light (rawpy's
rendering of the DNG must then be the T that was saved, within a stated PSNR).
"""

import io
import json
import os
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urljoin
from urllib.request import url2pathname

import numpy as np
import pytest
import rawpy
import tifffile
import torch
from PIL import Image

import remove_reflection
from data.camera_raw import CameraRaw, apply_orientation, read_camera_raw, render_rgb
from data.raw_out import RAW_MOSAIC_MODES, black_by_site
from models.inference import IdentityNet
from scripts import measure_dng_modes
from tests.test_camera_raw import BLACKMAGIC, DNG_BLACK_BY_SITE, KODAK, save_jpeg, scene_dng
from tests.test_html_report import Links
from tests.tiny_data import save_random_generator
from util.dng import read_source_metadata
from util.errors import UserError
from util.isp import CFA_PATTERNS, srgb_decode, srgb_encode
from util.metrics import psnr

pytest.importorskip("pidng", reason="pidng (the DNG writer) is not installed")

GAIN = 0.5  # GainNet: half of the light was reflection
# rawpy's rendering of the DNG against the T saved (8-bit PSNR, dB). Measured with GainNet and the default mode
# (ratio): 46.3 (Blackmagic, 9 Mpx), 51.6 (Kodak DC50), 46.8 .. 54.7 on the 64x96 scenes of the four patterns; with
# IdentityNet and inverse_isp (the one mode that does not start from the mosaic) 43.4 .. 56.9 on those scenes. What
# remains is LibRaw's AHD demosaicking, which is not linear in the light (it picks directions by contrast), and for
# inverse_isp the 8 bits of the rendering it starts from.
REAL_FILE_MIN_PSNR = 40.0
SCENE_MIN_PSNR = 40.0


class GainNet(torch.nn.Module):
    """A network that removes a fixed share of the light: T = gain * I in linear light, R = the rest, in both
    domains (RGB: through the sRGB curve)."""

    def __init__(self, gain: float):
        super().__init__()
        self.gain = gain

    def forward(self, I_rgb, I_raw):
        linear = srgb_decode(I_rgb)
        T_pred_rgb, R_pred_rgb = srgb_encode(self.gain * linear), srgb_encode((1 - self.gain) * linear)
        return (R_pred_rgb, T_pred_rgb), ((1 - self.gain) * I_raw, self.gain * I_raw)


def run(inputs, out, *flags, net):
    argv = [*map(str, inputs), "-o", str(out), "--gpu_ids", "-1", "--precision", "fp32", *map(str, flags)]
    return remove_reflection.main(argv, net=net)


def check_like_source(dng: Path, source: CameraRaw) -> CameraRaw:
    """The DNG read back: same visible size, CFA, levels, white balance, orientation and camera as its source."""
    back = read_camera_raw(dng)
    assert back.size == source.size and back.cfa == source.cfa
    assert back.black == source.black and back.white == source.white
    np.testing.assert_allclose(back.wb_gains, source.wb_gains, rtol=1e-6)
    assert back.orientation == source.orientation and back.camera == source.camera
    return back


def rendering_psnr(dng: Path, saved_T: Path, orientation: int) -> float:
    """PSNR of rawpy's rendering of ``dng`` (render_rgb, viewing orientation) against the T image saved."""
    rendered = np.ascontiguousarray(apply_orientation(render_rgb(dng), orientation))
    return psnr(np.asarray(Image.open(saved_T).convert("RGB")), rendered)


def scene_photo(folder: Path, name="p", pattern="RGGB", orientation=1, seed=0, h=64, w=96) -> CameraRaw:
    folder.mkdir(parents=True, exist_ok=True)
    return scene_dng(folder / f"{name}.dng", h=h, w=w, seed=seed, orientation=orientation, pattern=pattern)


# ----------------------------------------------------------------------------------------------------------------
# The DNG: real files and all four patterns
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", [BLACKMAGIC, KODAK])
def test_dng_of_real_raw_files(shared_data, tmp_path, name):
    path = shared_data / name
    source = read_camera_raw(path)
    # nothing removed: the photo's own mosaic, value for value, with its metadata and EXIF
    assert run([path], tmp_path / "same", "--raw_out", "--tile", "0", net=IdentityNet()) == 0
    dng = tmp_path / "same" / f"{path.stem}_T.dng"
    np.testing.assert_array_equal(check_like_source(dng, source).mosaic, source.mosaic)
    with rawpy.imread(str(dng)) as written, rawpy.imread(str(path)) as original:
        for field in ("iso_speed", "shutter_speed", "aperture", "focal_length"):
            assert getattr(written.other, field) == pytest.approx(getattr(original.other, field), rel=1e-4), field
        assert written.other.timestamp == original.other.timestamp
    # half the light removed: rawpy renders the DNG as the T that was saved
    assert run([path], tmp_path / "half", "--raw_out", net=GainNet(GAIN)) == 0
    dng = tmp_path / "half" / f"{path.stem}_T.dng"
    check_like_source(dng, source)
    assert rendering_psnr(dng, tmp_path / "half" / f"{path.stem}_T.png", source.orientation) >= REAL_FILE_MIN_PSNR


def test_real_dng_keeps_its_colour_tags_and_crop(shared_data, tmp_path):
    path = shared_data / BLACKMAGIC
    meta = read_source_metadata(path, (2176, 4128))
    assert meta.unique_camera_model == "Blackmagic Pocket Cinema Camera 4K" and meta.default_crop == (16, 8, 4096, 2160)
    for tag in ("ColorMatrix1", "ColorMatrix2", "ForwardMatrix1", "CalibrationIlluminant2", "BaselineExposure"):
        assert tag in meta.colour, tag
    assert meta.colour["AsShotNeutral"] == [[4533, 10000], [10000, 10000], [5300, 10000]]  # copied, not recomputed
    assert meta.render_matrix is None  # LibRaw exposes this camera's matrix


@pytest.mark.parametrize("pattern", CFA_PATTERNS)
def test_dng_every_pattern_and_mode(tmp_path, pattern):
    orientation = 6 if pattern in ("BGGR", "GBRG") else 1  # TIFF 6: rotate 90 degrees clockwise for viewing
    source = scene_photo(tmp_path / "in", pattern=pattern, orientation=orientation, seed=CFA_PATTERNS.index(pattern))
    for mode in RAW_MOSAIC_MODES:  # nothing removed
        out = tmp_path / mode
        assert run([source.path], out, "--raw_out", "--raw_mosaic", mode, net=IdentityNet()) == 0
        back = check_like_source(out / "p_T.dng", source)
        if mode != "inverse_isp":  # the other modes start from the mosaic; this one from the 8-bit rendering
            np.testing.assert_array_equal(back.mosaic, source.mosaic)
        assert rendering_psnr(out / "p_T.dng", out / "p_T.png", source.orientation) >= SCENE_MIN_PSNR, mode
    out = tmp_path / "half"
    assert run([source.path], out, "--raw_out", net=GainNet(GAIN)) == 0
    back = check_like_source(out / "p_T.dng", source)
    assert rendering_psnr(out / "p_T.dng", out / "p_T.png", source.orientation) >= SCENE_MIN_PSNR
    dark = back.packed().mean() / source.packed().mean()
    assert 0.45 < dark < 0.55  # half the light in the sensor's own counts
    with tifffile.TiffFile(out / "p_T.dng") as tif:
        tags = tif.pages[0].tags
        assert tags["BlackLevel"].value == DNG_BLACK_BY_SITE  # the source's levels, per site of the 2x2 tile
        assert tags["Make"].value == "CR3Net" and tags["Model"].value == "Synthetic DNG"
        assert "reflection removed" in tags["ImageDescription"].value


def test_black_levels_by_site_follow_the_pattern(tmp_path):
    for pattern in CFA_PATTERNS:
        raw = scene_photo(tmp_path / pattern, pattern=pattern)
        assert black_by_site(raw) == list(DNG_BLACK_BY_SITE)  # the test DNGs give black level 60..63 by site


def test_dng_source_with_its_raw_in_a_subifd(tmp_path):
    """Camera DNGs often hold a preview in IFD0 and the mosaic in a SubIFD (with DefaultCrop there)."""
    h, w = 64, 96
    mosaic = np.random.default_rng(0).integers(200, 3000, (h, w)).astype(np.uint16)
    ifd0 = [(50706, "B", 4, (1, 4, 0, 0), True), (50708, "s", 0, "Sub Camera", True), (271, "s", 0, "Maker", True),
            (272, "s", 0, "Maker Model", True), (50778, "H", 1, 21, True),
            (50721, "2i", 9, (1, 1, 0, 1, 0, 1, 0, 1, 1, 1, 0, 1, 0, 1, 0, 1, 1, 1), True),
            (50728, "2I", 3, (1, 2, 1, 1, 1, 4), True)]
    raw_ifd = [(33421, "H", 2, (2, 2), True), (33422, "B", 4, (0, 1, 1, 2), True), (50713, "H", 2, (2, 2), True),
               (50714, "H", 4, DNG_BLACK_BY_SITE, True), (50717, "H", 1, 4095, True),
               (50719, "I", 2, (2, 4), True), (50720, "I", 2, (90, 58), True)]
    path = tmp_path / "sub.dng"
    with tifffile.TiffWriter(path) as tif:
        tif.write(np.zeros((16, 24, 3), np.uint8), photometric="rgb", subfiletype=1, subifds=1, extratags=ifd0,
                  metadata=None)
        tif.write(mosaic, photometric=32803, subfiletype=0, extratags=raw_ifd, metadata=None)
    source = read_camera_raw(path)
    assert source.size == (h, w) and source.cfa == "RGGB"
    meta = read_source_metadata(path, source.size)
    assert (meta.make, meta.model, meta.unique_camera_model) == ("Maker", "Maker Model", "Sub Camera")
    assert meta.default_crop == (2, 4, 90, 58)
    assert run([path], tmp_path / "out", "--raw_out", net=IdentityNet()) == 0
    np.testing.assert_array_equal(check_like_source(tmp_path / "out" / "sub_T.dng", source).mosaic, mosaic)


# ----------------------------------------------------------------------------------------------------------------
# 16-bit TIFF results
# ----------------------------------------------------------------------------------------------------------------


def test_tiff16_results_come_from_the_float_result(tmp_path):
    source = scene_photo(tmp_path / "in", orientation=6)
    assert run([source.path], tmp_path / "same", "--format", "tiff16", "--save_reflection", net=IdentityNet()) == 0
    T = tifffile.imread(tmp_path / "same" / "p_T.tif")
    assert T.dtype == np.uint16 and T.shape == (96, 64, 3)  # viewing orientation
    np.testing.assert_array_equal(T, apply_orientation(render_rgb(source), 6).astype(np.uint16) * 257)  # v/255 -> 257 v
    assert not tifffile.imread(tmp_path / "same" / "p_R.tif").any()
    # a darker T keeps the precision of the float result, not 8 bits of it
    assert run([source.path], tmp_path / "half", "--format", "tiff16", net=GainNet(GAIN)) == 0
    T = tifffile.imread(tmp_path / "half" / "p_T.tif").astype(np.float64)
    I_view = apply_orientation(render_rgb(source), 6).astype(np.float64) / 255
    expected = np.round(srgb_encode(GAIN * srgb_decode(I_view)) * 65535)
    assert np.abs(T - expected).max() <= 1
    assert np.any(T % 257 != 0)


# ----------------------------------------------------------------------------------------------------------------
# The before/after page
# ----------------------------------------------------------------------------------------------------------------


def test_before_after_page_links_every_file(tmp_path):
    folder = tmp_path / "in"
    a = scene_photo(folder, "a", seed=1)
    b = scene_photo(folder, "b #2", seed=2, orientation=6)
    save_jpeg(folder / "b #2.jpg", apply_orientation(render_rgb(b), 6))  # the camera's JPEG, viewing orientation
    (folder / "broken.nef").write_bytes(b"\x00" * 2048)
    out = tmp_path / "out"
    assert run([folder], out, "--page", "--preview_size", 32, "--save_reflection", "--raw_out", "--format", "tiff16",
               net=GainNet(GAIN)) == 1  # broken.nef failed; the others are on the page
    page = out / "index.html"
    text = page.read_text(encoding="utf-8")
    assert "broken.nef" in text and "camera JPEG b #2.jpg" in text and "RGB rendered from the RAW" in text
    parser = Links()
    parser.feed(text)
    linked = set()
    for url in parser.urls:
        assert not any(c in url for c in "#? "), url  # a fragment, a query or a raw space would break the link
        target = urljoin(page.as_uri(), url)
        linked.add(Path(url2pathname(target[len("file://"):])).resolve())
    expected = {folder / "b #2.jpg"}
    for stem in ("a", "b #2"):
        expected |= {out / f"{stem}_T.tif", out / f"{stem}_R.tif", out / f"{stem}_T.dng", folder / f"{stem}.dng"}
        expected |= {out / "previews" / f"{stem}_{kind}.jpg" for kind in "ITR"}
    assert linked == {p.resolve() for p in expected}
    assert all(p.is_file() for p in expected)
    for stem, source in (("a", a), ("b #2", b)):
        for kind in "ITR":
            size = Image.open(out / "previews" / f"{stem}_{kind}.jpg").size
            h, w = source.size if source.orientation == 0 else source.size[::-1]
            assert max(size) == 32 and (size[0] > size[1]) == (w > h), (stem, kind, size)
    # a second run into the same folder: its page would replace this one; refused before any work
    c = scene_photo(tmp_path / "more", "c", seed=3)
    with pytest.raises(UserError, match=r"index\.html already exist\(s\) in .*pass --overwrite"):
        run([c.path], out, "--page", net=GainNet(GAIN))
    assert page.read_text(encoding="utf-8") == text
    assert run([c.path], out, "--page", "--overwrite", net=GainNet(GAIN)) == 0
    assert "c.dng" in page.read_text(encoding="utf-8")


def test_new_outputs_follow_the_overwrite_rules(tmp_path):
    for folder, seed in (("a", 1), ("b", 2)):
        scene_photo(tmp_path / folder, "x", seed=seed)
    out = tmp_path / "out"
    assert run([tmp_path / "a", tmp_path / "b"], out, "--raw_out", net=IdentityNet()) == 0
    assert sorted(p.name for p in out.iterdir()) == ["x-2_T.dng", "x-2_T.png", "x_T.dng", "x_T.png"]
    (out / "x_T.png").unlink()
    with pytest.raises(UserError, match=r"x_T\.dng and 2 more result file\(s\) already exist\(s\)"):
        run([tmp_path / "a", tmp_path / "b"], out, "--raw_out", net=IdentityNet())
    assert run([tmp_path / "a", tmp_path / "b"], out, "--raw_out", "--overwrite", net=IdentityNet()) == 0
    # an output DNG that is an input of this run: refused even with --overwrite
    with pytest.raises(UserError, match=r"x_T\.dng is an input of this run"):
        run([tmp_path / "a" / "x.dng", out / "x_T.dng"], out, "--raw_out", "--overwrite", net=IdentityNet())
    (tmp_path / "o2").mkdir()
    (tmp_path / "o2" / "previews").write_text("a file")
    with pytest.raises(UserError, match=r"previews is a file where this run would make its folder of previews"):
        run([tmp_path / "a"], tmp_path / "o2", "--page", net=IdentityNet())


@pytest.mark.parametrize("flags, needle", [
    (["--raw_mosaic", "ratio"], "--raw_mosaic ratio applies to --raw_out only"),
    (["--preview_size", "64"], "--preview_size 64 applies to --page only"),
    (["--page", "--preview_size", "8"], "--preview_size 8 is below 16 pixels"),
])
def test_new_flags_are_checked_at_parse_time(flags, needle):
    with pytest.raises(UserError) as info:
        remove_reflection.parse_args(["x.dng", "-o", "out", *flags])
    assert needle in str(info.value)


# ----------------------------------------------------------------------------------------------------------------
# A RAW developer opens the DNG
# ----------------------------------------------------------------------------------------------------------------


def developer_command(tool: str, exe: str, dng: Path, jpeg: Path, home: Path) -> list[str]:
    if tool == "darktable-cli":
        return [exe, str(dng), str(jpeg), "--core", "--configdir", str(home / "darktable"), "--library", ":memory:"]
    return [exe, "-q", "-o", str(jpeg), "-d", "-j90", "-Y", "-c", str(dng)]


@pytest.mark.slow
@pytest.mark.parametrize("tool", ["darktable-cli", "rawtherapee-cli"])
def test_dng_opens_in_a_raw_developer(tmp_path, tool):
    exe = shutil.which(tool)
    if exe is None:
        pytest.skip(f"{tool} is not installed (Debian: apt-get install darktable / rawtherapee)")
    # RawTherapee refuses images under about 200 pixels (128x192 fails, 256x384 opens)
    source = scene_photo(tmp_path / "in", h=256, w=384, orientation=6, pattern="GBRG")
    assert run([source.path], tmp_path / "out", "--raw_out", net=GainNet(GAIN)) == 0
    jpeg = tmp_path / f"{tool}.jpg"
    home = tmp_path / "home"
    home.mkdir()
    proc = subprocess.run(developer_command(tool, exe, tmp_path / "out" / "p_T.dng", jpeg, home), capture_output=True,
                          text=True, timeout=300, env={**os.environ, "HOME": str(home)})
    assert proc.returncode == 0 and jpeg.is_file(), proc.stdout + proc.stderr
    width, height = Image.open(jpeg).size
    assert height > width and width >= 240  # developed in the viewing orientation (a few border pixels may go)


# ----------------------------------------------------------------------------------------------------------------
# scripts/measure_dng_modes.py
# ----------------------------------------------------------------------------------------------------------------


def test_measure_dng_modes_script(tmp_path, capsys):
    script = measure_dng_modes
    source = scene_photo(tmp_path / "in", pattern="GRBG")
    weights = save_random_generator(tmp_path / "w.pth", ngf=8, num_cab=1)
    numbers = tmp_path / "modes.json"
    assert script.main([str(source.path), "--checkpoint", str(weights), "--gpu_ids", "-1", "--precision", "fp32",
                        "--json", str(numbers)]) == 0
    rows = json.loads(numbers.read_text())["rows"]
    expected = [(net, mode) for net in ("checkpoint", "identity") for mode in RAW_MOSAIC_MODES]
    assert [(r["network"], r["mode"]) for r in rows] == expected
    identity = {r["mode"]: r for r in rows if r["network"] == "identity"}
    assert identity["ratio"]["sites_changed"] == 0 and identity["ratio"]["render_psnr_db"] is None  # inf: identical
    assert "| p.dng | checkpoint | ratio |" in capsys.readouterr().out


def test_shot_exif_of_a_raw_file():
    """The EXIF that results of a RAW file without its JPEG carry: the shot as LibRaw reads it (camera, date,
    exposure), upright, with the results' pixel dimensions; an ISO beyond a TIFF SHORT is written as 65535."""
    import datetime as dt

    from util.dng import DngSource, shot_exif

    full = DngSource(Path("x"), make="Maker", model="Model 1", exposure_time=1 / 250, f_number=2.8, iso=100_000,
                     focal_length=35.0, capture_time=dt.datetime(2024, 5, 6, 7, 8, 9))
    buffer = io.BytesIO()
    Image.new("RGB", (4, 3)).save(buffer, "PNG", exif=shot_exif(full, (4, 3)))
    exif = Image.open(buffer).getexif()
    assert dict(exif) == {271: "Maker", 272: "Model 1", 274: 1, 306: "2024:05:06 07:08:09", 34665: exif[34665]}
    assert exif.get_ifd(0x8769) == {33434: pytest.approx(0.004), 33437: 2.8, 34855: 65535, 36867: "2024:05:06 07:08:09",
                                    37386: 35.0, 40962: 4, 40963: 3}
    assert shot_exif(DngSource(Path("x")), (4, 3)) is None  # a RAW that records nothing: no EXIF


def test_results_of_a_real_raw_without_jpeg_carry_its_exif(tmp_path, shared_data, monkeypatch):
    """The Kodak DC50 KDC of ../shared/data alone, through remove_reflection.py: PNG and JPEG results carry its EXIF
    upright, with the results' pixel dimensions; without --raw_out the colour tags are not worked out (LibRaw has no
    matrix for this camera, so they would cost two renderings)."""
    import util.dng

    full = read_source_metadata(shared_data / KODAK, (512, 768))
    bare = read_source_metadata(shared_data / KODAK, (512, 768), colour_tags=False)
    assert full.render_matrix is not None and "ColorMatrix1" in full.colour  # measured from two renderings
    assert bare.colour == {} and bare.render_matrix is None
    assert (bare.make, bare.model, bare.iso, bare.capture_time) == (full.make, full.model, full.iso, full.capture_time)

    def refuse(raw):
        raise AssertionError("the colour tags were worked out for a result without --raw_out")

    monkeypatch.setattr(util.dng, "measured_render_matrix", refuse)
    for fmt in ("png", "jpg"):
        assert run([shared_data / KODAK], tmp_path / fmt, "--format", fmt, "--save_reflection", net=IdentityNet()) == 0
        for kind in ("T", "R"):
            exif = Image.open(tmp_path / fmt / f"{Path(KODAK).stem}_{kind}.{fmt}").getexif()
            assert exif[271] == "Eastman Kodak Company" and exif[306] == "1997:04:23 08:00:47" and exif[274] == 1
            sub = exif.get_ifd(0x8769)
            assert sub[36867] == "1997:04:23 08:00:47" and sub[34855] == 84 and (sub[40962], sub[40963]) == (768, 512)
