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
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import InputError

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

#: Bump when the conversion of maps or atoms changes (invalidates cached templates).
CACHE_VERSION = 1

MAP_SUFFIXES = (".mrc", ".map", ".rec", ".mrcs")
ATOM_SUFFIXES = (".pdb", ".cif", ".ent", ".mmcif", ".pdbx")

#: What the interior rule (densest voxels holding half the mass, after a 3 A Gaussian) reads on atomic
#: templates in protein-density units (measured 0.83-0.94 on 1oel, 1bxn, 3gl1, 3qm1 at 2-8 A; built-in
#: solids read 0.97-1.0). Maps are scaled so the rule reads this value, like a model of the same molecule.
MAP_INTERIOR_LEVEL = 0.88

# Zero below this fraction of the maximum (exact zero padding; removes far Gaussian tails).
_ZERO_FRACTION = 1e-3
# Margin (voxels) between the content's radius and the box's inscribed sphere: trilinear interpolation
# of a rotated template reaches sqrt(3) voxels beyond the farthest non-zero voxel.
_ROTATION_MARGIN = 1.75


@dataclass(eq=False)
class Template:
    """A particle class's density at the working voxel size.

    ``density`` is ``(Z, Y, X)`` float32, ``>= 0``, a cube with odd edge, centre of mass at the centre
    voxel ``(n - 1) / 2``, zero-padded so that any rotation stays inside the box; values are in
    protein-density units (1 = inside a protein, see the module docstring). ``diameter_nm`` is the largest
    extent of the voxels above half a protein unit (half the maximum when the maximum is below 1).
    """

    name: str
    density: np.ndarray = field(repr=False)
    voxel_size_a: float
    source: str
    diameter_nm: float

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.density.shape)

    @property
    def box_size(self) -> int:
        return int(self.density.shape[0])


def _check_voxel(voxel_size_a, what: str = "voxel size") -> float:
    try:
        v = float(voxel_size_a)
    except (TypeError, ValueError):
        raise InputError(f"{what} {voxel_size_a!r}: not a number") from None
    if not np.isfinite(v) or v <= 0:
        raise InputError(f"{what} {voxel_size_a!r}: must be a positive number of Angstrom")
    return v


# --------------------------------------------------------------------------------------------------
# box helpers


def centre_of_mass(density: np.ndarray) -> np.ndarray:
    """Centre of mass ``(z, y, x)`` in voxel indices (weights clipped at 0)."""
    d = np.clip(np.asarray(density, dtype=np.float64), 0, None)
    total = d.sum()
    if total <= 0:
        return (np.asarray(d.shape, float) - 1) / 2
    out = []
    for ax in range(3):
        other = tuple(a for a in range(3) if a != ax)
        prof = d.sum(axis=other)
        out.append(float((prof * np.arange(d.shape[ax])).sum() / total))
    return np.asarray(out)


def fit_box(density: np.ndarray, margin: float = _ROTATION_MARGIN) -> np.ndarray:
    """Crop / zero-pad a centred cube so it just holds any rotation of its content.

    The content's centre is the centre voxel; the result's half-edge is ``ceil(r_max + margin)`` where
    ``r_max`` is the largest distance (voxels) of a non-zero voxel from the centre.
    """
    d = np.asarray(density, dtype=np.float32)
    n = d.shape[0]
    assert d.shape == (n, n, n) and n % 2 == 1, d.shape
    c = (n - 1) // 2
    nz = np.nonzero(d > 0)
    if nz[0].size == 0:
        h = 1
    else:
        r2 = sum((idx.astype(np.float64) - c) ** 2 for idx in nz)
        h = int(math.ceil(math.sqrt(float(r2.max())) + margin))
    m = 2 * h + 1
    out = np.zeros((m, m, m), np.float32)
    k = min(h, c)
    src = slice(c - k, c + k + 1)
    dst = slice(h - k, h + k + 1)
    out[dst, dst, dst] = d[src, src, src]
    return out


def _clean_small(d: np.ndarray) -> np.ndarray:
    d = np.asarray(d, dtype=np.float32)
    np.clip(d, 0, None, out=d)
    mx = float(d.max()) if d.size else 0.0
    if mx > 0:
        d[d < _ZERO_FRACTION * mx] = 0
    return d


