"""Tilt-series helpers shared by the noise and style steps: matching tilts by angle, chunks of tilts."""

from __future__ import annotations

import numpy as np

from .errors import InputError


def match_by_angle(content_angles_deg, reference_angles_deg, *, max_gap_deg: float | None = None,
                   source: str = "reference") -> tuple[np.ndarray, np.ndarray]:
    """For each content tilt, the index of the reference tilt nearest in angle.

    Parameters
    ----------
    content_angles_deg : (T,) angles of the content tilts.
    reference_angles_deg : (R,) angles of the reference tilts, or ``None`` / one angle for a single
        image that serves every tilt (index 0 everywhere, gap 0).
    max_gap_deg : raise :class:`InputError` when a content tilt is further than this from every
        reference tilt (``None``: never).

    Returns
    -------
    idx : (T,) int indices into the reference tilts.
    gap_deg : (T,) absolute angle differences.
    """
    c = np.asarray(content_angles_deg, dtype=np.float64).ravel()
    if reference_angles_deg is None or np.size(reference_angles_deg) <= 1:
        return np.zeros(c.size, dtype=np.int64), np.zeros(c.size)
    r = np.asarray(reference_angles_deg, dtype=np.float64).ravel()
    d = np.abs(c[:, None] - r[None, :])
    idx = np.argmin(d, axis=1)  # ties -> the first (lowest index) reference tilt
    gap = d[np.arange(c.size), idx]
    if max_gap_deg is not None and c.size and gap.max() > max_gap_deg:
        i = int(np.argmax(gap))
        raise InputError(
            f"{source}: no tilt within {max_gap_deg:g} deg of content tilt {c[i]:g} deg "
            f"(nearest {r[idx[i]]:g} deg); reference covers {r.min():g}..{r.max():g} deg")
    return idx.astype(np.int64), gap


def parse_tilt_chunk(spec: str | None, n_tilts: int) -> tuple[int, int]:
    """``"a:b"`` -> half-open tilt index range inside ``[0, n_tilts)``; ``None`` -> all tilts."""
    if spec is None:
        return 0, n_tilts
    from .io import parse_range

    a, b = parse_range(spec, "--tilts")
    if a < 0 or b > n_tilts:
        raise InputError(f"--tilts {spec}: outside 0:{n_tilts}")
    return a, b
