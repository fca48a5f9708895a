"""VGG-19 feature extractor for style transfer (torchvision's definition and weights).

What is built
-------------
``features[:D+1]`` of torchvision's VGG-19 (configuration "E", no batch norm), where ``D`` is the deepest
layer index asked for (29 = relu5_1 for the paper's style layers). Layer indices are torchvision's
``features`` indices: 1 relu1_1, 3 relu1_2, 6 relu2_1, 8 relu2_2, 11 relu3_1, 13, 15, 17 relu3_4,
20 relu4_1, ..., 29 relu5_1, 31, 33, 35 relu5_4; pooling at 4, 9, 18, 27, 36.

Exact simplifications of the paper's input path (``x`` in [0, 1], one channel):
- the tilt is repeated to 3 channels and normalised with the ImageNet mean/std, then the first conv runs
  with replicate padding. Because replicate padding copies pixel values, normalising commutes with padding,
  so ``conv(norm(repeat(x)))`` is exactly a one-input-channel conv with weights ``sum_c W[:, c] / std_c``
  and bias ``b - sum_{c,kh,kw} W[:, c, kh, kw] * mean_c / std_c``. The folded model takes ``(B, 1, H, W)``.
- tensors run channels_last (faster convolutions on CPU and CUDA).
- ``pooling="avg"`` swaps every max pool for a 2x2 average pool (the crowsonkb option).

Weights (:func:`load_vgg19`)
----------------------------
- ``"imagenet"``: torchvision ``VGG19_Weights.IMAGENET1K_V1`` from the torch hub cache
  (``$TORCH_HOME/hub/checkpoints/vgg19-dcbb9e9d.pth``, default ``~/.cache/torch/hub``). The file is never
  downloaded unless ``download=True``; when absent, :class:`InputError` says how to provide it.
- a path to a ``.pth`` state dict in torchvision format (``features.N.weight`` keys; a bare ``N.weight``
  ``features`` dict is accepted too), read with ``torch.load(weights_only=True)``.
- ``"random"``: torchvision's own initialisation (Kaiming normal, fan-out, zero bias) from a seeded
  generator (the paper's random-weights ablation).
The returned :class:`WeightsInfo` records the kind, file, sha256 (of the file, or of the random tensors).
"""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from faket.errors import InputError, ParameterError

__all__ = [
    "VGG19_CONFIG",
    "LAYER_NAMES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "WeightsInfo",
    "imagenet_cache_path",
    "load_vgg19_state",
    "build_vgg",
    "max_layer_index",
    "downsampling",
    "receptive_radius",
    "WEIGHTS_KINDS",
    "IMAGENET_SHA256_PREFIX",
    "weights_kind",
    "recorded_weights_kind",
    "build_model",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGENET_FILE = "vgg19-dcbb9e9d.pth"

#: what ``--weights`` / ``style.weights`` can select (besides ``imagenet`` and ``random``: a .pth file)
WEIGHTS_KINDS = ("imagenet", "random", "file")

#: the sha256 prefix of torchvision's ImageNet VGG-19 file (torchvision puts it in the file name)
IMAGENET_SHA256_PREFIX = IMAGENET_FILE.split("-")[1].split(".")[0]


def weights_kind(weights: str, sha256: str | None = None) -> str:
    """The kind of VGG-19 weights ``weights`` selects: ``"imagenet"``, ``"random"`` or ``"file"`` (a .pth path).

    With the file's ``sha256`` (as a styled tilt-series' provenance records it), a copy of torchvision's
    ImageNet file under another path is ``"imagenet"`` too: what the paper's comparison needs to know."""
    if weights in ("imagenet", "random"):
        return weights
    if sha256 and sha256.startswith(IMAGENET_SHA256_PREFIX):
        return "imagenet"
    return "file"


def recorded_weights_kind(record) -> str | None:
    """The weights kind a styled tilt-series' provenance record reports (``style.weights``: kind, path, sha256);
    ``None`` when the record has none (not a ``faket style`` output)."""
    w = (record.get("style") or {}).get("weights") if isinstance(record, dict) else None
    if not isinstance(w, dict) or "kind" not in w:
        return None
    return weights_kind(w["kind"] if w["kind"] != "file" else str(w.get("path")), w.get("sha256"))


def _layer_table():
    """``features`` modules of VGG-19 as (kind, in_ch, out_ch) and their names."""
    cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]
    kinds, names = [], []
    cin, block, conv = 1, 1, 0
    for v in cfg:
        if v == "M":
            kinds.append(("pool", None, None))
            names.append(f"pool{block}")
            block += 1
            conv = 0
        else:
            conv += 1
            kinds.append(("conv", 3 if cin == 1 else cin, v))
            names.append(f"conv{block}_{conv}")
            kinds.append(("relu", None, None))
            names.append(f"relu{block}_{conv}")
            cin = v
    return cfg, kinds, names


