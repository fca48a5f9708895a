"""faket: fast labelled, realistic-looking cryo-electron tomograms (FakET method).

The package reads like the pipeline (each step a pure function module plus a thin CLI in :mod:`faket.cli`):

- :mod:`faket.layout` - the labelled specimen (spec, placement, cellular scenes, templates)
- :mod:`faket.imaging` - projection, physics reference, noise, real references, reconstruction
- :mod:`faket.style` - VGG-19 neural style transfer
- :mod:`faket.labels` - masks and particle lists on the tomogram's grid
- :mod:`faket.evaluation` - QC figures, image metrics, scoring of picks
- :mod:`faket.picker` - the DeepFinder-style picker and its benchmark
- :mod:`faket.formats` - every file format (MRC, tilt metadata, particle tables, copick, manifest)
- :mod:`faket.workflow` - helpers of the Snakemake workflow; :mod:`faket.cli` - the ``faket`` command
- base: :mod:`faket.errors`, :mod:`faket.provenance`, :mod:`faket.rotation`

Modules that moved in the 0.2 layout keep their old import names (``faket.io``, ``faket.templates``, ...)
through :data:`MOVED`: ``import faket.io`` gives a module that forwards to the new homes.
"""

import importlib
import importlib.abc
import importlib.util
import os
import sys
import types

__version__ = "0.1.0"

#: Intel MKL's conditional numerical reproducibility (read when MKL starts, so set before torch computes):
#: "STRICT" makes its GEMMs (torch.bmm of the style Gram matrices, among others) give the same bits whatever
#: the thread count and memory alignment. Without it a style step run with 1 and 2 threads, or in a SLURM job
#: and locally, could differ in the last bits and the optimisation spreads them (a user's own value wins).
REPRODUCIBLE_BLAS = ("MKL_CBWR", "AUTO,STRICT")
os.environ.setdefault(*REPRODUCIBLE_BLAS)

#: old module name -> new module(s), first match wins (docs/development.md lists them)
MOVED = {
    "faket.io": ("faket.formats.mrc", "faket.formats.tiltmeta"),
    "faket.tiltmeta": ("faket.formats.tiltmeta",),
    "faket.particles": ("faket.formats.particles", "faket.formats.table"),
    "faket.manifest": ("faket.formats.manifest",),
    "faket.copick_export": ("faket.formats.copick", "faket.formats.copick_export"),
    "faket.copick_io": ("faket.picker.copick",),
    "faket.cellular": ("faket.layout.cellular",),
    "faket.membranes": ("faket.layout.membranes",),
    "faket.filaments": ("faket.layout.filaments",),
    "faket.templates": ("faket.layout.templates",),
    "faket.projection": ("faket.imaging.projection",),
    "faket.physics": ("faket.imaging.physics",),
    "faket.noise": ("faket.imaging.noise",),
    "faket.sampling": ("faket.imaging.sampling",),
    "faket.tilts": ("faket.imaging.tilts",),
    "faket.refcheck": ("faket.imaging.refcheck",),
    "faket.style_tiling": ("faket.style.tiling",),
    "faket.style_settings": ("faket.style.settings",),
    "faket.style_cache": ("faket.style.cache",),
    "faket.vgg": ("faket.style.vgg",),
    "faket.evaluate": ("faket.evaluation.evaluate",),
    "faket.metrics": ("faket.evaluation.metrics",),
    "faket.qc": ("faket.evaluation.qc",),
}


class _Forward(types.ModuleType):
    """An old module name: attributes come from the new modules, looked up when first used."""

    def __getattr__(self, name):
        if name.startswith("__"):  # __path__ & co. stay unset: submodules come through the finder, never twice
            raise AttributeError(name)
        for target in self.__faket_targets__:
            mod = importlib.import_module(target)
            if hasattr(mod, name):
                return getattr(mod, name)
        raise AttributeError(f"module {self.__name__!r} (now {', '.join(self.__faket_targets__)}) has no {name!r}")


class _MovedFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        if fullname in MOVED:
            return importlib.util.spec_from_loader(fullname, self)
        parent, _, last = fullname.rpartition(".")
        if parent in MOVED and len(MOVED[parent]) == 1:  # a submodule of a moved package: faket.templates.base
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        name = spec.name
        parent, _, last = name.rpartition(".")
        mod = _Forward(name)
        mod.__faket_targets__ = MOVED[name] if name in MOVED else (f"{MOVED[parent][0]}.{last}",)
        mod.__path__ = []  # a package to the import system (faket.templates.base), its files found only here
        return mod

    def exec_module(self, module):
        pass


if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
    sys.meta_path.append(_MovedFinder())
