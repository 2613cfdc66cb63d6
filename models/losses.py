"""Training losses of CR3Net: LSGAN adversarial loss and the VGG perceptual loss on the predicted transmission.

Pixel losses (MSE on RGB, L1 on packed RAW) are plain ``torch.nn.functional`` calls in the trainer
(``models/rawrr_training.py``); this file holds the ones with structure of their own.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from util.tone import CURVE_BINS, channel_curve

# VGG ``features`` layer positions (the same in VGG16 and VGG19): conv1_1 = 0, relu1_1 = 1, ..., relu2_1 = 6.
RELU1_1_END = 2  # features[:2] ends after relu1_1
RELU2_1_END = 7  # features[2:7] continues to relu2_1 (pool1 and conv2_1 in between)
# Upstream's weights of the two feature distances (cr3net-reference.md, training recipe).
PERCEPTUAL_WEIGHTS = (1 / 2.6, 1 / 4.8)
REAL_LABEL, FAKE_LABEL = 1.0, 0.0


class LSGANLoss(nn.Module):
    """Least-squares GAN loss: mean of (D(x) - target)^2, target 1 for real and 0 for fake.

    ``prediction``: (B, 1, h, w) PatchGAN scores (any float dtype; computed in float32). Returns a 0-d float32 tensor.
    """

    def forward(self, prediction: torch.Tensor, target_is_real: bool) -> torch.Tensor:
        prediction = prediction.float()
        target = torch.full_like(prediction, REAL_LABEL if target_is_real else FAKE_LABEL)
        return F.mse_loss(prediction, target)


class PerceptualLoss(nn.Module):
    """Weighted L1 distance between VGG features after relu1_1 and relu2_1 (upstream weights 1/2.6 and 1/4.8).

    ``features``: an ImageNet VGG ``features`` Sequential (VGG19 as upstream, or VGG16: same layer positions), frozen.
    Images go in as they are, sRGB in [0, 1], with NO ImageNet mean/std normalisation (as upstream).
    ``forward(pred, target)``: (B, 3, H, W) each; the target's features are computed without gradients.
    Returns a 0-d float32 tensor.
    """

    def __init__(self, features: nn.Sequential, weights=PERCEPTUAL_WEIGHTS):
        super().__init__()
        self.slice1 = features[:RELU1_1_END]
        self.slice2 = features[RELU1_1_END:RELU2_1_END]
        for layer in list(self.slice1) + list(self.slice2):
            if isinstance(layer, nn.ReLU):
                layer.inplace = False  # the relu1_1 output is both a loss term and the next slice's input
        self.requires_grad_(False)
        self.eval()
        self.weights = tuple(float(w) for w in weights)

    def train(self, mode: bool = True):
        return super().train(False)  # a frozen feature extractor: never in training mode

    def _features(self, x):
        h1 = self.slice1(x)
        return h1, self.slice2(h1)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target_feats = self._features(target)
        pred_feats = self._features(pred)
        loss = pred.new_zeros((), dtype=torch.float32)
        for w, p, t in zip(self.weights, pred_feats, target_feats, strict=True):
            loss = loss + w * F.l1_loss(p.float(), t.float())
        return loss


EXCLUSION_LEVELS = 3  # scales of the exclusion loss: full, 1/2, 1/4 (Zhang et al. 2018 use three)


def _scales(a: torch.Tensor, b: torch.Tensor, levels: int):
    """Yield ``(a, b)`` (B, C, H, W) at full size and after each further 2x2 average pooling: ``levels`` pairs, fewer
    where a side under 4 px would have to be pooled."""
    for level in range(levels):
        if level:
            if min(a.shape[-2:]) < 4:
                return
            a, b = F.avg_pool2d(a, 2), F.avg_pool2d(b, 2)
        yield a, b


def _gradients(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward differences of (B, C, H, W) along x (B, C, H, W-1) and y (B, C, H-1, W)."""
    return x[..., :, 1:] - x[..., :, :-1], x[..., 1:, :] - x[..., :-1, :]


