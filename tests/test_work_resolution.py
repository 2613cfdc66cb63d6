"""models.work_resolution (--work_megapixels): the network at a working resolution, its result carried to full
resolution by a guided filter; remove_reflection.py and test.py with it, and its flags' one-line errors.

Two stand-in networks make the expected full-resolution result known: :class:`models.inference.IdentityNet` removes
nothing (T must be the input, R zero), :class:`ConstantGainNet` removes a fixed share of the light (T must be that
share of the full-resolution input: a constant gain is carried to full resolution exactly).
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import remove_reflection
import test as test_script
from data.camera_raw import read_camera_raw, render_rgb
from models.cr3net import CR3Net
from models.inference import IdentityNet
from models.tiling import separate_tiled
from models.work_resolution import (
    MIN_WORK_MEGAPIXELS,
    REPRESENTATIONS,
    box_mean,
    guided_coefficients,
    run_at_work_resolution,
    separate_at_work_resolution,
    upsample_bilinear,
    upsample_separation,
    work_size,
)
from options.test_options import TestOptions
from scripts import measure_work_resolution
from tests.test_camera_raw import scene_dng
from tests.tiny_data import make_test_set, save_random_generator, smooth_image
from util.errors import UserError
from util.image_io import to_uint8
from util.isp import srgb_decode, srgb_encode
from util.metrics import psnr

ROOT = Path(__file__).resolve().parents[1]
GAIN = 0.5  # ConstantGainNet's share of the light in T (a power of two: exact in binary)
DNG_SIZE = (256, 384)  # (h, w) of the DNGs: 0.098 MP, so --work_megapixels 0.05 (the minimum) scales them down


class ConstantGainNet(torch.nn.Module):
    """A network that removes a fixed share of the light: T = gain * I and R = (1 - gain) * I in linear light (RGB
    through the sRGB curve), in both domains."""

    def __init__(self, gain: float):
        super().__init__()
        self.gain = gain

    def forward(self, I_rgb, I_raw):
        linear = srgb_decode(I_rgb)
        T_pred_rgb, R_pred_rgb = srgb_encode(self.gain * linear), srgb_encode((1 - self.gain) * linear)
        return (R_pred_rgb, T_pred_rgb), ((1 - self.gain) * I_raw, self.gain * I_raw)


def photo(h=96, w=128, seed=0, texture=0.08):
    """An 8-bit-valued sRGB photo (1, 3, h, w) in [0.05, 0.95] with pixel-fine texture of +-``texture`` (detail that
    the working resolution does not have) and a packed RAW (1, 4, h/2, w/2) of it."""
    rng = np.random.default_rng(seed)
    texture = torch.from_numpy(rng.uniform(-texture, texture, size=(3, h, w)).astype(np.float32))
    I_rgb = ((smooth_image(rng, h, w) + texture).clamp(0.05, 0.95) * 255).round()[None] / 255
    I_raw = F.avg_pool2d(srgb_decode(I_rgb).mean(1, keepdim=True).repeat(1, 4, 1, 1), 2)
    return I_rgb, I_raw


def quarter_megapixels(h, w):
    """A working size of half the photo's side (the module functions take any size; the flags at least 0.05)."""
    return h * w / 4 / 1e6


# ----------------------------------------------------------------------------------------------------------------
# The pieces: working size, box filter, guided filter, banded bilinear upsampling
# ----------------------------------------------------------------------------------------------------------------


def test_work_size():
    assert work_size(4000, 6000, 2) == (1152, 1736)
    assert work_size(4000, 6000, 1) == (816, 1224)
    for h, w, mp in ((4000, 6000, 2), (3000, 4000, 0.5), (256, 384, MIN_WORK_MEGAPIXELS), (6000, 4000, 1.3)):
        size_h, size_w = work_size(h, w, mp)
        assert size_h % 8 == 0 and size_w % 8 == 0
        assert abs(size_h * size_w / (mp * 1e6) - 1) < 0.03
        assert abs((size_w / size_h) / (w / h) - 1) < 0.02
    assert work_size(1000, 1500, 2) is None  # 1.5 MP: not larger than the working size, runs at full resolution
    assert work_size(1000, 1500, 0) is None


def test_box_mean_is_the_mean_over_clipped_windows():
    x = torch.rand(1, 2, 9, 11, generator=torch.Generator().manual_seed(0))
    r = 2
    expected = torch.empty_like(x)
    for i in range(9):
        for j in range(11):
            expected[..., i, j] = x[..., max(0, i - r) : i + r + 1, max(0, j - r) : j + r + 1].mean(dim=(-2, -1))
    torch.testing.assert_close(box_mean(x, r), expected, atol=1e-6, rtol=0)
    assert torch.equal(box_mean(x, 0), x)


