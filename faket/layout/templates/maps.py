"""MRC density maps -> templates: background subtraction, mass-preserving voxel-mean resampling,
centring and scaling to protein-density units (the interior rule; see :mod:`faket.layout.templates`)."""

from __future__ import annotations

import math

import numpy as np

from faket.errors import InputError
from faket.layout.templates.base import Template, _check_voxel, _clean_small, _finish, centre_of_mass

#: What the interior rule (densest voxels holding half the mass, after a 3 A Gaussian) reads on atomic
#: templates in protein-density units (measured 0.83-0.94 on 1oel, 1bxn, 3gl1, 3qm1 at 2-8 A; built-in
#: solids read 0.97-1.0). Maps are scaled so the rule reads this value, like a model of the same molecule.
MAP_INTERIOR_LEVEL = 0.88


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


def resample_volume(vol: np.ndarray, v_in: float, v_out: float, n_out: int, centre_in_zyx: np.ndarray) -> np.ndarray:
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
    return np.concatenate(
        [d[0].ravel(), d[-1].ravel(), d[:, 0].ravel(), d[:, -1].ravel(), d[:, :, 0].ravel(), d[:, :, -1].ravel()]
    )


def subtract_background(density: np.ndarray, *, speck_fraction: float = 0.05) -> np.ndarray:
    """Remove a map's background: subtract the box-edge level (median of the outer voxel shell) and a
    noise floor of 2 robust sigmas of the edge (1.4826 MAD), clip at 0, then drop isolated specks
    (26-connected pieces lighter than ``speck_fraction`` of the heaviest piece).

    The noise floor is skipped when it would remove over 90 % of the density (tight crops whose density
    touches the box edge, so the edge is not solvent). Clean masked maps (edge exactly 0) are unchanged.
    """
    # lazy: scipy
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


def _interior_level(d: np.ndarray, voxel_size_a: float, mass_fraction: float = 0.5, smooth_a: float = 3.0) -> float:
    """Mean of the densest voxels holding ``mass_fraction`` of the mass, after a ``smooth_a`` Gaussian."""
    # lazy: scipy
    from scipy.ndimage import gaussian_filter

    s = gaussian_filter(np.asarray(d, np.float64), sigma=smooth_a / voxel_size_a, mode="constant")
    vals = np.sort(s[s > 0].ravel())[::-1]
    if vals.size == 0:
        return 0.0
    cum = np.cumsum(vals)
    k = int(np.searchsorted(cum, mass_fraction * cum[-1])) + 1
    return float(vals[:k].mean())


def template_from_map(
    density: np.ndarray,
    map_voxel_size_a: float,
    voxel_size_a: float,
    name: str,
    source: str = "",
    *,
    normalize: bool = True,
) -> Template:
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
        raise InputError(
            f"{source or name}: density map is empty after background subtraction (no density above the box-edge level)"
        )
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
