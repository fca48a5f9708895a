"""Stage 4 - neural style transfer (FakET): VGG-19 features, Gram losses, one Adam step per scale.

- :mod:`~faket.style.engine`: :class:`StyleTransfer`, :func:`stylize_series`, devices and precision
- :mod:`~faket.style.losses`: Gram matrices, scaled MSE, total variation
- :mod:`~faket.style.settings`: every algorithm default once (:class:`StyleSettings`, presets)
- :mod:`~faket.style.vgg`: VGG-19 weights (ImageNet file or seeded random) and the network
- :mod:`~faket.style.tiling`, :mod:`~faket.style.cache`: exact tiling of large tilts; the Gram target cache

The names of ``engine``, ``losses`` and ``settings`` are importable from here; they load on first use, so that
importing :mod:`faket.style.settings` (the CLI does, to build its parser) does not import numpy or torch.
"""

import importlib
import importlib.util

#: public name -> the module that defines it
_NAMES = {
    "GramStore": "faket.style.engine",
    "Reference": "faket.style.engine",
    "StyleTransfer": "faket.style.engine",
    "autocast_context": "faket.style.engine",
    "configure_backends": "faket.style.engine",
    "cpu_tilt_batch": "faket.style.engine",
    "default_tilt_batch": "faket.style.engine",
    "fit_size": "faket.style.engine",
    "gen_scales": "faket.style.engine",
    "match_mean_std": "faket.style.engine",
    "resize": "faket.style.engine",
    "series_minmax": "faket.style.engine",
    "stylize_series": "faket.style.engine",
    "to_unit": "faket.style.engine",
    "EPS": "faket.style.losses",
    "_flat_features": "faket.style.losses",
    "gram": "faket.style.losses",
    "gram_style_loss": "faket.style.losses",
    "gram_sum": "faket.style.losses",
    "per_sample_sum": "faket.style.losses",
    "scaled_mse": "faket.style.losses",
    "tv_loss": "faket.style.losses",
    "tv_map": "faket.style.losses",
    "ALGORITHM_KEYS": "faket.style.settings",
    "PRESETS": "faket.style.settings",
    "StyleSettings": "faket.style.settings",
    "parse_float_list": "faket.style.settings",
    "parse_int_list": "faket.style.settings",
}
__all__ = sorted(_NAMES)


def __getattr__(name):  # PEP 562: the names above on first use, and the modules' other (private) names
    if name in _NAMES:
        return getattr(importlib.import_module(_NAMES[name]), name)
    if importlib.util.find_spec(f"{__name__}.{name}") is not None:  # a submodule: from faket.style import settings
        return importlib.import_module(f"{__name__}.{name}")
    for mod in ("faket.style.engine", "faket.style.losses", "faket.style.settings"):
        m = importlib.import_module(mod)
        if hasattr(m, name):
            return getattr(m, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
