"""The CR3Net generator, built by ``--netG gen_drop`` (upstream's flag value, kept for its command lines).

Two stages: stage 1 separates reflection R and transmission T in the packed RAW domain with one
U-shaped encoder/decoder per layer; a RAW-to-RGB module (RRM) lifts the attended RAW features to RGB
resolution; stage 2 restores R and then T in RGB with ORSNet-style residual groups fed by the stage-1
encoder and decoder features.

Attribute names follow upstream so that the released ``final_net_G_T.pth`` loads with ``strict=True``
(see ``../shared/docs/cr3net-reference.md`` and ``official_G_T_keys_ngf64.tsv``); class names do not enter the
checkpoint, so they say what each part is (upstream calls the generator ``MCDRNet`` and the RGB stage ``ResNet``).
"""

import functools
import os

import torch
import torch.nn.functional as F
from torch import nn

# Fixed widths and sizes of the released network (upstream constants).
RELEASED_NGF = 64  # width (--ngf) of the released final_net_G_T.pth
S_ENC = 20  # channels added per encoder level
S_RES = 16  # channels added in the RGB-stage residual groups
NUM_CAB = 8  # DCABs per residual group
KERNEL_SIZE = 3
CA_REDUCTION = 4
LOW_PRECISION = (torch.bfloat16, torch.float16)  # spatial_mean's GEMM path and DCAB's fused residual
CHANNELS_LAST = torch.channels_last
# The forward pass downsamples the packed RAW (H/2) twice more: H and W must be multiples of this.
SIZE_MULTIPLE = 8


def conv(in_ch, out_ch, kernel_size, dilation=1, bias=False):
    """Conv2d with 'same' padding for odd kernels; upstream uses no bias. Dilated ones are :class:`DilatedConv2d`."""
    padding = (kernel_size - 1) * dilation // 2
    cls = WinogradConv2d if dilation == 1 else DilatedConv2d
    return cls(in_ch, out_ch, kernel_size, padding=padding, dilation=dilation, bias=bias)


def _bf16_on_cpu(x: torch.Tensor) -> bool:
    if x.device.type != "cpu":
        return False
    return x.dtype == torch.bfloat16 or (torch.is_autocast_enabled("cpu")
                                         and torch.get_autocast_dtype("cpu") == torch.bfloat16)


class DilatedConv2d(nn.Conv2d):
    """``nn.Conv2d`` (same parameters, same state-dict keys) that trains correctly in bf16 + channels_last on the CPU.

    PyTorch 2.14.1's oneDNN (v3.12) computes the *weight* gradient of a dilated convolution wrongly for bf16
    channels_last tensors on the CPU: off by 40-190 % of its largest value, different from call to call, now and then
    1e35 or NaN (measured on a 2-core AMD EPYC with AVX512-BF16, with 24, 44 and 84 channels, the widths of
    CR3Net's dilated levels at --ngf 24 and 64; 64 channels happened to be right; the forward pass and the input
    gradient are right; NCHW is right). Training with --precision auto/bf16 therefore learnt its dilated blocks from
    noise and, within a few dozen iterations, often stopped on a NaN. Where autograd records a bf16 CPU convolution
    of a channels_last input, this module runs it on NCHW copies (output returned channels_last); everything else,
    inference included, takes ``nn.Conv2d``'s path unchanged. ``tests/test_generator.py`` checks the gradients.
    """

    def forward(self, x):
        if (torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad) and _bf16_on_cpu(x)
                and x.is_contiguous(memory_format=CHANNELS_LAST) and not x.is_contiguous()):
            y = F.conv2d(x.contiguous(), self.weight.contiguous(), self.bias, self.stride, self.padding,
                         self.dilation, self.groups)
            return y.contiguous(memory_format=CHANNELS_LAST)
        return super().forward(x)


