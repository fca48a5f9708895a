"""Training the DeepFinder U-Net on tomograms and their class masks (the FakET paper's protocol).

Patches are centred on voxels drawn class-balanced from the class mask (MONAI's label-class crop centres:
each class, background included, is drawn with its ratio, so small classes are seen as often as large
ones), shifted by up to ``shift`` voxels, z-scored per patch, and rotated by 180 degrees about the tilt
axis (Y: Z and X reversed) with probability ``p_rotate``. Adam.

Losses (:data:`LOSSES`), on the softmax over background + classes, summed over the batch:
``tversky`` is the paper's (alpha = beta = 0.5, DeepFinder's: no smoothing in the numerator, so a class absent
from a batch gives no gradient); ``tversky+ce`` adds the cross-entropy (MONAI ``DiceCELoss``: Tversky with
alpha = beta = 0.5 *is* the Dice loss). Measured at laptop scale (docs/picker.md), Tversky alone drives the
unnormalised U-Net into the all-background solution within ~30 Adam steps (logits grow to 1e2-1e8, the
softmax saturates, the foreground gradient vanishes); the cross-entropy term keeps the logits bounded.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from faket.picker import DEFAULTS
from faket.picker.net import build_model


def zscore(patch: np.ndarray) -> np.ndarray:
    """Per-patch standardisation (mean 0, std 1; a constant patch becomes 0)."""
    p = patch.astype(np.float32, copy=False)
    s = float(p.std())
    return ((p - float(p.mean())) / (s if s > 0 else 1.0)).astype(np.float32)


@dataclass
class PatchSampler:
    """Draws (patch, label) pairs from volumes and class masks (arrays (Z, Y, X)); seeded."""

    volumes: Sequence[np.ndarray]
    masks: Sequence[np.ndarray]
    n_out: int
    patch: int = DEFAULTS["patch"]
    shift: int = DEFAULTS["shift"]
    p_rotate: float = DEFAULTS["p_rotate"]
    background_ratio: float = DEFAULTS["background_ratio"]
    max_indices_per_class: int = 200_000
    seed: int = 0
    _indices: list = field(default_factory=list, init=False, repr=False)

    def __post_init__(self):
        # lazy: monai
        from monai.transforms.utils import map_classes_to_indices

        if len(self.volumes) != len(self.masks) or not self.volumes:
            raise ValueError("give one class mask per volume (at least one pair)")
        for v, m in zip(self.volumes, self.masks):
            if v.shape != m.shape:
                raise ValueError(f"volume shape {v.shape} differs from its class mask {m.shape}")
            if min(v.shape) < self.patch:
                raise ValueError(f"volume {v.shape} is smaller than the patch {self.patch}")
        self.rng = np.random.RandomState(self.seed)
        for m in self.masks:
            lab = np.asarray(m, dtype=np.int64)[None]
            self._indices.append(
                map_classes_to_indices(lab, num_classes=self.n_out, max_samples_per_class=self.max_indices_per_class)
            )
        self.ratios = [self.background_ratio] + [1.0] * (self.n_out - 1)

    def draw(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """``n`` samples: patches (n, 1, P, P, P) float32, labels (n, 1, P, P, P) int64."""
        # lazy: monai
        from monai.transforms.utils import generate_label_classes_crop_centers

        P = self.patch
        xs = np.empty((n, 1, P, P, P), np.float32)
        ys = np.empty((n, 1, P, P, P), np.int64)
        for k in range(n):
            t = int(self.rng.randint(len(self.volumes)))
            vol, mask = self.volumes[t], self.masks[t]
            (c,) = generate_label_classes_crop_centers(
                P, 1, vol.shape, self._indices[t], self.ratios, self.rng, warn=False
            )
            c = np.asarray(c, dtype=np.int64) + self.rng.randint(-self.shift, self.shift + 1, size=3)
            lo = np.clip(c - P // 2, 0, np.asarray(vol.shape) - P)
            sl = tuple(slice(int(a), int(a) + P) for a in lo)
            x, y = zscore(vol[sl]), np.asarray(mask[sl], dtype=np.int64)
            if self.rng.random_sample() < self.p_rotate:  # 180 degrees about Y: (z, x) -> (-z, -x)
                x, y = x[::-1, :, ::-1], y[::-1, :, ::-1]
            xs[k, 0], ys[k, 0] = x, y
        return xs, ys


def tversky_loss(alpha: float = 0.5, beta: float = 0.5):
    """MONAI's Tversky loss on logits (softmax over background + classes), summed over the batch, without
    numerator smoothing (as DeepFinder's Keras loss)."""
    # lazy: monai
    from monai.losses import TverskyLoss

    return TverskyLoss(
        softmax=True, to_onehot_y=True, alpha=alpha, beta=beta, batch=True, smooth_nr=0.0, smooth_dr=1e-5
    )


def picker_loss(name: str = DEFAULTS["loss"]):
    """The training loss ``name`` (:data:`faket.picker.LOSSES`) as a callable ``loss(logits, labels)``."""
    if name == "tversky":
        return tversky_loss()
    if name == "tversky+ce":
        # lazy: monai
        from monai.losses import DiceCELoss

        return DiceCELoss(softmax=True, to_onehot_y=True, batch=True, smooth_nr=0.0, smooth_dr=1e-5)
    # lazy: an import cycle otherwise
    from faket.picker import LOSSES

    raise ValueError(f"loss {name!r}: expected one of {', '.join(LOSSES)}")


def resolve_precision(precision: str, device: str | torch.device = "cpu") -> str:
    """The precision a training run uses: ``fp32`` or ``bf16`` as asked; ``auto`` = ``bf16`` on a CPU with AMX
    tiles (oneDNN's bf16 convolutions, ~2.4x fp32 per step on the benchmark's patches), ``fp32`` elsewhere
    (on a CPU without AMX bf16 runs slower than fp32; on CUDA ask for bf16 explicitly)."""
    # lazy: an import cycle otherwise
    from faket.picker import PRECISIONS

    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    return "bf16" if torch.device(device).type == "cpu" and cpu_has_amx() else "fp32"


def cpu_has_amx() -> bool:
    """Whether this CPU has AMX tiles (Intel Sapphire Rapids and later), as PyTorch detects them."""
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool(probe()) if probe is not None else False


@dataclass
class TrainResult:
    model: torch.nn.Module
    losses: list[float]
    seconds: float
    cpu_seconds: float = 0.0
    precision: str = "fp32"


def train_picker(
    volumes: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    n_out: int,
    *,
    steps: int = DEFAULTS["steps"],
    batch: int = DEFAULTS["batch"],
    patch: int = DEFAULTS["patch"],
    lr: float = DEFAULTS["lr"],
    shift: int = DEFAULTS["shift"],
    p_rotate: float = DEFAULTS["p_rotate"],
    background_ratio: float = DEFAULTS["background_ratio"],
    seed: int = 0,
    loss: str = DEFAULTS["loss"],
    precision: str = DEFAULTS["precision"],
    device: str | torch.device = "cpu",
    model: torch.nn.Module | None = None,
    callback: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Train a :class:`~faket.picker.net.DeepFinderUNet` (background + ``n_out - 1`` classes).

    ``masks`` hold class ids 0..n_out-1 (0 = background). Same inputs and seed give the same weights on
    CPU (deterministic algorithms are switched on for the duration of the call).

    ``model``: continue from this network (fine-tuning, ``faket picker train --init``): its weights are the
    start, the optimiser state is fresh (Adam's moments start at zero; the patch sampler is seeded by
    ``seed``). Without it, a new network initialised from ``seed``.

    ``precision``: ``fp32``, ``bf16`` (autocast: the network's forward pass in bfloat16; the weights, the loss
    on fp32 logits and Adam stay fp32) or ``auto`` (:func:`resolve_precision`; the result says which ran).
    """
    if patch % 4:
        raise ValueError(f"patch {patch} must be a multiple of 4 (two 2x poolings)")
    for m in masks:
        mx = int(np.max(m))
        if mx >= n_out or int(np.min(m)) < 0:
            raise ValueError(f"class mask holds ids 0..{mx}; the network has {n_out} outputs")
    # lazy: faket.style loads its VGG and loss modules (light, but not the picker's)
    from faket.style.engine import autocast_context

    device = torch.device(device)
    precision = resolve_precision(precision, device)
    t0, c0 = time.perf_counter(), time.process_time()
    was_det = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        sampler = PatchSampler(
            volumes,
            masks,
            n_out,
            patch=patch,
            shift=shift,
            p_rotate=p_rotate,
            background_ratio=background_ratio,
            seed=seed,
        )
        if model is not None and getattr(model, "n_out", n_out) != n_out:
            raise ValueError(f"the initial model has {model.n_out} outputs, the class masks need {n_out}")
        net = (model if model is not None else build_model(n_out, seed)).to(device)
        net.train()
        opt = torch.optim.Adam(net.parameters(), lr=lr)
        loss_fn = picker_loss(loss)
        losses = []
        for step in range(steps):
            x, y = sampler.draw(batch)
            x = torch.from_numpy(x).to(device)
            y = torch.from_numpy(y).to(device)
            opt.zero_grad(set_to_none=True)
            with autocast_context(device, precision):
                logits = net(x)
            value = loss_fn(logits.float(), y)  # the loss in fp32 (a no-op for fp32 logits)
            value.backward()
            opt.step()
            losses.append(float(value.detach()))
            if callback is not None:
                callback(step, losses[-1])
        net.eval()
    finally:
        torch.use_deterministic_algorithms(was_det)
    return TrainResult(net, losses, time.perf_counter() - t0, time.process_time() - c0, precision)