def test_guided_filter_preserves_constant_and_linear_images():
    gen = torch.Generator().manual_seed(1)
    guide = 0.1 + 0.8 * torch.rand(1, 3, 24, 32, generator=gen)
    fine_guide = 0.1 + 0.8 * torch.rand(1, 3, 96, 128, generator=gen)  # the full-resolution guide: other values
    # a constant: whatever the guide, A = 0 and B = the constant
    A, B = guided_coefficients(guide, torch.full_like(guide, 0.3), radius=1, eps=1e-4)
    torch.testing.assert_close(A, torch.zeros_like(A), atol=1e-5, rtol=0)
    torch.testing.assert_close(B, torch.full_like(B, 0.3), atol=1e-5, rtol=0)
    q = upsample_bilinear(A, (96, 128)) * fine_guide + upsample_bilinear(B, (96, 128))
    torch.testing.assert_close(q, torch.full_like(q, 0.3), atol=1e-5, rtol=0)
    # a linear function of the guide: the same line at full resolution (eps negligible against the variance)
    A, B = guided_coefficients(guide, 0.7 * guide + 0.05, radius=1, eps=1e-12)
    q = upsample_bilinear(A, (96, 128)) * fine_guide + upsample_bilinear(B, (96, 128))
    torch.testing.assert_close(q, 0.7 * fine_guide + 0.05, atol=1e-3, rtol=0)


