"""Stage 4 - neural style transfer (FakET): VGG-19 features, Gram losses, one Adam step per scale.

- :mod:`~faket.style.engine`: :class:`StyleTransfer`, :func:`stylize_series`, devices and precision
- :mod:`~faket.style.losses`: Gram matrices, scaled MSE, total variation
- :mod:`~faket.style.settings`: every algorithm default once (:class:`StyleSettings`, presets)
- :mod:`~faket.style.vgg`: VGG-19 weights (ImageNet file or seeded random) and the network
- :mod:`~faket.style.tiling`, :mod:`~faket.style.cache`: exact tiling of large tilts; the Gram target cache
"""

import importlib

from faket.style.engine import (  # noqa: F401 - the package's public names
    GramStore,
    Reference,
    StyleTransfer,
    autocast_context,
    configure_backends,
    cpu_tilt_batch,
    default_tilt_batch,
    fit_size,
    gen_scales,
    match_mean_std,
    resize,
    series_minmax,
    stylize_series,
    to_unit,
)
from faket.style.losses import (  # noqa: F401 - the package's public names
    EPS,
    _flat_features,
    gram,
    gram_style_loss,
    gram_sum,
    scaled_mse,
    tv_loss,
    tv_map,
)
from faket.style.settings import (  # noqa: F401 - the package's public names
    ALGORITHM_KEYS,
    PRESETS,
    StyleSettings,
    parse_float_list,
    parse_int_list,
)


def __getattr__(name):  # the modules' other (private) names, as before the package existed

    for mod in ("faket.style.engine", "faket.style.losses", "faket.style.settings"):
        m = importlib.import_module(mod)
        if hasattr(m, name):
            return getattr(m, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