VGG19_CONFIG, _KINDS, _NAMES = _layer_table()
LAYER_NAMES = dict(enumerate(_NAMES))


def max_layer_index() -> int:
    return len(_KINDS) - 1


def downsampling(layer: int) -> int:
    """Spatial downsampling factor of the output of ``features[layer]`` (1, 2, 4, 8, 16, 32)."""
    return 2 ** sum(1 for k in _KINDS[: layer + 1] if k[0] == "pool")


def receptive_radius(layer: int) -> int:
    """Half the receptive-field size (pixels) of one output of ``features[layer]`` (relu5_1: 78)."""
    size, stride = 1, 1
    for kind, _, _ in _KINDS[: layer + 1]:
        if kind == "conv":
            size += 2 * stride
        elif kind == "pool":
            size += stride
            stride *= 2
    return size // 2


@dataclass
class WeightsInfo:
    kind: str  # "imagenet" | "file" | "random"
    path: str | None = None
    sha256: str | None = None
    seed: int | None = None
    note: str = ""
    extra: dict = field(default_factory=dict)

    def key(self) -> str:
        """Identity of the weights for cache keys."""
        return f"{self.kind}:{self.sha256}"

    def to_dict(self) -> dict:
        d = {"kind": self.kind, "path": self.path, "sha256": self.sha256, "seed": self.seed}
        if self.note:
            d["note"] = self.note
        return d


def imagenet_cache_path() -> Path:
    """Where torchvision's VGG-19 ImageNet weights live in the torch hub cache (``$TORCH_HOME``)."""
    # lazy: torch (faket's start-up imports every command module)
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints" / IMAGENET_FILE


def _features_state(sd, depth: int, source: str) -> dict:
    """Pick ``features.N.{weight,bias}`` for conv layers N <= depth from a torchvision state dict."""
    # lazy: torch (faket's start-up imports every command module)
    import torch

    if not isinstance(sd, dict):
        raise InputError(f"{source}: not a state dict (got {type(sd).__name__})")
    if "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    prefixed = any(str(k).startswith("features.") for k in sd)
    out = {}
    for i, (kind, cin, cout) in enumerate(_KINDS[: depth + 1]):
        if kind != "conv":
            continue
        for part, shape in (("weight", (cout, cin, 3, 3)), ("bias", (cout,))):
            k = f"features.{i}.{part}" if prefixed else f"{i}.{part}"
            if k not in sd:
                raise InputError(f"{source}: not a torchvision VGG-19 state dict (missing {k})")
            t = sd[k]
            if not isinstance(t, torch.Tensor) or tuple(t.shape) != shape:
                got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
                raise InputError(f"{source}: {k} has shape {got}, expected {shape} (VGG-19)")
            if not torch.isfinite(t).all():
                raise InputError(f"{source}: {k} contains NaN/Inf")
            out[f"{i}.{part}"] = t.detach().float().cpu()
    return out


def _load_file(path: Path, depth: int, what: str) -> dict:
    # lazy: torch (faket's start-up imports every command module)
    import torch

    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, AttributeError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{path}: cannot load {what} as a state dict with weights_only=True ({msg[:200]})") from None
    return _features_state(sd, depth, str(path))


