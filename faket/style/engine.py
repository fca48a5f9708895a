"""Neural style transfer of tilt-series (FakET), batched over tilts, angle-matched, CPU and GPU.

Pure functions and small classes: numpy / torch arrays in, arrays out, never paths. Settings and their
defaults: :mod:`faket.style.settings`; exact tiling of large tilts: :mod:`faket.style.tiling`; the on-disk
Gram cache: :mod:`faket.style.cache` (this module only asks a store for ``get(key)`` / ``put(key, grams)``).

Algorithm (``docs/style.md``; the paper's setting is the default of :class:`StyleSettings`)
-------------------------------------------------------------------------------------------------
- Intensities: each tilt-series (content, init, every style reference) is mapped to [0, 1] with one min/max
  over *all* its tilts (also when only a chunk of tilts is processed), float32 throughout.
- Features: VGG-19 ``features`` (:mod:`faket.style.vgg`) on the one-channel tilt (3 channels and the ImageNet
  normalisation folded into the first conv, replicate padding there).
- Gram matrix ``G = F F^T / (H W)`` per style layer (fp32). Loss per term: scaled MSE
  ``sum(d^2) / (sum(|d|) + 1e-8)``. Total per tilt:
  ``content_weight * sum_l cw_l * SMSE(F_l - C_l) + sum_l sw_l * SMSE(G_l - T_l) + tv_weight * TV``,
  layer weights normalised to sum 1 (paper: style 1/6/11/20/29 with 256/64/16/4/1, content 8).
  A batch's loss is the *sum* of its tilts' losses, so every tilt sees exactly the gradient it would see
  alone; Adam and the EMA act per pixel, so batching does not change results (to float rounding).
- Style targets ``T_l``: Gram matrices of the reference tilt matched by angle (computed once per reference
  tilt and scale under inference mode, optionally kept in a store across runs); several references combine
  as the weighted mean of their Gram matrices.
- Optimiser: Adam (lr = step size, betas 0.9/0.999, eps 1e-8) on the pixels, clamp to [0, 1] after each
  step; output = bias-corrected EMA (decay 0.99) of the iterates, restarted at each scale. Scales run from
  ``min_scale`` to ``end_scale`` (long side, factors of sqrt(2), crowsonkb's schedule); the first scale runs
  ``initial_iterations``, later ones ``iterations``; the image is upsampled bicubically between scales and
  the Adam moments are resized with it (step count kept). Paper: one scale = the tilt size, one iteration.
- Losses recorded per tilt: the first iterate's (``loss_initial``) and the last iterate's (``loss_final``,
  computed anyway for its gradient); with ``final_loss`` the output's instead (one more forward per tilt).
- After styling, each output tilt is rescaled to the matched reference tilt's mean and std (weighted mean over
  references).
- Large tilts (``max_tile``): the loss gradient of the whole tilt is computed tile by tile, exactly
  (:mod:`faket.style.tiling`); style Gram targets of large reference tilts the same way.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from faket.errors import InputError, ParameterError
from faket.style.losses import gram, gram_scale, gram_style_loss, gram_sum, scaled_mse, tv_loss
from faket.style.settings import (
    PRESETS,
    StyleSettings,
    cpu_tilt_batch,  # the batch policy lives with the settings (kept importable from here)
    parse_float_list,
    parse_int_list,
)

__all__ = [
    "StyleSettings",
    "PRESETS",
    "Reference",
    "StyleTransfer",
    "GramStore",
    "gram",
    "gram_sum",
    "scaled_mse",
    "tv_loss",
    "gen_scales",
    "fit_size",
    "series_minmax",
    "to_unit",
    "match_mean_std",
    "stylize_series",
    "default_tilt_batch",
    "cpu_tilt_batch",
    "autocast_context",
    "parse_int_list",
    "parse_float_list",
]


# --------------------------------------------------------------------------------------------------
# small pieces


def series_minmax(tilts: np.ndarray) -> tuple[float, float]:
    """One min/max over the whole tilt-series (the paper's normalisation)."""
    a = np.asarray(tilts)
    return float(a.min()), float(a.max())


def to_unit(tilts: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """``(x - lo) / (hi - lo)`` in float32 (a constant series maps to 0.5)."""
    a = np.asarray(tilts, dtype=np.float32)
    if not hi > lo:
        return np.full(a.shape, 0.5, dtype=np.float32)
    return ((a - np.float32(lo)) / np.float32(hi - lo)).astype(np.float32)


def match_mean_std(img: np.ndarray, mean: float, std: float) -> np.ndarray:
    """Rescale one tilt to the given mean and std (float32)."""
    a = np.asarray(img, dtype=np.float64)
    s = a.std()
    z = (a - a.mean()) / s if s > 0 else a - a.mean()
    return (z * std + mean).astype(np.float32)


def gen_scales(start: int, end: int) -> list[int]:
    """crowsonkb's scale schedule: ``end, end/sqrt2, end/2, ...`` down to ``start``, ascending."""
    start = min(start, end)
    scales = set()
    i, s = 0, end
    while s >= start:
        scales.add(int(s))
        i += 1
        s = round(end / 2 ** (i / 2))
    return sorted(scales)


def fit_size(hw: tuple[int, int], scale: int) -> tuple[int, int]:
    """(H, W) with the long side = ``scale`` (aspect kept)."""
    h, w = hw
    if max(h, w) == scale:
        return h, w
    f = scale / max(h, w)
    return max(1, round(h * f)), max(1, round(w * f))


def resize(x, hw: tuple[int, int]):
    """Bicubic resize of (B, 1, H, W) (anti-aliased when shrinking)."""
    # lazy: torch (faket's start-up imports every command module)
    import torch.nn.functional as F

    if tuple(x.shape[-2:]) == tuple(hw):
        return x
    shrink = hw[0] < x.shape[-2] or hw[1] < x.shape[-1]
    return F.interpolate(x, size=hw, mode="bicubic", align_corners=False, antialias=shrink)


def autocast_context(device, precision: str):
    """bf16 autocast (CPU and CUDA) or nothing."""
    # lazy: torch (faket's start-up imports every command module)
    import torch

    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def configure_backends(device, precision: str, *, deterministic: bool = True, benchmark: bool = False) -> None:
    """tf32 only when asked; CUDA deterministic (cudnn) unless told otherwise."""
    # lazy: torch (faket's start-up imports every command module)
    import torch

    if device.type == "cuda":
        allow = precision == "tf32"
        torch.backends.cuda.matmul.allow_tf32 = allow
        torch.backends.cudnn.allow_tf32 = allow
        torch.backends.cudnn.deterministic = bool(deterministic)
        torch.backends.cudnn.benchmark = bool(benchmark)
    elif precision == "tf32":
        raise ParameterError("precision", "tf32", "TF32 exists on CUDA only (use fp32 or bf16 on the CPU)")


def default_tilt_batch(
    device, hw: tuple[int, int], precision: str = "fp32", *, max_batch: int = 8, fraction: float = 0.5
) -> int:
    """Tilts per forward/backward that fit in ``fraction`` of the free memory (estimate ~3 kB/pixel in fp32
    for VGG-19 to relu5_1 with the backward pass, ~2 kB in bf16)."""
    per_px = 2000 if precision == "bf16" else 3000
    need = per_px * hw[0] * hw[1]
    try:
        if device.type == "cuda":
            # lazy: torch (faket's start-up imports every command module)
            import torch

            free, _ = torch.cuda.mem_get_info(device)
        else:
            # lazy: psutil (faket's start-up imports every command module)
            import psutil

            free = psutil.virtual_memory().available
    except Exception:  # pragma: no cover - memory probing is best effort
        free = 4 << 30
    return int(max(1, min(max_batch, (fraction * free) // max(need, 1))))


# --------------------------------------------------------------------------------------------------
# references


@dataclass
class Reference:
    """A style reference: its tilts (raw units), angles (or None), weight, and per-content-tilt match."""

    tilts: np.ndarray  # (R, H, W) raw
    weight: float = 1.0
    index: np.ndarray | None = None  # (T,) matched reference tilt per content tilt (full series)
    name: str = "reference"
    lo: float = field(init=False, default=0.0)
    hi: float = field(init=False, default=1.0)

    def __post_init__(self):
        self.tilts = np.asarray(self.tilts, dtype=np.float32)
        if self.tilts.ndim == 2:
            self.tilts = self.tilts[None]
        if self.tilts.ndim != 3:
            raise InputError(f"{self.name}: expected a 2-D image or (tilt, Y, X) stack, got {self.tilts.shape}")
        if not np.isfinite(self.tilts).all():
            raise InputError(f"{self.name}: contains NaN/Inf values")
        if min(self.tilts.shape[1:]) < 32:
            raise InputError(f"{self.name}: tilts of {self.tilts.shape[1:]} are too small (at least 32x32)")
        if not (math.isfinite(self.weight) and self.weight > 0):
            raise ParameterError("weight", self.weight, "must be > 0")
        self.lo, self.hi = series_minmax(self.tilts)
        self._stats: dict = {}

    @functools.cached_property
    def digest(self) -> str:
        """sha256 of the whole series (computed when a Gram store needs a key)."""
        h = hashlib.sha256()
        h.update(np.ascontiguousarray(self.tilts).tobytes())
        h.update(str(self.tilts.shape).encode())
        return h.hexdigest()

    def tilt_key(self, j: int) -> str:
        """Checksum of reference tilt ``j`` in context (the whole series' digest, its min/max, the index)."""
        return f"{self.digest[:24]}-{j}"

    def stats(self, j: int) -> tuple[float, float]:
        """Mean and std of tilt ``j`` (float64; computed once)."""
        if j not in self._stats:
            t = self.tilts[j].astype(np.float64)
            self._stats[j] = (float(t.mean()), float(t.std()))
        return self._stats[j]


# --------------------------------------------------------------------------------------------------
# the optimiser


class _Adam:
    """Adam on a (B, 1, H, W) pixel tensor, per pixel (so independent of the batch).

    ``single``: the caller takes exactly one step (the paper's setting: one scale, one iteration). Adam's first
    bias-corrected step is ``lr * m_hat / (sqrt(v_hat) + eps)`` with ``m_hat = g`` and ``v_hat = g^2``, i.e.
    ``lr * g / (|g| + eps)`` (``lr * sign(g)`` wherever ``|g| >> eps``); it is applied in that closed form and
    the moments are never stored. It equals the general path to float rounding (that path divides by
    ``1 - beta`` and takes ``sqrt(g^2)``: a few ulp of ``lr``); eps is kept, so a pixel with ``|g|`` near eps
    (1e-8) moves less than ``lr`` and one with ``g == 0`` does not move, as in Adam.
    """

    def __init__(self, x, lr: float, betas=(0.9, 0.999), eps: float = 1e-8, *, single: bool = False):
        # lazy: torch (faket's start-up imports every command module)
        import torch

        self.lr, self.b1, self.b2, self.eps = lr, betas[0], betas[1], eps
        self.single = single
        self.m = None if single else torch.zeros_like(x)
        self.v = None if single else torch.zeros_like(x)
        self.t = 0

    def step(self, x, g) -> None:
        if self.single:
            if self.t:
                raise RuntimeError("_Adam(single=True) takes one step only")
            self.t = 1
            x.addcdiv_(g, g.abs().add_(self.eps), value=-self.lr)
            return
        self.t += 1
        self.m.mul_(self.b1).add_(g, alpha=1 - self.b1)
        self.v.mul_(self.b2).addcmul_(g, g, value=1 - self.b2)
        bc1 = 1 - self.b1**self.t
        bc2 = 1 - self.b2**self.t
        denom = (self.v / bc2).sqrt_().add_(self.eps)
        x.addcdiv_(self.m, denom, value=-self.lr / bc1)

    def resize(self, hw) -> None:
        # lazy: torch (faket's start-up imports every command module)
        import torch.nn.functional as F

        self.m = F.interpolate(self.m, size=hw, mode="bicubic", align_corners=False)
        self.v = F.interpolate(self.v, size=hw, mode="bilinear", align_corners=False).clamp_(min=0)


class _EMA:
    """Bias-corrected exponential moving average of the iterates (crowsonkb's EMA)."""

    def __init__(self, x, decay: float):
        # lazy: torch (faket's start-up imports every command module)
        import torch

        self.decay = decay
        self.accum = 1.0
        self.biased = torch.zeros_like(x)
        self.update(x)

    def update(self, x) -> None:
        self.accum *= self.decay
        self.biased.mul_(self.decay).add_(x, alpha=1 - self.decay)

    def get(self):
        return self.biased / (1 - self.accum)


# --------------------------------------------------------------------------------------------------
# the engine


class GramStore(Protocol):
    """Where :meth:`StyleTransfer.reference_grams` may keep Gram targets across runs (e.g.
    :class:`faket.style.cache.GramCache`, on disk): ``get`` returns None when the key is unknown."""

    def get(self, key: str) -> dict | None: ...

    def put(self, key: str, grams: dict) -> None: ...


class StyleTransfer:
    """Batched style transfer with one model. ``model`` is :func:`faket.style.vgg.build_vgg`'s module."""

    def __init__(self, model, settings: StyleSettings, device=None):
        # lazy: numpy, torch (faket's start-up imports every command module)
        import torch

        from faket.style.vgg import downsampling, receptive_radius

        self._torch = torch
        self.s = settings.validate()
        # random-weight variants (faket.style.random_net): the feature transform wraps the model; the
        # multi-scale net has one layer (0) for style and content
        # lazy: numpy (faket's start-up imports every command module)
        from faket.style.random_net import adapt_model

        self.model = model = adapt_model(model, self.s)
        self.device = device if device is not None else next(model.parameters()).device
        # layers with zero weight are dropped (no content forward at all with content weight 0)
        sw, cw = self.s.style_weights_norm(), self.s.content_weights_norm()
        s_layers, c_layers = self.s.style_layers, self.s.content_layers
        if self.s.network == "multiscale":
            s_layers, sw = (0,), [1.0] if sw else []
            c_layers, cw = (0,), [self.s.content_weight] if cw else []
        self.style_layers = [l for l, w in zip(s_layers, sw) if w > 0]
        self.sw = [w for w in sw if w > 0]
        self.content_layers = [l for l, w in zip(c_layers, cw) if w > 0]
        self.cw = [w for w in cw if w > 0]
        self.all_layers = sorted(set(self.style_layers) | set(self.content_layers))
        if not self.all_layers:
            raise InputError("nothing to optimise: all style layer weights and the content weight are 0")
        downsampling = getattr(model, "downsampling", downsampling)
        receptive_radius = getattr(model, "receptive_radius", receptive_radius)
        self.align = max(downsampling(l) for l in self.all_layers)
        # a halo of twice the receptive-field radius makes the tiled gradient exact (faket.style.tiling)
        self.halo = self.s.tile_halo if self.s.tile_halo is not None else 2 * receptive_radius(max(self.all_layers))
        if self.s.max_tile is not None and self.s.max_tile < 2 * self.halo + 4 * self.align:
            raise ParameterError(
                "max_tile",
                self.s.max_tile,
                f"must be at least 2 x halo ({self.halo}) + {4 * self.align} pixels (or give a smaller tile halo)",
            )

    def _amp(self):
        return autocast_context(self.device, self.s.precision)

    def _tensor(self, arr):
        """(B, H, W) or (H, W) array -> (B, 1, H, W) float32 tensor on the device."""
        t = self._torch.as_tensor(np.ascontiguousarray(arr, dtype=np.float32))
        if t.ndim == 2:
            t = t[None]
        return t[:, None].to(self.device)

    def _tiles(self, hw):
        # lazy: numpy (faket's start-up imports every command module)
        from faket.style.tiling import tile_grid

        tiles = tile_grid(hw, self.s.max_tile, self.halo, self.align)
        if tiles is not None and self.s.variant is not None:
            raise ParameterError(
                "max_tile",
                self.s.max_tile,
                f"tiles of {hw[0]}x{hw[1]} tilts are not supported with "
                f"the {self.s.variant}: give a max tile of at least the tilt size",
            )
        return tiles

    # -- style targets ------------------------------------------------------------------------------
    def grams_of(self, img01) -> dict:
        """Gram matrices (fp32, (B, C, C)) of the style layers of ``img01`` (B, 1, H, W), no gradient."""
        if not self.style_layers:
            return {}
        tiles = self._tiles(tuple(img01.shape[-2:]))
        with self._torch.inference_mode():
            if tiles is not None:
                # lazy: numpy (faket's start-up imports every command module)
                from faket.style.tiling import tiled_grams

                return tiled_grams(self.model, img01, self.style_layers, tiles, self._amp)
            with self._amp():
                f = self.model(img01, self.style_layers)
            return {l: gram(f[l]) for l in self.style_layers}

    def target_key(self, ref: Reference, j: int, hw: tuple[int, int], weights_key: str) -> str:
        """What a Gram target depends on (the store's key)."""
        key = {
            "v": 1,
            "ref": ref.tilt_key(j),
            "lo": ref.lo,
            "hi": ref.hi,
            "hw": list(hw),
            "layers": self.style_layers,
            "pooling": self.s.pooling,
            "weights": weights_key,
            "precision": self.s.precision,
            "tile": None if self._tiles(hw) is None else [self.s.max_tile, self.halo],
        }
        if getattr(self.model, "feature_key", None):  # a random-weight variant's features
            key["features"] = self.model.feature_key
        return json.dumps(key, sort_keys=True)

    def reference_grams(
        self, ref: Reference, j: int, factor: float, *, cache: GramStore | None = None, weights_key: str = ""
    ) -> dict:
        """Gram targets (layer -> (C, C), on the device) of reference tilt ``j`` resized by ``factor``."""
        H, W = ref.tilts.shape[1:]
        hw = (H, W) if factor == 1 else (max(16, round(H * factor)), max(16, round(W * factor)))
        key = self.target_key(ref, j, hw, weights_key) if cache is not None else None
        if cache is not None:
            got = cache.get(key)
            if got is not None and set(got) == set(self.style_layers):
                return {l: g.to(self.device) for l, g in got.items()}
        img = resize(self._tensor(to_unit(ref.tilts[j], ref.lo, ref.hi)), hw)
        g = {l: v[0] for l, v in self.grams_of(img).items()}
        if cache is not None:
            cache.put(key, g)
        return g

    # -- losses -------------------------------------------------------------------------------------
    def _losses(self, feats, content_feats, targets, x):
        """Per-sample (total, style part) losses from features of the image."""
        zeros = self._torch.zeros(x.shape[0], device=x.device)
        if self.s.layer_norm:  # each layer relative to its target's magnitude (He et al. 2016)
            style = sum(
                (
                    w * gram_style_loss(feats[l], targets[l]) / gram_scale(targets[l])
                    for l, w in zip(self.style_layers, self.sw)
                ),
                zeros,
            )
        else:
            style = sum((w * gram_style_loss(feats[l], targets[l]) for l, w in zip(self.style_layers, self.sw)), zeros)
        content = sum(
            (w * scaled_mse(feats[l].float() - content_feats[l].float()) for l, w in zip(self.content_layers, self.cw)),
            zeros,
        )
        total = content + style
        if self.s.tv_weight:
            total = total + self.s.tv_weight * tv_loss(x)
        return total, style

    def content_features(self, content01):
        """Content-layer features (no gradient); tiled runs keep them per tile (returns None then)."""
        torch = self._torch
        if not self.content_layers or self._tiles(tuple(content01.shape[-2:])) is not None:
            return None
        with torch.inference_mode(), self._amp():
            f = self.model(content01, self.content_layers)
        return {l: v.clone() for l, v in f.items()}

    def loss_and_grad(self, x, content01, content_feats, targets, *, need_grad: bool = True):
        """Per-sample losses ``(total, style)`` and ``d(sum total)/dx`` for the image ``x`` (B, 1, H, W)
        (the gradient is None without ``need_grad``)."""
        torch = self._torch
        tiles = self._tiles(tuple(x.shape[-2:]))
        if tiles is not None:
            # lazy: numpy (faket's start-up imports every command module)
            from faket.style.tiling import tiled_loss_and_grad

            return tiled_loss_and_grad(self, x, content01, targets, tiles, need_grad)
        if not need_grad:
            with torch.inference_mode(), self._amp():
                f = self.model(x, self.all_layers)
                total, style = self._losses(f, content_feats, targets, x)
            return total.detach(), style.detach(), None
        xg = x.detach().requires_grad_(True)
        with self._amp():
            f = self.model(xg, self.all_layers)
        total, style = self._losses(f, content_feats, targets, xg)
        (g,) = torch.autograd.grad(total.sum(), xg)
        return total.detach(), style.detach(), g

    # -- one batch ----------------------------------------------------------------------------------
    def run_batch(self, content01, init01, targets_fn: Callable[[float], dict]):
        """Style a batch. ``content01``/``init01``: (B, H, W) arrays or tensors in [0, 1];
        ``targets_fn(factor)`` -> layer -> (B, C, C) Gram targets for the reference scaled by ``factor``.

        Returns ``(out01 (B, H, W) numpy, record)`` with per-tilt losses (``loss_initial``, ``loss_final``,
        ``style_loss_initial``, ``style_loss_final``), what the final loss is of (``final_loss_of``:
        ``last_iterate`` or, with ``final_loss``, ``output``) and the scales used.
        """
        torch = self._torch
        c_full = content01 if torch.is_tensor(content01) else self._tensor(content01)
        i_full = init01 if torch.is_tensor(init01) else self._tensor(init01)
        if c_full.shape != i_full.shape:
            raise InputError(f"content {tuple(c_full.shape)} and init {tuple(i_full.shape)} differ in shape")
        H, W = c_full.shape[-2:]
        full = max(H, W)
        end = min(self.s.end_scale or full, full)
        scales = gen_scales(min(self.s.min_scale or end, end), end)
        x = opt = ema = None
        first = last = None  # (total, style) losses of the first and last iterate
        for si, scale in enumerate(scales):
            hw = fit_size((H, W), scale)
            content = resize(c_full, hw).clamp(0, 1) if hw != (H, W) else c_full
            if x is None:
                x = (resize(i_full, hw) if hw != (H, W) else i_full).clamp(0, 1).clone()
                # one scale and one iteration (the paper's setting): Adam's first step in closed form
                opt = _Adam(x, self.s.step_size, single=len(scales) == 1 and self.s.initial_iterations == 1)
            else:
                x = resize(ema.get(), hw).clamp_(0, 1)
                opt.resize(hw)
            ema = _EMA(x, self.s.avg_decay)
            targets = targets_fn(scale / full)
            content_feats = self.content_features(content)
            for _ in range(self.s.initial_iterations if si == 0 else self.s.iterations):
                total, style, g = self.loss_and_grad(x, content, content_feats, targets)
                first = first or (total, style)
                last = (total, style)
                opt.step(x, g)
                x.clamp_(0, 1)
                ema.update(x)
        out = ema.get()
        if self.s.final_loss:
            last = self.loss_and_grad(out, content, content_feats, targets, need_grad=False)[:2]
        if tuple(out.shape[-2:]) != (H, W):
            out = resize(out, (H, W)).clamp(0, 1)
        as_np = lambda t: t.cpu().double().numpy()  # noqa: E731
        rec = {
            "scales": scales,
            "loss_initial": as_np(first[0]),
            "style_loss_initial": as_np(first[1]),
            "loss_final": as_np(last[0]),
            "style_loss_final": as_np(last[1]),
            "final_loss_of": "output" if self.s.final_loss else "last_iterate",
        }
        return out[:, 0].detach().float().cpu().numpy(), rec


# --------------------------------------------------------------------------------------------------
# whole series


def stylize_series(
    engine: StyleTransfer,
    content: np.ndarray,
    init: np.ndarray | None,
    references: Sequence[Reference],
    *,
    tilt_range: tuple[int, int] | None = None,
    tilt_batch: int = 1,
    cache: GramStore | None = None,
    weights_key: str = "",
    progress: Callable | None = None,
    rescale: bool = True,
) -> tuple[np.ndarray, dict]:
    """Style tilts ``[a, b)`` of ``content`` (T, H, W) starting from ``init`` (same shape; ``None`` = content).

    Each reference's ``index`` maps every content tilt (of the full series) to its matched reference tilt.
    Min/max normalisation uses all tilts of each series. Returns the styled tilts (b - a, H, W) in the
    references' intensity units (or [0, 1] with ``rescale=False``) and a record with per-tilt losses.
    ``cache``: a :class:`GramStore` for the reference Gram targets (``weights_key`` names the model in its keys).
    """
    content = np.asarray(content, dtype=np.float32)
    if content.ndim != 3:
        raise InputError(f"content: expected a (tilt, Y, X) stack, got shape {content.shape}")
    if init is None:
        init = content
    init = np.asarray(init, dtype=np.float32)
    if init.shape != content.shape:
        raise InputError(f"init: shape {init.shape} differs from the content's {content.shape}")
    for name, a in (("content", content), ("init", init)):
        if not np.isfinite(a).all():
            raise InputError(f"{name}: contains NaN/Inf values")
    if min(content.shape[1:]) < 32:
        raise InputError(f"content: tilts of {content.shape[1:]} are too small (at least 32x32)")
    if not references and engine.style_layers:
        raise InputError("no style reference given")
    T = content.shape[0]
    a, b = tilt_range if tilt_range is not None else (0, T)
    if not (0 <= a < b <= T):
        raise ParameterError("tilt_range", f"{a}:{b}", f"outside 0:{T}")
    ridx = []
    for r in references:
        if r.index is None:
            if r.tilts.shape[0] not in (1, T):
                raise InputError(f"{r.name}: {r.tilts.shape[0]} tilts for {T} content tilts and no matching given")
            ix = np.zeros(T, dtype=np.int64) if r.tilts.shape[0] == 1 else np.arange(T)
        else:
            ix = np.asarray(r.index, dtype=np.int64)
        if ix.shape != (T,) or ix.min() < 0 or ix.max() >= r.tilts.shape[0]:
            raise InputError(f"{r.name}: tilt matching does not fit {T} content tilts")
        ridx.append(ix)
    wsum = sum(r.weight for r in references)
    c_lo, c_hi = series_minmax(content)
    i_lo, i_hi = series_minmax(init)

    # lazy: torch (faket's start-up imports every command module)
    import torch

    gram_memo: dict = {}

    def ref_gram(ri: int, j: int, factor: float):
        k = (ri, j, factor)
        if k not in gram_memo:
            gram_memo[k] = engine.reference_grams(references[ri], j, factor, cache=cache, weights_key=weights_key)
        return gram_memo[k]

    out = np.empty((b - a, *content.shape[1:]), dtype=np.float32)
    per = {"loss_initial": [], "loss_final": [], "style_loss_initial": [], "style_loss_final": []}
    scales = None
    final_kind = None
    # batches are aligned to absolute tilt indices (multiples of tilt_batch), so a chunk whose bounds are
    # multiples of tilt_batch runs exactly the batches of a full run (bit-identical results)
    tb = max(1, int(tilt_batch))
    starts = sorted({a, *range((a // tb + 1) * tb, b, tb)})
    batches = [(s, min(b, (s // tb + 1) * tb)) for s in starts]
    it = progress(batches) if progress is not None else batches
    for s0, s1 in it:
        idx = list(range(s0, s1))

        def targets_fn(factor, idx=idx):
            if not engine.style_layers:
                return {}
            tg = {}
            for l in engine.style_layers:
                acc = None
                for ri, r in enumerate(references):
                    g = torch.stack([ref_gram(ri, int(ridx[ri][t]), factor)[l] for t in idx])
                    g = g * (r.weight / wsum)
                    acc = g if acc is None else acc + g
                tg[l] = acc
            return tg

        c01 = to_unit(content[s0:s1], c_lo, c_hi)
        i01 = to_unit(init[s0:s1], i_lo, i_hi)
        o01, rec = engine.run_batch(c01, i01, targets_fn)
        scales, final_kind = rec["scales"], rec["final_loss_of"]
        for k in per:
            per[k].extend(float(v) for v in rec[k])
        for n, t in enumerate(idx):
            o = o01[n]
            if rescale and references:
                m = sum(r.weight * r.stats(int(ix[t]))[0] for r, ix in zip(references, ridx)) / wsum
                sd = sum(r.weight * r.stats(int(ix[t]))[1] for r, ix in zip(references, ridx)) / wsum
                o = match_mean_std(o, m, sd)
            out[t - a] = o
        if len(gram_memo) > 256:  # bound memory for very long series
            gram_memo.clear()
    record = {
        "tilt_range": [a, b],
        "scales": scales,
        "final_loss_of": final_kind,
        "content_minmax": [c_lo, c_hi],
        "init_minmax": [i_lo, i_hi],
        "references": [
            {"name": r.name, "weight": r.weight, "minmax": [r.lo, r.hi], "matched_index": ix[a:b].tolist()}
            for r, ix in zip(references, ridx)
        ],
        "per_tilt": per,
    }
    return out, record
