"""The generator matches upstream's released checkpoint layout, and checkpoints load in every accepted wrapping."""

from pathlib import Path

import pytest
import torch

from models.checkpoint import infer_generator_shape, load_generator_weights, load_state_dict_file
from models.cr3net import CR3Net, DilatedConv2d, WinogradConv2d
from util.errors import UserError

MANIFEST = Path(__file__).resolve().parents[2] / "shared" / "docs" / "official_G_T_keys_ngf64.tsv"
RELEASED_STATE_DICT_NUMEL = 11_023_338  # the reference's count: state_dict entries, shared PReLU once per DCAB


def read_manifest(path):
    rows = path.read_text().splitlines()[1:]
    return {k: tuple(int(d) for d in s.split("x")) for k, s in (r.split("\t") for r in rows)}


@pytest.fixture(scope="module")
def net64():
    return CR3Net(ngf=64)


def test_state_dict_matches_released_manifest(net64):
    if not MANIFEST.is_file():
        pytest.skip(f"{MANIFEST} is absent: it lives in the project's shared docs")
    expected = read_manifest(MANIFEST)
    got = {k: tuple(v.shape) if v.dim() else (1,) for k, v in net64.state_dict().items()}
    assert len(expected) == 485
    assert set(got) == set(expected), (set(got) ^ set(expected))
    assert {k: v for k, v in got.items() if v != expected[k]} == {}


def test_parameter_count_and_shared_prelu(net64):
    sd = net64.state_dict()
    assert sum(v.numel() for v in sd.values()) == RELEASED_STATE_DICT_NUMEL
    shared = [k for k in sd if k.endswith("body.1.weight")]
    assert len(shared) == 80
    ptrs = {sd[k].data_ptr() for k in shared}
    assert len(ptrs) == 1, "every DCAB must share the generator's one PReLU"


def test_forward_shapes_and_residual_identity():
    net = CR3Net(ngf=8, num_cab=1)
    for p in net.parameters():
        torch.nn.init.zeros_(p)
    I_rgb, I_raw = torch.rand(2, 3, 32, 48), torch.rand(2, 4, 16, 24)
    (R_pred_rgb, T_pred_rgb), (R_pred_raw, T_pred_raw) = net(I_rgb, I_raw)
    assert R_pred_rgb.shape == T_pred_rgb.shape == I_rgb.shape and R_pred_raw.shape == T_pred_raw.shape == I_raw.shape
    # with all weights zero every output is its input (each head adds its input back)
    torch.testing.assert_close(T_pred_rgb, I_rgb)
    torch.testing.assert_close(R_pred_raw, I_raw)


@pytest.mark.parametrize("wrap", ["bare", "params", "state_dict", "module"])
def test_checkpoint_wrappings_load(tmp_path, wrap):
    torch.manual_seed(1)
    src = CR3Net(ngf=8, num_cab=2)
    sd = src.state_dict()
    obj = {"bare": sd, "params": {"params": sd}, "state_dict": {"state_dict": sd},
           "module": {f"module.{k}": v for k, v in sd.items()}}[wrap]
    torch.save(obj, tmp_path / "w.pth")
    dst = CR3Net(ngf=8, num_cab=2)
    load_generator_weights(dst, tmp_path / "w.pth")
    for k, v in dst.state_dict().items():
        assert torch.equal(v, sd[k]), k
    assert infer_generator_shape(load_state_dict_file(tmp_path / "w.pth")) == (8, 2)


