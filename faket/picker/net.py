"""DeepFinder's 3D U-Net (Moebel et al. 2021), as the FakET paper trained it, in PyTorch.

encoder 32,32 -> maxpool -> 48,48 -> maxpool; bottleneck four 64-channel 3^3 convs; decoder: nearest
upsample + 2^3 conv (64) -> concat -> 48,48 -> upsample + 2^3 conv (48) -> concat -> 32,32 -> 1^3 conv to
background + classes (softmax applied by the loss / at inference). ReLU, no batch norm, 'same' padding.
Weights start as DeepFinder's (Keras defaults): Glorot-uniform kernels, zero biases.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

# Keras' 'same' padding of the 2^3 up-convolutions (one extra zero at the end) is what PyTorch does too; it
# warns that this needs a padded copy of the input, which is expected here.
warnings.filterwarnings("ignore", message="Using padding='same' with even kernel", category=UserWarning)


def _conv(cin: int, cout: int, k: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv3d(cin, cout, k, padding="same"), nn.ReLU(inplace=True))


class DeepFinderUNet(nn.Module):
    """Logits (N, n_out, Z, Y, X) for input (N, 1, Z, Y, X); Z, Y, X divisible by 4."""

    def __init__(self, n_out: int):
        super().__init__()
        if n_out < 2:
            raise ValueError("n_out (background + classes) must be at least 2")
        self.n_out = int(n_out)
        self.enc1 = nn.Sequential(_conv(1, 32), _conv(32, 32))
        self.enc2 = nn.Sequential(_conv(32, 48), _conv(48, 48))
        self.bottom = nn.Sequential(_conv(48, 64), _conv(64, 64), _conv(64, 64), _conv(64, 64))
        self.pool = nn.MaxPool3d(2)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.up2 = _conv(64, 64, k=2)
        self.dec2 = nn.Sequential(_conv(64 + 48, 48), _conv(48, 48))
        self.up1 = _conv(48, 48, k=2)
        self.dec1 = nn.Sequential(_conv(48 + 32, 32), _conv(32, 32))
        self.head = nn.Conv3d(32, self.n_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(x)
        e2 = self.enc2(self.pool(e1))
        b = self.bottom(self.pool(e2))
        d2 = self.dec2(torch.cat([e2, self.up2(self.up(b))], dim=1))
        d1 = self.dec1(torch.cat([e1, self.up1(self.up(d2))], dim=1))
        return self.head(d1)


def build_model(n_out: int, seed: int = 0) -> DeepFinderUNet:
    """The network with weights initialised from ``seed`` as Keras initialises DeepFinder's: Glorot-uniform
    kernels, zero biases. (PyTorch's own default gives each layer a third of that variance; with 15 ReLU
    layers and no normalisation the signal then vanishes before the head.)"""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = DeepFinderUNet(n_out)
        for m in net.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
    return net