# NNPACK's Winograd convolution for fp32 3x3 convolutions in inference (WinogradConv2d); CR3NET_WINOGRAD=0 turns it off
# (scripts/benchmark_process.py's upstream mode: PyTorch's own choice of kernel, as upstream's code runs).
_WINOGRAD = {"enabled": os.environ.get("CR3NET_WINOGRAD", "1") != "0"}


def set_winograd(enabled: bool) -> bool:
    """Turn :class:`WinogradConv2d`'s NNPACK path on or off for this process; returns the previous setting."""
    previous, _WINOGRAD["enabled"] = _WINOGRAD["enabled"], bool(enabled)
    return previous


def winograd_enabled() -> bool:
    """Whether fp32 NCHW CPU inference runs its 3x3 convolutions through NNPACK here (setting on, NNPACK works)."""
    return _WINOGRAD["enabled"] and _nnpack_works()


def _nnpack_conv(x, weight, bias, padding):
    return torch._nnpack_spatial_convolution(x, weight, bias, padding)


@functools.cache
def _nnpack_works() -> bool:
    """Whether NNPACK is built in, initialises on this CPU (it needs AVX2 and FMA3 on x86) and agrees with
    ``F.conv2d`` on a small case (batch 1 and 2, bias or not); checked once per process."""
    try:
        if not torch._nnpack_available():  # also initialises NNPACK: its convolutions fail before this call
            return False
    except (AttributeError, RuntimeError):
        return False
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(6, 5, 3, 3, generator=gen) * 0.2
    b = torch.randn(6, generator=gen)
    with torch.no_grad(), torch.autocast("cpu", enabled=False):
        for batch, bias in ((1, None), (2, b)):
            x = torch.rand(batch, 5, 9, 14, generator=gen)
            try:
                y = _nnpack_conv(x, w, bias, [1, 1])
            except (RuntimeError, NotImplementedError):
                return False
            if not torch.allclose(y, F.conv2d(x, w, bias, padding=1), atol=1e-4, rtol=1e-4):
                return False
    return True


def _winograd_path(conv_module: nn.Conv2d, x: torch.Tensor) -> bool:
    if not (_WINOGRAD["enabled"] and x.device.type == "cpu" and x.dtype == torch.float32 and x.dim() == 4
            and conv_module.weight.dtype == torch.float32 and not torch.is_grad_enabled()):
        return False
    if (conv_module.kernel_size != (3, 3) or conv_module.stride != (1, 1) or conv_module.dilation != (1, 1)
            or conv_module.padding != (1, 1) or conv_module.groups != 1 or conv_module.padding_mode != "zeros"):
        return False
    if not x.is_contiguous() or not conv_module.weight.is_contiguous():  # NNPACK takes NCHW only
        return False
    if torch.is_autocast_enabled("cpu") or torch.compiler.is_compiling() or torch.jit.is_tracing():
        return False
    return _nnpack_works()


class WinogradConv2d(nn.Conv2d):
    """``nn.Conv2d`` (same parameters, same state-dict keys) whose fp32 3x3 convolutions run as NNPACK's Winograd
    convolution in CPU inference.

    A Winograd convolution computes a 3x3 convolution with several times fewer multiplications than a direct one:
    on CPUs without native bf16, where ``--precision auto`` is fp32, it is 1.6-2.4x faster than oneDNN's fp32
    convolution per layer, and the whole network 1.7x (measured with oneDNN limited to AVX2 on a 2-core AMD EPYC; see
    README, Speed). It is taken for fp32 NCHW tensors on the CPU without autograd (inference, validation) and not
    under autocast, ``torch.compile`` or ``torch.jit`` tracing, where NNPACK works (:func:`_nnpack_works`) and
    ``CR3NET_WINOGRAD`` is not ``0`` (:func:`set_winograd`); everything else, training included, is ``nn.Conv2d``.
    Results agree with the direct convolution to about 1e-5 of the output's range (fp32 rounding of the transforms).
    """

    def forward(self, x):
        if _winograd_path(self, x):
            return _nnpack_conv(x, self.weight, self.bias, list(self.padding))
        return super().forward(x)


