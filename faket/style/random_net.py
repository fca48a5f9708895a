"""Feature extractors for style transfer without trained weights (the ``offline`` variants).

The paper's random-weights ablation runs VGG-19 with torchvision's random initialisation. The literature on
Gram-based texture synthesis with untrained networks suggests three changes; each is an option of
:class:`faket.style.settings.StyleSettings` (measured on real tilt-series in ``docs/style.md``, "Offline (random
weights)"):

- ``layer_norm`` (He, Wang & Hopcroft, NeurIPS 2016, "A powerful generative model using random weights for the
  deep image representation": per-layer normalisation of the style terms): each layer's Gram loss is divided
  by the magnitude of its target Gram, ``SMSE(T) = sum T^2 / sum |T|``, so that every layer contributes with its
  layer weight whatever the scale of its random activations (:mod:`faket.style.engine`).
- ``network="multiscale"`` (Ustyuzhaninov, Brendel, Gatys & Bethge, ICLR 2017, "What does it take to generate
  natural textures?"): one convolutional layer of random filters at several sizes (here zero-mean, unit-norm
  Gaussian filters of ``multiscale_sizes``, ``multiscale_maps`` each, reflect padding, ReLU), one Gram matrix
  over all its maps. :class:`MultiScaleRandom`.
- ``feature_transform="softmax"`` (Wang, Li & Vasconcelos, CVPR 2021, "Rethinking and improving the
  robustness of image style transfer", SWAG): the activations of each layer go through a softmax over the
  spatial positions of each channel (temperature ``softmax_temperature``) before the Gram matrix, times
  ``H W`` so that the transformed maps have mean 1 at every size. :class:`SoftmaxFeatures`.

Both modules follow the folded VGG's interface: ``model(x, layers) -> {layer: (B, C, h, w)}`` for ``x`` (B, 1,
H, W) in [0, 1], and a ``feature_key`` for cache keys; the multi-scale net also has ``downsampling(layer)`` /
``receptive_radius(layer)`` (the engine takes VGG-19's from :mod:`faket.style.vgg` otherwise). This module does
not import :mod:`faket.style.vgg` (which imports it to build the models).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from faket.errors import ParameterError

__all__ = ["MULTISCALE_LAYER", "adapt_model", "make_multiscale", "softmax_features", "wrap_softmax"]

MULTISCALE_LAYER = 0  # the multi-scale net's one layer (its Gram matrix is taken over all maps)


def softmax_features(feat, temperature: float = 1.0):
    """SWAG's activation smoothing: softmax over the spatial positions of each channel, times ``H W``."""
    # lazy: torch
    import torch

    b, c, h, w = feat.shape
    s = torch.softmax(feat.float().reshape(b, c, h * w) / temperature, dim=-1) * (h * w)
    return s.reshape(b, c, h, w)


def _classes():
    # lazy: torch
    import torch
    import torch.nn.functional as F
    from torch import nn

    class _SoftmaxFeatures(nn.Module):
        """Wraps a feature extractor: every returned layer goes through :func:`softmax_features`."""

        def __init__(self, inner, temperature: float):
            super().__init__()
            self.inner = inner
            self.temperature = float(temperature)
            self.feature_key = f"softmax:{self.temperature:g}|" + str(getattr(inner, "feature_key", "vgg19"))

            for name in ("downsampling", "receptive_radius"):  # the multi-scale net's own; VGG's: the engine's
                if hasattr(inner, name):
                    setattr(self, name, getattr(inner, name))

        def forward(self, x, layers: Sequence[int]):
            return {l: softmax_features(v, self.temperature) for l, v in self.inner(x, layers).items()}

    class _MultiScaleRandom(nn.Module):
        """One layer of seeded random filters of several sizes (1 input channel), ReLU; layer key 0."""

        def __init__(self, sizes: Sequence[int], maps: int, seed: int):
            super().__init__()
            g = torch.Generator().manual_seed(int(seed))
            self.sizes = tuple(int(k) for k in sizes)
            self.maps = int(maps)
            ws = []
            h = hashlib.sha256()
            for k in self.sizes:
                w = torch.randn((self.maps, 1, k, k), generator=g)
                w = w - w.mean((2, 3), keepdim=True)  # blind to the mean level
                w = w / w.flatten(1).norm(dim=1).clamp_min(1e-12)[:, None, None, None]
                ws.append(nn.Parameter(w, requires_grad=False))
                h.update(w.numpy().tobytes())
            self.weights = nn.ParameterList(ws)
            self.sha256 = h.hexdigest()
            self.feature_key = f"multiscale:{','.join(map(str, self.sizes))}x{self.maps}:{self.sha256[:16]}"

        def downsampling(self, layer: int) -> int:
            return 1

        def receptive_radius(self, layer: int) -> int:
            return max(self.sizes) // 2

        def forward(self, x, layers: Sequence[int]):
            # [0, 1] -> about unit spread; reflect padding keeps the edge statistics like the interior's
            x = (x - 0.5) * 4.0
            outs = []
            for w, k in zip(self.weights, self.sizes):
                p = k // 2
                xp = F.pad(x, (p, p, p, p), mode="reflect") if p else x
                outs.append(F.relu(F.conv2d(xp, w)))
            f = torch.cat(outs, 1)
            return {int(l): f for l in layers}

    return _SoftmaxFeatures, _MultiScaleRandom


_CLS = None


def wrap_softmax(model, temperature: float):
    global _CLS
    if _CLS is None:
        _CLS = _classes()
    return _CLS[0](model, temperature).eval()


def make_multiscale(sizes: Sequence[int], maps: int, seed: int, device=None):
    """The multi-scale random net (eval mode, frozen) and its sha256 (of the filters)."""
    global _CLS
    if _CLS is None:
        _CLS = _classes()
    if not sizes or any(int(k) < 1 or int(k) % 2 == 0 for k in sizes):
        raise ParameterError("multiscale_sizes", ",".join(map(str, sizes)), "filter sizes must be odd and >= 1")
    m = _CLS[1](sizes, maps, seed).eval()
    if device is not None:
        m = m.to(device)
    return m


def adapt_model(model, settings):
    """The feature extractor ``settings`` asks for, from ``model``: wraps it in the softmax transform when
    ``feature_transform="softmax"`` (unless already wrapped); checks that ``network="multiscale"`` got the
    multi-scale net (:func:`faket.style.vgg.build_model` builds either)."""
    global _CLS
    if _CLS is None:
        _CLS = _classes()
    soft, multi = _CLS
    inner = model.inner if isinstance(model, soft) else model
    if (settings.network == "multiscale") != isinstance(inner, multi):
        raise ParameterError(
            "network",
            settings.network,
            "the model given is not that network (build it with faket.style.vgg.build_model)",
        )
    if settings.feature_transform == "softmax":
        if not isinstance(model, soft) or model.temperature != float(settings.softmax_temperature):
            model = wrap_softmax(inner, settings.softmax_temperature)
    elif isinstance(model, soft):
        model = inner
    return model
