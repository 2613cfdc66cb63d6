"""Precision modes and channels_last give the fp32 answer (to their accuracy), ``auto`` picks the right precision,
and scripts/benchmark.py runs end to end."""

import copy
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import util.precision
from data.synthesis import UPSTREAM_GAMMA
from models import cr3net
from models.cr3net import set_winograd
from models.inference import separate
from models.networks import define_G
from scripts import benchmark, benchmark_mode
from util.errors import UserError
from util.precision import autocast, cpu_has_native_bf16, resolve_precision, to_memory_format

ROOT = Path(__file__).resolve().parents[1]
NGF, NUM_CAB = 8, 1
H, W = 32, 48  # RGB; packed RAW 16x24
SEED = 0
# With the training init N(0, 0.02) a width-8 network hardly changes its input (rms 0.002), which would make any
# precision look exact. N(0, 0.05) makes it change its input by rms ~0.16, like a trained network's correction.
INIT_GAIN = 0.05
MIN_PSNR_DB = 30.0  # reduced precision vs fp32 on T_pred_rgb, data range 1
MAX_REL_ERROR = 0.05  # rms(T - T_fp32) / rms(T_fp32 - I): the precision noise relative to the network's correction
CHANNELS_LAST_ATOL = 1e-5
OUTPUT_KEYS = ("T_pred_rgb", "R_pred_rgb", "T_pred_raw", "R_pred_raw")


def smooth_image(channels, h, w, generator):
    """(1, channels, h, w) float32 in [0, 1]: coarse random noise upsampled bilinearly (photo-like, not white noise)."""
    coarse = torch.rand(1, channels, h // 4, w // 4, generator=generator)
    return F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)