def _random_state(depth: int, seed: int) -> dict:
    """torchvision's VGG initialisation (kaiming_normal_, fan_out, relu; bias 0), seeded."""
    # lazy: torch (faket's start-up imports every command module)
    import torch

    g = torch.Generator().manual_seed(int(seed))
    out = {}
    for i, (kind, cin, cout) in enumerate(_KINDS[: depth + 1]):
        if kind != "conv":
            continue
        fan_out = cout * 9
        std = (2.0 / fan_out) ** 0.5  # kaiming normal, gain sqrt(2) for relu
        out[f"{i}.weight"] = torch.randn((cout, cin, 3, 3), generator=g) * std
        out[f"{i}.bias"] = torch.zeros(cout)
    return out


def _tensor_sha(sd: dict) -> str:
    h = hashlib.sha256()
    for k in sorted(sd, key=lambda s: (int(s.split(".")[0]), s)):
        h.update(k.encode())
        h.update(sd[k].contiguous().numpy().tobytes())
    return h.hexdigest()


def load_vgg19_state(
    weights: str, *, depth: int = 29, seed: int = 0, download: bool = False, hash_file: bool = True
) -> tuple[dict, WeightsInfo]:
    """State dict (``"N.weight"``/``"N.bias"`` for conv layers N <= depth) and where it came from.

    ``weights``: ``"imagenet"``, ``"random"`` or a path to a torchvision-format ``.pth`` state dict.
    """
    # lazy: numpy (faket's start-up imports every command module)
    from faket.formats.mrc import sha256sum

    kind = weights_kind(weights)
    if kind == "random":
        sd = _random_state(depth, seed)
        return sd, WeightsInfo(
            "random",
            None,
            _tensor_sha(sd),
            seed,
            note="random VGG-19 weights (torchvision init, seeded): the paper's ablation",
        )
    if kind == "imagenet":
        path = imagenet_cache_path()
        if not path.exists():
            if download:
                # lazy: torch, torchvision (faket's start-up imports every command module)
                import torch.hub
                from torchvision.models import VGG19_Weights

                try:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    torch.hub.download_url_to_file(VGG19_Weights.IMAGENET1K_V1.url, str(path), progress=False)
                except Exception as exc:  # network failures come in many types
                    raise ParameterError(
                        "weights",
                        "imagenet",
                        f"download failed ({str(exc).splitlines()[0][:120]}); put "
                        f"{IMAGENET_FILE} in {path.parent} (TORCH_HOME), give a .pth state "
                        "dict, or use random weights",
                    ) from None
            else:
                raise ParameterError(
                    "weights",
                    "imagenet",
                    f"{path} not found (no ImageNet VGG-19 weights in the torch hub cache); put {IMAGENET_FILE} "
                    f"({'https://download.pytorch.org/models/' + IMAGENET_FILE}) there or set TORCH_HOME, give "
                    "a .pth state dict, download them when online, or use random weights",
                )
        sd = _load_file(path, depth, "ImageNet VGG-19 weights")
        sha = sha256sum(path) if hash_file else None
        note = "torchvision VGG19_Weights.IMAGENET1K_V1"
        if sha is not None and not sha.startswith(IMAGENET_SHA256_PREFIX):
            note += f" (warning: sha256 {sha[:8]} does not match the file name's {IMAGENET_FILE[6:14]})"
        return sd, WeightsInfo("imagenet", str(path), sha, None, note=note)
    path = Path(weights)
    if not path.exists():
        raise ParameterError("weights", weights, "file not found (expected imagenet, random or a .pth state dict)")
    if path.is_dir():
        raise ParameterError("weights", weights, "is a folder, expected a .pth state dict")
    sd = _load_file(path, depth, "weights")
    return sd, WeightsInfo("file", str(path), sha256sum(path) if hash_file else None, None)


