"""Voxel-size contracts, defined once: the size assumed when an input says none, and when two sizes are the
same sampling or the same grid. Pure numbers (no I/O): every layer may import them.
"""

from __future__ import annotations

__all__ = ["DEFAULT_VOXEL_SIZE_A", "SAME_SAMPLING_RTOL", "SAME_GRID_RTOL", "same_sampling", "same_grid"]

#: Angstrom per voxel of a layout spec without ``voxel_size``, and assumed (with a warning) for an MRC whose
#: header has none (0 or 1) when no ``--voxel-size`` is given
DEFAULT_VOXEL_SIZE_A = 10.0

#: two pixel / voxel sizes within this relative difference are the same sampling: a reference is used as it
#: is (no resampling: a 1 % scale change moves a feature r pixels from the centre by r/100 pixels), and a
#: picker trained at one is applied to tomograms at the other
SAME_SAMPLING_RTOL = 0.01

#: sizes that must describe one grid (chunks of one tilt-series, the tomograms and masks of one dataset row)
#: may differ only by the float32 rounding of an MRC header's cell / grid ratio, far below this
SAME_GRID_RTOL = 1e-3


def _rel(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


def same_sampling(a: float | None, b: float | None) -> bool:
    """Whether two sizes (Angstrom; ``None`` or 0: unknown, which matches anything) are the same sampling."""
    return not (a and b) or _rel(float(a), float(b)) <= SAME_SAMPLING_RTOL


def same_grid(a: float | None, b: float | None) -> bool:
    """Whether two header sizes (Angstrom) describe one grid: both unknown, or equal within :data:`SAME_GRID_RTOL`."""
    if a is None or b is None:
        return a is None and b is None
    return _rel(float(a), float(b)) <= SAME_GRID_RTOL
