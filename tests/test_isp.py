"""util.isp: CFA packing for all four patterns, levels, transfer curves, the invertible ISP, CFA-aware augmentation."""

import numpy as np
import pytest
import torch

from util import isp

# Expected tile offsets written out by hand (G1 = green in the R row, G2 = green in the B row).
EXPECTED_OFFSETS = {
    "RGGB": {"R": (0, 0), "G1": (0, 1), "G2": (1, 0), "B": (1, 1)},
    "BGGR": {"R": (1, 1), "G1": (1, 0), "G2": (0, 1), "B": (0, 0)},
    "GRBG": {"R": (0, 1), "G1": (0, 0), "G2": (1, 1), "B": (1, 0)},
    "GBRG": {"R": (1, 0), "G1": (1, 1), "G2": (0, 0), "B": (0, 1)},
}
SITE_VALUE = {"R": 1000, "G1": 2000, "G2": 3000, "B": 4000}


def coded_mosaic(pattern, h=6, w=8):
    """uint16 mosaic whose every CFA site holds SITE_VALUE of its colour, built from the pattern string alone."""
    tile = np.zeros((2, 2), np.uint16)
    r_row = pattern.index("R") // 2
    for i, colour in enumerate(pattern):
        row, col = divmod(i, 2)
        key = colour if colour != "G" else ("G1" if row == r_row else "G2")
        tile[row, col] = SITE_VALUE[key]
    return np.tile(tile, (h // 2, w // 2))


def expected_packed_values():
    return np.array([SITE_VALUE[k] for k in isp.CANONICAL_CHANNELS])


def psnr(a, b):
    return 10 * np.log10(1.0 / np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))


@pytest.mark.parametrize("pattern", isp.CFA_PATTERNS)
def test_cfa_offsets(pattern):
    assert isp.cfa_offsets(pattern) == EXPECTED_OFFSETS[pattern]


@pytest.mark.parametrize("pattern", isp.CFA_PATTERNS)
def test_pack_puts_each_colour_in_its_canonical_channel(pattern):
    packed = isp.pack_raw(coded_mosaic(pattern), pattern)
    assert packed.shape == (4, 3, 4) and packed.dtype == np.uint16
    for c, value in enumerate(expected_packed_values()):
        assert np.all(packed[c] == value), (pattern, isp.CANONICAL_CHANNELS[c])


@pytest.mark.parametrize("pattern", isp.CFA_PATTERNS)
def test_pack_unpack_round_trip_numpy_and_torch(pattern):
    rng = np.random.default_rng(0)
    mosaic = rng.integers(0, 65535, size=(2, 3, 8, 10), dtype=np.uint16)
    packed = isp.pack_raw(mosaic, pattern)
    assert packed.shape == (2, 3, 4, 4, 5)
    np.testing.assert_array_equal(isp.unpack_raw(packed, pattern), mosaic)
    t = torch.from_numpy(mosaic.astype(np.float32))
    np.testing.assert_array_equal(isp.unpack_raw(isp.pack_raw(t, pattern), pattern).numpy(), mosaic)
    # the packed channels are plain strided views of the mosaic
    r, c = EXPECTED_OFFSETS[pattern]["B"]
    np.testing.assert_array_equal(packed[..., 3, :, :], mosaic[..., r::2, c::2])


def test_pack_rejects_odd_sizes_and_unknown_patterns():
    with pytest.raises(ValueError, match="even"):
        isp.pack_raw(np.zeros((5, 8)), "RGGB")
    with pytest.raises(ValueError, match="even"):
        isp.pack_raw(np.zeros((6, 7)), "RGGB")
    with pytest.raises(ValueError, match="RGGB, BGGR, GRBG, GBRG"):
        isp.pack_raw(np.zeros((6, 8)), "RGBG")
    with pytest.raises(ValueError):
        isp.unpack_raw(np.zeros((3, 2, 2)), "RGGB")


def test_normalize_scalar_and_per_channel():
    x = np.array([[400, 16383], [0, 20000]], dtype=np.uint16)
    out = isp.normalize_raw(x, 400, 16383)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[0, 1], [-400 / 15983, 19600 / 15983]], rtol=1e-6)  # not clipped
    np.testing.assert_allclose(isp.denormalize_raw(out, 400, 16383), x, atol=1e-2)

    packed = np.full((4, 2, 3), 600, dtype=np.uint16)
    black = [100, 200, 300, 400]
    out = isp.normalize_raw(torch.from_numpy(packed.astype(np.int32)), black, 1100)
    assert out.dtype == torch.float32
    np.testing.assert_allclose(out[:, 0, 0].numpy(), [0.5, 400 / 900, 300 / 800, 200 / 700], rtol=1e-6)
    np.testing.assert_allclose(isp.denormalize_raw(out, black, 1100).numpy(), packed, atol=1e-3)
    with pytest.raises(ValueError):
        isp.normalize_raw(x, 500, 500)


