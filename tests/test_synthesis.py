"""data.synthesis: the physical (camera) model and upstream's mixing, on tiny images."""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from data.cameras import CAMERA_PROFILES, DEFAULT_PROFILE
from data.synthesis import (
    UPSTREAM_SIGMAS,
    PhysicalConfig,
    gaussian_blur,
    gaussian_kernel_size,
    pack_linear,
    params_to_json,
    raw_to_counts,
    render_rgb_from_raw,
    should_resample,
    synthesize_physical,
    synthesize_upstream,
    upstream_source_skip,
    upstream_vignette,
)
from util.isp import normalize_raw, pack_raw

H, W = 32, 48
LEVELS = DEFAULT_PROFILE.white - DEFAULT_PROFILE.black  # 15983 counts between black and white
ROLES = ("I", "T", "R")


def smooth_photo(seed, h=H, w=W, lo=0.05, hi=0.95):
    """A smooth random sRGB image (3, h, w) in [lo, hi]: bilinear upsampling of a 4x6 random grid."""
    rng = np.random.default_rng(seed)
    grid = torch.from_numpy(rng.uniform(lo, hi, size=(1, 3, 4, 6))).float()
    return F.interpolate(grid, size=(h, w), mode="bilinear", align_corners=True)[0]


def test_physical_rgb_is_rendered_from_raw_exactly():
    out = synthesize_physical(smooth_photo(1), smooth_photo(2), np.random.default_rng(0))
    for role in ROLES:
        rgb, raw = out[f"{role}_rgb"], out[f"{role}_raw"]
        assert rgb.shape == (3, H, W) and raw.shape == (4, H // 2, W // 2)
        assert rgb.dtype == torch.float32 and raw.dtype == torch.float32
        assert torch.equal(render_rgb_from_raw(raw, out["params"]), rgb)
        # numpy input and a bare ISPParams give the same image
        np.testing.assert_array_equal(render_rgb_from_raw(raw.numpy(), out["params"]["isp"]).numpy(), rgb.numpy())
        assert float(rgb.min()) >= 0 and float(rgb.max()) <= 1
        # RAW sits on the integer counts of the camera: quantised, saturating at white
        counts = raw.double() * LEVELS
        assert torch.allclose(counts, counts.round(), atol=1e-3)
        assert float(raw.max()) <= 1.0
    assert float(out["T_raw"].min()) >= 0 and float(out["R_raw"].min()) >= 0
    with pytest.raises(TypeError):
        render_rgb_from_raw(out["I_raw"], {"isp": None})


def test_physical_linear_mix_and_targets():
    cfg = PhysicalConfig(transmittance=(0.8, 0.8), shot_noise=(1e-12, 1e-12), ghost_probability=0.0)
    T_src, R_src = smooth_photo(3, hi=0.7), smooth_photo(4, hi=0.7)
    out = synthesize_physical(T_src, R_src, np.random.default_rng(5), config=cfg)
    p = out["params"]
    assert p["transmittance"] == 0.8 and p["ghost"] is None and 0.15 <= p["reflection_gain"] <= 0.6
    # I = a T + R in linear RAW, up to the rounding of three separately quantised images (< 1.5 counts)
    residual = (out["I_raw"] - (0.8 * out["T_raw"] + out["R_raw"])).abs().max() * LEVELS
    assert float(residual) < 1.5
    # T is the scene without the glass: the ISP round trip gives back the source photo (smooth: demosaic is exact)
    mse = float(((out["T_rgb"] - T_src) ** 2).mean())
    assert 10 * math.log10(1 / mse) > 35
    # the reflection layer is darker than its source (attenuated), yet visible
    assert 0.05 < float(out["R_rgb"].max()) < float(R_src.max())


def test_physical_noise_level_and_no_reflection_limit():
    shot = 1e-3
    cfg = PhysicalConfig(reflection_gain=(0.0, 0.0), transmittance=(1.0, 1.0), shot_noise=(shot, shot))
    T_src = smooth_photo(6, h=64, w=64)
    out = synthesize_physical(T_src, smooth_photo(7, h=64, w=64), np.random.default_rng(1), config=cfg)
    assert float(out["R_raw"].abs().max()) == 0.0 and float(out["R_rgb"].max()) == 0.0
    noise = out["I_raw"] - out["T_raw"]
    expected_var = shot * out["T_raw"] + out["params"]["read_noise"]
    ratio = float(noise.var() / expected_var.mean())
    assert 0.7 < ratio < 1.3  # Brooks et al.'s heteroscedastic Gaussian: variance = shot * x + read


def test_physical_saturated_highlights_stay_neutral():
    white = torch.ones(3, 16, 16)
    cfg = PhysicalConfig(reflection_gain=(0.0, 0.0), transmittance=(0.7, 0.7), shot_noise=(1e-12, 1e-12))
    for seed in range(4):
        out = synthesize_physical(white, white, np.random.default_rng(seed), config=cfg)
        assert float(out["T_rgb"].min()) > 0.995  # white renders white, not pink
        grey = out["I_rgb"]  # 70 % of white: a neutral grey, equal channels
        assert float((grey.max(0).values - grey.min(0).values).max()) < 0.01
        assert 0.5 < float(grey.mean()) < 0.99


def test_raw_to_counts_writes_the_profile_mosaic():
    out = synthesize_physical(smooth_photo(8), smooth_photo(9), np.random.default_rng(2))
    for profile in (DEFAULT_PROFILE, CAMERA_PROFILES["nikon_d90"]):
        raw = torch.clamp(out["I_raw"], 0, 1)
        mosaic = raw_to_counts(raw, profile)
        assert mosaic.dtype == np.uint16 and mosaic.shape == (H, W)
        back = normalize_raw(pack_raw(mosaic, profile.cfa), profile.black, profile.white)
        step = 1.0 / (profile.white - profile.black)
        np.testing.assert_allclose(back, raw.numpy(), atol=0.51 * step)
    # a RAW quantised for the default profile round-trips exactly
    back = normalize_raw(pack_raw(raw_to_counts(out["I_raw"]), "RGGB"), DEFAULT_PROFILE.black, DEFAULT_PROFILE.white)
    np.testing.assert_array_equal(back, out["I_raw"].numpy())
    assert json.loads(json.dumps(params_to_json(out["params"])))["isp"]["red_gain"] == out["params"]["isp"].red_gain


def test_upstream_mixing_properties():
    T_src, R_src = smooth_photo(10), smooth_photo(11)
    out = synthesize_upstream(T_src, R_src, np.random.default_rng(3))
    p = out["params"]
    assert p["sigma"] in UPSTREAM_SIGMAS and 1.08 <= p["overexposure_factor"] < 1.18 and 0.8 < p["t_scale"] <= 1.0
    assert torch.equal(out["T_rgb"], T_src)  # upstream's T target is the photo itself
    # T_raw is the RGGB mosaic of T^2.2, packed [R, G1, G2, B]
    t = T_src**2.2
    expected = torch.stack([t[0, 0::2, 0::2], t[1, 0::2, 1::2], t[1, 1::2, 0::2], t[2, 1::2, 1::2]])
    torch.testing.assert_close(out["T_raw"], expected)
    # I_raw is the clamped linear mix R + t_scale * T on the RGGB grid; I_rgb is its 1/2.2 encoding
    torch.testing.assert_close(out["I_raw"], (out["R_raw"] + p["t_scale"] * out["T_raw"]).clamp(0, 1))
    torch.testing.assert_close(pack_linear(out["I_rgb"] ** 2.2), out["I_raw"], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(pack_linear(out["R_rgb"] ** 2.2), out["R_raw"], atol=1e-5, rtol=1e-4)
    # no camera model: no black level, no noise -- a flat grey T gives a flat grey T_raw
    flat = synthesize_upstream(torch.full((3, H, W), 0.5), R_src, np.random.default_rng(4))
    assert float(flat["T_raw"].max()) == float(flat["T_raw"].min()) == pytest.approx(0.5**2.2)
    # over-exposure correction: with a white T nearly all of the reflection is subtracted
    bright = synthesize_upstream(torch.ones(3, H, W), torch.full((3, H, W), 0.9), np.random.default_rng(5))
    assert float(bright["R_raw"].max()) < 0.01
    with pytest.raises(ValueError, match="at most 549"):
        synthesize_upstream(torch.rand(3, 560, 560), torch.rand(3, 560, 560), np.random.default_rng(0))


def test_upstream_blur_and_vignette_match_their_definitions():
    x = torch.rand(3, 40, 40, generator=torch.Generator().manual_seed(0))
    for sigma in (2.0, 3.5, 5.0):
        size = gaussian_kernel_size(sigma)
        assert size == 2 * math.ceil(2 * sigma) + 1
        c = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
        k2 = torch.exp(-(c[:, None] ** 2 + c[None, :] ** 2) / (2 * sigma**2))
        k2 = (k2 / k2.sum()).float()
        pad = (size - 1) // 2
        direct = F.conv2d(F.pad(x[:, None], (pad,) * 4, mode="reflect"), k2[None, None])[:, 0]
        torch.testing.assert_close(gaussian_blur(x, sigma), direct, atol=1e-6, rtol=1e-5)
    mask = upstream_vignette()
    assert mask.shape == (560, 560) and mask.max() == 1.0
    np.testing.assert_allclose(mask, mask.T)
    np.testing.assert_allclose(mask, mask[::-1, ::-1])
    assert mask[279, 279] > 0.999 and mask[0, 0] == pytest.approx(math.exp(-4.5), rel=0.1)


@pytest.mark.parametrize("synth", [synthesize_physical, synthesize_upstream])
def test_deterministic_for_the_same_seed(synth):
    T_src, R_src = smooth_photo(12), smooth_photo(13)
    a = synth(T_src, R_src, np.random.default_rng(7))
    b = synth(T_src.numpy(), R_src.numpy(), np.random.default_rng(7))
    c = synth(T_src, R_src, np.random.default_rng(8))
    for key in ("I_rgb", "I_raw", "R_rgb", "R_raw"):
        assert torch.equal(a[key], b[key])
    assert not torch.equal(a["I_rgb"], c["I_rgb"])
    assert params_to_json(a["params"]) == params_to_json(b["params"])


def test_skip_rules_and_input_checks():
    ok = torch.full((3, 4, 4), 0.5)
    assert not should_resample(ok, ok, ok)
    assert should_resample(torch.full((3, 4, 4), 0.14), ok, ok)
    assert should_resample(ok, torch.full((3, 4, 4), 0.14), ok)
    assert should_resample(ok, ok, np.full((3, 4, 4), 0.09))
    assert not should_resample(ok, ok, torch.full((3, 4, 4), 0.1))
    assert upstream_source_skip(torch.full((3, 4, 4), 0.9), torch.full((3, 4, 4), 0.4))
    assert not upstream_source_skip(torch.full((3, 4, 4), 0.9), torch.full((3, 4, 4), 0.5))
    with pytest.raises(ValueError, match="even"):
        synthesize_physical(torch.rand(3, 5, 6), torch.rand(3, 5, 6), np.random.default_rng(0))
    with pytest.raises(ValueError, match="same size"):
        synthesize_physical(torch.rand(3, 4, 6), torch.rand(3, 6, 6), np.random.default_rng(0))


def test_linear_model_adds_a_blurred_reflection_in_linear_light():
    from data.synthesis import LINEAR_WEIGHT_RANGE, pack_linear, synthesize, synthesize_linear

    gen = torch.Generator().manual_seed(3)
    T, R = torch.rand(3, 16, 20, generator=gen), torch.rand(3, 16, 20, generator=gen)
    out = synthesize_linear(T, R, np.random.default_rng(0))
    assert torch.equal(out["T_rgb"], T)
    assert bool((out["I_rgb"] >= T - 1e-6).all())  # a reflection only adds light
    w = out["params"]["weight"]
    assert LINEAR_WEIGHT_RANGE[0] <= w <= LINEAR_WEIGHT_RANGE[1]
    torch.testing.assert_close(out["I_raw"], pack_linear(out["I_rgb"] ** 2.2), atol=1e-5, rtol=0)
    again = synthesize("linear", T, R, np.random.default_rng(0))
    assert torch.equal(again["I_rgb"], out["I_rgb"])