def diameter_nm(density: np.ndarray, voxel_size_a: float, threshold: float | None = None) -> float:
    """Largest extent (nm) of the voxels above ``threshold`` (default: 0.5, or half the max when the
    max is below 1): max distance between voxel centres + one voxel."""
    d = np.asarray(density)
    mx = float(d.max()) if d.size else 0.0
    if mx <= 0:
        return 0.0
    if threshold is None:
        threshold = 0.5 * min(1.0, mx)
    pts = np.argwhere(d >= threshold).astype(np.float64)
    if len(pts) == 0:
        return 0.0
    if len(pts) > 4:
        # Only convex-hull vertices can be the farthest pair; a cheap pre-filter keeps boundary voxels.
        try:
            from scipy.spatial import ConvexHull

            pts = pts[ConvexHull(pts).vertices]
        except Exception:  # degenerate (flat / collinear) point sets
            pass
    if len(pts) > 4000:  # pragma: no cover - hulls are small in practice
        pts = pts[:: int(math.ceil(len(pts) / 4000))]
    diff = pts[:, None, :] - pts[None, :, :]
    dmax = float(np.sqrt((diff**2).sum(-1)).max())
    return (dmax + 1.0) * float(voxel_size_a) / 10.0


def _finish(name: str, density: np.ndarray, voxel_size_a: float, source: str) -> Template:
    d = fit_box(_clean_small(density))
    return Template(name=name, density=d, voxel_size_a=float(voxel_size_a), source=source,
                    diameter_nm=diameter_nm(d, voxel_size_a))


# --------------------------------------------------------------------------------------------------
# built-in procedural shapes (signed distance functions in nm; arrays are x, y, z coordinates in nm)


