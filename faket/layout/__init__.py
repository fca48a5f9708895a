"""Stage 1 - the layout: the labelled specimen that every later step images.

- :mod:`~faket.layout.build`: the spec (YAML keys, defaults, validation), the class table, :func:`make_layout`
- :mod:`~faket.layout.canvas`: template preparation, the occupancy canvas, random and given placement
- :mod:`~faket.layout.cellular`, :mod:`~faket.layout.membranes`, :mod:`~faket.layout.filaments`: cellular scenes
- :mod:`~faket.layout.templates`: particle densities from built-in shapes, maps and atomic models

The names of ``build`` and ``canvas`` are importable from here (``from faket import layout; layout.make_layout``).
"""

import importlib

from faket.layout.build import (  # noqa: F401 - the package's public names
    DEFAULT_BOX,
    DEFAULT_COUNT_PER_CLASS,
    DEFAULT_FIDUCIALS,
    DEFAULT_FILAMENT,
    DEFAULT_MEMBRANE,
    DEFAULT_MEMBRANE_SIZE_NM,
    DEFAULT_SLAB,
    DEFAULT_VESICLES,
    DEFAULT_VOXEL_SIZE,
    LEAFLETS,
    LayoutResult,
    class_table,
    default_spec,
    load_spec,
    make_layout,
    validate_spec,
)
from faket.layout.canvas import (  # noqa: F401 - the package's public names
    Layout,
    LayoutClass,
    NotEnoughRoom,
    counts_from_fractions,
    fiducial_template,
    place_particles,
    prepare_template,
    random_layout,
    vesicle_template,
)


def __getattr__(name):  # the modules' other (private) names, as before the package existed

    for mod in ("faket.layout.build", "faket.layout.canvas"):
        m = importlib.import_module(mod)
        if hasattr(m, name):
            return getattr(m, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
