"""PatchGAN discriminator (the pix2pix ``NLayerDiscriminator`` architecture), as CR3Net's training uses it.

Upstream trains with 64 base filters, 3 strided layers and instance normalisation: each output value judges one
70x70 patch of the input (for ``n_layers = 3``) as real or fake.
"""

from torch import nn

KERNEL_SIZE = 4  # every convolution of the pix2pix PatchGAN
PADDING = 1
LEAKY_SLOPE = 0.2
MAX_WIDTH_MULTIPLIER = 8  # the filter count doubles per layer up to 8 x ndf


class NLayerDiscriminator(nn.Module):
    """PatchGAN: ``n_layers`` stride-2 conv blocks, one stride-1 block, then a 1-channel stride-1 conv.

    Input: (B, input_nc, H, W) float (here T_rgb or T_pred_rgb, sRGB in [0, 1]). Output: (B, 1, h, w) float scores,
    not squashed (LSGAN), one per receptive-field patch; for 256x256 input and ``n_layers = 3``, h = w = 30.
    Normalisation: ``InstanceNorm2d`` without affine parameters or running statistics (pix2pix's ``instance``),
    so convolutions followed by a norm keep their bias as in pix2pix (``use_bias = True`` for instance norm).
    """

    def __init__(self, input_nc: int = 3, ndf: int = 64, n_layers: int = 3):
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"n_layers must be at least 1, got {n_layers}")
        layers = [nn.Conv2d(input_nc, ndf, KERNEL_SIZE, stride=2, padding=PADDING), nn.LeakyReLU(LEAKY_SLOPE, True)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2**n, MAX_WIDTH_MULTIPLIER)
            stride = 2 if n < n_layers else 1
            layers += [
                nn.Conv2d(ndf * prev, ndf * mult, KERNEL_SIZE, stride=stride, padding=PADDING, bias=True),
                nn.InstanceNorm2d(ndf * mult),
                nn.LeakyReLU(LEAKY_SLOPE, True),
            ]
        layers.append(nn.Conv2d(ndf * mult, 1, KERNEL_SIZE, stride=1, padding=PADDING))
        self.model = nn.Sequential(*layers)
        self.ndf, self.n_layers = ndf, n_layers

    def forward(self, x):
        return self.model(x)