def _sd_ball(c, r):
    def f(x, y, z):
        return np.sqrt((x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2) - r

    return f


def _sd_ellipsoid(c, radii):
    rx, ry, rz = radii

    def f(x, y, z):
        # Quilez's bound-corrected ellipsoid distance (exact on the axes, close elsewhere).
        px, py, pz = x - c[0], y - c[1], z - c[2]
        k0 = np.sqrt((px / rx) ** 2 + (py / ry) ** 2 + (pz / rz) ** 2)
        k1 = np.sqrt((px / rx**2) ** 2 + (py / ry**2) ** 2 + (pz / rz**2) ** 2)
        return k0 * (k0 - 1.0) / np.maximum(k1, 1e-12)

    return f


def _sd_capsule(a, b, r):
    a = np.asarray(a, float)
    b = np.asarray(b, float)
    ab = b - a
    L2 = float(ab @ ab)

    def f(x, y, z):
        px, py, pz = x - a[0], y - a[1], z - a[2]
        t = np.clip((px * ab[0] + py * ab[1] + pz * ab[2]) / L2, 0.0, 1.0)
        return np.sqrt((px - t * ab[0]) ** 2 + (py - t * ab[1]) ** 2 + (pz - t * ab[2]) ** 2) - r

    return f


def _sd_torus(c, R, r):
    """Torus around the z axis through ``c``."""

    def f(x, y, z):
        q = np.sqrt((x - c[0]) ** 2 + (y - c[1]) ** 2) - R
        return np.sqrt(q**2 + (z - c[2]) ** 2) - r

    return f


def _sd_cylinder(c, R, half_h):
    """Solid cylinder along z centred at ``c`` (exact)."""

    def f(x, y, z):
        dx = np.sqrt((x - c[0]) ** 2 + (y - c[1]) ** 2) - R
        dz = np.abs(z - c[2]) - half_h
        outside = np.sqrt(np.maximum(dx, 0) ** 2 + np.maximum(dz, 0) ** 2)
        return np.minimum(np.maximum(dx, dz), 0) + outside

    return f


def _union(*fs):
    def f(x, y, z):
        out = fs[0](x, y, z)
        for g in fs[1:]:
            out = np.minimum(out, g(x, y, z))
        return out

    return f


def _subtract(a, b):
    def f(x, y, z):
        return np.maximum(a(x, y, z), -b(x, y, z))

    return f


@dataclass(frozen=True)
class _Builtin:
    description: str
    make: Callable[[], Callable]
    radius_nm: float  # bound on the distance of any surface point from the origin


def _arms():
    hub = (0.0, 0.0, 0.0)
    return _union(
        _sd_ball(hub, 3.0),
        _sd_capsule(hub, (9.0, 0.0, 0.0), 1.6),
        _sd_capsule(hub, (-3.0, 6.0, 1.0), 1.6),
        _sd_capsule(hub, (-2.0, -3.0, -5.0), 1.4),
        _sd_ball((9.0, 0.0, 0.0), 2.2),
    )


_BUILTINS: dict[str, _Builtin] = {
    # ~5 nm: a slightly flattened globule with a knob (smallest class).
    "globule": _Builtin("ellipsoid 5.2x3.8x3.0 nm with an off-axis knob (r 1.2 nm)",
                        lambda: _union(_sd_ellipsoid((0, 0, 0), (2.6, 1.9, 1.5)),
                                       _sd_ball((1.9, 1.4, 0.8), 1.2)), 4.5),
    # ~9 nm: three unequal touching balls, not collinear.
    "blob3": _Builtin("cluster of three unequal balls (r 2.8, 2.2, 1.7 nm)",
                      lambda: _union(_sd_ball((0, 0, 0), 2.8), _sd_ball((3.9, 1.2, 0.3), 2.2),
                                     _sd_ball((0.8, 3.6, 1.8), 1.7)), 7.5),
    # ~12 nm: four unequal balls on a distorted tetrahedron.
    "tetramer": _Builtin("four unequal balls on a distorted tetrahedron",
                         lambda: _union(_sd_ball((3.0, 0.0, -1.5), 2.6), _sd_ball((-2.5, 2.0, -1.2), 2.3),
                                        _sd_ball((-1.0, -3.0, -1.0), 2.0), _sd_ball((0.3, 0.4, 3.2), 2.4)),
                         7.5),
    # ~14 nm: L made of two capsules of different length with a bulge at the corner.
    "lshape": _Builtin("L of two capsules (11 and 7 nm arms, r 1.6 nm) with a bulged corner",
                       lambda: _union(_sd_capsule((-4.0, -3.0, 0.0), (7.0, -3.0, 0.0), 1.6),
                                      _sd_capsule((-4.0, -3.0, 0.0), (-4.0, 4.0, 0.0), 1.6),
                                      _sd_ball((-4.0, -3.0, 0.0), 2.4)), 9.5),
    # ~15 nm: ring (torus) with one knob on its rim: rotationally asymmetric.
    "ring": _Builtin("open ring: torus R 5.5 nm, tube r 1.6 nm, with a gap and a knob on the rim",
                     lambda: _union(_subtract(_sd_torus((0, 0, 0), 5.5, 1.6), _sd_ball((-5.5, 0, 0), 2.4)),
                                    _sd_ball((3.9, 3.9, 1.6), 1.8)), 8.0),
    # ~18 nm: two unequal balls joined by a thin rod.
    "dumbbell": _Builtin("balls r 4.0 and 2.6 nm joined by a 1.2 nm rod, 11 nm apart",
                         lambda: _union(_sd_ball((-5.5, 0, 0), 4.0), _sd_ball((5.5, 0, 0), 2.6),
                                        _sd_capsule((-5.5, 0, 0), (5.5, 0, 0), 1.2)), 10.0),
    # ~16 nm: hollow barrel (proteasome-like) with a cap on one end only.
    "barrel": _Builtin("hollow cylinder 15 nm long, r 5.5 nm (wall 2 nm) with a cap at one end",
                       lambda: _union(_subtract(_sd_cylinder((0, 0, 0), 5.5, 7.5),
                                                _sd_cylinder((0, 0, 0), 3.5, 8.0)),
                                      _sd_cylinder((0, 0, 8.3), 4.0, 0.9)), 11.0),
    # ~22 nm: three arms of different length from a hub, one ending in a ball.
    "tripod": _Builtin("hub with three arms of different length (9, 7, 6 nm), one ending in a ball",
                       _arms, 12.0),
    # ~25 nm: long straight rod with an off-axis head (filament fragment / antibody-like).
    "rod": _Builtin("rod 22 nm long, r 1.8 nm, with an off-axis head ball r 3 nm",
                    lambda: _union(_sd_capsule((-11.0, 0, 0), (11.0, 0, 0), 1.8),
                                   _sd_ball((9.0, 2.5, 0.0), 3.0)), 14.0),
    # ~29 nm: ribosome-like: a large and a small ellipsoidal subunit, with a stalk.
    "ribosome_like": _Builtin("large (17x14x13 nm) and small (16x9x7 nm) ellipsoidal subunits, a stalk "
                              "and a side lobe",
                              lambda: _union(_sd_ellipsoid((0, 0, -2.5), (8.5, 7.0, 6.5)),
                                             _sd_ellipsoid((2.0, 2.5, 6.0), (8.0, 4.5, 3.5)),
                                             _sd_capsule((5.0, -4.0, -4.0), (13.0, -9.0, -5.0), 1.5),
                                             _sd_ball((-7.5, -3.0, 1.0), 2.5)),
                              18.5),
}

#: Names of the built-in procedural classes (roughly smallest to largest).
BUILTIN_NAMES: tuple[str, ...] = tuple(_BUILTINS)
#: name -> one-line description
BUILTIN_INFO: dict[str, str] = {k: v.description for k, v in _BUILTINS.items()}


def _eval_sdf_density(sdf, n: int, v_nm: float, shift_zyx: np.ndarray) -> np.ndarray:
    """Voxel-mean density of a solid: ``clip(0.5 - sdf / v, 0, 1)`` on an ``n^3`` grid (float32)."""
    c = (n - 1) / 2
    ax = (np.arange(n, dtype=np.float32) - c) * np.float32(v_nm)
    z = (ax + np.float32(shift_zyx[0]))[:, None, None]
    y = (ax + np.float32(shift_zyx[1]))[None, :, None]
    x = (ax + np.float32(shift_zyx[2]))[None, None, :]
    d = sdf(x, y, z)
    return np.clip(np.float32(0.5) - d / np.float32(v_nm), 0, 1).astype(np.float32)


def builtin_template(name: str, voxel_size_a: float) -> Template:
    """A built-in procedural class (see :data:`BUILTIN_NAMES`) at ``voxel_size_a``; 1 inside."""
    v = _check_voxel(voxel_size_a)
    key = name[len("builtin:"):] if name.startswith("builtin:") else name
    if key not in _BUILTINS:
        raise InputError(f"template {name!r}: unknown built-in class (known: {', '.join(BUILTIN_NAMES)})")
    spec = _BUILTINS[key]
    sdf = spec.make()
    v_nm = v / 10.0
    # Centre of mass: estimated on a grid no finer than 0.4 nm (cheap), then the shape is evaluated at
    # the working voxel size with it on the centre voxel (exact: no interpolation) and the residual of
    # the sampled shape's centre of mass is removed by one more pass when above 0.01 voxel.
    com_nm = np.zeros(3)
    v_c = max(v_nm, 0.4)
    for _ in range(2):
        n_c = 2 * int(math.ceil((spec.radius_nm + float(np.abs(com_nm).max())) / v_c + 2)) + 1
        d_c = _eval_sdf_density(sdf, n_c, v_c, com_nm)
        if d_c.sum() <= 0:
            raise InputError(f"template {name!r}: voxel size {v:g} A is too large for this class")
        com_nm = com_nm + (centre_of_mass(d_c) - (n_c - 1) / 2) * v_c
    n = 2 * int(math.ceil((spec.radius_nm + float(np.abs(com_nm).max())) / v_nm + 3)) + 1
    for _ in range(2):
        d = _eval_sdf_density(sdf, n, v_nm, com_nm)
        resid = centre_of_mass(d) - (n - 1) / 2
        if np.abs(resid).max() < 0.01:
            break
        com_nm = com_nm + resid * v_nm
    return _finish(key, d, v, f"builtin:{key}")


# --------------------------------------------------------------------------------------------------
# resampling (maps)


def _hat_integral(t: np.ndarray) -> np.ndarray:
    """Integral from -inf to t of the unit hat function max(0, 1 - |s|)."""
    t = np.clip(t, -1.0, 1.0)
    return np.where(t < 0, 0.5 * (t + 1.0) ** 2, 1.0 - 0.5 * (1.0 - t) ** 2)


def _resample_matrix(n_in: int, v_in: float, n_out: int, v_out: float, offset: float) -> np.ndarray:
    """Weights ``W (n_out, n_in)`` so ``W @ f`` is the mean over output voxels of f's linear interpolant.

    Input sample j sits at ``j * v_in``; output voxel k is centred at ``offset + k * v_out`` (same units)
    and spans ``v_out``.
    """
    xk = offset + np.arange(n_out) * v_out
    xj = np.arange(n_in) * v_in
    lo = (xk[:, None] - 0.5 * v_out - xj[None, :]) / v_in
    hi = (xk[:, None] + 0.5 * v_out - xj[None, :]) / v_in
    return (_hat_integral(hi) - _hat_integral(lo)) * (v_in / v_out)


def resample_volume(vol: np.ndarray, v_in: float, v_out: float, n_out: int,
                    centre_in_zyx: np.ndarray) -> np.ndarray:
    """Resample ``vol`` (voxel ``v_in``) onto an ``n_out^3`` cube of voxel ``v_out`` whose centre voxel
    sits at ``centre_in_zyx`` (input voxel indices): voxel-mean of the linear interpolant, mass-preserving."""
    out = np.asarray(vol, dtype=np.float64)
    c_out = (n_out - 1) / 2
    for ax in range(3):
        offset = centre_in_zyx[ax] * v_in - c_out * v_out
        W = _resample_matrix(vol.shape[ax], v_in, n_out, v_out, offset)
        out = np.moveaxis(np.tensordot(W, out, axes=([1], [ax])), 0, ax)
    return out.astype(np.float32)


def _edge_values(d: np.ndarray) -> np.ndarray:
    return np.concatenate([d[0].ravel(), d[-1].ravel(), d[:, 0].ravel(), d[:, -1].ravel(),
                           d[:, :, 0].ravel(), d[:, :, -1].ravel()])


def subtract_background(density: np.ndarray, *, speck_fraction: float = 0.05) -> np.ndarray:
    """Remove a map's background: subtract the box-edge level (median of the outer voxel shell) and a
    noise floor of 2 robust sigmas of the edge (1.4826 MAD), clip at 0, then drop isolated specks
    (26-connected pieces lighter than ``speck_fraction`` of the heaviest piece).

    The noise floor is skipped when it would remove over 90 % of the density (tight crops whose density
    touches the box edge, so the edge is not solvent). Clean masked maps (edge exactly 0) are unchanged.
    """
    from scipy import ndimage

    d = np.asarray(density, dtype=np.float64)
    if min(d.shape) < 3:
        return np.clip(d, 0, None)
    e = _edge_values(d)
    bg = float(np.median(e))
    noise = 1.4826 * float(np.median(np.abs(e - bg)))
    base = np.clip(d - bg, 0, None)
    out = np.clip(base - 2.0 * noise, 0, None)
    if out.sum() < 0.1 * base.sum():
        out = base
    labels, n = ndimage.label(out > 0, structure=np.ones((3, 3, 3), bool))
    if n > 1:
        mass = ndimage.sum_labels(out, labels, index=np.arange(1, n + 1))
        keep = np.concatenate([[False], mass >= speck_fraction * mass.max()])
        out = np.where(keep[labels], out, 0.0)
    return out


def _interior_level(d: np.ndarray, voxel_size_a: float, mass_fraction: float = 0.5,
                    smooth_a: float = 3.0) -> float:
    """Mean of the densest voxels holding ``mass_fraction`` of the mass, after a ``smooth_a`` Gaussian."""
    from scipy.ndimage import gaussian_filter

    s = gaussian_filter(np.asarray(d, np.float64), sigma=smooth_a / voxel_size_a, mode="constant")
    vals = np.sort(s[s > 0].ravel())[::-1]
    if vals.size == 0:
        return 0.0
    cum = np.cumsum(vals)
    k = int(np.searchsorted(cum, mass_fraction * cum[-1])) + 1
    return float(vals[:k].mean())


def template_from_map(density: np.ndarray, map_voxel_size_a: float, voxel_size_a: float, name: str,
                      source: str = "", *, normalize: bool = True) -> Template:
    """A template from a density map: background removed, resampled to ``voxel_size_a``, centred on its
    centre of mass and (with ``normalize``) scaled to protein-density units (module docstring)."""
    v_in = _check_voxel(map_voxel_size_a, f"{source or name}: map voxel size")
    v_out = _check_voxel(voxel_size_a)
    d = np.asarray(density)
    if d.ndim != 3 or 0 in d.shape:
        raise InputError(f"{source or name}: density map must be a non-empty 3-D array, got shape {d.shape}")
    if not np.isfinite(d).all():
        raise InputError(f"{source or name}: density map contains NaN/Inf values")
    d = subtract_background(d)
    if d.sum() <= 0:
        raise InputError(f"{source or name}: density map is empty after background subtraction "
                         "(no density above the box-edge level)")
    scale = 1.0
    if normalize:
        level = _interior_level(d, v_in)
        scale = MAP_INTERIOR_LEVEL / level if level > 0 else 1.0
    com = centre_of_mass(d)
    nz = np.argwhere(d > 0).astype(np.float64)
    r_max_a = float(np.sqrt(((nz - com) ** 2).sum(1)).max()) * v_in + v_in + v_out
    n_out = 2 * int(math.ceil(r_max_a / v_out + 1)) + 1
    # Put the resampled map's own centre of mass (after the zero floor) on the centre voxel: the
    # voxel-mean sampling moves it by a few hundredths of a voxel; two corrections bring it to ~1e-3.
    for _ in range(3):
        out = _clean_small(resample_volume(d, v_in, v_out, n_out, com))
        resid = centre_of_mass(out) - (n_out - 1) / 2
        if np.abs(resid).max() < 2e-3:
            break
        com = com + resid * v_out / v_in
    out *= np.float32(scale)
    if out.max() <= 0:
        raise InputError(f"{source or name}: density map vanishes at voxel size {v_out:g} A")
    return _finish(name, out, v_out, source or f"array:{name}")


# --------------------------------------------------------------------------------------------------
# atomic models


def _fe0(symbol: str) -> float:
    """Total electron scattering ``f_e(0) = sum(a_i)`` (A) of an element, from gemmi's c4322 table."""
    import gemmi

    return float(sum(gemmi.Element(symbol).c4322.a))


#: Average protein composition (heavy atoms per residue) and volume per residue (A^3) behind
#: :data:`PROTEIN_FE0_PER_A3`: 110 Da at 1.23 A^3/Da (1.35 g/cm^3).
PROTEIN_RESIDUE = {"C": 4.94, "N": 1.36, "O": 1.48, "S": 0.04}
PROTEIN_RESIDUE_VOLUME_A3 = 110.0 * 1.23

#: Sum of electron scattering factors f_e(0) (A) per A^3 of average protein:
#: ``sum(n * f_e0(el) for PROTEIN_RESIDUE) / PROTEIN_RESIDUE_VOLUME_A3`` with gemmi's c4322 table
#: (a literal so importing this module does not import gemmi; a test recomputes it).
PROTEIN_FE0_PER_A3: float = 0.137070806


def _read_structure(path: Path, assembly: str | None):
    import gemmi

    if not path.exists():
        raise InputError(f"{path}: atomic model not found")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, expected a PDB / mmCIF file")
    try:
        st = gemmi.read_structure(str(path))
    except Exception as exc:  # gemmi raises RuntimeError / ValueError with a message
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{path}: cannot read atomic model ({msg})") from None
    if len(st) == 0:
        raise InputError(f"{path}: atomic model has no atoms")
    st.setup_entities()  # subchains, which assemblies refer to (PDB files have none of their own)
    model = st[0]
    if assembly is not None:
        names = [a.name for a in st.assemblies]
        if assembly == "first":
            assembly = names[0] if names else None
        elif assembly not in names:
            raise InputError(f"{path}: no biological assembly {assembly!r} "
                             f"(defined: {', '.join(names) or 'none'})")
        if assembly is not None:
            asm = next(a for a in st.assemblies if a.name == assembly)
            try:
                model = gemmi.make_assembly(asm, model, gemmi.HowToNameCopiedChain.AddNumber)
            except Exception as exc:  # malformed assembly records
                msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise InputError(f"{path}: cannot build biological assembly {assembly!r} ({msg}); "
                                 "use the deposited chains instead (assembly None)") from None
    model.remove_hydrogens()
    model.remove_waters()
    return st, model  # keep the structure alive beside its model


def _atom_arrays(model):
    """Positions (N, 3) x, y, z in A; per-atom Gaussian a (N, 5) and b (N, 5); occupancy weights."""
    import gemmi

    pos, occ, elems = [], [], []
    for ch in model:
        for res in ch:
            for at in res:
                p = at.pos
                pos.append((p.x, p.y, p.z))
                occ.append(at.occ)
                elems.append(at.element.name)
    if not pos:
        return None
    pos = np.asarray(pos, np.float64)
    occ = np.clip(np.asarray(occ, np.float64), 0, 1)
    if not occ.any():  # some modelling tools write 0 for every atom: treat as fully occupied
        occ[:] = 1.0
    uniq = sorted(set(elems))
    table_a, table_b = {}, {}
    for e in uniq:
        el = gemmi.Element(e)
        if el.atomic_number == 0:  # unknown element "X": treat as carbon
            el = gemmi.Element("C")
        table_a[e] = np.asarray(el.c4322.a, np.float64)
        table_b[e] = np.asarray(el.c4322.b, np.float64)
    a = np.stack([table_a[e] for e in elems]) * occ[:, None]
    b = np.stack([table_b[e] for e in elems])
    return pos, a, b


def _erf_weights(xv: np.ndarray, sig_v: np.ndarray, h: int) -> tuple[np.ndarray, np.ndarray]:
    """1-D voxel integrals of unit Gaussians at ``xv`` (voxel units, grid voxel i centred at i) with
    sigma ``sig_v``: returns base indices (N,) and weights (N, 2h+1) over ``base + [-h..h]``."""
    from scipy.special import erf

    base = np.rint(xv).astype(np.int64)
    offs = np.arange(-h, h + 1)
    edges = (base[:, None] + np.concatenate([offs - 0.5, [h + 0.5]])[None, :]) - xv[:, None]
    cdf = 0.5 * (1.0 + erf(edges / (np.sqrt(2.0) * sig_v[:, None])))
    return base, np.diff(cdf, axis=1)


def _deposit_atoms(pos_zyx_v: np.ndarray, a: np.ndarray, b: np.ndarray, n: int, v: float,
                   sigma_extra_a: float) -> np.ndarray:
    """Sum over atoms and Gaussian terms of a_i * voxel-mean Gaussian; positions in voxel indices."""
    out = np.zeros(n * n * n, np.float64)
    for t in range(a.shape[1]):
        sig_a = np.sqrt(b[:, t] / (8 * np.pi**2) + sigma_extra_a**2)  # Angstrom
        # group atoms by window half-width so each group is one vectorised block
        hs = np.ceil(4.0 * sig_a / v + 0.5).astype(int)
        for h in np.unique(hs):
            sel = np.nonzero(hs == h)[0]
            k = 2 * h + 1
            chunk = max(1, int(4e6 // (k**3)))
            for s0 in range(0, sel.size, chunk):
                idx = sel[s0:s0 + chunk]
                sv = sig_a[idx] / v
                bz, wz = _erf_weights(pos_zyx_v[idx, 0], sv, h)
                by, wy = _erf_weights(pos_zyx_v[idx, 1], sv, h)
                bx, wx = _erf_weights(pos_zyx_v[idx, 2], sv, h)
                w = (a[idx, t][:, None, None, None] * wz[:, :, None, None] * wy[:, None, :, None]
                     * wx[:, None, None, :])
                offs = np.arange(-h, h + 1)
                iz = bz[:, None] + offs
                iy = by[:, None] + offs
                ix = bx[:, None] + offs
                flat = (iz[:, :, None, None] * n + iy[:, None, :, None]) * n + ix[:, None, None, :]
                out += np.bincount(flat.ravel(), weights=w.ravel(), minlength=n**3)[: n**3]
    return out.reshape(n, n, n)


def template_from_atoms(path, voxel_size_a: float, name: str | None = None, *,
                        resolution_a: float | None = None, assembly: str | None = "first") -> Template:
    """A template from a PDB / mmCIF model: Coulomb potential in protein-density units.

    Uses the first model; ``assembly="first"`` (default) builds the file's first biological assembly
    when it defines one (a particle in a cell is the assembly, e.g. both GroEL rings), a name picks
    another, ``None`` keeps the deposited chains. ``resolution_a`` adds a Gaussian blur of sigma
    ``0.225 * resolution_a`` (Chimera ``molmap`` convention). Units and sampling: module docstring.
    """
    v = _check_voxel(voxel_size_a)
    p = Path(path)
    if resolution_a is not None and (not np.isfinite(resolution_a) or resolution_a < 0):
        raise InputError(f"{p}: resolution {resolution_a!r} must be a non-negative number of Angstrom")
    _st, model = _read_structure(p, assembly)
    arrs = _atom_arrays(model)
    if arrs is None:
        raise InputError(f"{p}: atomic model has no atoms")
    pos_xyz, a, b = arrs
    sigma_extra = 0.225 * float(resolution_a) if resolution_a else 0.0
    w = a.sum(1)
    com = (pos_xyz * w[:, None]).sum(0) / w.sum()
    rel = pos_xyz - com
    sig_max = float(np.sqrt(b.max() / (8 * np.pi**2) + sigma_extra**2))
    r_max = float(np.sqrt((rel**2).sum(1)).max()) + 4.0 * sig_max + v
    h = int(math.ceil(r_max / v + 1))
    n = 2 * h + 1
    c = (n - 1) / 2

    def deposit(shift_xyz):
        pz = (rel[:, 2] - shift_xyz[2]) / v + c
        py = (rel[:, 1] - shift_xyz[1]) / v + c
        px = (rel[:, 0] - shift_xyz[0]) / v + c
        return _deposit_atoms(np.stack([pz, py, px], 1), a, b, n, v, sigma_extra)

    d = deposit(np.zeros(3))
    # The voxel-integrated map's centre of mass equals the atoms' one up to window truncation; remove
    # the tiny residual so the contract (centre of mass on the centre voxel) holds to ~1e-3 voxel.
    resid = (centre_of_mass(d) - c)[::-1] * v  # x, y, z in A
    if np.abs(resid).max() > 1e-3 * v:
        d = deposit(resid)
    d *= 1.0 / (v**3 * PROTEIN_FE0_PER_A3)
    nm = name or p.name.split(".")[0]
    return _finish(nm, d, v, str(p))


# --------------------------------------------------------------------------------------------------
# loading and caching


def default_cache_dir() -> Path:
    """``$FAKET_CACHE/templates`` or ``~/.cache/faket/templates``."""
    root = os.environ.get("FAKET_CACHE")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "faket"
    return base / "templates"


def _sha256(path: Path) -> str:
    from .io import sha256sum

    try:
        return sha256sum(path)
    except OSError as exc:
        raise InputError(f"{path}: cannot read template file ({exc.strerror or exc})") from None


def _cache_key(sha: str, voxel_size_a: float, options: dict) -> str:
    opts = json.dumps(options, sort_keys=True)
    h = hashlib.sha256(f"{sha}|{voxel_size_a!r}|{opts}|v{CACHE_VERSION}".encode()).hexdigest()[:20]
    return f"{sha[:16]}-{voxel_size_a:g}A-v{CACHE_VERSION}-{h}.mrc"


def _cache_read(path: Path):
    if not path.exists():
        return None
    try:
        import mrcfile

        with mrcfile.open(path, mode="r", permissive=False) as m:
            d = np.asarray(m.data, np.float32).copy()
        n = d.shape[0]
        if d.ndim != 3 or d.shape != (n, n, n) or n % 2 == 0 or not np.isfinite(d).all():
            return None
        return d
    except Exception:  # a corrupt cache entry is recomputed
        return None


def _cache_write(path: Path, density: np.ndarray, voxel_size_a: float) -> None:
    """Write a cache entry atomically (temp file + rename); a read-only cache only costs recomputation."""
    from .io import write_mrc

    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}.mrc"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_mrc(tmp, density, voxel_size_a)
        os.replace(tmp, path)
    except OSError:
        try:
            tmp.unlink()
        except OSError:
            pass


def load_template(spec: str, voxel_size_a: float, *, name: str | None = None,
                  cache_dir: str | os.PathLike | None = None, map_voxel_size_a: float | None = None,
                  resolution_a: float | None = None, assembly: str | None = "first",
                  normalize: bool = True, use_cache: bool = True) -> Template:
    """A template from ``spec``: a built-in name (``ring`` or ``builtin:ring``), an MRC map
    (``.mrc/.map/.rec``) or an atomic model (``.pdb/.cif/.ent/.mmcif``, gzipped ok).

    Maps need a voxel size: the header's, or ``map_voxel_size_a`` (which overrides it); a header with
    0 or 1 and no override is an :class:`InputError`. Converted maps and models are cached in
    ``cache_dir`` (default :func:`default_cache_dir`).
    """
    v = _check_voxel(voxel_size_a)
    spec = str(spec)
    key = spec[len("builtin:"):] if spec.startswith("builtin:") else spec
    if key in _BUILTINS:
        t = builtin_template(key, v)
        if name:
            t.name = name
        return t
    p = Path(spec).expanduser()
    suffixes = [s.lower() for s in p.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    ext = suffixes[-1] if suffixes else ""
    if spec.startswith("builtin:") or (not p.exists() and ext not in MAP_SUFFIXES + ATOM_SUFFIXES):
        raise InputError(f"template {spec!r}: not a built-in class (known: {', '.join(BUILTIN_NAMES)}) "
                         "and no such file")
    if p.is_dir():
        raise InputError(f"{p}: is a folder, expected a template file")
    if ext not in MAP_SUFFIXES + ATOM_SUFFIXES:
        raise InputError(f"{p}: unknown template file type {ext or '(no extension)'!r} "
                         f"(expected {', '.join(MAP_SUFFIXES + ATOM_SUFFIXES)})")
    if not p.exists():
        raise InputError(f"{p}: template file not found")
    nm = name or p.name.split(".")[0]
    is_map = ext in MAP_SUFFIXES
    if map_voxel_size_a is not None:
        _check_voxel(map_voxel_size_a, f"{p}: map voxel size")
    if resolution_a is not None and (not np.isfinite(resolution_a) or resolution_a < 0):
        raise InputError(f"{p}: resolution {resolution_a!r} must be a non-negative number of Angstrom")
    if is_map:
        options = {"kind": "map", "map_voxel_size_a": map_voxel_size_a, "normalize": bool(normalize)}
    else:
        options = {"kind": "atoms", "resolution_a": resolution_a, "assembly": assembly}
    cache_path = None
    if use_cache:
        cdir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        cache_path = cdir / _cache_key(_sha256(p), v, options)
        cached = _cache_read(cache_path)
        if cached is not None:
            return Template(name=nm, density=cached, voxel_size_a=v, source=str(p),
                            diameter_nm=diameter_nm(cached, v))
    if is_map:
        from .io import read_volume

        m = read_volume(p, what="template map")
        mv = map_voxel_size_a if map_voxel_size_a is not None else m.voxel_size_a
        if mv is None:
            raise InputError(f"{p}: no voxel size in the map header (0 or 1); give the map's voxel size "
                             "(map_voxel_size_a)")
        t = template_from_map(m.data, mv, v, nm, str(p), normalize=normalize)
    else:
        t = template_from_atoms(p, v, nm, resolution_a=resolution_a, assembly=assembly)
    if cache_path is not None:
        _cache_write(cache_path, t.density, v)
    return t
