"""Built-in procedural classes: unions of signed distance functions (balls, ellipsoids, capsules, tori,
hollow cylinders) defined in nanometres, anti-aliased with a one-voxel ramp (``clip(0.5 - sdf / voxel,
0, 1)``), deterministic, scaling with the voxel size."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from faket.errors import InputError
from faket.layout.templates.base import Template, _check_voxel, _finish, centre_of_mass

# signed distance functions in nm; arrays are x, y, z coordinates in nm


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
    "globule": _Builtin(
        "ellipsoid 5.2x3.8x3.0 nm with an off-axis knob (r 1.2 nm)",
        lambda: _union(_sd_ellipsoid((0, 0, 0), (2.6, 1.9, 1.5)), _sd_ball((1.9, 1.4, 0.8), 1.2)),
        4.5,
    ),
    # ~9 nm: three unequal touching balls, not collinear.
    "blob3": _Builtin(
        "cluster of three unequal balls (r 2.8, 2.2, 1.7 nm)",
        lambda: _union(_sd_ball((0, 0, 0), 2.8), _sd_ball((3.9, 1.2, 0.3), 2.2), _sd_ball((0.8, 3.6, 1.8), 1.7)),
        7.5,
    ),
    # ~12 nm: four unequal balls on a distorted tetrahedron.
    "tetramer": _Builtin(
        "four unequal balls on a distorted tetrahedron",
        lambda: _union(
            _sd_ball((3.0, 0.0, -1.5), 2.6),
            _sd_ball((-2.5, 2.0, -1.2), 2.3),
            _sd_ball((-1.0, -3.0, -1.0), 2.0),
            _sd_ball((0.3, 0.4, 3.2), 2.4),
        ),
        7.5,
    ),
    # ~14 nm: L made of two capsules of different length with a bulge at the corner.
    "lshape": _Builtin(
        "L of two capsules (11 and 7 nm arms, r 1.6 nm) with a bulged corner",
        lambda: _union(
            _sd_capsule((-4.0, -3.0, 0.0), (7.0, -3.0, 0.0), 1.6),
            _sd_capsule((-4.0, -3.0, 0.0), (-4.0, 4.0, 0.0), 1.6),
            _sd_ball((-4.0, -3.0, 0.0), 2.4),
        ),
        9.5,
    ),
    # ~15 nm: ring (torus) with one knob on its rim: rotationally asymmetric.
    "ring": _Builtin(
        "open ring: torus R 5.5 nm, tube r 1.6 nm, with a gap and a knob on the rim",
        lambda: _union(
            _subtract(_sd_torus((0, 0, 0), 5.5, 1.6), _sd_ball((-5.5, 0, 0), 2.4)), _sd_ball((3.9, 3.9, 1.6), 1.8)
        ),
        8.0,
    ),
    # ~18 nm: two unequal balls joined by a thin rod.
    "dumbbell": _Builtin(
        "balls r 4.0 and 2.6 nm joined by a 1.2 nm rod, 11 nm apart",
        lambda: _union(
            _sd_ball((-5.5, 0, 0), 4.0), _sd_ball((5.5, 0, 0), 2.6), _sd_capsule((-5.5, 0, 0), (5.5, 0, 0), 1.2)
        ),
        10.0,
    ),
    # ~16 nm: hollow barrel (proteasome-like) with a cap on one end only.
    "barrel": _Builtin(
        "hollow cylinder 15 nm long, r 5.5 nm (wall 2 nm) with a cap at one end",
        lambda: _union(
            _subtract(_sd_cylinder((0, 0, 0), 5.5, 7.5), _sd_cylinder((0, 0, 0), 3.5, 8.0)),
            _sd_cylinder((0, 0, 8.3), 4.0, 0.9),
        ),
        11.0,
    ),
    # ~22 nm: three arms of different length from a hub, one ending in a ball.
    "tripod": _Builtin("hub with three arms of different length (9, 7, 6 nm), one ending in a ball", _arms, 12.0),
    # ~25 nm: long straight rod with an off-axis head (filament fragment / antibody-like).
    "rod": _Builtin(
        "rod 22 nm long, r 1.8 nm, with an off-axis head ball r 3 nm",
        lambda: _union(_sd_capsule((-11.0, 0, 0), (11.0, 0, 0), 1.8), _sd_ball((9.0, 2.5, 0.0), 3.0)),
        14.0,
    ),
    # ~29 nm: ribosome-like: a large and a small ellipsoidal subunit, with a stalk.
    "ribosome_like": _Builtin(
        "large (17x14x13 nm) and small (16x9x7 nm) ellipsoidal subunits, a stalk and a side lobe",
        lambda: _union(
            _sd_ellipsoid((0, 0, -2.5), (8.5, 7.0, 6.5)),
            _sd_ellipsoid((2.0, 2.5, 6.0), (8.0, 4.5, 3.5)),
            _sd_capsule((5.0, -4.0, -4.0), (13.0, -9.0, -5.0), 1.5),
            _sd_ball((-7.5, -3.0, 1.0), 2.5),
        ),
        18.5,
    ),
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
    key = name[len("builtin:") :] if name.startswith("builtin:") else name
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