def _make_module_class():
    # lazy: torch (faket's start-up imports every command module)
    import torch
    import torch.nn.functional as F
    from torch import nn

    class _Conv(nn.Conv2d):
        def reset_parameters(self):  # no random init: the weights are set below (torch's skip_init would
            pass  # import torch.fx's symbolic shapes, ~0.3-2 s of start-up)

    class _VGGFeatures(nn.Module):
        """Folded VGG-19 ``features[:depth+1]`` on one-channel input in [0, 1]; returns chosen layers."""

        def __init__(self, sd: dict, depth: int, pooling: str = "max"):
            super().__init__()
            if pooling not in ("max", "avg"):
                raise ParameterError("pooling", pooling, "expected max or avg")
            self.depth = depth
            self.pooling = pooling
            convs = nn.ModuleList()
            self.kinds = [k for k, _, _ in _KINDS[: depth + 1]]
            self.conv_of = {}
            for i, (kind, cin, cout) in enumerate(_KINDS[: depth + 1]):
                if kind != "conv":
                    continue
                w, b = sd[f"{i}.weight"], sd[f"{i}.bias"]
                if i == 0:
                    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
                    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
                    b = b - (w * mean / std).sum(dim=(1, 2, 3))
                    w = (w / std).sum(dim=1, keepdim=True)
                    conv = _Conv(1, cout, 3, padding=0)
                else:
                    conv = _Conv(cin, cout, 3, padding=1)
                # frozen, channels_last (faster convolutions on CPU and CUDA); ``.to`` also restrides the
                # one-input-channel first conv (``.contiguous`` would keep its NCHW strides: another kernel)
                conv.weight = nn.Parameter(w.to(memory_format=torch.channels_last), requires_grad=False)
                conv.bias = nn.Parameter(b.clone(), requires_grad=False)
                self.conv_of[i] = len(convs)
                convs.append(conv)
            self.convs = convs

        def forward(self, x, layers: Sequence[int]):
            """``x``: (B, 1, H, W) in [0, 1]. Returns ``{layer: (B, C, h, w)}`` for the asked layers."""
            want = set(int(l) for l in layers)
            last = max(want)
            out = {}
            x = F.pad(x, (1, 1, 1, 1), mode="replicate").contiguous(memory_format=torch.channels_last)
            for i in range(last + 1):
                k = self.kinds[i]
                if k == "conv":
                    x = self.convs[self.conv_of[i]](x)
                elif k == "relu":
                    # in place unless the convolution's output is itself an asked layer (exact either way; saves
                    # a pass over the largest tensors, ~8 % of a 256^2 tilt's time was out-of-place ReLU): the
                    # convolution before keeps its input, not its output, for the backward pass
                    x = F.relu(x) if (i - 1) in want else F.relu_(x)
                elif self.pooling == "max":
                    x = F.max_pool2d(x, 2, 2)
                else:
                    x = F.avg_pool2d(x, 2, 2)
                if i in want:
                    out[i] = x
            return out

    return _VGGFeatures


_CLS = None


def build_vgg(
    weights: str = "imagenet",
    *,
    depth: int = 29,
    pooling: str = "max",
    seed: int = 0,
    device=None,
    download: bool = False,
):
    """The folded feature extractor (eval mode, frozen, channels_last, on ``device``) and its :class:`WeightsInfo`."""
    global _CLS
    if not 0 <= depth <= max_layer_index():
        raise InputError(f"VGG-19 layer {depth}: expected 0..{max_layer_index()}")
    if _CLS is None:
        _CLS = _make_module_class()
    sd, info = load_vgg19_state(weights, depth=depth, seed=seed, download=download)
    model = _CLS(sd, depth, pooling).eval()
    if device is not None:
        model = model.to(device)
    return model, info


def build_model(weights: str, settings, *, seed: int = 0, device=None, download: bool = False):
    """The feature extractor ``settings`` asks for and its :class:`WeightsInfo`: the folded VGG-19 (any
    weights), or with ``settings.network == "multiscale"`` the multi-scale random net (random weights only;
    :mod:`faket.style.random_net`); the softmax feature transform wraps either."""
    # lazy: numpy (faket's start-up imports every command module)
    from faket.style.random_net import adapt_model, make_multiscale

    if settings.network == "multiscale":
        if weights != "random":
            raise ParameterError(
                "network", "multiscale", "the multi-scale net has random filters only: use it with random weights"
            )
        model = make_multiscale(settings.multiscale_sizes, settings.multiscale_maps, seed, device)
        info = WeightsInfo(
            "random",
            None,
            model.sha256,
            seed,
            note="multi-scale random filters (Ustyuzhaninov et al. 2017), seeded; not VGG-19",
        )
    else:
        model, info = build_vgg(
            weights, depth=settings.depth, pooling=settings.pooling, seed=seed, device=device, download=download
        )
    return adapt_model(model, settings), info