def test_banded_upsampling_is_bilinear_interpolation():
    x = torch.rand(1, 3, 7, 9, generator=torch.Generator().manual_seed(2))
    expected = F.interpolate(x, size=(40, 50), mode="bilinear", align_corners=False)
    for band_rows in (3, 16, 1000):
        torch.testing.assert_close(upsample_bilinear(x, (40, 50), band_rows), expected, atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------------------------------------------
# separate_at_work_resolution with known networks
# ----------------------------------------------------------------------------------------------------------------


def test_identity_network_returns_the_input():
    I_rgb, I_raw = photo()
    mp = quarter_megapixels(96, 128)
    assert work_size(96, 128, mp) == (48, 64)
    out = separate_at_work_resolution(IdentityNet(), I_rgb, I_raw, mp, precision="fp32", tile=0)
    assert out["T_pred_rgb"].shape == I_rgb.shape and out["T_pred_raw"].shape == I_raw.shape
    diff = np.abs(to_uint8(out["T_pred_rgb"]).astype(int) - to_uint8(I_rgb).astype(int))
    assert diff.max() <= 1  # within 8-bit quantisation, detail finer than the working resolution included
    assert torch.all(out["R_pred_rgb"] == 0) and torch.all(out["R_pred_raw"] == 0)
    torch.testing.assert_close(out["T_pred_raw"], I_raw.clamp(0, 1))
    for representation in ("gain", "difference"):  # both carry "nothing removed" exactly
        out = separate_at_work_resolution(IdentityNet(), I_rgb, I_raw, mp, precision="fp32", tile=0,
                                          representation=representation, keys=("T_pred_rgb",))
        assert list(out) == ["T_pred_rgb"]
        assert np.abs(to_uint8(out["T_pred_rgb"]).astype(int) - to_uint8(I_rgb).astype(int)).max() <= 1, representation


def test_constant_gain_is_carried_to_full_resolution_exactly():
    I_rgb, I_raw = photo(seed=3)
    out = separate_at_work_resolution(ConstantGainNet(GAIN), I_rgb, I_raw, quarter_megapixels(96, 128),
                                      precision="fp32", tile=0)
    linear = srgb_decode(I_rgb)
    torch.testing.assert_close(out["T_pred_rgb"], srgb_encode(GAIN * linear), atol=1e-4, rtol=0)
    torch.testing.assert_close(out["R_pred_rgb"], srgb_encode((1 - GAIN) * linear), atol=1e-4, rtol=0)
    torch.testing.assert_close(out["T_pred_raw"], GAIN * I_raw.clamp(0, 1), atol=1e-5, rtol=0)
    torch.testing.assert_close(out["R_pred_raw"], (1 - GAIN) * I_raw.clamp(0, 1), atol=1e-5, rtol=0)


def test_every_representation_runs_and_bands_are_seamless():
    I_rgb, I_raw = photo(seed=4)
    torch.manual_seed(0)
    net = CR3Net(ngf=8, num_cab=1).eval()
    with torch.inference_mode():
        work = run_at_work_resolution(net, I_rgb, I_raw, (48, 64), tile=0)
        for representation in REPRESENTATIONS:
            whole = upsample_separation(I_rgb, I_raw, work, representation=representation, band_rows=1000)
            banded = upsample_separation(I_rgb, I_raw, work, representation=representation, band_rows=5)
            for key, value in whole.items():
                assert value.shape == (I_rgb if key.endswith("rgb") else I_raw).shape, key
                assert float(value.min()) >= 0 and float(value.max()) <= 1, key
                torch.testing.assert_close(banded[key], value, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="unknown representation"):
        upsample_separation(I_rgb, I_raw, work, representation="ratio")


def test_working_image_in_fitted_tiles_matches_it_whole():
    I_rgb, I_raw = photo(320, 320, seed=5, texture=0)  # smooth, as test_tiling's scenes
    torch.manual_seed(0)
    net = CR3Net(ngf=8, num_cab=1).eval()
    mp = quarter_megapixels(320, 320)
    assert work_size(320, 320, mp) == (160, 160)  # in 2 x 2 tiles of 96 with an overlap of 32, as in test_tiling
    calls = []
    with torch.inference_mode():
        whole = separate_at_work_resolution(net, I_rgb, I_raw, mp, tile=0)
        tiled = separate_at_work_resolution(net, I_rgb, I_raw, mp, tile=96, overlap=32,
                                            progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (4, 4)
    for key in ("T_pred_rgb", "R_pred_rgb"):
        assert psnr(to_uint8(whole[key]), to_uint8(tiled[key])) >= 40, key


def test_a_photo_not_larger_than_the_working_size_runs_at_full_resolution():
    I_rgb, I_raw = photo()
    torch.manual_seed(0)
    net = CR3Net(ngf=8, num_cab=1).eval()
    with torch.inference_mode():
        out = separate_at_work_resolution(net, I_rgb, I_raw, 1.0, tile=0)
        full = separate_tiled(net, I_rgb, I_raw, 0)
    for key, value in full.items():
        torch.testing.assert_close(out[key], value, atol=1e-6, rtol=0)


# ----------------------------------------------------------------------------------------------------------------
# remove_reflection.py and test.py with --work_megapixels
# ----------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return save_random_generator(tmp_path_factory.mktemp("w") / "final_net_G_T.pth", ngf=8, num_cab=1)


def test_remove_reflection_writes_full_resolution_results(tmp_path, weights):
    pytest.importorskip("pidng")
    (tmp_path / "in").mkdir()
    scene_dng(tmp_path / "in" / "p.dng", h=DNG_SIZE[0], w=DNG_SIZE[1], seed=3, orientation=6)
    code = remove_reflection.main([str(tmp_path / "in" / "p.dng"), "-o", str(tmp_path / "out"), "--checkpoint",
                                   str(weights), "--save_reflection", "--work_megapixels", str(MIN_WORK_MEGAPIXELS),
                                   "--tile", "64", "--gpu_ids", "-1", "--precision", "fp32"])
    assert code == 0
    for kind in ("T", "R"):
        image = np.asarray(Image.open(tmp_path / "out" / f"p_{kind}.png"))
        assert image.shape == (DNG_SIZE[1], DNG_SIZE[0], 3)  # full resolution, orientation 6: rotated for viewing


def test_nothing_removed_keeps_the_photo_and_its_raw(tmp_path):
    pytest.importorskip("pidng")
    (tmp_path / "in").mkdir()
    source = scene_dng(tmp_path / "in" / "p.dng", h=DNG_SIZE[0], w=DNG_SIZE[1], seed=1, pattern="GRBG")
    for mode in ("ratio", "ratio_raw", "t_raw"):  # the modes that start from the photo's mosaic
        out = tmp_path / mode
        argv = [str(source.path), "-o", str(out), "--gpu_ids", "-1", "--precision", "fp32", "--work_megapixels",
                str(MIN_WORK_MEGAPIXELS), "--raw_out", "--raw_mosaic", mode]
        assert remove_reflection.main(argv, net=IdentityNet()) == 0
        np.testing.assert_array_equal(read_camera_raw(out / "p_T.dng").mosaic, source.mosaic)
    T = np.asarray(Image.open(tmp_path / "ratio" / "p_T.png")).astype(int)
    assert np.abs(T - render_rgb(source).astype(int)).max() <= 1


@pytest.mark.parametrize("flags, needle", [
    (["--work_megapixels", "0.01"], "--work_megapixels 0.01 must be 0 (off"),
    (["--work_megapixels", "-1"], "--work_megapixels -1.0 must be 0 (off"),
    (["--work_megapixels", "nan"], "--work_megapixels nan must be 0 (off"),
    (["--guide_radius", "2"], "--guide_radius 2 applies to --work_megapixels only"),
    (["--guide_eps", "0.001"], "--guide_eps 0.001 applies to --work_megapixels only"),
    (["--work_megapixels", "2", "--guide_radius", "-1"], "--guide_radius -1 is negative"),
    (["--work_megapixels", "2", "--guide_eps", "0"], "--guide_eps 0.0 must be a positive number"),
    (["--work_megapixels", "2", "--guide_eps", "inf"], "--guide_eps inf must be a positive number"),
])
def test_flag_errors(tmp_path, flags, needle):
    with pytest.raises(UserError, match=re.escape(needle)):
        remove_reflection.parse_args([str(tmp_path / "p.dng"), "-o", str(tmp_path / "out"), *flags])


def test_flag_error_is_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "remove_reflection.py", str(tmp_path / "p.dng"), "-o", str(tmp_path / "o"),
                           "--work_megapixels", "0.01"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: --work_megapixels 0.01 must be 0"), proc.stderr


def test_test_py_at_work_resolution(tmp_path):
    data = make_test_set(tmp_path / "data", n=1, h=DNG_SIZE[0], w=DNG_SIZE[1])
    save_random_generator(tmp_path / "ck" / "tiny" / "final_net_G_T.pth", ngf=8, num_cab=1)
    common = ["--dataroot", str(data), "--name", "tiny", "--checkpoints_dir", str(tmp_path / "ck"), "--results_dir",
              str(tmp_path / "res"), "--gpu_ids", "-1", "--precision", "fp32", "--no_lpips"]
    summary = test_script.main([*common, "--eval_resize", "none", "--work_megapixels", str(MIN_WORK_MEGAPIXELS)])
    out = tmp_path / "res" / "tiny" / "test_final"
    assert np.asarray(Image.open(out / "images" / "img00_T.png")).shape == (*DNG_SIZE, 3)  # native resolution
    meta = json.loads((out / "metrics.json").read_text())
    assert meta["work_megapixels"] == MIN_WORK_MEGAPIXELS and summary["complete"]
    assert np.isfinite(meta["means"]["T_psnr"])
    with pytest.raises(UserError, match=r"--work_megapixels 2 works at native resolution: add --eval_resize none"):
        TestOptions().parse([*common, "--work_megapixels", "2"], save=False)
    with pytest.raises(UserError, match=r"--guide_radius 3 applies to --work_megapixels only"):
        TestOptions().parse([*common, "--eval_resize", "none", "--guide_radius", "3"], save=False)


# ----------------------------------------------------------------------------------------------------------------
# scripts/measure_work_resolution.py
# ----------------------------------------------------------------------------------------------------------------


def test_measure_script_quality(tmp_path, capsys):
    script = measure_work_resolution
    data = make_test_set(tmp_path / "set", n=1, h=64, w=96)
    weights = save_random_generator(tmp_path / "w.pth", ngf=8, num_cab=1)
    numbers = tmp_path / "quality.json"
    result = script.main(["--dataroot", str(data), "--checkpoint", str(weights), "--work_megapixels", "0.002",
                          "--work_divisors", "4", "--representations", "gain", "direct", "--tile", "32",
                          "--gpu_ids", "-1", "--precision", "fp32", "--json", str(numbers)])
    assert [r["mode"] for r in result["rows"]] == [
        "whole", "tiled", "work 0.002 MP gain r1 eps0.0001", "work 0.002 MP direct r1 eps0.0001",
        "work 1/4 px gain r1 eps0.0001", "work 1/4 px direct r1 eps0.0001"]
    rows = json.loads(numbers.read_text())["rows"]
    assert all(np.isfinite(r["T_psnr"]) and -1 <= r["T_ssim"] <= 1 and r["seconds"] > 0 for r in rows)
    assert rows[0]["delta_vs_whole_db"] == 0 and rows[2]["working_size"] == "56x40"
    assert rows[4]["working_size"] == "48x32" and rows[1]["reference"] == "whole"
    assert [s["mode"] for s in result["summary"]] == [r["mode"] for r in rows]
    assert "| set | whole | 1 |" in capsys.readouterr().out


def test_measure_script_timing(tmp_path):
    pytest.importorskip("pidng")
    script = measure_work_resolution
    result = script.main(["--megapixels", "0.1", "--ngf", "8", "--num_cab", "1", "--work_megapixels", "0.05",
                          "--tile", "64", "--gpu_ids", "-1", "--precision", "fp32", "--json", str(tmp_path / "t.json")])
    (row,) = result["rows"]
    assert row["photo"] == "386x258" and row["working_size"] == "272x184"
    assert row["seconds"] >= row["remove_seconds"] > 0 and row["peak_rss_gb"] > 0
    assert json.loads((tmp_path / "t.json").read_text())["rows"][0]["work_megapixels"] == 0.05
