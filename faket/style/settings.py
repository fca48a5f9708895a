"""Settings of the style transfer (:mod:`faket.style`): every default defined once, the presets, and the
policy the command line applies (which preset the weights call for, when to tile, how many tilts per batch).

Light on purpose (no numpy / torch): the command line reads these defaults to build its options and help.
Errors name the parameters as written here (:class:`faket.errors.ParameterError`); the command line
rewrites them to its options.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

from faket.errors import InputError, ParameterError
from faket.style.vgg import WEIGHTS_KINDS, max_layer_index, recorded_weights_kind, weights_kind  # light: no torch

__all__ = [
    "StyleSettings",
    "PRESETS",
    "PRESET_NAMES",
    "OFFLINE_NOTE",
    "ALGORITHM_KEYS",
    "FEATURE_TRANSFORMS",
    "NETWORKS",
    "parse_int_list",
    "parse_float_list",
    "WEIGHTS_KINDS",
    "weights_kind",
    "recorded_weights_kind",
    "preset_for",
    "resolve",
    "CPU_MAX_TILE",
    "max_tile_for",
    "tile_size",
    "cpu_tilt_batch",
    "tilt_batch",
]

FEATURE_TRANSFORMS = ("none", "softmax")
NETWORKS = ("vgg19", "multiscale")


@dataclass
class StyleSettings:
    """The algorithm's settings; the defaults are the paper's (one scale = tilt size, one iteration)."""

    iterations: int = 1
    initial_iterations: int = 1
    min_scale: int | None = None  # None: the tilt's long side
    end_scale: int | None = None  # None: the tilt's long side
    step_size: float = 0.15
    avg_decay: float = 0.99
    content_weight: float = 1.0
    style_layers: tuple = (1, 6, 11, 20, 29)  # relu1_1, relu2_1, relu3_1, relu4_1, relu5_1
    style_layer_weights: tuple = (256.0, 64.0, 16.0, 4.0, 1.0)
    content_layers: tuple = (8,)  # relu2_2
    content_layer_weights: tuple = (100.0,)
    tv_weight: float = 0.0
    pooling: str = "max"
    precision: str = "fp32"
    max_tile: int | None = None  # None: no tiling
    tile_halo: int | None = None  # None: twice the receptive-field radius of the deepest layer
    final_loss: bool = False  # also evaluate the loss of the output (one extra forward per tilt)
    # feature variants for random weights (faket/style/random_net.py; measured in docs/style.md, "Offline
    # (random weights)"); all off = the paper's method
    layer_norm: bool = False  # each style term / its target Gram's magnitude (He et al. 2016)
    feature_transform: str = "none"  # "none" | "softmax": spatial softmax per channel (SWAG, Wang et al. 2021)
    softmax_temperature: float = 1.0
    network: str = "vgg19"  # "vgg19" | "multiscale": one layer of random multi-scale filters
    multiscale_sizes: tuple = (3, 5, 7, 11, 15, 23)  # filter sizes of the multi-scale net (Ustyuzhaninov 2017)
    multiscale_maps: int = 32  # random filters per size

    def validate(self) -> StyleSettings:
        top = max_layer_index()
        self.style_layers = tuple(int(v) for v in self.style_layers)
        self.content_layers = tuple(int(v) for v in self.content_layers)
        self.style_layer_weights = tuple(float(v) for v in self.style_layer_weights)
        self.content_layer_weights = tuple(float(v) for v in self.content_layer_weights)
        for name, layers, weights in (
            ("style", self.style_layers, self.style_layer_weights),
            ("content", self.content_layers, self.content_layer_weights),
        ):
            lname, wname = f"{name}_layers", f"{name}_layer_weights"
            for v in layers:
                if not 0 <= v <= top:
                    raise ParameterError(lname, None, f"unknown VGG-19 layer index {v} (expected 0..{top})")
            if len(set(layers)) != len(layers):
                raise ParameterError(lname, None, "a layer is given twice")
            if len(weights) != len(layers):
                raise ParameterError(wname, None, f"{len(weights)} weights for {len(layers)} layers")
            if any(not math.isfinite(w) or w < 0 for w in weights):
                raise ParameterError(wname, None, "weights must be finite and >= 0")
            if layers and sum(weights) <= 0:
                raise ParameterError(wname, None, "weights must not all be 0")
        if not self.style_layers and not self.content_layers:
            raise ParameterError("style_layers", None, "no style or content layers to optimise")
        for name in ("iterations", "initial_iterations"):
            if int(getattr(self, name)) < 1:
                raise ParameterError(name, getattr(self, name), "must be at least 1")
        for name in ("min_scale", "end_scale"):
            v = getattr(self, name)
            if v is not None and int(v) < 16:
                raise ParameterError(name, v, "must be at least 16 pixels")
        if not (math.isfinite(self.step_size) and self.step_size > 0):
            raise ParameterError("step_size", self.step_size, "must be > 0")
        if not (0 <= self.avg_decay < 1):
            raise ParameterError("avg_decay", self.avg_decay, "must be in [0, 1)")
        for name in ("content_weight", "tv_weight"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise ParameterError(name, v, "must be finite and >= 0")
        if self.pooling not in ("max", "avg"):
            raise ParameterError("pooling", self.pooling, "expected max or avg")
        if self.precision not in ("fp32", "bf16", "tf32"):
            raise ParameterError("precision", self.precision, "expected fp32, bf16 or tf32")
        if self.max_tile is not None and int(self.max_tile) < 64:
            raise ParameterError("max_tile", self.max_tile, "must be at least 64 pixels")
        if self.tile_halo is not None and self.tile_halo < 0:
            raise ParameterError("tile_halo", self.tile_halo, "must be >= 0")
        self.layer_norm = bool(self.layer_norm)
        if self.feature_transform not in FEATURE_TRANSFORMS:
            raise ParameterError(
                "feature_transform", self.feature_transform, f"expected {' or '.join(FEATURE_TRANSFORMS)}"
            )
        if not (math.isfinite(self.softmax_temperature) and self.softmax_temperature > 0):
            raise ParameterError("softmax_temperature", self.softmax_temperature, "must be > 0")
        if self.network not in NETWORKS:
            raise ParameterError("network", self.network, f"expected {' or '.join(NETWORKS)}")
        self.multiscale_sizes = tuple(int(v) for v in self.multiscale_sizes)
        if not self.multiscale_sizes or any(k < 1 or k % 2 == 0 or k > 63 for k in self.multiscale_sizes):
            raise ParameterError(
                "multiscale_sizes", ",".join(map(str, self.multiscale_sizes)), "expected odd filter sizes from 1 to 63"
            )
        if int(self.multiscale_maps) < 1:
            raise ParameterError("multiscale_maps", self.multiscale_maps, "must be at least 1")
        self.multiscale_maps = int(self.multiscale_maps)
        return self

    @property
    def variant(self) -> str | None:
        """The random-weight feature variant in words (None: the paper's features and losses)."""
        parts = []
        if self.network != "vgg19":
            parts.append(
                f"{self.network} random net ({','.join(map(str, self.multiscale_sizes))} px, "
                f"{self.multiscale_maps} maps each)"
            )
        if self.feature_transform != "none":
            parts.append(f"{self.feature_transform} feature transform (T {self.softmax_temperature:g})")
        if self.layer_norm:
            parts.append("per-layer loss normalisation")
        return ", ".join(parts) or None

    @property
    def depth(self) -> int:
        """Deepest VGG-19 layer used (the multi-scale net has one layer: 0)."""
        if self.network == "multiscale":
            return 0
        return max((*self.style_layers, *self.content_layers))

    def style_weights_norm(self) -> list[float]:
        s = sum(self.style_layer_weights)
        return [w / s for w in self.style_layer_weights] if s > 0 else []

    def content_weights_norm(self) -> list[float]:
        s = sum(self.content_layer_weights)
        return [self.content_weight * w / s for w in self.content_layer_weights] if s > 0 else []

    def to_dict(self) -> dict:
        return asdict(self)


# The algorithm's settings that a preset fixes (the others - precision, tiling, final loss - are run options).
ALGORITHM_KEYS = (
    "iterations",
    "initial_iterations",
    "min_scale",
    "end_scale",
    "step_size",
    "avg_decay",
    "content_weight",
    "tv_weight",
    "pooling",
    "style_layers",
    "style_layer_weights",
    "content_layers",
    "content_layer_weights",
    "layer_norm",
    "feature_transform",
    "softmax_temperature",
    "network",
    "multiscale_sizes",
    "multiscale_maps",
)

# what the offline path's realism rests on (log and provenance of every random-weights run; docs/style.md)
OFFLINE_NOTE = (
    "offline, the realism comes from the noise model (faket noise), not from style transfer: with "
    "random weights no style variant measured came closer to held-out real tilts than its NOISY init "
    "on every real reference, so the offline preset only nudges the tilts (docs/style.md, 'Offline "
    "(random weights)')"
)

PRESETS = {
    # FakET's setting (meant for ImageNet weights): the defaults of StyleSettings
    "paper": StyleSettings(),
    # for random VGG weights: 3 Adam steps of 0.005 without content loss (the content enters through the NOISY
    # init only). Measured on held-out real tilts (bench/style_offline.py, docs/style.md "Offline (random
    # weights)"): no random-weight variant beat NOISY on every reference, so the preset steps aside (0.02, the
    # 2026-11 choice, made cryoCAT tilts more separable: C2ST 0.74 against NOISY's 0.69)
    "offline": replace(StyleSettings(), iterations=3, initial_iterations=3, step_size=0.005, content_weight=0.0),
}


def parse_int_list(spec: str, name: str) -> tuple[int, ...]:
    """``"1,6,11"`` -> ``(1, 6, 11)``; ``""`` / ``"none"`` -> ``()``. ``name`` is used in the error message."""
    s = str(spec).strip()
    if s in ("", "none"):
        return ()
    try:
        return tuple(int(v) for v in s.split(","))
    except ValueError:
        raise InputError(f"{name} {spec!r}: expected comma-separated integers (e.g. 1,6,11,20,29)") from None


def parse_float_list(spec: str, name: str) -> tuple[float, ...]:
    """``"256,64"`` -> ``(256.0, 64.0)``; ``""`` / ``"none"`` -> ``()``."""
    s = str(spec).strip()
    if s in ("", "none"):
        return ()
    try:
        return tuple(float(v) for v in s.split(","))
    except ValueError:
        raise InputError(f"{name} {spec!r}: expected comma-separated numbers (e.g. 256,64,16,4,1)") from None


# --------------------------------------------------------------------------------------------------
# policy: which weights, which preset, tiles and batches (the command line only parses and passes)

PRESET_NAMES = ("auto", "paper", "offline")


def preset_for(preset: str, kind: str) -> str:
    """The preset ``auto`` stands for: ``offline`` with random weights (no ImageNet features to match), else
    ``paper``; another name is itself."""
    if preset == "auto":
        return "offline" if kind == "random" else "paper"
    return preset


def resolve(preset: str, kind: str, given: dict | None = None, **run_options) -> tuple[StyleSettings, str]:
    """Validated settings from a preset (:func:`preset_for`) and the values ``given`` explicitly, and the
    preset's name. ``iterations`` given alone sets ``initial_iterations`` too (with one scale it is the only
    one that runs). ``run_options``: precision, max_tile, tile_halo, final_loss."""
    name = preset_for(preset, kind)
    given = {k: v for k, v in (given or {}).items() if v is not None}
    if "iterations" in given and "initial_iterations" not in given:
        given["initial_iterations"] = given["iterations"]
    s = replace(PRESETS[name], **given, **run_options)
    return s.validate(), name


#: the CPU styles tilts larger than this (pixels, either side) in tiles unless ``max_tile`` is given
CPU_MAX_TILE = 2048


def max_tile_for(max_tile: int | None, hw: tuple[int, int], device_type: str) -> int | None:
    """The tiling threshold for tilts of ``hw`` pixels: ``max_tile`` when given; unset, :data:`CPU_MAX_TILE`
    on the CPU when the tilts are larger (the VGG activations of a whole tilt would not fit), else none."""
    if max_tile is None and device_type == "cpu" and max(hw) > CPU_MAX_TILE:
        return CPU_MAX_TILE
    return max_tile


def tile_size(max_tile: int | None, hw: tuple[int, int]) -> int | None:
    """The tile edge used for tilts of ``hw`` pixels (``None``: whole tilts)."""
    return max_tile if max_tile and max(hw) > max_tile else None


def cpu_tilt_batch(hw: tuple[int, int], precision: str = "fp32") -> int:
    """CPU default measured with bench/style.py and a VGG-19 forward/backward probe (2 threads): fp32 gains
    from batches of small tilts (64^2: batch 4 ~25% faster) and loses from 256^2 on (idle AMD EPYC, 256^2:
    0.95 s/tilt at batch 1 vs 1.28 s/tilt at batch 4), so 4 up to 128^2, 1 beyond; bf16 runs fastest one tilt
    at a time (AMX machine, 256^2: 0.21 vs 0.27 s/tilt)."""
    if precision == "bf16":
        return 1
    return int(max(1, min(4, (1 << 16) // max(1, hw[0] * hw[1]))))


def tilt_batch(requested: int | None, fit: int, hw: tuple[int, int], precision: str, device_type: str) -> int:
    """Tilts per forward/backward: ``requested``, else on the CPU the measured best (:func:`cpu_tilt_batch`)
    within ``fit`` (what fits in memory, ``faket.style.engine.default_tilt_batch``), on CUDA ``fit``."""
    if requested is not None:
        if requested < 1:
            raise ParameterError("tilt_batch", requested, "must be at least 1")
        return int(requested)
    if device_type == "cpu":
        return max(1, min(fit, cpu_tilt_batch(hw, precision)))
    return fit
