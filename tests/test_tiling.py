"""Tiled inference covers every pixel, blends seamlessly and agrees with whole-image inference."""

import math

import pytest
import torch

from models.cr3net import CR3Net
from models.inference import separate
from models.tiling import fitted_tile, separate_tiled, tile_starts
from tests.tiny_data import smooth_image


def psnr_db(a, b):
    return 10 * math.log10(1.0 / float(((a - b) ** 2).mean()))


@pytest.mark.parametrize("length,tile,overlap", [(200, 64, 16), (64, 64, 16), (130, 48, 8), (1000, 512, 64)])
def test_tile_starts_cover_with_overlap(length, tile, overlap):
    starts = tile_starts(length, tile, overlap)
    assert starts[0] == 0 and starts[-1] + min(tile, length) >= length
    assert all(s % 2 == 0 for s in starts)
    assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:], strict=False))


def test_tiled_matches_whole_image():
    torch.manual_seed(0)
    net = CR3Net(ngf=8, num_cab=1).eval()
    rng = __import__("numpy").random.default_rng(0)
    I_rgb = smooth_image(rng, 160, 232)[None]
    I_raw = torch.nn.functional.avg_pool2d(I_rgb.mean(1, keepdim=True).repeat(1, 4, 1, 1), 2)
    with torch.inference_mode():
        whole = separate(net, I_rgb, I_raw)
        calls = []
        tiled = separate_tiled(net, I_rgb, I_raw, tile=96, overlap=32, progress=lambda d, t: calls.append((d, t)))
    assert calls[-1][0] == calls[-1][1] > 1
    for key in whole:
        assert tiled[key].shape == whole[key].shape
        assert psnr_db(tiled[key], whole[key]) >= 40, key
    with pytest.raises(ValueError, match="multiple of 8"):
        separate_tiled(net, I_rgb, I_raw, tile=100)


@pytest.mark.parametrize("length,max_tile,overlap", [(1224, 512, 64), (1736, 512, 64), (160, 96, 32), (130, 48, 8),
                                                     (400, 512, 64), (2000, 768, 64)])
def test_fitted_tiles_need_no_more_tiles_and_less_work(length, max_tile, overlap):
    size, _ = fitted_tile(length, length, max_tile, overlap)
    assert size % 8 == 0 and size <= max_tile
    fitted, square = tile_starts(length, size, overlap), tile_starts(length, max_tile, overlap)
    assert len(fitted) <= len(square)
    assert len(fitted) * min(size, length) <= len(square) * min(max_tile, length)
    assert fitted[0] == 0 and fitted[-1] + min(size, length) >= length
    assert all(b - a <= size - overlap for a, b in zip(fitted, fitted[1:], strict=False))
    assert fitted_tile(length, length, 0, overlap) == (0, 0)


def test_rectangular_tiles_match_whole_image():
    torch.manual_seed(0)
    net = CR3Net(ngf=8, num_cab=1).eval()
    rng = __import__("numpy").random.default_rng(1)
    I_rgb = smooth_image(rng, 160, 232)[None]
    I_raw = torch.nn.functional.avg_pool2d(I_rgb.mean(1, keepdim=True).repeat(1, 4, 1, 1), 2)
    with torch.inference_mode():
        whole = separate(net, I_rgb, I_raw)
        calls = []
        tiled = separate_tiled(net, I_rgb, I_raw, tile=(96, 136), overlap=32,
                               progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (4, 4)  # tiles start at rows 0, 64 and columns 0, 96
    for key in whole:
        assert psnr_db(tiled[key], whole[key]) >= 40, key
    with pytest.raises(ValueError, match="multiple of 8"):
        separate_tiled(net, I_rgb, I_raw, tile=(96, 100))
