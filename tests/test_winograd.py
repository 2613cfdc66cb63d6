"""fp32 CPU inference: NNPACK's Winograd 3x3 convolutions (models.cr3net.WinogradConv2d) give the direct convolution's
answer, are taken exactly where promised, and the memory format follows --precision (NCHW for fp32 on the CPU)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from models import cr3net
from models.inference import describe_path, separate
from models.networks import define_G
from options.test_options import TestOptions
from scripts import benchmark_process
from util.precision import resolve_channels_last, to_memory_format

ROOT = Path(__file__).resolve().parents[1]
needs_nnpack = pytest.mark.skipif(not cr3net._nnpack_works(), reason="NNPACK is not built into this PyTorch or does "
                                  "not run on this CPU (it needs AVX2 + FMA3 on x86): the direct convolution is used")


@pytest.fixture
def spy(monkeypatch):
    """Counts the NNPACK calls; the setting on for the test and restored after it."""
    monkeypatch.setitem(cr3net._WINOGRAD, "enabled", True)
    calls = []
    real = cr3net._nnpack_conv

    def counted(*args):
        calls.append(tuple(args[0].shape))
        return real(*args)

    monkeypatch.setattr(cr3net, "_nnpack_conv", counted)
    return calls


def pair(cin, cout, bias, seed=0):
    torch.manual_seed(seed)
    plain = nn.Conv2d(cin, cout, 3, padding=1, bias=bias)
    wino = cr3net.WinogradConv2d(cin, cout, 3, padding=1, bias=bias)
    wino.load_state_dict(plain.state_dict())  # same keys: a checkpoint loads into either
    return plain, wino


@needs_nnpack
@pytest.mark.parametrize("batch,cin,cout,h,w,bias", [(1, 7, 9, 13, 22, False), (2, 16, 5, 31, 17, True),
                                                     (1, 3, 24, 8, 8, False)])
def test_winograd_matches_the_direct_convolution(spy, batch, cin, cout, h, w, bias):
    plain, wino = pair(cin, cout, bias)
    x = torch.rand(batch, cin, h, w) * 2 - 0.5
    with torch.inference_mode():
        ref, out = plain(x), wino(x)
    assert spy == [(batch, cin, h, w)]
    assert out.shape == ref.shape and out.dtype == torch.float32 and out.is_contiguous()
    scale = float(ref.abs().max())
    assert float((out - ref).abs().max()) < 2e-5 * scale
    assert not torch.equal(out, ref) or scale == 0  # really another kernel (Winograd rounds differently)


@needs_nnpack
def test_winograd_is_taken_only_for_fp32_nchw_cpu_inference(spy):
    plain, wino = pair(8, 8, False)
    x = torch.rand(1, 8, 12, 12)
    with torch.no_grad():
        wino(x)
    assert len(spy) == 1  # no_grad counts as inference too
    spy.clear()
    wino(x)  # autograd records: training takes PyTorch's kernels (NNPACK's backward is not used)
    with torch.inference_mode():
        wino(x.contiguous(memory_format=torch.channels_last))  # NNPACK takes NCHW only
        wino.double()(x.double())
        wino.float()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            wino(x)
        dilated = cr3net.conv(8, 8, 3, dilation=2)
        one = cr3net.conv(8, 8, 1)
        assert isinstance(one, cr3net.WinogradConv2d) and not isinstance(dilated, cr3net.WinogradConv2d)
        one(x)  # a 1x1 convolution: no Winograd transform to gain from
        previous = cr3net.set_winograd(False)
        try:
            wino(x)
        finally:
            cr3net.set_winograd(previous)
    assert spy == []


@needs_nnpack
def test_whole_network_in_fp32_matches_pytorch_kernels(spy):
    torch.manual_seed(0)
    net = define_G(8, 1, init_gain=0.05).eval()
    g = torch.Generator().manual_seed(1)
    I_rgb, I_raw = torch.rand(1, 3, 32, 48, generator=g), torch.rand(1, 4, 16, 24, generator=g)
    with torch.inference_mode():
        fast = separate(net, I_rgb, I_raw, "fp32", channels_last=False)
        used = len(spy)
        cr3net.set_winograd(False)
        ref = separate(net, I_rgb, I_raw, "fp32", channels_last=False)
    threes = [m for m in net.modules() if isinstance(m, cr3net.WinogradConv2d) and m.kernel_size == (3, 3)]
    assert used == len(threes) > 20  # every 3x3 non-dilated convolution of the forward pass, once
    assert len(spy) == used
    assert float((fast["T_pred_rgb"] - ref["T_pred_rgb"]).abs().max()) > 0
    for key, value in ref.items():
        torch.testing.assert_close(fast[key], value, rtol=0, atol=1e-5, msg=key)


def test_memory_format_follows_the_precision():
    assert resolve_channels_last("fp32", "cpu") is False
    assert resolve_channels_last("bf16", "cpu") is True
    assert resolve_channels_last("fp16", "cpu") is True
    assert resolve_channels_last("fp32", "cuda") is True
    assert resolve_channels_last("fp32", "cpu", channels_last=True) is True
    assert resolve_channels_last("bf16", "cpu", no_channels_last=True) is False
    with pytest.raises(ValueError):
        resolve_channels_last("fp32", "cpu", True, True)


def test_flags_choose_the_memory_format(tmp_path, capsys):
    from models import create_model

    base = ["--dataroot", str(tmp_path), "--checkpoints_dir", str(tmp_path), "--gpu_ids", "-1", "--ngf", "8",
            "--num_cab", "1"]
    for flags, expected in ((["--precision", "fp32"], False), (["--precision", "fp32", "--channels_last"], True),
                            (["--precision", "bf16"], True), (["--precision", "bf16", "--no_channels_last"], False)):
        model = create_model(TestOptions().parse(base + flags, save=False))
        assert model.channels_last is expected, flags
        weight = model.netG_T.shallow_feat1_r[0].weight
        assert weight.is_contiguous(memory_format=torch.channels_last) is expected or weight.is_contiguous()
    with pytest.raises(SystemExit):
        TestOptions().parse(base + ["--channels_last", "--no_channels_last"], save=False)
    assert "not allowed with" in capsys.readouterr().err


def test_describe_path_names_the_kernels():
    assert describe_path("bf16", "cpu", True) == "bf16, channels_last"
    assert describe_path("fp32", "cpu", True) == "fp32, channels_last"
    nchw = describe_path("fp32", "cpu", False)
    assert nchw == ("fp32, NCHW, Winograd 3x3 (NNPACK)" if cr3net.winograd_enabled() else "fp32, NCHW")


def test_environment_variable_turns_winograd_off():
    code = "from models import cr3net; print(cr3net.winograd_enabled())"
    env = dict(os.environ, CR3NET_WINOGRAD="0")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_upstream_reference_of_the_process_benchmark_uses_pytorch_kernels():
    flags, env = benchmark_process.MODES["upstream"]
    assert env == {"CR3NET_MALLOC": "default", "CR3NET_WINOGRAD": "0"}
    assert flags == ["--precision", "fp32", "--no_channels_last"]
    assert "CR3NET_WINOGRAD" not in benchmark_process.MODES["fp32"][1]


@needs_nnpack
def test_channels_last_module_with_nchw_input_still_runs(spy):
    """A module converted to channels_last (e.g. by --channels_last) whose input arrives NCHW: the weight is not NCHW,
    so the direct convolution runs (NNPACK would need a copy of the weight)."""
    _, wino = pair(4, 4, False)
    wino = to_memory_format(wino, True)
    x = torch.rand(1, 4, 10, 10)
    with torch.inference_mode():
        out = wino(x)
    assert spy == [] and torch.allclose(out, F.conv2d(x, wino.weight, None, padding=1), atol=1e-6)