def test_checkpoint_errors(tmp_path):
    torch.save(CR3Net(ngf=8, num_cab=2).state_dict(), tmp_path / "w8.pth")
    with pytest.raises(UserError, match=r"--ngf 8 --num_cab 2.*built with --ngf 16"):
        load_generator_weights(CR3Net(ngf=16, num_cab=2), tmp_path / "w8.pth")
    (tmp_path / "bad.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="cannot read checkpoint .*bad.pth"):
        load_state_dict_file(tmp_path / "bad.pth")
    with pytest.raises(UserError, match="does not exist"):
        load_state_dict_file(tmp_path / "missing.pth")
    torch.save({"x.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(UserError, match="not a CR3Net generator"):
        load_generator_weights(CR3Net(ngf=8, num_cab=2), tmp_path / "other.pth")


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_checkpoint_with_non_finite_weights_is_refused(tmp_path, bad):
    sd = CR3Net(ngf=8, num_cab=1).state_dict()
    key = next(k for k, v in sd.items() if k.startswith("stage2_orsnet_t") and v.numel() > 1)
    sd[key].view(-1)[1] = bad
    torch.save({"params": sd}, tmp_path / "diverged.pth")
    with pytest.raises(UserError, match=r"diverged\.pth holds NaN or infinite weights \(1 of \d+ tensors") as info:
        load_generator_weights(CR3Net(ngf=8, num_cab=1), tmp_path / "diverged.pth")
    assert key in str(info.value) and "earlier checkpoint" in str(info.value)


class NotWeights:
    """Stands for any pickled Python object (a whole model, an optimizer of another library, an exploit)."""


def test_untrusted_and_broken_checkpoints_never_suggest_weights_only_false(tmp_path):
    torch.save({"net": NotWeights()}, tmp_path / "object.pth")
    (tmp_path / "empty.pth").write_bytes(b"")
    sd = CR3Net(ngf=8, num_cab=1).state_dict()
    torch.save(sd, tmp_path / "whole.pth")
    (tmp_path / "truncated.pth").write_bytes((tmp_path / "whole.pth").read_bytes()[:3000])
    (tmp_path / "page.pth").write_text("\n<!DOCTYPE html><html><head><title>Google Drive</title></head></html>")
    (tmp_path / "notes.pth").write_text("hello\n")
    torch.save(sd, tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)
    assert load_state_dict_file(tmp_path / "legacy.pth").keys() == sd.keys()  # the pre-1.6 format still loads
    cases = {
        "object.pth": r"object\.pth: it is not a plain weights file \(it holds the Python object .*NotWeights"
                      r".*untrusted",
        "empty.pth": r"empty\.pth: the file is empty",
        "truncated.pth": r"truncated\.pth: the file is truncated or corrupt; copy it again$",
        "page.pth": r"page\.pth: it is a web page \(HTML\), not weights: .*download the file itself again$",
        "notes.pth": r"notes\.pth: not a PyTorch weights file \(it begins with 'hello\\n', not a torch\.save",
    }
    for name, pattern in cases.items():
        with pytest.raises(UserError, match=pattern) as info:
            load_state_dict_file(tmp_path / name)
        message = str(info.value)
        assert "weights_only" not in message and "\n" not in message and "\x1b" not in message, message


def test_cpu_low_precision_fast_path_matches_the_plain_ops():
    """bf16 channels_last on the CPU: spatial_mean (a GEMM) and DCAB's fused residual agree with mean / CA(y) + x."""
    from models.cr3net import DCAB, spatial_mean

    torch.manual_seed(0)
    x = torch.randn(2, 16, 24, 40)
    low = x.to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
    assert torch.allclose(spatial_mean(low).float(), x.mean((2, 3), keepdim=True), atol=2e-3, rtol=1e-2)
    assert torch.equal(spatial_mean(x), x.mean((2, 3), keepdim=True))  # fp32 takes mean itself
    block = DCAB(16, torch.nn.PReLU()).eval().to(memory_format=torch.channels_last)
    with torch.no_grad():
        reference = block.CA(block.body(low.float())) + low.float()
        with torch.autocast("cpu", torch.bfloat16):
            fast = block(low)  # inside the network a block's input is the bf16 output of a convolution
        assert fast.dtype == torch.bfloat16
        assert torch.allclose(fast.float(), reference, atol=0.05, rtol=0.05)
        assert torch.equal(block(x), block.CA(block.body(x)) + x)  # fp32: upstream's order of operations


def psnr_db(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / ((a.float() - b.float()) ** 2).mean().clamp(min=1e-20)))


def test_fused_oneDNN_inference_path_matches_the_module_ops(monkeypatch):
    """bf16 channels_last inference on the CPU: conv + PReLU and conv + residual run as single oneDNN calls
    (models.cr3net.run_fused); the whole network's outputs match the unfused bf16 ops and stay as close to fp32."""
    import models.cr3net as cr3net
    from models.inference import separate

    if cr3net._MKLDNN_POINTWISE is None:
        pytest.skip("this PyTorch build has no oneDNN fused convolutions (torch.ops.mkldnn._convolution_pointwise)")
    torch.manual_seed(0)
    net = CR3Net(ngf=8, num_cab=2).eval().to(memory_format=torch.channels_last)
    for module in net.modules():
        if isinstance(module, torch.nn.PReLU):
            module.weight.data.uniform_(-0.3, 0.6)  # distinct slopes: a mix-up between PReLUs would show
    I_rgb, I_raw = torch.rand(1, 3, 48, 64), torch.rand(1, 4, 24, 32)
    calls = []
    real = cr3net.fused_conv
    monkeypatch.setattr(cr3net, "fused_conv", lambda *a, **k: calls.append(1) or real(*a, **k))
    with torch.inference_mode():
        fused = separate(net, I_rgb, I_raw, "bf16", True)
        assert calls, "the fused path did not run"
        reference = separate(net, I_rgb, I_raw, "fp32", False)
        monkeypatch.setattr(cr3net, "_MKLDNN_POINTWISE", None)
        plain = separate(net, I_rgb, I_raw, "bf16", True)
    for key in fused:
        assert psnr_db(fused[key], plain[key]) > 45, key
        assert psnr_db(fused[key], reference[key]) > psnr_db(plain[key], reference[key]) - 1, key
    # with autograd (training) the module ops run: the fused kernels have no backward
    calls.clear()
    monkeypatch.setattr(cr3net, "_MKLDNN_POINTWISE", cr3net._mkldnn_pointwise())
    compiling = torch.compiler.is_compiling
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)  # nor under torch.compile, which fuses itself
    with torch.inference_mode():
        separate(net, I_rgb, I_raw, "bf16", True)
    assert not calls
    monkeypatch.setattr(torch.compiler, "is_compiling", compiling)
    with torch.autocast("cpu", torch.bfloat16):
        cl = torch.channels_last
        out = net(I_rgb.contiguous(memory_format=cl), I_raw.contiguous(memory_format=cl))
    out[1][1].float().mean().backward()
    assert not calls


def test_fused_path_steps_aside_where_onednn_refuses_bf16(monkeypatch):
    """On a CPU where oneDNN has no bf16 convolution (AVX2-only, --precision bf16 forced) the fused call raises;
    the one-time probe sees that and the network runs the module ops instead of failing."""
    import models.cr3net as cr3net
    from models.inference import separate

    class Refusing:
        def __call__(self, *args):
            raise RuntimeError("mkldnn_convolution: bf16 path needs the cpu support avx_ne_convert or avx512bw")

        binary = __call__

    monkeypatch.setattr(cr3net, "_mkldnn_pointwise", lambda: Refusing())
    monkeypatch.setattr(cr3net, "_MKLDNN_POINTWISE", Refusing())
    cr3net._fused_ops_work.cache_clear()
    try:
        assert cr3net._fused_ops_work() is False
        net = CR3Net(ngf=8, num_cab=1).eval().to(memory_format=torch.channels_last)
        with torch.inference_mode():
            out = separate(net, torch.rand(1, 3, 32, 32), torch.rand(1, 4, 16, 16), "bf16", True)
        assert out["T_pred_rgb"].shape == (1, 3, 32, 32)
    finally:
        cr3net._fused_ops_work.cache_clear()


def _dilated_weight_grad(conv, x, g):
    w = conv.weight
    w.grad = None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = conv(x)
    y.backward(g.to(y.dtype))
    return w.grad.double(), y


@pytest.mark.parametrize("channels", [24, 44, 84])  # widths of CR3Net's dilated levels at --ngf 24 and 64
def test_dilated_conv_weight_gradient_is_right_in_bf16_channels_last(channels):
    # PyTorch 2.14.1's oneDNN gets this gradient wrong on the CPU (40-190 % of its largest value, sometimes 1e35)
    torch.manual_seed(channels)
    conv = DilatedConv2d(channels, channels, 3, padding=2, dilation=2, bias=False).to(memory_format=torch.channels_last)
    for _ in range(4):  # the wrong results differed from call to call
        x = (torch.randn(2, channels, 32, 32).relu() * 0.05).bfloat16().to(memory_format=torch.channels_last)
        g = (torch.randn(2, channels, 32, 32) * 1e-4).bfloat16().to(memory_format=torch.channels_last)
        got, y = _dilated_weight_grad(conv, x.requires_grad_(True), g)
        assert y.is_contiguous(memory_format=torch.channels_last)  # the network's layout is kept
        ref = torch.nn.grad.conv2d_weight(x.detach().double(), conv.weight.shape, g.double(), padding=2, dilation=2)
        assert torch.isfinite(got).all()
        assert (got - ref).abs().max() / ref.abs().max() < 0.02
        ref_x = torch.nn.grad.conv2d_input(x.shape, conv.weight.detach().bfloat16().double(), g.double(),
                                          padding=2, dilation=2)
        assert (x.grad.double() - ref_x).abs().max() / ref_x.abs().max() < 0.02


def test_generator_dilated_convolutions_are_the_corrected_module(net64):
    convs = [m for m in net64.modules() if isinstance(m, torch.nn.Conv2d) and m.dilation != (1, 1)]
    assert convs and all(type(m) is DilatedConv2d for m in convs)
    plain = [type(m) for m in net64.modules() if isinstance(m, torch.nn.Conv2d) and m.dilation == (1, 1)]
    # conv() builds the others as WinogradConv2d (3x3 and 1x1); the channel attention's 1x1 layers stay nn.Conv2d
    assert set(plain) == {WinogradConv2d, torch.nn.Conv2d}
    assert sum(kind is WinogradConv2d for kind in plain) > 100
