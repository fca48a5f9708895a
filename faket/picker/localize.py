"""Particle picks from a class map: MeanShift clustering (scikit-learn), as DeepFinder localises.

DeepFinder clusters all foreground voxels together (``per_class=False``): each cluster takes the class most
of its voxels carry (majority label), and clusters smaller than their class's minimum size are dropped.
``per_class=True`` clusters each class's voxels on their own (neighbouring particles of different classes
are then never merged). Cluster centres are the MeanShift modes, in voxels (x, y, z) of the class map.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd


def _meanshift(points: np.ndarray, bandwidth: float, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """(cluster per point, cluster centres). More than ``max_points`` points: the modes are found on an evenly
    strided subset (deterministic) and every point joins its nearest mode, which bounds the run time of a
    poorly trained picker's large foreground."""
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


def localize(labels: np.ndarray, *, bandwidth: float = 5.0, min_size: int | Mapping[int, int] = 1,
             per_class: bool = False, class_names: Mapping[int, str] | None = None,
             scores: np.ndarray | None = None, max_points: int = 50_000) -> pd.DataFrame:
    """Picks from a class map (Z, Y, X; 0 = background) as a particle table (faket.formats.particles columns).

    ``min_size``: minimum cluster size in voxels, one number or ``{class_id: size}`` (classes not given:
    1). ``class_names``: ``{class_id: name}`` for the ``class_name`` column (default ``class<id>``).
    ``scores`` (C, Z, Y, X), optional: adds a ``score`` column, the cluster's mean probability of its class.
    ``max_points``: above this many foreground voxels (per clustering), modes are found on a strided subset.
    Rows are ordered by class, then z, y, x; particle_id = 1..N.
    """
    from faket.formats.table import COLUMNS

    lab = np.asarray(labels)
    if lab.ndim != 3:
        raise ValueError(f"class map must be 3D (Z, Y, X), got shape {lab.shape}")
    if bandwidth <= 0:
        raise ValueError(f"bandwidth {bandwidth}: must be positive")

    def min_of(c: int) -> int:
        if isinstance(min_size, Mapping):
            return int(min_size.get(int(c), 1))
        return int(min_size)

    zyx = np.argwhere(lab > 0)
    cls = lab[tuple(zyx.T)].astype(np.int64) if len(zyx) else np.zeros(0, np.int64)
    groups = [(c, cls == c) for c in np.unique(cls)] if per_class else [(None, np.ones(len(cls), bool))]
    rows = []
    for c, sel in groups:
        pts = zyx[sel]
        if len(pts) == 0:
            continue
        memb, centres = _meanshift(pts, bandwidth, max_points)
        pcls = cls[sel]
        for k in range(len(centres)):
            m = memb == k
            n = int(m.sum())
            if n == 0:
                continue
            ids, counts = np.unique(pcls[m], return_counts=True)
            cid = int(ids[np.argmax(counts)])     # majority label (ties: the smaller id)
            if n < min_of(cid):
                continue
            z, y, x = (float(v) for v in centres[k])
            row = {"class_id": cid, "x": x, "y": y, "z": z, "size": n}
            if scores is not None:
                vox = pts[m]
                row["score"] = float(np.asarray(scores)[cid][tuple(vox.T)].mean())
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
