"""The :class:`Template` contract and the box helpers every template source shares (see
:mod:`faket.layout.templates`): odd cube, centre of mass on the centre voxel, zero padding for any rotation."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from faket.errors import InputError

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
            # lazy: scipy
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
    return Template(
        name=name, density=d, voxel_size_a=float(voxel_size_a), source=source, diameter_nm=diameter_nm(d, voxel_size_a)
    )