@pytest.mark.parametrize("pattern", isp.CFA_PATTERNS)
def test_mosaic_rgb_samples_the_right_channel(pattern):
    rgb = np.empty((3, 4, 6), np.float32)
    rgb[0], rgb[1], rgb[2] = 0.1, 0.5, 0.9
    packed = isp.pack_raw(isp.mosaic_rgb(rgb, pattern), pattern)
    np.testing.assert_allclose(packed[:, 0, 0], [0.1, 0.5, 0.5, 0.9])
    assert np.ptp(packed, axis=(1, 2)).max() == 0


@pytest.mark.parametrize("pattern", isp.CFA_PATTERNS)
def test_demosaic_bilinear(pattern):
    colour = np.array([0.2, 0.5, 0.7], np.float32)[:, None, None]
    flat = np.broadcast_to(colour, (3, 8, 10)).copy()
    np.testing.assert_allclose(isp.demosaic_bilinear(isp.mosaic_rgb(flat, pattern), pattern), flat, atol=1e-6)
    # a horizontal ramp is reproduced exactly away from the borders
    ramp = np.broadcast_to(np.linspace(0, 1, 10, dtype=np.float32), (3, 8, 10)).copy()
    out = isp.demosaic_bilinear(isp.mosaic_rgb(ramp, pattern), pattern)
    np.testing.assert_allclose(out[:, 1:-1, 1:-1], ramp[:, 1:-1, 1:-1], atol=1e-6)
    # site values are kept, from a mosaic and from a packed (RGGB-grid) input
    rng = np.random.default_rng(1)
    mosaic = rng.random((2, 8, 10), dtype=np.float32)
    np.testing.assert_allclose(isp.mosaic_rgb(isp.demosaic_bilinear(mosaic, pattern), pattern), mosaic, atol=1e-6)
    packed = isp.pack_raw(mosaic, pattern)
    full = isp.demosaic_bilinear(torch.from_numpy(packed))
    assert full.shape == (2, 3, 8, 10)
    np.testing.assert_allclose(isp.pack_raw(isp.mosaic_rgb(full, "RGGB"), "RGGB").numpy(), packed, atol=1e-6)


def test_demosaic_is_differentiable():
    packed = torch.rand(1, 4, 4, 4, requires_grad=True)
    isp.demosaic_bilinear(packed).sum().backward()
    assert packed.grad is not None and torch.all(packed.grad > 0)


def test_transfer_curves():
    x = np.linspace(0, 1, 101, dtype=np.float32)
    assert isp.srgb_encode(x).dtype == np.float32
    np.testing.assert_allclose(isp.srgb_decode(isp.srgb_encode(x)), x, atol=1e-6)
    known = isp.srgb_encode(np.array([0.0, 0.0031308, 0.5, 1.0]))
    np.testing.assert_allclose(known, [0, 0.04045, 0.735357, 1], atol=1e-5)
    np.testing.assert_allclose(isp.gamma_decode(isp.gamma_encode(x)), x, atol=1e-6)
    np.testing.assert_allclose(isp.gamma_encode(np.array([0.0, 0.25])), [0.0, 0.25 ** (1 / 2.2)])
    assert isp.srgb_encode(np.array([-0.5, 2.0])).tolist() == [0.0, 1.0]  # clamped first
    t = torch.zeros(3, requires_grad=True)
    isp.gamma_encode(t).sum().backward()
    assert torch.isfinite(t.grad).all()


def test_smoothstep_inverse():
    x = np.linspace(0, 1, 101)
    np.testing.assert_allclose(isp.smoothstep(x), 3 * x**2 - 2 * x**3)
    np.testing.assert_allclose(isp.inverse_smoothstep(isp.smoothstep(x)), x, atol=1e-7)
    np.testing.assert_allclose(isp.smoothstep(isp.inverse_smoothstep(x)), x, atol=1e-7)
    out = isp.inverse_smoothstep(torch.tensor([-0.2, 1.3]))  # clamped, no NaN
    assert out.tolist() == pytest.approx([0.0, 1.0], abs=1e-6)


