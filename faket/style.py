"""Neural style transfer of tilt-series (FakET), batched over tilts, angle-matched, CPU and GPU.

Pure functions and small classes: numpy / torch arrays in and out, never paths (the optional on-disk Gram
cache takes a folder from the caller).

Algorithm (``README.md ("Style transfer")``; the paper's setting is the default of :class:`StyleSettings`)
-------------------------------------------------------------------------------------------------
- Intensities: each tilt-series (content, init, every style reference) is mapped to [0, 1] with one min/max
  over *all* its tilts (also when only a chunk of tilts is processed), float32 throughout.
- Features: VGG-19 ``features`` (:mod:`faket.vgg`) on the one-channel tilt (3 channels and the ImageNet
  normalisation folded into the first conv, replicate padding there).
- Gram matrix ``G = F F^T / (H W)`` per style layer (fp32). Loss per term: scaled MSE
  ``sum(d^2) / (sum(|d|) + 1e-8)``. Total per tilt:
  ``content_weight * sum_l cw_l * SMSE(F_l - C_l) + sum_l sw_l * SMSE(G_l - T_l) + tv_weight * TV``,
  layer weights normalised to sum 1 (paper: style 1/6/11/20/29 with 256/64/16/4/1, content 8).
  A batch's loss is the *sum* of its tilts' losses, so every tilt sees exactly the gradient it would see
  alone; Adam and the EMA act per pixel, so batching does not change results (to float rounding).
- Style targets ``T_l``: Gram matrices of the reference tilt matched by angle (computed once per reference
  tilt and scale under inference mode, optionally cached on disk); several references combine as the
  weighted mean of their Gram matrices.
- Optimiser: Adam (lr = step size, betas 0.9/0.999, eps 1e-8) on the pixels, clamp to [0, 1] after each
  step; output = bias-corrected EMA (decay 0.99) of the iterates, restarted at each scale. Scales run from
  ``min_scale`` to ``end_scale`` (long side, factors of sqrt(2), crowsonkb's schedule); the first scale runs
  ``initial_iterations``, later ones ``iterations``; the image is upsampled bicubically between scales and
  the Adam moments are resized with it (step count kept). Paper: one scale = the tilt size, one iteration.
- After styling, each output tilt is rescaled to the matched reference tilt's mean and std (weighted mean over
  references).
- Large tilts (``max_tile``): the loss gradient of the whole tilt is computed tile by tile. Pass 1 runs every
  tile (with a ``halo`` of context) without gradient and sums the Gram matrices and content-loss sums over the
  tiles' cores (exact when the halo covers the receptive-field radius); pass 2 back-propagates a surrogate with the same gradient (``<dL/dG, F F^T>`` and the content
  term's ``dL/dF``) through each tile and keeps the gradient on its core. Cores partition the tilt, so there
  are no seams; memory is bounded by the tile size. The default halo, twice the receptive-field radius of
  the deepest layer (160 px for relu5_1), makes the tiled gradient equal to the whole tilt's. Style Gram targets of large reference tilts are computed
  the same way (pass 1).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .errors import InputError

__all__ = ["StyleSettings", "Reference", "StyleTransfer", "gram", "scaled_mse", "gen_scales", "fit_size",
           "series_minmax", "to_unit", "match_mean_std", "stylize_series", "GramCache", "default_tilt_batch",
           "cpu_tilt_batch",
           "autocast_context", "tile_layout", "parse_int_list", "parse_float_list"]

EPS = 1e-8


# --------------------------------------------------------------------------------------------------
# settings


@dataclass
class StyleSettings:
    """The algorithm's settings; the defaults are the paper's (one scale = tilt size, one iteration)."""

    iterations: int = 1
    initial_iterations: int = 1
    min_scale: int | None = None      # None: the tilt's long side
    end_scale: int | None = None      # None: the tilt's long side
    step_size: float = 0.15
    avg_decay: float = 0.99
    content_weight: float = 1.0
    style_layers: tuple = (1, 6, 11, 20, 29)
    style_layer_weights: tuple = (256.0, 64.0, 16.0, 4.0, 1.0)
    content_layers: tuple = (8,)
    content_layer_weights: tuple = (100.0,)
    tv_weight: float = 0.0
    pooling: str = "max"
    precision: str = "fp32"
    max_tile: int | None = None       # None: no tiling
    tile_halo: int | None = None     # None: twice the receptive-field radius of the deepest layer
    final_loss: bool = True           # evaluate the loss of the output (one extra forward per tilt)

    def validate(self) -> "StyleSettings":
        from .vgg import max_layer_index

        top = max_layer_index()
        self.style_layers = tuple(int(v) for v in self.style_layers)
        self.content_layers = tuple(int(v) for v in self.content_layers)
        self.style_layer_weights = tuple(float(v) for v in self.style_layer_weights)
        self.content_layer_weights = tuple(float(v) for v in self.content_layer_weights)
        for name, layers, weights in (("style", self.style_layers, self.style_layer_weights),
                                      ("content", self.content_layers, self.content_layer_weights)):
            for v in layers:
                if not 0 <= v <= top:
                    raise InputError(f"--{name}-layers: unknown VGG-19 layer index {v} (expected 0..{top})")
            if len(set(layers)) != len(layers):
                raise InputError(f"--{name}-layers: a layer is given twice")
            if len(weights) != len(layers):
                raise InputError(f"--{name}-layer-weights: {len(weights)} weights for {len(layers)} layers")
            if any(not math.isfinite(w) or w < 0 for w in weights):
                raise InputError(f"--{name}-layer-weights: weights must be finite and >= 0")
            if layers and sum(weights) <= 0:
                raise InputError(f"--{name}-layer-weights: weights must not all be 0")
        if not self.style_layers and not self.content_layers:
            raise InputError("--style-layers/--content-layers: no layers to optimise")
        for name in ("iterations", "initial_iterations"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"--{name.replace('_', '-')} {getattr(self, name)}: must be at least 1")
        for name in ("min_scale", "end_scale"):
            v = getattr(self, name)
            if v is not None and int(v) < 16:
                raise InputError(f"--{name.replace('_', '-')} {v}: must be at least 16 pixels")
        if not (math.isfinite(self.step_size) and self.step_size > 0):
            raise InputError(f"--step-size {self.step_size}: must be > 0")
        if not (0 <= self.avg_decay < 1):
            raise InputError(f"--avg-decay {self.avg_decay}: must be in [0, 1)")
        for name in ("content_weight", "tv_weight"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise InputError(f"--{name.replace('_', '-')} {v}: must be finite and >= 0")
        if self.pooling not in ("max", "avg"):
            raise InputError(f"--pooling {self.pooling}: expected max or avg")
        if self.precision not in ("fp32", "bf16", "tf32"):
            raise InputError(f"--precision {self.precision}: expected fp32, bf16 or tf32")
        if self.max_tile is not None and int(self.max_tile) < 64:
            raise InputError(f"--max-tile {self.max_tile}: must be at least 64 pixels")
        if self.tile_halo is not None and self.tile_halo < 0:
            raise InputError(f"--tile-halo {self.tile_halo}: must be >= 0")
        return self

    @property
    def depth(self) -> int:
        return max((*self.style_layers, *self.content_layers))

    def style_weights_norm(self) -> list[float]:
        s = sum(self.style_layer_weights)
        return [w / s for w in self.style_layer_weights] if s > 0 else []

    def content_weights_norm(self) -> list[float]:
        s = sum(self.content_layer_weights)
        return [self.content_weight * w / s for w in self.content_layer_weights] if s > 0 else []

    def to_dict(self) -> dict:
        return asdict(self)


def parse_int_list(spec: str, name: str) -> tuple[int, ...]:
    s = str(spec).strip()
    if s in ("", "none"):
        return ()
    try:
        return tuple(int(v) for v in s.split(","))
    except ValueError:
        raise InputError(f"{name} {spec!r}: expected comma-separated integers (e.g. 1,6,11,20,29)") from None


def parse_float_list(spec: str, name: str) -> tuple[float, ...]:
    s = str(spec).strip()
    if s in ("", "none"):
        return ()
    try:
        return tuple(float(v) for v in s.split(","))
    except ValueError:
        raise InputError(f"{name} {spec!r}: expected comma-separated numbers (e.g. 256,64,16,4,1)") from None


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
    import torch.nn.functional as F

    if tuple(x.shape[-2:]) == tuple(hw):
        return x
    shrink = hw[0] < x.shape[-2] or hw[1] < x.shape[-1]
    return F.interpolate(x, size=hw, mode="bicubic", align_corners=False, antialias=shrink)


def _flat_features(feat):
    """(B, C, H, W) -> (B, H W, C) fp32 (a view for channels_last fp32 input)."""
    b, c, h, w = feat.shape
    return feat.permute(0, 2, 3, 1).reshape(b, h * w, c).float()


def gram(feat):
    """``F F^T / (H W)`` per sample, fp32: (B, C, H, W) -> (B, C, C)."""
    import torch

    m = _flat_features(feat)
    with torch.autocast(device_type=feat.device.type, enabled=False):
        return torch.bmm(m.transpose(1, 2), m) / m.shape[1]


_GRAM_STYLE_LOSS = None


def gram_style_loss(feat, target):
    """Per-sample ``scaled_mse(gram(feat) - target)``: (B, C, H, W), (B, C, C) fp32 -> (B,) fp32.

    The same value as composing :func:`gram` and :func:`scaled_mse`, with an analytic backward: with
    ``d = G - T``, ``S1 = sum |d| + eps`` and ``S2 = sum d^2``, ``dL/dd = 2 d / S1 - S2 sign(d) / S1^2`` and
    ``dL/dF = (dL/dd + dL/dd^T) F / (H W)``: one fp32 matmul per layer instead of autograd's two, and no
    elementwise graph over the features (about half the Gram cost of a backward pass).
    """
    global _GRAM_STYLE_LOSS
    if _GRAM_STYLE_LOSS is None:
        import torch

        class _GramStyleLoss(torch.autograd.Function):
            @staticmethod
            def forward(ctx, f, t):
                with torch.autocast(device_type=f.device.type, enabled=False):
                    d = gram(f) - t.float()
                    s1 = d.abs().sum((1, 2)) + EPS
                    s2 = d.pow(2).sum((1, 2))
                ctx.save_for_backward(f, d, s1, s2)
                return s2 / s1

            @staticmethod
            def backward(ctx, grad_out):
                f, d, s1, s2 = ctx.saved_tensors
                b, c, h, w = f.shape
                with torch.autocast(device_type=f.device.type, enabled=False):
                    dd = (2.0 * d / s1[:, None, None] - (s2 / (s1 * s1))[:, None, None] * torch.sign(d))
                    dd = dd * grad_out.float()[:, None, None]
                    dg = (dd + dd.transpose(1, 2)) / (h * w)
                    gf = torch.bmm(_flat_features(f), dg).reshape(b, h, w, c).permute(0, 3, 1, 2).to(f.dtype)
                return gf, None

        _GRAM_STYLE_LOSS = _GramStyleLoss
    return _GRAM_STYLE_LOSS.apply(feat, target)


def scaled_mse(d):
    """Per-sample ``sum(d^2) / (sum(|d|) + 1e-8)`` of (B, ...) -> (B,)."""
    d = d.flatten(1).float()
    return d.pow(2).sum(1) / (d.abs().sum(1) + EPS)


def tv_loss(x):
    """Per-sample mean of squared forward differences (replicate edge): (B, 1, H, W) -> (B,)."""
    import torch.nn.functional as F

    p = F.pad(x, (0, 1, 0, 1), mode="replicate")
    dx = p[..., :-1, 1:] - p[..., :-1, :-1]
    dy = p[..., 1:, :-1] - p[..., :-1, :-1]
    return (dx * dx + dy * dy).flatten(1).mean(1)


def autocast_context(device, precision: str):
    """bf16 autocast (CPU and CUDA) or nothing."""
    import torch

    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def configure_backends(device, precision: str, *, deterministic: bool = True, benchmark: bool = False) -> None:
    """tf32 only when asked; CUDA deterministic (cudnn) unless told otherwise."""
    import torch

    if device.type == "cuda":
        allow = precision == "tf32"
        torch.backends.cuda.matmul.allow_tf32 = allow
        torch.backends.cudnn.allow_tf32 = allow
        torch.backends.cudnn.deterministic = bool(deterministic)
        torch.backends.cudnn.benchmark = bool(benchmark)
    elif precision == "tf32":
        raise InputError("--precision tf32: TF32 exists on CUDA only (use fp32 or bf16 on the CPU)")


def tile_layout(n: int, max_tile: int, halo: int, align: int) -> list[tuple[int, int, int, int]]:
    """Split ``[0, n)`` into cores of about ``max_tile - 2*halo`` (multiples of ``align``) with windows
    ``[core - halo, core + halo]`` clipped to ``[0, n)``. Returns ``(w0, w1, c0, c1)`` tuples."""
    if n <= max_tile:
        return [(0, n, 0, n)]
    halo = int(math.ceil(halo / align) * align)
    core = max(align, ((max_tile - 2 * halo) // align) * align)
    out = []
    c0 = 0
    while c0 < n:
        c1 = min(n, c0 + core)
        if n - c1 < align:       # avoid a sliver at the end
            c1 = n
        out.append((max(0, c0 - halo), min(n, c1 + halo), c0, c1))
        c0 = c1
    return out


def cpu_tilt_batch(hw: tuple[int, int], precision: str = "fp32") -> int:
    """CPU default measured with bench/style.py and a VGG-19 forward/backward probe (2 threads): fp32 gains
    from batches of small tilts (64^2: batch 4 ~25% faster) and loses from 256^2 on (idle AMD EPYC, 256^2:
    0.95 s/tilt at batch 1 vs 1.28 s/tilt at batch 4), so 4 up to 128^2, 1 beyond; bf16 runs fastest one tilt
    at a time (AMX machine, 256^2: 0.21 vs 0.27 s/tilt)."""
    if precision == "bf16":
        return 1
    return int(max(1, min(4, (1 << 16) // max(1, hw[0] * hw[1]))))


def default_tilt_batch(device, hw: tuple[int, int], precision: str = "fp32", *, max_batch: int = 8,
                       fraction: float = 0.5) -> int:
    """Tilts per forward/backward that fit in ``fraction`` of the free memory (estimate ~3 kB/pixel in fp32
    for VGG-19 to relu5_1 with the backward pass, ~2 kB in bf16)."""
    per_px = 2000 if precision == "bf16" else 3000
    need = per_px * hw[0] * hw[1]
    try:
        if device.type == "cuda":
            import torch

            free, _ = torch.cuda.mem_get_info(device)
        else:
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

    tilts: np.ndarray                 # (R, H, W) raw
    weight: float = 1.0
    index: np.ndarray | None = None   # (T,) matched reference tilt per content tilt (full series)
    name: str = "reference"
    lo: float = field(init=False, default=0.0)
    hi: float = field(init=False, default=1.0)
    digest: str = field(init=False, default="")

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
            raise InputError(f"--style-weight {self.weight}: must be > 0")
        self.lo, self.hi = series_minmax(self.tilts)
        h = hashlib.sha256()
        h.update(np.ascontiguousarray(self.tilts).tobytes())
        h.update(str(self.tilts.shape).encode())
        self.digest = h.hexdigest()

    def tilt_key(self, j: int) -> str:
        """Checksum of reference tilt ``j`` in context (the whole series' digest, its min/max, the index)."""
        return f"{self.digest[:24]}-{j}"

    def stats(self, j: int) -> tuple[float, float]:
        t = self.tilts[j].astype(np.float64)
        return float(t.mean()), float(t.std())


class GramCache:
    """Gram targets on disk: ``DIR/<key>.pt`` (a dict layer -> (C, C) fp32 tensor), read with weights_only."""

    def __init__(self, folder: str | Path | None):
        self.folder = Path(folder) if folder is not None else None
        self.hits = 0
        self.misses = 0
        if self.folder is not None:
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise InputError(f"--style-cache {folder}: cannot create the folder ({exc.strerror})") from None

    def _path(self, key: str) -> Path:
        return self.folder / f"gram-{hashlib.sha256(key.encode()).hexdigest()[:32]}.pt"

    def get(self, key: str):
        import torch

        if self.folder is None:
            return None
        p = self._path(key)
        if not p.is_file():
            self.misses += 1
            return None
        try:
            d = torch.load(p, map_location="cpu", weights_only=True)
            if d.get("key") != key:
                raise ValueError("key mismatch")
            self.hits += 1
            return {int(k): v for k, v in d["grams"].items()}
        except Exception:  # a corrupt / foreign file: recompute and overwrite
            self.misses += 1
            return None

    def put(self, key: str, grams: dict) -> None:
        import os
        import uuid

        import torch

        if self.folder is None:
            return
        p = self._path(key)
        tmp = p.with_name(f".{p.name}.{uuid.uuid4().hex[:8]}.tmp")
        torch.save({"key": key, "grams": {int(k): v.detach().cpu() for k, v in grams.items()}}, tmp)
        os.replace(tmp, p)


# --------------------------------------------------------------------------------------------------
# the optimiser


class _Adam:
    """Adam on a (B, 1, H, W) pixel tensor, per pixel (so independent of the batch)."""

    def __init__(self, x, lr: float, betas=(0.9, 0.999), eps: float = 1e-8):
        import torch

        self.lr, self.b1, self.b2, self.eps = lr, betas[0], betas[1], eps
        self.m = torch.zeros_like(x)
        self.v = torch.zeros_like(x)
        self.t = 0

    def step(self, x, g) -> None:
        self.t += 1
        self.m.mul_(self.b1).add_(g, alpha=1 - self.b1)
        self.v.mul_(self.b2).addcmul_(g, g, value=1 - self.b2)
        bc1 = 1 - self.b1 ** self.t
        bc2 = 1 - self.b2 ** self.t
        denom = (self.v / bc2).sqrt_().add_(self.eps)
        x.addcdiv_(self.m, denom, value=-self.lr / bc1)

    def resize(self, hw) -> None:
        import torch.nn.functional as F

        self.m = F.interpolate(self.m, size=hw, mode="bicubic", align_corners=False)
        self.v = F.interpolate(self.v, size=hw, mode="bilinear", align_corners=False).clamp_(min=0)


class _EMA:
    """Bias-corrected exponential moving average of the iterates (crowsonkb's EMA)."""

    def __init__(self, x, decay: float):
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


class StyleTransfer:
    """Batched style transfer with one model. ``model`` is :func:`faket.vgg.build_vgg`'s module."""

    def __init__(self, model, settings: StyleSettings, device=None):
        import torch

        self.model = model
        self.s = settings.validate()
        self.device = device if device is not None else next(model.parameters()).device
        # layers with zero weight are dropped (no content forward at all with content weight 0)
        sw, cw = self.s.style_weights_norm(), self.s.content_weights_norm()
        self.style_layers = [l for l, w in zip(self.s.style_layers, sw) if w > 0]
        self.sw = [w for w in sw if w > 0]
        self.content_layers = [l for l, w in zip(self.s.content_layers, cw) if w > 0]
        self.cw = [w for w in cw if w > 0]
        self.all_layers = sorted(set(self.style_layers) | set(self.content_layers))
        if not self.all_layers:
            raise InputError("nothing to optimise: all style layer weights and the content weight are 0")
        from .vgg import downsampling

        self.align = max(downsampling(l) for l in self.all_layers)
        from .vgg import receptive_radius

        # a halo of twice the receptive-field radius makes the tiled gradient exact (see the module doc)
        self.halo = (self.s.tile_halo if self.s.tile_halo is not None
                     else 2 * receptive_radius(max(self.all_layers)))
        if self.s.max_tile is not None and self.s.max_tile < 2 * self.halo + 4 * self.align:
            raise InputError(f"--max-tile {self.s.max_tile}: must be at least 2 x halo ({self.halo}) + "
                             f"{4 * self.align} pixels (or give a smaller --tile-halo)")
        self._torch = torch

    # -- helpers ------------------------------------------------------------------------------------
    def _amp(self):
        return autocast_context(self.device, self.s.precision)

    def _tensor(self, arr):
        t = self._torch.as_tensor(np.ascontiguousarray(arr, dtype=np.float32))
        if t.ndim == 2:
            t = t[None]
        return t[:, None].to(self.device)

    def _tiles(self, hw):
        mt = self.s.max_tile
        if mt is None or (hw[0] <= mt and hw[1] <= mt):
            return None
        ty = tile_layout(hw[0], mt, self.halo, self.align)
        tx = tile_layout(hw[1], mt, self.halo, self.align)
        return [(a, b) for a in ty for b in tx]

    @staticmethod
    def _core_slice(layer_ds, w, c):
        """Feature-space slice of a core ``c = (c0, c1)`` inside a window starting at ``w[0]``."""
        a = (c[0] - w[0]) // layer_ds
        b = (c[1] // layer_ds) - w[0] // layer_ds
        return slice(a, b)

    # -- style targets ------------------------------------------------------------------------------
    def grams_of(self, img01) -> dict:
        """Gram matrices (fp32, (B, C, C)) of the style layers of ``img01`` (B, 1, H, W), no gradient."""
        torch = self._torch
        if not self.style_layers:
            return {}
        with torch.inference_mode():
            tiles = self._tiles(tuple(img01.shape[-2:]))
            if tiles is None:
                with self._amp():
                    f = self.model(img01, self.style_layers)
                return {l: gram(f[l]) for l in self.style_layers}
            from .vgg import downsampling

            acc = {}
            for (wy0, wy1, cy0, cy1), (wx0, wx1, cx0, cx1) in tiles:
                with self._amp():
                    f = self.model(img01[..., wy0:wy1, wx0:wx1], self.style_layers)
                for l in self.style_layers:
                    ds = downsampling(l)
                    sy = self._core_slice(ds, (wy0, wy1), (cy0, cy1))
                    sx = self._core_slice(ds, (wx0, wx1), (cx0, cx1))
                    core = f[l][..., sy, sx]
                    b, c, h, w = core.shape
                    m = core.permute(0, 2, 3, 1).reshape(b, h * w, c).float()
                    with torch.autocast(device_type=self.device.type, enabled=False):
                        g = torch.bmm(m.transpose(1, 2), m)
                    acc[l] = g if l not in acc else acc[l] + g
            H, W = img01.shape[-2:]
            return {l: acc[l] / ((H // downsampling(l)) * (W // downsampling(l))) for l in self.style_layers}

    def target_key(self, ref: Reference, j: int, hw: tuple[int, int], weights_key: str) -> str:
        return json.dumps({"v": 1, "ref": ref.tilt_key(j), "lo": ref.lo, "hi": ref.hi, "hw": list(hw),
                           "layers": self.style_layers, "pooling": self.s.pooling, "weights": weights_key,
                           "precision": self.s.precision,
                           "tile": None if self._tiles(hw) is None else [self.s.max_tile, self.halo]},
                          sort_keys=True)

    def reference_grams(self, ref: Reference, j: int, factor: float, *, cache: GramCache | None = None,
                        weights_key: str = "") -> dict:
        """Gram targets (layer -> (C, C), on the device) of reference tilt ``j`` resized by ``factor``."""
        H, W = ref.tilts.shape[1:]
        hw = (H, W) if factor == 1 else (max(16, round(H * factor)), max(16, round(W * factor)))
        key = self.target_key(ref, j, hw, weights_key)
        if cache is not None:
            got = cache.get(key)
            if got is not None and set(got) == set(self.style_layers):
                return {l: g.to(self.device) for l, g in got.items()}
        img = self._tensor(to_unit(ref.tilts[j], ref.lo, ref.hi))
        img = resize(img, hw)
        g = {l: v[0] for l, v in self.grams_of(img).items()}
        if cache is not None:
            cache.put(key, g)
        return g

    # -- losses -------------------------------------------------------------------------------------
    def _losses(self, feats, content_feats, targets, x):
        """Per-sample (total, style part) losses from features of the image."""
        torch = self._torch
        b = x.shape[0]
        style = torch.zeros(b, device=x.device)
        total = torch.zeros(b, device=x.device)
        for l, w in zip(self.style_layers, self.sw):
            if w:
                style = style + w * gram_style_loss(feats[l], targets[l])
        for l, w in zip(self.content_layers, self.cw):
            if w:
                total = total + w * scaled_mse(feats[l].float() - content_feats[l].float())
        total = total + style
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
        """Per-sample losses ``(total, style)`` and ``d(sum total)/dx`` for the image ``x`` (B, 1, H, W)."""
        torch = self._torch
        tiles = self._tiles(tuple(x.shape[-2:]))
        if tiles is None:
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
        return self._tiled_loss_and_grad(x, content01, targets, tiles, need_grad)

    def _tiled_loss_and_grad(self, x, content01, targets, tiles, need_grad):
        torch = self._torch
        from .vgg import downsampling

        H, W = x.shape[-2:]
        b = x.shape[0]
        dev = x.device
        nl = {l: (H // downsampling(l)) * (W // downsampling(l)) for l in self.all_layers}

        def core(f, l, wy, cy, wx, cx):
            ds = downsampling(l)
            return f[..., self._core_slice(ds, wy, cy), self._core_slice(ds, wx, cx)]

        # pass 1: Gram sums and content-loss sums over cores
        gs = {l: 0 for l in self.style_layers}
        s1 = {l: torch.zeros(b, device=dev) for l in self.content_layers}
        s2 = {l: torch.zeros(b, device=dev) for l in self.content_layers}
        with torch.inference_mode():
            for (wy0, wy1, cy0, cy1), (wx0, wx1, cx0, cx1) in tiles:
                wy, cy, wx, cx = (wy0, wy1), (cy0, cy1), (wx0, wx1), (cx0, cx1)
                with self._amp():
                    f = self.model(x[..., wy0:wy1, wx0:wx1], self.all_layers)
                    fc = (self.model(content01[..., wy0:wy1, wx0:wx1], self.content_layers)
                          if self.content_layers else {})
                for l in self.style_layers:
                    m = core(f[l], l, wy, cy, wx, cx)
                    bb, c, h, w = m.shape
                    m = m.permute(0, 2, 3, 1).reshape(bb, h * w, c).float()
                    with torch.autocast(device_type=dev.type, enabled=False):
                        gs[l] = gs[l] + torch.bmm(m.transpose(1, 2), m)
                for l in self.content_layers:
                    d = (core(f[l], l, wy, cy, wx, cx).float() - core(fc[l], l, wy, cy, wx, cx).float()).flatten(1)
                    s1[l] += d.abs().sum(1)
                    s2[l] += d.pow(2).sum(1)
        # global losses and dL/dG
        style = torch.zeros(b, device=dev)
        gbar = {}
        with torch.enable_grad():
            for l, w in zip(self.style_layers, self.sw):
                G = (gs[l] / nl[l]).detach().requires_grad_(True)
                li = w * scaled_mse(G - targets[l])
                (gbar[l],) = torch.autograd.grad(li.sum(), G)
                style = style + li.detach()
        total = style.clone()
        cterm = {}
        for l, w in zip(self.content_layers, self.cw):
            S1 = s1[l] + EPS
            total = total + w * s2[l] / S1
            cterm[l] = (w, S1, s2[l])
        if self.s.tv_weight:
            total = total + self.s.tv_weight * tv_loss(x)
        if not need_grad:
            return total, style, None
        # pass 2: surrogate with the same gradient, kept on each core
        grad = torch.zeros_like(x)
        for (wy0, wy1, cy0, cy1), (wx0, wx1, cx0, cx1) in tiles:
            with torch.inference_mode(), self._amp():
                fc = (self.model(content01[..., wy0:wy1, wx0:wx1], self.content_layers)
                      if self.content_layers else {})
            fc = {l: v.clone() for l, v in fc.items()}
            xt = x[..., wy0:wy1, wx0:wx1].detach().clone().requires_grad_(True)
            with self._amp():
                f = self.model(xt, self.all_layers)
            sur = torch.zeros((), device=dev)
            for l in self.style_layers:
                if l not in gbar:
                    continue
                bb, c, h, w = f[l].shape
                m = f[l].permute(0, 2, 3, 1).reshape(bb, h * w, c).float()
                with torch.autocast(device_type=dev.type, enabled=False):
                    # d/dM of <Gbar, M^T M> / N is 2 M Gbar / N = dL/dM (Gbar = dL/dG is symmetric)
                    sur = sur + ((m @ gbar[l]) * m).sum() / nl[l]
            for l, (w, S1, S2) in cterm.items():
                d = f[l].float() - fc[l].float()
                coef = (2 * d * S1.view(-1, 1, 1, 1) - S2.view(-1, 1, 1, 1) * torch.sign(d)) / (S1 ** 2).view(-1, 1, 1, 1)
                sur = sur + w * (coef.detach() * f[l].float()).sum()
            if self.s.tv_weight:
                # TV is local: its gradient on the core only needs one pixel of context
                p = torch.nn.functional.pad(xt, (0, 1, 0, 1), mode="replicate")
                dx = p[..., :-1, 1:] - p[..., :-1, :-1]
                dy = p[..., 1:, :-1] - p[..., :-1, :-1]
                sur = sur + self.s.tv_weight * (dx * dx + dy * dy).sum() / (H * W)
            (gt,) = torch.autograd.grad(sur, xt)
            grad[..., cy0:cy1, cx0:cx1] = gt[..., cy0 - wy0:cy1 - wy0, cx0 - wx0:cx1 - wx0]
        return total, style, grad

    # -- one batch ----------------------------------------------------------------------------------
    def run_batch(self, content01, init01, targets_fn: Callable[[float], dict]):
        """Style a batch. ``content01``/``init01``: (B, H, W) arrays or tensors in [0, 1];
        ``targets_fn(factor)`` -> layer -> (B, C, C) Gram targets for the reference scaled by ``factor``.

        Returns ``(out01 (B, H, W) numpy, record)`` with per-tilt losses (``loss_initial``, ``loss_final``,
        ``style_loss_initial``, ``style_loss_final``) and the scales used.
        """
        torch = self._torch
        c_full = self._tensor(content01) if not torch.is_tensor(content01) else content01
        i_full = self._tensor(init01) if not torch.is_tensor(init01) else init01
        if c_full.shape != i_full.shape:
            raise InputError(f"content {tuple(c_full.shape)} and init {tuple(i_full.shape)} differ in shape")
        H, W = c_full.shape[-2:]
        full = max(H, W)
        end = min(self.s.end_scale or full, full)
        start = min(self.s.min_scale or end, end)
        scales = gen_scales(start, end)
        x = None
        opt = None
        ema = None
        loss0 = style0 = None
        lossN = styleN = None
        content_feats = None
        targets = None
        for si, scale in enumerate(scales):
            hw = fit_size((H, W), scale)
            factor = scale / full
            content = resize(c_full, hw).clamp(0, 1) if hw != (H, W) else c_full
            if x is None:
                x = (resize(i_full, hw) if hw != (H, W) else i_full).clamp(0, 1).clone()
                opt = _Adam(x, self.s.step_size)
            else:
                x = resize(ema.get(), hw).clamp_(0, 1)
                opt.resize(hw)
            ema = _EMA(x, self.s.avg_decay)
            targets = targets_fn(factor)
            content_feats = self.content_features(content)
            its = self.s.initial_iterations if si == 0 else self.s.iterations
            for it in range(its):
                total, style, g = self.loss_and_grad(x, content, content_feats, targets)
                if loss0 is None:
                    loss0, style0 = total, style
                lossN, styleN = total, style
                opt.step(x, g)
                x.clamp_(0, 1)
                ema.update(x)
        out = ema.get()
        if self.s.final_loss:
            lossN, styleN, _ = self.loss_and_grad(out, content, content_feats, targets, need_grad=False)
            final_kind = "output"
        else:
            final_kind = "last_iterate"
        if tuple(out.shape[-2:]) != (H, W):
            out = resize(out, (H, W)).clamp(0, 1)
        rec = {"scales": scales,
               "loss_initial": loss0.cpu().double().numpy(), "style_loss_initial": style0.cpu().double().numpy(),
               "loss_final": lossN.cpu().double().numpy(), "style_loss_final": styleN.cpu().double().numpy(),
               "final_loss_of": final_kind}
        return out[:, 0].detach().float().cpu().numpy(), rec


# --------------------------------------------------------------------------------------------------
# whole series


def stylize_series(engine: StyleTransfer, content: np.ndarray, init: np.ndarray | None,
                   references: Sequence[Reference], *, tilt_range: tuple[int, int] | None = None,
                   tilt_batch: int = 1, cache: GramCache | None = None, weights_key: str = "",
                   progress: Callable | None = None, rescale: bool = True) -> tuple[np.ndarray, dict]:
    """Style tilts ``[a, b)`` of ``content`` (T, H, W) starting from ``init`` (same shape; ``None`` = content).

    Each reference's ``index`` maps every content tilt (of the full series) to its matched reference tilt.
    Min/max normalisation uses all tilts of each series. Returns the styled tilts (b - a, H, W) in the
    references' intensity units (or [0, 1] with ``rescale=False``) and a record with per-tilt losses.
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
        raise InputError(f"--tilts {a}:{b}: outside 0:{T}")
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
                    g = torch_stack([ref_gram(ri, int(ridx[ri][t]), factor)[l] for t in idx])
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
        if len(gram_memo) > 256:      # bound memory for very long series
            gram_memo.clear()
    record = {"tilt_range": [a, b], "scales": scales, "final_loss_of": final_kind,
              "content_minmax": [c_lo, c_hi], "init_minmax": [i_lo, i_hi],
              "references": [{"name": r.name, "weight": r.weight, "minmax": [r.lo, r.hi],
                              "matched_index": ix[a:b].tolist()} for r, ix in zip(references, ridx)],
              "per_tilt": per}
    if cache is not None and cache.folder is not None:
        record["gram_cache"] = {"folder": str(cache.folder), "hits": cache.hits, "misses": cache.misses}
    return out, record


def torch_stack(ts):
    import torch

    return torch.stack(ts)
