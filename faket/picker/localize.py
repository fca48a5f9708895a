"""Particle picks from a class map: MeanShift clustering (scikit-learn), as DeepFinder localises, at any sampling.

DeepFinder clusters all foreground voxels together (``per_class=False``) with one bandwidth: each cluster takes
the class most of its voxels carry (majority label), and clusters smaller than their class's minimum size are
dropped. One bandwidth in voxels is right at one sampling only (DeepFinder's 5 voxels at the FakET paper's
20 A grid): MeanShift's flat kernel leaves every point of a uniform region wider than the bandwidth where it
is, so a particle larger than the bandwidth breaks into several modes (a perfect class map at 10 A gave 204
picks for 49 particles), and one much larger merges neighbours.

Scale-aware localisation (:func:`class_bandwidths`, the default of ``faket picker localize``): each class is
clustered on its own (``per_class``) with a bandwidth from its size, in voxels of this map:

- half its largest extent (``diameter_nm`` of the class table ``classes.json`` that ``faket layout`` and
  ``faket labels`` write beside their class masks), or
- the diameter of the sphere of its mean particle volume (``class_sizes`` of a trained picker, voxels),

so a whole particle lies within one bandwidth of its centre. Then a cluster longer than one particle can be
(``max_extent``: 1.15 x the class diameter + half a voxel; a class mask's particles measure 0.92-1.12 x
their diameter at 10 and 20 A) or holding 1.5 particle volumes or more (``particle_size``) is touching
particles of one class merged, and k-means (scikit-learn, seeded) cuts it into the fewest parts that fit;
and (``snap``) a centre that does not fall on a voxel of its cluster (a hollow vesicle, an L-shaped
particle) moves to the nearest one, so that the pick lies on its particle. Classes whose kind is
:data:`NOT_PARTICLES` (membranes, filaments) are not localised. Cluster centres are in voxels (x, y, z) of the
class map.

Measured (docs/picker.md; layouts of config/layout.yaml, seeds 1-3, 49 particles each, and a cellular layout,
18 particles): a perfect class map gives localisation F1 0.99-1.0 and classification macro F1 1.0 at 10 A
and at bin 2, against F1 0.40 and 197 picks with the fixed 5 voxels at 10 A.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

#: kinds of the class table (``classes.json``) that are structures, not particles: not localised
NOT_PARTICLES = ("membrane", "filament")
#: bandwidth (Angstrom) for a class of unknown size: DeepFinder's 5 voxels at the FakET paper's 20 A grid
DEFAULT_BANDWIDTH_A = 100.0
#: a cluster of ``n >= SPLIT_RATIO * size`` voxels (``size``: a particle's mean volume) holds
#: ``round(n / size)`` particles
SPLIT_RATIO = 1.5
#: a cluster longer than ``EXTENT_TOLERANCE * diameter + 0.5`` voxels holds more than one particle (a class
#: mask's particles measure 0.92-1.12 of their class's ``diameter_nm`` at 10 and 20 A)
EXTENT_TOLERANCE = 1.15
#: at most this many particles are cut out of one cluster
MAX_SPLIT = 6


def class_bandwidths(
    voxel_size_a: float | None,
    *,
    diameters_nm: Mapping[int, float] | None = None,
    sizes_voxels: Mapping[int, float] | None = None,
) -> dict[int, float]:
    """MeanShift bandwidth per class, in voxels of a map of ``voxel_size_a``: half the class's largest extent
    (``diameters_nm``, the class table's ``diameter_nm``) or, for classes without it, the diameter of the
    sphere of its mean particle volume (``sizes_voxels``, a trained picker's ``class_sizes``, in voxels of
    this map). Classes with neither are left out; without a voxel size only ``sizes_voxels`` count."""
    out = {}
    for c, v in (sizes_voxels or {}).items():
        if v and v > 0:
            out[int(c)] = 2.0 * (3.0 * float(v) / (4.0 * math.pi)) ** (1.0 / 3.0)
    for c, d in (diameters_nm or {}).items():
        if d and d > 0 and voxel_size_a and voxel_size_a > 0:
            out[int(c)] = 0.5 * float(d) * 10.0 / float(voxel_size_a)
    return {c: max(1.0, b) for c, b in out.items()}


def _meanshift(points: np.ndarray, bandwidth: float, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """(cluster per point, cluster centres). More than ``max_points`` points: the modes are found on an evenly
    strided subset (deterministic) and every point joins its nearest mode, which bounds the run time of a
    poorly trained picker's large foreground."""
    # lazy: sklearn
    from sklearn.cluster import MeanShift

    pts = points.astype(np.float64)
    if len(pts) == 1:
        return np.zeros(1, np.int64), pts
    ms = MeanShift(bandwidth=bandwidth, bin_seeding=True, cluster_all=True)
    if len(pts) <= max_points:
        return ms.fit_predict(pts), ms.cluster_centers_
    stride = int(np.ceil(len(pts) / max_points))
    ms.fit(pts[::stride])
    return ms.predict(pts), ms.cluster_centers_


def _snap(centre: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """``centre``, or the voxel of ``pts`` nearest to it when its own voxel is not one of ``pts``."""
    r = np.rint(centre).astype(np.int64)
    if (pts == r).all(axis=1).any():
        return centre
    return pts[np.argmin(((pts - centre) ** 2).sum(axis=1))].astype(np.float64)


def _extent(pts: np.ndarray) -> float:
    """Largest distance between two points (voxel centres) of ``pts``."""
    # lazy: scipy
    from scipy.spatial import ConvexHull, QhullError
    from scipy.spatial.distance import pdist

    p = np.asarray(pts, dtype=np.float64)
    if len(p) < 2:
        return 0.0
    if len(p) > 8:
        try:
            p = p[ConvexHull(p).vertices]  # only hull vertices can be the farthest pair
        except QhullError:  # flat or degenerate: every point is a candidate
            return float(pdist(p).max())
    return float(pdist(p).max())


def _kmeans(pts: np.ndarray, k: int) -> list[np.ndarray]:
    # lazy: sklearn
    from sklearn.cluster import KMeans

    lab = KMeans(n_clusters=k, n_init=10, random_state=0).fit_predict(pts.astype(np.float64))
    return [pts[lab == j] for j in range(k) if (lab == j).any()]


def _split(pts: np.ndarray, c: int, max_extent: Mapping[int, float], particle_size: Mapping[int, float]):
    """The particles of one cluster of class ``c``: more than one when it is longer than one particle can be
    (``max_extent[c]`` voxels) or holds ``>= SPLIT_RATIO`` particle volumes (``particle_size[c]`` voxels);
    k-means (seeded) then cuts it into the fewest parts that fit (at most ``MAX_SPLIT``)."""
    ext, size = max_extent.get(c), particle_size.get(c)
    if ext is not None:
        if _extent(pts) <= ext:
            return [pts]
        for k in range(2, min(MAX_SPLIT, len(pts)) + 1):
            parts = _kmeans(pts, k)
            if all(_extent(q) <= ext for q in parts):
                return parts
        return [pts]
    if size is not None and len(pts) >= SPLIT_RATIO * size:
        return _kmeans(pts, min(int(round(len(pts) / size)), MAX_SPLIT, len(pts)))
    return [pts]


def localize(
    labels: np.ndarray,
    *,
    bandwidth: float | Mapping[int, float] = 5.0,
    min_size: int | Mapping[int, int] = 1,
    per_class: bool = False,
    class_names: Mapping[int, str] | None = None,
    scores: np.ndarray | None = None,
    max_points: int = 50_000,
    max_extent: Mapping[int, float] | None = None,
    particle_size: Mapping[int, float] | None = None,
    snap: bool = False,
    skip_classes=(),
    default_bandwidth: float = 5.0,
) -> pd.DataFrame:
    """Picks from a class map (Z, Y, X; 0 = background) as a particle table (faket.formats.table columns).

    ``bandwidth``: MeanShift bandwidth in voxels, one number or ``{class_id: bandwidth}`` (each class then
    clustered on its own with its bandwidth, ``default_bandwidth`` for classes not given;
    :func:`class_bandwidths`). ``min_size``: minimum cluster size in voxels, one number or
    ``{class_id: size}`` (classes not given: 1). ``max_extent`` / ``particle_size`` (``{class_id: voxels}``):
    split clusters of several particles (module doc); ``snap``: put centres on their cluster. ``skip_classes``: class ids not localised (membranes,
    filaments). ``class_names``: ``{class_id: name}`` for the ``class_name`` column (default ``class<id>``).
    ``scores`` (C, Z, Y, X), optional: adds a ``score`` column, the cluster's mean probability of its class.
    ``max_points``: above this many foreground voxels (per clustering), modes are found on a strided subset.
    Rows are ordered by class, then z, y, x; particle_id = 1..N.
    """
    # lazy: pandas
    from faket.formats.table import COLUMNS

    lab = np.asarray(labels)
    if lab.ndim != 3:
        raise ValueError(f"class map must be 3D (Z, Y, X), got shape {lab.shape}")
    per = isinstance(bandwidth, Mapping)
    bws = {int(c): float(b) for c, b in bandwidth.items()} if per else {}
    for b in [*bws.values(), default_bandwidth] if per else [bandwidth]:
        if not b > 0:
            raise ValueError(f"bandwidth {b}: must be positive")

    def min_of(c: int) -> int:
        if isinstance(min_size, Mapping):
            return int(min_size.get(int(c), 1))
        return int(min_size)

    skip = {int(c) for c in skip_classes}
    zyx = np.argwhere(lab > 0)
    cls = lab[tuple(zyx.T)].astype(np.int64) if len(zyx) else np.zeros(0, np.int64)
    if skip and len(cls):
        keep = ~np.isin(cls, list(skip))
        zyx, cls = zyx[keep], cls[keep]
    if per or per_class:
        groups = [(int(c), cls == c) for c in np.unique(cls)]
    else:
        groups = [(None, np.ones(len(cls), bool))]
    clusters = []  # (class id, member points (n, 3) zyx, centre zyx)
    for c, sel in groups:
        pts = zyx[sel]
        if len(pts) == 0:
            continue
        bw = bws.get(c, default_bandwidth) if per else float(bandwidth)
        memb, centres = _meanshift(pts, bw, max_points)
        pcls = cls[sel]
        for k in range(len(centres)):
            m = memb == k
            if not m.any():
                continue
            ids, counts = np.unique(pcls[m], return_counts=True)
            clusters.append((int(ids[np.argmax(counts)]), pts[m], np.asarray(centres[k], np.float64)))
    if clusters and (max_extent or particle_size):
        out = []
        for c, p, centre in clusters:
            parts = _split(p, c, max_extent or {}, particle_size or {})
            if len(parts) == 1:
                out.append((c, p, centre))
            else:
                out.extend((c, q, q.mean(axis=0)) for q in parts)
        clusters = out
    rows = []
    for cid, p, centre in clusters:
        n = len(p)
        if n < min_of(cid):
            continue
        if snap:
            centre = _snap(centre, p)
        z, y, x = (float(v) for v in centre)
        row = {"class_id": cid, "x": x, "y": y, "z": z, "size": n}
        if scores is not None:
            row["score"] = float(np.asarray(scores)[cid][tuple(p.T)].mean())
        rows.append(row)
    extra = ["size"] + (["score"] if scores is not None else [])
    if not rows:
        return pd.DataFrame({c: [] for c in list(COLUMNS) + extra})
    df = pd.DataFrame(rows).sort_values(["class_id", "z", "y", "x"], kind="stable").reset_index(drop=True)
    names = class_names or {}
    df["class_name"] = [names.get(int(c), f"class{int(c)}") for c in df["class_id"]]
    df["particle_id"] = np.arange(1, len(df) + 1)
    for a in ("rot", "tilt", "psi"):
        df[a] = 0.0
    return df[list(COLUMNS) + extra]