def test_colour_matrices_and_gains():
    np.testing.assert_allclose(isp.XYZ_TO_SRGB[0], [3.2404542, -1.5371385, -0.4985314], atol=1e-5)
    rng = np.random.default_rng(3)
    ccm = isp.random_ccm(rng)
    np.testing.assert_allclose(ccm.sum(axis=1), 1.0)
    assert not np.allclose(ccm, isp.random_ccm(rng))
    np.testing.assert_array_equal(isp.random_ccm(np.random.default_rng(3)), ccm)  # seeded
    draws = np.array([isp.random_gains(rng) for _ in range(500)])
    assert np.all((draws[:, 1] >= 1.9) & (draws[:, 1] <= 2.4)) and np.all((draws[:, 2] >= 1.5) & (draws[:, 2] <= 1.9))
    assert np.median(1 / draws[:, 0]) == pytest.approx(0.8, abs=0.02)

    rgb = np.ones((3, 2, 2), np.float32) * 0.3
    out = isp.apply_gains(rgb, 2.0, 1.5, 1.2)
    np.testing.assert_allclose(out[:, 0, 0], [0.72, 0.36, 0.54], rtol=1e-6)
    np.testing.assert_allclose(isp.invert_gains(out, 2.0, 1.5, 1.2), rgb, rtol=1e-6)  # below the inflection: exact
    packed = isp.apply_gains(np.ones((4, 1, 1)), 2.0, 1.5)
    np.testing.assert_allclose(packed.ravel(), [2, 1, 1, 1.5])
    white = np.ones((3, 1, 1))
    np.testing.assert_allclose(isp.invert_gains(white, 2.0, 1.5, 1.2), white)  # highlights stay white
    np.testing.assert_allclose(isp.apply_ccm(np.arange(3.0).reshape(3, 1, 1), np.eye(3)[[2, 0, 1]]).ravel(), [2, 0, 1])


def smooth_image(seed, h=32, w=48):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    chans = [0.45 + 0.3 * np.sin(rng.uniform(2, 6) * xx + rng.uniform(0, 6) + rng.uniform(1, 5) * yy) for _ in range(3)]
    return np.stack(chans).astype(np.float32)  # in [0.15, 0.75]


@pytest.mark.parametrize("transfer", isp.TRANSFERS)
def test_unprocess_process_round_trip(transfer):
    rng = np.random.default_rng(7)
    for seed in range(4):
        img = smooth_image(seed)
        params = isp.ISPParams.random(rng)
        lin = isp.unprocess(img, params, transfer)
        assert lin.shape == img.shape and lin.min() >= 0 and lin.max() <= 1
        assert psnr(isp.process(lin, params, transfer), img) > 40
        # torch gives the same numbers
        lin_t = isp.unprocess(torch.from_numpy(img), params, transfer)
        np.testing.assert_allclose(lin_t.numpy(), lin, atol=1e-5)
    ident = isp.ISPParams.identity()
    np.testing.assert_allclose(isp.unprocess(img, ident, "gamma"), isp.gamma_decode(isp.inverse_smoothstep(img)))


@pytest.mark.parametrize("pattern", isp.CFA_PATTERNS)
@pytest.mark.parametrize("horizontal", [True, False])
def test_bayer_flip_keeps_colours(pattern, horizontal):
    mosaic = coded_mosaic(pattern)
    flipped, new_pattern = isp.bayer_flip(mosaic, pattern, horizontal)
    assert new_pattern in isp.CFA_PATTERNS
    assert new_pattern != pattern
    packed = isp.pack_raw(flipped, new_pattern)
    for c, value in enumerate(expected_packed_values()):
        assert np.all(packed[c] == value)
    # on real content: flipping the mosaic == flipping the canonical packed RAW
    rng = np.random.default_rng(2)
    content = rng.integers(0, 4096, size=(6, 8), dtype=np.uint16)
    flipped, new_pattern = isp.bayer_flip(torch.from_numpy(content.astype(np.int32)), pattern, horizontal)
    expected = np.flip(isp.pack_raw(content, pattern), axis=-1 if horizontal else -2)
    np.testing.assert_array_equal(isp.pack_raw(flipped, new_pattern).numpy(), expected)


@pytest.mark.parametrize("pattern", isp.CFA_PATTERNS)
def test_even_crop_keeps_colours(pattern):
    mosaic = coded_mosaic(pattern, 10, 12)
    crop = isp.even_crop(mosaic, 2, 4, 6, 4)
    assert crop.shape == (6, 4)
    packed = isp.pack_raw(crop, pattern)
    for c, value in enumerate(expected_packed_values()):
        assert np.all(packed[c] == value)
    for bad in [(1, 0, 4, 4), (0, 3, 4, 4), (0, 0, 3, 4), (8, 0, 4, 4)]:
        with pytest.raises(ValueError):
            isp.even_crop(mosaic, *bad)


def test_raw_preview():
    packed = np.empty((4, 5, 6), np.float32)
    packed[0], packed[1], packed[2], packed[3] = 0.1, 0.2, 0.2, 0.15
    out = isp.raw_preview(packed)  # gray-world makes a uniform patch neutral
    assert out.shape == (3, 5, 6)
    np.testing.assert_allclose(out[:, 0, 0], isp.srgb_encode(np.float32(0.2)), atol=1e-6)
    out = isp.raw_preview(torch.from_numpy(packed * 10)[None], gains=(1.0, 1.0))
    assert out.shape == (1, 3, 5, 6) and float(out.max()) == 1.0 and float(out.min()) >= 0