def exclusion_loss(T: torch.Tensor, R: torch.Tensor, levels: int = EXCLUSION_LEVELS, eps: float = 1e-3) -> torch.Tensor:
    """Gradient exclusion between two predicted layers (after Zhang, Ng and Chen, CVPR 2018, eq. 3), per sample.

    At each of ``levels`` scales (2x2 average pooling between them) and for x and y gradients separately:
    ``rms(tanh(|dT| / mT) * tanh(|dR| / mR))``, where ``mT``, ``mR`` are the layer's mean absolute gradient in that
    sample (plus ``eps``, detached). It is large where an edge is strong in both layers, so it pushes each edge into
    one layer only, against the "R is a dim copy of I" failure. Two deviations from the paper, both to make the value
    comparable across images: each layer is normalised by its own gradient scale (the paper balances the two layers
    against each other, so its value still depends on their common scale), and RMS replaces the Frobenius norm.
    ``T``, ``R``: (B, C, H, W), any float dtype (computed in float32). Returns (B,) float32: the mean over the scales
    and both directions, in [0, 1); about unchanged (up to eps) when a layer is multiplied by a constant.
    """
    per_level = []
    for T_s, R_s in _scales(T.float(), R.float(), levels):
        for dT, dR in zip(_gradients(T_s), _gradients(R_s), strict=True):
            aT, aR = dT.abs(), dR.abs()
            mT = aT.flatten(1).mean(1).detach().add(eps).view(-1, 1, 1, 1)
            mR = aR.flatten(1).mean(1).detach().add(eps).view(-1, 1, 1, 1)
            product = torch.tanh(aT / mT) * torch.tanh(aR / mR)
            per_level.append(product.square().flatten(1).mean(1).add(1e-12).sqrt())
    return torch.stack(per_level, 0).mean(0)


GRADIENT_LEVELS = 3  # scales of the gradient loss: full, 1/2, 1/4


def gradient_loss(pred: torch.Tensor, target: torch.Tensor, levels: int = GRADIENT_LEVELS) -> torch.Tensor:
    """L1 distance between the image gradients of two images, per sample, at ``levels`` scales (2x2 average pooling
    between them): at each scale ``mean|dx pred - dx target| + mean|dy pred - dy target|`` (forward differences),
    averaged over the scales.

    A reflection is mostly its edges: where the predicted T keeps a reflection's edge (or smooths away one of the
    scene's), this term is large, whatever the image's overall brightness, which an offset leaves unchanged and a
    per-channel gain changes only in proportion. Under the pixel MSE those edges weigh little beside the image's
    tone. ``pred``, ``target``: (B, C, H, W), any float dtype (computed in float32). Returns (B,) float32.
    """
    per_level = []
    for pred_s, target_s in _scales(pred.float(), target.float(), levels):
        pairs = zip(_gradients(pred_s), _gradients(target_s), strict=True)
        per_level.append(sum((d_pred - d_target).abs().flatten(1).mean(1) for d_pred, d_target in pairs))
    return torch.stack(per_level, 0).mean(0)


def curve_residual(x: torch.Tensor, inp: torch.Tensor, bins: int = CURVE_BINS) -> torch.Tensor:
    """``x`` less its least-squares per-channel curve of ``inp``: per sample and channel, each pixel of ``x`` minus
    the mean of ``x`` over the pixels where ``inp`` has the same 8-bit value (the projection that
    :func:`util.tone.curve_image` scores, here differentiable in ``x``; ``inp`` only picks the bins).

    What remains is the part of ``x`` that no pointwise function of the input's own value can produce: applied to the
    error ``T_pred - T``, it keeps the reflection's structure left in (or the scene's removed from) T and drops the
    tone and contrast errors, which a per-channel curve corrects. ``x``, ``inp``: (B, C, H, W) in [0, 1] for ``inp``,
    any float dtype (computed in float32). Returns (B, C, H, W) float32.
    """
    x = x.float()
    values = (inp.detach().float().clamp(0, 1) * (bins - 1)).round().long()
    return x - channel_curve(x, values, bins)