@pytest.fixture(scope="module")
def inputs():
    g = torch.Generator().manual_seed(SEED)
    return smooth_image(3, H, W, g), smooth_image(4, H // 2, W // 2, g)


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(SEED)
    return define_G(NGF, NUM_CAB, init_gain=INIT_GAIN).eval()


@pytest.fixture(scope="module")
def fp32_out(net, inputs):
    """The fp32 reference with PyTorch's own convolutions (WinogradConv2d's NNPACK path off; tests/test_winograd.py
    checks that path against this one)."""
    previous = set_winograd(False)
    try:
        with torch.inference_mode():
            return separate(net, *inputs, precision="fp32", channels_last=False)
    finally:
        set_winograd(previous)


def psnr_db(a, b):
    mse = float(((a.double() - b.double()) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


def cpu_autocast_supports(dtype) -> bool:
    try:
        with torch.autocast("cpu", dtype=dtype):
            torch.nn.functional.conv2d(torch.ones(1, 1, 3, 3), torch.ones(1, 1, 1, 1))
    except (RuntimeError, ValueError):
        return False
    return True


# ------------------------------------------------------------------------------------------------ numerics
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_reduced_precision_is_close_to_fp32(precision, net, inputs, fp32_out):
    if precision == "fp16" and not cpu_autocast_supports(torch.float16):
        pytest.skip("this torch's CPU autocast does not support float16")
    I_rgb = inputs[0]
    cl_net = to_memory_format(copy.deepcopy(net), True)
    with torch.inference_mode():
        out = separate(cl_net, *inputs, precision=precision, channels_last=True)
    for k in OUTPUT_KEYS:
        assert out[k].dtype == torch.float32 and out[k].shape == fp32_out[k].shape
        assert torch.isfinite(out[k]).all(), k
    change = float(((fp32_out["T_pred_rgb"] - I_rgb) ** 2).mean().sqrt())
    assert change > 0.05, "the test network must really change its input, or every precision looks exact"
    error = float(((out["T_pred_rgb"] - fp32_out["T_pred_rgb"]) ** 2).mean().sqrt())
    assert error > 0, f"{precision} gave exactly the fp32 result: autocast did not run"
    assert psnr_db(out["T_pred_rgb"], fp32_out["T_pred_rgb"]) > MIN_PSNR_DB
    assert error / change < MAX_REL_ERROR
    assert psnr_db(out["R_pred_rgb"], fp32_out["R_pred_rgb"]) > MIN_PSNR_DB


def test_channels_last_matches_nchw_in_fp32(net, inputs, fp32_out):
    cl_net = to_memory_format(copy.deepcopy(net), True)
    conv_weight = cl_net.shallow_feat1_r[0].weight
    assert conv_weight.is_contiguous(memory_format=torch.channels_last)
    assert not conv_weight.is_contiguous()
    with torch.inference_mode():
        out = separate(cl_net, *inputs, precision="fp32", channels_last=True)
    for k in OUTPUT_KEYS:
        torch.testing.assert_close(out[k], fp32_out[k], rtol=0, atol=CHANNELS_LAST_ATOL, msg=k)


def test_to_memory_format_round_trip_and_non_4d():
    x = torch.rand(2, 3, 4, 5)
    cl = to_memory_format(x, True)
    assert cl.is_contiguous(memory_format=torch.channels_last) and torch.equal(cl, x)
    assert to_memory_format(cl, False).is_contiguous()
    v = torch.rand(3, 4, 5)
    assert to_memory_format(v, True) is v


def test_autocast_context():
    with autocast("cpu", "fp32"):
        assert not torch.is_autocast_enabled("cpu")
    with autocast("cpu", "bf16"):
        assert torch.is_autocast_enabled("cpu")
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16
        y = torch.nn.functional.linear(torch.ones(2, 4), torch.ones(3, 4))
    assert y.dtype == torch.bfloat16


# ------------------------------------------------------------------------------------------------ resolve_precision
@pytest.fixture
def fresh_cpu_flags():
    """Clears the cached /proc/cpuinfo answer before and after the test (so later tests see the real CPU)."""
    util.precision.cpu_has_native_bf16.cache_clear()
    yield
    util.precision.cpu_has_native_bf16.cache_clear()


class FakeCpuinfo:
    """Stands in for ``Path('/proc/cpuinfo')``: ``read_text`` returns the given text, or raises OSError for None."""

    def __init__(self, text):
        self.text = text

    def __call__(self, path):
        assert str(path) == "/proc/cpuinfo"
        return self

    def read_text(self):
        if self.text is None:
            raise OSError("no /proc here")
        return self.text


CPUINFO = "processor\t: 0\nmodel name\t: Test CPU\nflags\t\t: fpu sse2 avx2 fma {extra}\n"


@pytest.mark.parametrize(
    ("extra", "native"),
    [("avx512f avx512_bf16", True), ("amx_bf16 amx_tile", True), ("avx512f avx512_vnni", False),
     ("avx512_bf16x", False), ("", False)],
)
def test_cpu_flags_decide_native_bf16_and_auto(monkeypatch, fresh_cpu_flags, extra, native):
    monkeypatch.setattr(util.precision, "Path", FakeCpuinfo(CPUINFO.format(extra=extra)))
    assert util.precision.cpu_has_native_bf16() is native
    assert resolve_precision("auto", "cpu") == ("bf16" if native else "fp32")


def test_unreadable_cpuinfo_means_no_native_bf16(monkeypatch, fresh_cpu_flags):
    monkeypatch.setattr(util.precision, "Path", FakeCpuinfo(None))
    assert util.precision.cpu_has_native_bf16() is False
    assert resolve_precision("auto", "cpu") == "fp32"


def test_auto_on_this_cpu_follows_its_flags():
    assert resolve_precision("auto", "cpu") == ("bf16" if cpu_has_native_bf16() else "fp32")
    assert resolve_precision("auto", torch.device("cpu")) == resolve_precision("auto", "cpu")


@pytest.mark.parametrize(("bf16_supported", "expected"), [(True, "bf16"), (False, "fp16")])
def test_auto_on_cuda(monkeypatch, bf16_supported, expected):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16_supported)
    assert resolve_precision("auto", "cuda") == expected
    assert resolve_precision("auto", torch.device("cuda", 0)) == expected


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_explicit_precision_is_kept(precision):
    assert resolve_precision(precision, "cpu") == precision
    assert resolve_precision(precision, "cuda") == precision


@pytest.mark.parametrize("bad", ["fp8", "FP32", "float32", "", None])
def test_invalid_precision_raises(bad):
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision(bad, "cpu")


# ------------------------------------------------------------------------------------------------ benchmark script
def test_benchmark_mode_names():
    m = benchmark_mode.parse_mode("bf16+cl")
    assert (m.precision, m.channels_last, m.compile, m.jit, m.nograd) == ("bf16", True, False, False, False)
    assert benchmark_mode.parse_mode("fp32") == benchmark_mode.Mode("fp32")
    auto = benchmark_mode.parse_mode("auto")
    assert (auto.precision, auto.channels_last) == ("auto", None)  # the tools' own memory format
    assert benchmark_mode.parse_mode("auto+nchw").channels_last is False
    assert benchmark_mode.parse_mode("bf16").channels_last is False  # an explicit precision: NCHW unless +cl
    comp = benchmark_mode.parse_mode("compile")
    assert (comp.precision, comp.channels_last, comp.compile) == ("auto", True, True)
    assert benchmark_mode.parse_mode("fp32+cl+nograd").nograd
    assert benchmark_mode.parse_mode("fp32+onednn").onednn
    for bad in ("bf17+cl", "fp32+bf16", "cl+cl", "cl+nchw", "bf16+jit", "fp32+jit+compile"):
        with pytest.raises(UserError):
            benchmark_mode.parse_mode(bad)


def test_upstream_baseline_is_fp32_nchw_without_the_allocator_setup(monkeypatch, tmp_path):
    """--baseline upstream: fp32, NCHW, PyTorch's own convolution kernels, glibc's malloc untouched (the other modes
    keep large buffers mapped; fp32 takes the Winograd convolutions where NNPACK works)."""
    assert benchmark_mode.parse_mode("upstream") == benchmark_mode.Mode("upstream", glibc=True, onednn=True)
    monkeypatch.setitem(cr3net._WINOGRAD, "enabled", True)  # measure() turns it off for upstream, in this process
    calls = []
    monkeypatch.setattr(benchmark_mode, "keep_buffers_mapped", lambda: calls.append(True))
    spec = benchmark.resolve_args(benchmark.build_parser().parse_args(
        ["--device", "cpu", "--ngf", "8", "--num_cab", "1", "--size", "32x48", "--repeats", "1", "--warmup", "0"]))
    for mode in ("fp32", "upstream", "fp32+onednn"):
        benchmark_mode.measure(dict(spec, task="infer", mode=mode, out=str(tmp_path / f"{mode}.pt")))
    assert calls == [True, True]  # fp32 and fp32+onednn
    accuracy = benchmark_mode.compare_outputs(str(tmp_path / "fp32+onednn.pt"), str(tmp_path / "upstream.pt"))
    assert accuracy["identical"]
    accuracy = benchmark_mode.compare_outputs(str(tmp_path / "fp32.pt"), str(tmp_path / "upstream.pt"))
    assert accuracy["identical"] or accuracy["psnr_db"] > 90  # Winograd: fp32 rounding of its transforms


def test_benchmark_sizes():
    assert benchmark.parse_size("448x640", "--size") == (448, 640)
    assert benchmark.parse_size("256", "--train_size") == (256, 256)
    for bad in ("447x640", "axb", "1x2x3", "0x8"):
        with pytest.raises(UserError, match="--size"):
            benchmark.parse_size(bad, "--size")


def test_benchmark_scene_domains():
    scene = benchmark_mode.make_scene(32, 48)
    for k in ("I_rgb", "T_rgb", "R_rgb"):
        assert scene[k].shape == (3, 32, 48) and scene[k].dtype == torch.float32
    for k in ("I_raw", "T_raw", "R_raw"):
        assert scene[k].shape == (4, 16, 24)
    for k, v in scene.items():
        assert 0 <= float(v.min()) and float(v.max()) <= 1, k
    # linear light adds up: I = T + R (before clipping, which this scene barely reaches)
    linear = {k: scene[k] ** UPSTREAM_GAMMA for k in ("I_rgb", "T_rgb", "R_rgb")}
    torch.testing.assert_close(linear["I_rgb"], (linear["T_rgb"] + linear["R_rgb"]).clamp(0, 1), atol=1e-5, rtol=0)
    torch.testing.assert_close(scene["I_raw"], (scene["T_raw"] + scene["R_raw"]).clamp(0, 1), atol=1e-5, rtol=0)
    assert float((scene["I_rgb"] - scene["T_rgb"]).abs().mean()) > 0.05  # a visible reflection


@pytest.mark.slow
def test_benchmark_runs_end_to_end(tmp_path):
    out = tmp_path / "bench.json"
    cmd = [sys.executable, "-m", "scripts.benchmark", "--quick", "--repeats", "1", "--warmup", "0", "--skip_train",
           "--ngf", str(NGF), "--num_cab", str(NUM_CAB), "--size", f"{H}x{W}", "--threads", "1", "--json", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]

    def no_constants(name):
        raise AssertionError(f"{name} is not valid JSON")

    report = json.loads(out.read_text(), parse_constant=no_constants)
    assert report["settings"]["ngf"] == NGF and report["settings"]["size"] == [H, W]
    assert "train" not in report
    infer = report["infer"]
    assert list(infer) == ["fp32", "fp32+cl", "bf16+cl", "auto"]
    assert infer["fp32"]["speedup"] == 1.0
    for name, r in infer.items():
        assert r["status"] == "ok", (name, r.get("error"))
        assert r["n"] == 1 and r["median_s"] > 0
        assert isinstance(r["speedup"], float) and r["speedup"] > 0
        acc = r["accuracy"]
        assert acc["finite"]
        # PSNR against fp32: a number, or null exactly where the output is identical (infinite PSNR)
        assert (acc["psnr_db"] is None) == acc["identical"] == (acc["max_abs_diff"] == 0), name
        assert r["peak_mib"] > 0
        assert name in proc.stdout
    assert infer["fp32"]["accuracy"]["identical"]
    bf16 = infer["bf16+cl"]["accuracy"]
    assert infer["bf16+cl"]["precision"] == "bf16" and not bf16["identical"]
    assert MIN_PSNR_DB < bf16["psnr_db"] < 200
    assert infer["fp32+cl"]["accuracy"]["max_abs_diff"] < CHANNELS_LAST_ATOL
    assert infer["auto"]["precision"] == resolve_precision("auto", "cpu")
    assert report["environment"]["cpu_native_bf16"] == cpu_has_native_bf16()


def test_whole_process_benchmark_reports_cpu_times_against_upstream(tmp_path):
    """scripts/benchmark_process.py: one test.py process per mode, upstream's path first as the 1.00 reference."""
    from scripts import benchmark_process

    report = benchmark_process.main(["--num", "1", "--size", "64x96", "--ngf", "8", "--num_cab", "1",
                                     "--modes", "auto", "fp32", "--json", str(tmp_path / "p.json")])
    assert list(report["modes"]) == ["upstream", "auto", "fp32"]
    for name, r in report["modes"].items():
        assert r["wall_s"] > 0 and r["user_s"] > 0 and r["sys_s"] >= 0, name
    assert report["modes"]["upstream"]["speedup"] == 1.0
    assert report["modes"]["fp32"]["worst_psnr_vs_upstream_db"] > 60  # the same arithmetic, allocator aside
    assert json.loads((tmp_path / "p.json").read_text())["modes"]["auto"]["worst_psnr_vs_upstream_db"] > 30
