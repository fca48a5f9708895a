"""Tilt-series helpers shared by the noise and style steps: matching tilts by angle, chunks of tilts."""

from __future__ import annotations

import numpy as np

from faket.errors import InputError
from faket.formats.mrc import parse_range


def match_by_angle(
    content_angles_deg, reference_angles_deg, *, max_gap_deg: float | None = None, source: str = "reference"
) -> tuple[np.ndarray, np.ndarray]:
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
            f"(nearest {r[idx[i]]:g} deg); reference covers {r.min():g}..{r.max():g} deg"
        )
    return idx.astype(np.int64), gap


def match_stack(
    content_angles_deg,
    n_content: int,
    reference_angles_deg,
    n_reference: int,
    *,
    reference_path,
    content_path,
    max_gap_deg: float | None,
    kind: str = "reference",
    warn=None,
) -> tuple[np.ndarray, np.ndarray]:
    """Match the tilts of a reference stack (``n_reference`` tilts, angles or ``None``) to content tilts.

    One image serves every tilt. Without angles on either side, tilts are matched by index when the counts
    agree (with a warning) and refused otherwise; with angles, :func:`match_by_angle`, warning (through
    ``warn(message)``) when the largest gap exceeds 1 degree. ``kind`` names the reference in messages.
    Returns ``(idx, gap_deg)`` as :func:`match_by_angle`.
    """
    if n_reference == 1:
        return np.zeros(n_content, dtype=np.int64), np.zeros(n_content)
    if reference_angles_deg is None or content_angles_deg is None:
        missing = reference_path if reference_angles_deg is None else content_path
        if n_reference == n_content:
            if warn:
                warn(f"{missing}: no .tlt angles; matching {kind} tilts to content tilts by index")
            return np.arange(n_content), np.zeros(n_content)
        raise InputError(
            f"{missing}: no tilt angles (.tlt beside it) to match {n_reference} {kind} tilts to "
            f"{n_content} content tilts"
        )
    idx, gap = match_by_angle(
        content_angles_deg, reference_angles_deg, max_gap_deg=max_gap_deg, source=str(reference_path)
    )
    if gap.max() > 1.0 and warn:
        i = int(np.argmax(gap))
        warn(
            f"{reference_path}: content tilt {content_angles_deg[i]:g} deg uses the nearest {kind} tilt "
            f"{reference_angles_deg[idx[i]]:g} deg ({gap.max():.3g} deg away)"
        )
    return idx, gap


def parse_tilt_chunk(spec: str | None, n_tilts: int) -> tuple[int, int]:
    """``"a:b"`` -> half-open tilt index range inside ``[0, n_tilts)``; ``None`` -> all tilts."""
    if spec is None:
        return 0, n_tilts

    a, b = parse_range(spec, "--tilts")
    if a < 0 or b > n_tilts:
        raise InputError(f"--tilts {spec}: outside 0:{n_tilts}")
    return a, b
