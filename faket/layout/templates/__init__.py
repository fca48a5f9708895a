"""Particle templates: a class = a name + a density map at the working voxel size.

Three sources give a :class:`Template`:

- **built-in procedural shapes** (:data:`BUILTIN_NAMES`, :func:`builtin_template`): unions of balls,
  ellipsoids, capsules, tori and hollow cylinders defined in nanometres, so they scale with the voxel
  size. Edges are anti-aliased with a one-voxel linear ramp of the signed distance
  (``clip(0.5 - sdf / voxel, 0, 1)``: the exact voxel-mean of a half-space aligned with an axis), so
  there is no staircase; they are deterministic (no random numbers).
- **MRC density maps** (:func:`template_from_map`): background subtracted, resampled from the map's
  voxel size to the working one and centred on the centre of mass.
- **atomic models** (PDB / mmCIF, :func:`template_from_atoms`): Coulomb potential from per-element
  electron scattering factors (the 5-Gaussian fits of International Tables for Crystallography Vol. C,
  Table 4.3.2.2, which gemmi ships as ``Element.c4322``; the same form as Peng et al. 1996), integrated
  exactly over each voxel, optionally blurred to a resolution.

Every template is a cubic ``(Z, Y, X)`` float32 box with an odd edge ``n``, values ``>= 0``, its
centre of mass at the centre voxel ``(n - 1) / 2`` and zero padding wide enough that any rotation
(with linear interpolation) stays inside the box.

Units (one scale for every source): **protein-density units**, 1 = the mean density inside a protein.

- Built-in shapes are solid protein: 1 inside.
- Atomic models: each atom contributes its total scattering ``f_e(0) = sum(a_i)`` (Angstrom) spread
  over its Gaussians; the voxel value is the voxel-mean of ``sum f_e(0)`` per cubic Angstrom divided by
  :data:`PROTEIN_FE0_PER_A3`, the same quantity for an average protein (heavy atoms of an average
  residue C4.94 N1.36 O1.48 S0.04 at 110 Da in 1.23 A^3/Da, i.e. 1.35 g/cm^3). The conversion is linear,
  so mass is preserved: the sum over the template times the voxel volume is the model's protein-equivalent
  volume in A^3. Hydrogens and waters are dropped (most models have none; treating all alike keeps
  the scale consistent); occupancies weight atoms, so alternative conformations are averaged (a file
  with every occupancy 0 counts them as 1); B-factors are ignored (a template is a mean shape). The
  first model is used, by default as its first biological assembly (see :func:`template_from_atoms`).
- Maps have arbitrary units; they are rescaled to the same scale by an interior rule: the map
  (background subtracted) is smoothed by a 3 A Gaussian, the densest voxels holding half of the mass
  are the interior, and the scale makes their mean :data:`MAP_INTERIOR_LEVEL` (0.88), the value the
  same rule reads on atomic templates (0.83-0.94 measured on four SHREC models at 2-8 A). A model
  converted to a map and back keeps its scale within a few percent, so particles from maps and models
  are comparable. Pass ``normalize=False`` to keep a map's own values.

Map background (:func:`subtract_background`): the level of the box edge (median of the outer one-voxel
shell) is subtracted, then a noise floor of twice the edge's robust standard deviation (1.4826 MAD),
the result is clipped at 0 (negative densities vanish) and isolated noise specks (connected pieces
lighter than 5 % of the heaviest) are dropped. Clean masked maps (edge exactly 0) are unchanged; when
the floor would remove most of the density (a tight crop whose density touches the edge) it is skipped.

Resampling (maps) uses the exact voxel-mean of the map's piecewise-linear interpolant over each output
voxel: separable, mass-preserving, anti-aliased when shrinking and plain linear interpolation when
enlarging. Atomic Gaussians are integrated over voxels with ``erf``. Both are "voxel mean" samplings,
so a map and a model of the same molecule agree at the same voxel size.

Converted templates (maps, atoms) are cached as MRC under :func:`default_cache_dir`, keyed by the
source file's sha256, the voxel size, the options and :data:`CACHE_VERSION`.

Modules (everything is importable from ``faket.layout.templates``): :mod:`~faket.layout.templates.base` (the
:class:`Template` contract, box helpers), :mod:`~faket.layout.templates.shapes` (built-in classes),
:mod:`~faket.layout.templates.maps` (maps, resampling, background), :mod:`~faket.layout.templates.atoms` (atomic
models), :mod:`~faket.layout.templates.cache` (the cache), :mod:`~faket.layout.templates.load` (:func:`load_template`).
"""

from __future__ import annotations

from faket.layout.templates.atoms import (
    PROTEIN_FE0_PER_A3,
    PROTEIN_RESIDUE,  # noqa: F401 - importable from here as before the split (not in __all__)
    PROTEIN_RESIDUE_VOLUME_A3,  # noqa: F401 - idem
    template_from_atoms,
)
from faket.layout.templates.base import Template, centre_of_mass, diameter_nm, fit_box
from faket.layout.templates.cache import CACHE_VERSION, default_cache_dir
from faket.layout.templates.load import ATOM_SUFFIXES, MAP_SUFFIXES, load_template  # noqa: F401 - idem
from faket.layout.templates.maps import MAP_INTERIOR_LEVEL, resample_volume, subtract_background, template_from_map
from faket.layout.templates.shapes import BUILTIN_INFO, BUILTIN_NAMES, builtin_template

__all__ = [
    "Template",
    "BUILTIN_NAMES",
    "BUILTIN_INFO",
    "CACHE_VERSION",
    "PROTEIN_FE0_PER_A3",
    "MAP_INTERIOR_LEVEL",
    "builtin_template",
    "template_from_map",
    "template_from_atoms",
    "load_template",
    "default_cache_dir",
    "fit_box",
    "diameter_nm",
    "resample_volume",
    "subtract_background",
    "centre_of_mass",
]