def _rescale(x, factor):
    return F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)


class Rescale(nn.Module):
    """Bilinear rescale by a fixed factor (align_corners=False); holds no parameters."""

    def __init__(self, factor):
        super().__init__()
        self.factor = factor

    def forward(self, x):
        return _rescale(x, self.factor)


class CALayer(nn.Module):
    """Channel attention: x * sigmoid(MLP(global average of x))."""

    def __init__(self, channels, reduction=CA_REDUCTION):
        super().__init__()
        self.conv_du = nn.Sequential(
            nn.Conv2d(channels, channels // reduction, 1, bias=False),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels // reduction, channels, 1, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, x):
        return x * self.conv_du(spatial_mean(x))


def _fast_cpu_path(x: torch.Tensor) -> bool:
    """True for a bf16/fp16 channels_last tensor on the CPU, where :func:`spatial_mean` and DCAB take faster ops."""
    return x.device.type == "cpu" and x.dtype in LOW_PRECISION and x.is_contiguous(memory_format=CHANNELS_LAST)


def _fused_inference_path(x: torch.Tensor) -> bool:
    """True where :func:`run_fused` replaces convolution + activation (and + residual) by single oneDNN calls: a
    bf16 channels_last CPU tensor, no autograd (inference, validation), not under torch.compile, and a PyTorch whose
    oneDNN fused ops run on this CPU."""
    if torch.compiler.is_compiling():  # torch.compile (--compile) fuses by itself; these calls would break its graph
        return False
    return (x.dtype == torch.bfloat16 and not torch.is_grad_enabled() and _fast_cpu_path(x)
            and _MKLDNN_POINTWISE is not None and _fused_ops_work())


def _mkldnn_pointwise():
    try:
        return torch.ops.mkldnn._convolution_pointwise if torch.backends.mkldnn.is_available() else None
    except (AttributeError, RuntimeError):  # a build without oneDNN's fused convolutions
        return None


_MKLDNN_POINTWISE = _mkldnn_pointwise()


@functools.cache
def _fused_ops_work() -> bool:
    """Whether both fused calls run on this CPU and agree with the plain ops (once per process, on an 8x8 map): oneDNN
    refuses bf16 convolutions on CPUs without AVX512-BF16/AVX512BW or AVX-NE-CONVERT (``--precision bf16`` forced on an
    AVX2-only CPU), and a PyTorch build may lack an overload; then the module ops run."""
    op = _MKLDNN_POINTWISE
    if op is None:
        return False
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(1, 8, 8, 8, generator=gen).to(torch.bfloat16).contiguous(memory_format=CHANNELS_LAST)
    w = (torch.randn(8, 8, 3, 3, generator=gen) * 0.2).to(torch.bfloat16)
    args = ([1, 1], [1, 1], [1, 1], 1)
    with torch.no_grad(), torch.autocast("cpu", enabled=False):  # the first call may come inside autocast
        plain = F.conv2d(x.float(), w.float(), padding=1)
        try:
            y = op(x, w, None, *args, "leaky_relu", [0.1], "")
            z = op.binary(x, y, w, None, *args, "add", None, None, [], None)
        except (RuntimeError, AttributeError, NotImplementedError):
            return False
    close = functools.partial(torch.allclose, atol=0.05, rtol=0.05)
    return close(y.float(), F.leaky_relu(plain, 0.1)) and close(z.float(), plain + y.float())


def _conv_args(conv_module: nn.Conv2d, dtype):
    bias = None if conv_module.bias is None else conv_module.bias.to(dtype)
    return (conv_module.weight.to(dtype), bias, list(conv_module.padding), list(conv_module.stride),
            list(conv_module.dilation), conv_module.groups)


def fused_conv(x: torch.Tensor, conv_module: nn.Conv2d, act: nn.Module | None = None,
               residual: torch.Tensor | None = None) -> torch.Tensor:
    """``act(conv_module(x))`` or ``conv_module(x) + residual`` as one oneDNN call (the output is written once instead
    of being read and written again by the activation or the sum: 25 % less time for a 3x3 conv + PReLU of 80 channels
    at 448x640 in bf16 on a Xeon with AMX). ``act``: None or a single-parameter PReLU (= leaky ReLU with its slope).
    Only for :func:`_fused_inference_path` tensors (no autograd)."""
    weight, bias, padding, stride, dilation, groups = _conv_args(conv_module, x.dtype)
    if residual is not None:
        return _MKLDNN_POINTWISE.binary(x, residual.to(x.dtype), weight, bias, padding, stride, dilation, groups,
                                        "add", None, None, [], None)
    if act is None:
        return _MKLDNN_POINTWISE(x, weight, bias, padding, stride, dilation, groups, "none", [], "")
    return _MKLDNN_POINTWISE(x, weight, bias, padding, stride, dilation, groups, "leaky_relu",
                             [float(act.weight)], "")


def _rescale_conv_add(rescale_conv: nn.Sequential, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
    """``residual + rescale_conv(x)`` for a ``Sequential(Rescale, Conv2d)``; on the :func:`_fused_inference_path` the
    conv and the sum are one call."""
    if not _fused_inference_path(x):
        return residual + rescale_conv(x)
    rescale, conv_module = rescale_conv
    return fused_conv(rescale(x), conv_module, residual=residual)


def _single_prelu(module) -> bool:
    return isinstance(module, nn.PReLU) and module.num_parameters == 1


def run_fused(seq: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """``seq(x)``, with each Conv2d (and the single-parameter PReLU that follows it) as one :func:`fused_conv` call on
    the :func:`_fused_inference_path`; other modules run as they are. Same modules, same weights: only the kernels
    differ (bf16 rounding once instead of twice)."""
    if not _fused_inference_path(x):
        return seq(x)
    mods = list(seq)
    i = 0
    while i < len(mods):
        m = mods[i]
        if isinstance(m, nn.Conv2d):
            act = mods[i + 1] if i + 1 < len(mods) and _single_prelu(mods[i + 1]) else None
            x = fused_conv(x, m, act)
            i += 2 if act is not None else 1
        else:
            x = m(x)
            i += 1
    return x


def spatial_mean(x: torch.Tensor) -> torch.Tensor:
    """``x.mean(dim=(2, 3), keepdim=True)`` of (B, C, H, W) ``x``, as (B, C, 1, 1).

    For a bf16/fp16 channels_last tensor on the CPU the sum is a batched matrix product with a row of ones (a GEMM,
    accumulated in fp32): PyTorch's own bf16 mean over H and W is not vectorised there and took 18 % of a 448x640
    inference (28.6 ms against 3.8 ms for a 64x448x640 map, equally accurate). Other tensors take ``mean``.
    """
    b, c, h, w = x.shape
    if not _fast_cpu_path(x):
        return x.mean(dim=(2, 3), keepdim=True)
    rows = x.permute(0, 2, 3, 1).reshape(b, h * w, c)  # a view of the channels_last memory
    total = torch.bmm(x.new_ones((b, 1, h * w)), rows)
    return (total.float() / (h * w)).to(x.dtype).reshape(b, c, 1, 1)


class DCAB(nn.Module):
    """Dilated channel-attention block: CA(conv-act-conv(x)) + x.

    ``act`` is the generator's single shared PReLU: registering the same module in every block is
    what makes the released checkpoint repeat its value under each ``body.1.weight`` key.
    """

    def __init__(self, channels, act, dilation=1):
        super().__init__()
        self.body = nn.Sequential(
            conv(channels, channels, KERNEL_SIZE, dilation),
            act,
            conv(channels, channels, KERNEL_SIZE, dilation),
        )
        self.CA = CALayer(channels)

    def forward(self, x):
        y = run_fused(self.body, x)
        if _fast_cpu_path(y):  # CA(y) + x in one pass over memory (bf16/fp16 on the CPU); fp32 keeps upstream's order
            return torch.addcmul(x, y, self.CA.conv_du(spatial_mean(y)))
        return self.CA(y) + x


class DownSample(nn.Module):
    """Bilinear x0.5, then 1x1 conv c -> c + s."""

    def __init__(self, channels, s):
        super().__init__()
        self.down = nn.Sequential(Rescale(0.5), nn.Conv2d(channels, channels + s, 1, bias=False))

    def forward(self, x):
        return self.down(x)


class UpSample(nn.Module):
    """Bilinear x2, then 1x1 conv c + s -> c."""

    def __init__(self, channels, s):
        super().__init__()
        self.up = nn.Sequential(Rescale(2.0), nn.Conv2d(channels + s, channels, 1, bias=False))

    def forward(self, x):
        return self.up(x)


class SkipUpSample(UpSample):
    """UpSample plus a skip connection."""

    def forward(self, x, skip):
        return _rescale_conv_add(self.up, x, skip)


def _level(channels, act, dilation):
    return nn.Sequential(DCAB(channels, act, dilation), DCAB(channels, act, dilation))


class Encoder(nn.Module):
    """Three-level encoder on packed-RAW features; returns [enc1, enc2, enc3] (n, n+20, n+40 channels)."""

    def __init__(self, n, act):
        super().__init__()
        self.encoder_level1 = _level(n, act, 1)
        self.encoder_level2 = _level(n + S_ENC, act, 2)
        self.encoder_level3 = _level(n + 2 * S_ENC, act, 4)
        self.down12 = DownSample(n, S_ENC)
        self.down23 = DownSample(n + S_ENC, S_ENC)

    def forward(self, x):
        enc1 = self.encoder_level1(x)
        enc2 = self.encoder_level2(self.down12(enc1))
        enc3 = self.encoder_level3(self.down23(enc2))
        return [enc1, enc2, enc3]


class Decoder(nn.Module):
    """Three-level decoder with attended skips; returns [dec1, dec2, dec3]."""

    def __init__(self, n, act):
        super().__init__()
        self.decoder_level1 = _level(n, act, 1)
        self.decoder_level2 = _level(n + S_ENC, act, 2)
        self.decoder_level3 = _level(n + 2 * S_ENC, act, 4)
        self.skip_attn1 = DCAB(n, act)
        self.skip_attn2 = DCAB(n + S_ENC, act, dilation=2)
        self.up21 = SkipUpSample(n, S_ENC)
        self.up32 = SkipUpSample(n + S_ENC, S_ENC)

    def forward(self, enc):
        enc1, enc2, enc3 = enc
        dec3 = self.decoder_level3(enc3)
        dec2 = self.decoder_level2(self.up32(dec3, self.skip_attn2(enc2)))
        dec1 = self.decoder_level1(self.up21(dec2, self.skip_attn1(enc1)))
        return [dec1, dec2, dec3]


class RB(nn.Module):
    """Residual group: num_cab DCABs and a 3x3 conv, plus the input."""

    def __init__(self, channels, act, num_cab):
        super().__init__()
        self.body = nn.Sequential(*[DCAB(channels, act) for _ in range(num_cab)], conv(channels, channels, KERNEL_SIZE))

    def forward(self, x):
        if _fused_inference_path(x):  # the last conv and the residual sum in one call
            return fused_conv(self.body[:-1](x), self.body[-1], residual=x)
        return self.body(x) + x


def _lift(n):
    """Stage-1 features (RAW resolution) -> RGB resolution: bilinear x2 and 1x1 conv n -> n + S_RES."""
    return nn.Sequential(Rescale(2.0), nn.Conv2d(n, n + S_RES, 1, bias=False))


class ORSNet(nn.Module):
    """The RGB stage at original resolution (MPRNet's ORSNet; upstream's class ``ResNet``, attributes
    ``stage2_orsnet_r/_t``): three residual groups, each fed by one stage-1 encoder and decoder level."""

    def __init__(self, n, act, num_cab):
        super().__init__()
        c = n + S_RES
        self.orb1 = RB(c, act, num_cab)
        self.orb2 = RB(c, act, num_cab)
        self.orb3 = RB(c, act, num_cab)
        self.up_enc1 = UpSample(n, S_ENC)
        self.up_dec1 = UpSample(n, S_ENC)
        self.up_enc2 = nn.Sequential(UpSample(n + S_ENC, S_ENC), UpSample(n, S_ENC))
        self.up_dec2 = nn.Sequential(UpSample(n + S_ENC, S_ENC), UpSample(n, S_ENC))
        for k in (1, 2, 3):
            setattr(self, f"conv_enc{k}", _lift(n))
            setattr(self, f"conv_dec{k}", _lift(n))

    def forward(self, x, enc, dec):
        # orb(x) + lift_enc + lift_dec, summed in upstream's order; on the fused path each lift's 1x1 conv adds
        # into the sum (no separate full-resolution adds)
        x = _rescale_conv_add(self.conv_dec1, dec[0], _rescale_conv_add(self.conv_enc1, enc[0], self.orb1(x)))
        x = _rescale_conv_add(self.conv_dec2, self.up_dec1(dec[1]),
                              _rescale_conv_add(self.conv_enc2, self.up_enc1(enc[1]), self.orb2(x)))
        return _rescale_conv_add(self.conv_dec3, self.up_dec2(dec[2]),
                                 _rescale_conv_add(self.conv_enc3, self.up_enc2(enc[2]), self.orb3(x)))


class SCAM(nn.Module):
    """Spatial-channel attention: features x gated by channel and spatial weights computed from a 4-channel RAW."""

    def __init__(self, n, raw_channels=4, reduction=4):
        super().__init__()
        self.fc1 = nn.Conv2d(n, n // reduction, 1)
        self.fc2 = nn.Conv2d(n // reduction, n, 1)
        self.spatial_se = nn.Sequential(nn.Conv2d(n, 1, 1, bias=False), nn.Sigmoid())
        self.conv1 = conv(n, n, 1)
        self.conv2 = nn.Sequential(conv(raw_channels, n, 1), nn.PReLU())
        self.conv3 = nn.Sequential(conv(raw_channels, n, 1), nn.PReLU())

    def forward(self, x, raw):
        pooled = run_fused(self.conv2, raw).mean(dim=(2, 3), keepdim=True)
        gate_c = torch.sigmoid(self.fc2(F.relu(self.fc1(pooled))))
        gate_s = self.spatial_se(run_fused(self.conv3, raw))
        return gate_c * self.conv1(x) * gate_s


def _demosaic_branch(n):
    return nn.Sequential(conv(n, 4 * n, KERNEL_SIZE), nn.PReLU(), nn.PixelShuffle(2), conv(n, n, KERNEL_SIZE))


def _colour_branch(n):
    return nn.Sequential(conv(n, n, 1), nn.PReLU(), conv(n, n, 1), nn.PReLU(), conv(n, n, 1))


class RRM(nn.Module):
    """RAW-to-RGB module: a learned x2 demosaic (DM) and a pointwise colour mapping (GCM) per branch."""

    def __init__(self, n):
        super().__init__()
        self.DM_r = _demosaic_branch(n)
        self.GCM_r = _colour_branch(n)
        self.DM_b = _demosaic_branch(n)
        self.GCM_b = _colour_branch(n)

    def forward(self, feat_r, feat_b):
        """(B, n, h, w) x 2 -> (B, 2n, 2h, 2w): reflection then background features at RGB resolution."""
        return torch.cat([run_fused(self.GCM_r, run_fused(self.DM_r, feat_r)),
                          run_fused(self.GCM_b, run_fused(self.DM_b, feat_b))], 1)


class CR3Net(nn.Module):
    """CR3Net generator of width ``ngf`` with ``num_cab`` DCABs per RGB residual group (upstream's ``MCDRNet``)."""

    def __init__(self, ngf=RELEASED_NGF, num_cab=NUM_CAB, rgb_channels=3, raw_channels=4):
        super().__init__()
        n = ngf
        self.ngf, self.num_cab = ngf, num_cab
        act = nn.PReLU()  # one module shared by every DCAB (not an attribute: no key of its own)

        def shallow(cin):
            return nn.Sequential(conv(cin, n, KERNEL_SIZE), DCAB(n, act))

        self.shallow_feat1_r = shallow(raw_channels)
        self.shallow_feat1_t = shallow(raw_channels)
        self.shallow_feat2_r = shallow(rgb_channels)
        self.shallow_feat2_t = shallow(rgb_channels)
        self.stage1_encoder_r = Encoder(n, act)
        self.stage1_decoder_r = Decoder(n, act)
        self.stage1_rconv = conv(n, raw_channels, KERNEL_SIZE)
        self.stage1_encoder_t = Encoder(n, act)
        self.stage1_decoder_t = Decoder(n, act)
        self.stage1_tconv = conv(n, raw_channels, KERNEL_SIZE)
        self.stage2_orsnet_r = ORSNet(n, act, num_cab)
        self.stage2_orsnet_t = ORSNet(n, act, num_cab)
        self.scam1_r = SCAM(n, raw_channels)
        self.scam1_t = SCAM(n, raw_channels)
        self.concat1_t = conv(2 * n, n, KERNEL_SIZE)
        self.concat2_r = conv(3 * n, n + S_RES, KERNEL_SIZE)
        self.concat2_t = conv(4 * n + S_RES, n + S_RES, KERNEL_SIZE)
        self.RRM = RRM(n)
        self.tail_r = conv(n + S_RES, rgb_channels, KERNEL_SIZE)
        self.tail_t = conv(n + S_RES, rgb_channels, KERNEL_SIZE)

    def forward(self, I_rgb, I_raw):
        """Separate R and T.

        I_rgb: (B, 3, H, W) sRGB in [0, 1]; I_raw: (B, 4, H/2, W/2) packed R,G,G,B, (x - black) / (white - black).
        H and W must be multiples of ``SIZE_MULTIPLE``.
        Returns the predictions ``([R_pred_rgb, T_pred_rgb], [R_pred_raw, T_pred_raw])``, unclamped, in the same
        domains and shapes as the inputs.
        """
        enc_r = self.stage1_encoder_r(self.shallow_feat1_r(I_raw))
        dec_r = self.stage1_decoder_r(enc_r)
        R_pred_raw = self.stage1_rconv(dec_r[0]) + I_raw
        att_r = self.scam1_r(dec_r[0], I_raw)

        x_t = self.concat1_t(torch.cat([self.shallow_feat1_t(I_raw), att_r], 1))
        enc_t = self.stage1_encoder_t(x_t)
        dec_t = self.stage1_decoder_t(enc_t)
        T_pred_raw = self.stage1_tconv(dec_t[0]) + I_raw
        att_t = self.scam1_t(dec_t[0], T_pred_raw)

        lifted = self.RRM(att_r, att_t)
        x_r = self.concat2_r(torch.cat([self.shallow_feat2_r(I_rgb), lifted], 1))
        x_r = self.stage2_orsnet_r(x_r, enc_r, dec_r)
        R_pred_rgb = self.tail_r(x_r) + I_rgb

        x_t = self.concat2_t(torch.cat([self.shallow_feat2_t(I_rgb), x_r, lifted], 1))
        x_t = self.stage2_orsnet_t(x_t, enc_t, dec_t)
        T_pred_rgb = self.tail_t(x_t) + I_rgb
        return [R_pred_rgb, T_pred_rgb], [R_pred_raw, T_pred_raw]
