"""Is a difference between two benchmark rows real? Paired differences with a bootstrap interval.

Two rows of the benchmark (e.g. FAKET and NOISY) are scored on the same units: (picker seed, test tomogram).
The paired difference per unit is ``a - b``; its mean over the units gets a percentile bootstrap interval
(``n_boot`` resamples from a seeded generator: the same inputs and seed give the same interval). The units are
not independent: the test tomograms scored by one picker seed share that seed's two networks, and the seed
spread is the larger part of the variance. So the bootstrap is two-stage (a cluster bootstrap): the picker
seeds are resampled with replacement, then the test tomograms within each drawn seed. With 2 seeds the interval
is about the range of the two seeds' mean differences: "separated" then means both seeds agree in sign and the
tomograms do not blur it. A comparison is *separated* only where the interval excludes 0, and only with units
from >= 2 seeds.

Pure functions (arrays and tables in, numbers and tables out).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from faket.picker import N_BOOT  # defined with the picker's defaults (no numpy at faket's start-up)

LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    """Mean paired difference ``a - b`` over ``n`` units and its bootstrap interval [low, high]."""

    mean: float
    low: float
    high: float
    n: int
    level: float = LEVEL
    n_groups: int | None = None  # independent groups (picker seeds) the units came from; None: n

    @property
    def separated(self) -> bool:
        """The interval excludes 0 (the difference is not explained by resampling the units), with >= 2 groups."""
        groups = self.n if self.n_groups is None else self.n_groups
        return bool(self.n > 1 and groups > 1 and (self.low > 0 or self.high < 0))


def paired_bootstrap(
    a: Sequence[float],
    b: Sequence[float],
    *,
    groups: Sequence | None = None,
    n_boot: int = N_BOOT,
    level: float = LEVEL,
    seed: int = 0,
) -> Interval:
    """Mean of the paired differences ``a[i] - b[i]`` with a percentile bootstrap interval at ``level``.

    ``a`` and ``b`` hold one value per unit, in the same unit order. ``groups`` (one label per unit, e.g. the
    picker seed): a two-stage bootstrap, groups drawn with replacement, then units within each drawn group;
    ``None``: every unit its own group (the plain bootstrap). Identical inputs give [0, 0]; one group gives an
    interval that is never "separated".
    """
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired values need the same number of units ({a.size} != {b.size})")
    if a.size == 0:
        raise ValueError("no paired units")
    if not 0 < level < 1:
        raise ValueError(f"level {level}: must lie in (0, 1)")
    d = a - b
    if not np.all(np.isfinite(d)):
        raise ValueError("paired values must be finite")
    members = None  # with groups: the unit indices of each group, in first-seen order
    if groups is not None:
        g = np.asarray(list(groups))
        if g.size != d.size:
            raise ValueError(f"groups: {g.size} labels for {d.size} units")
        members = [np.flatnonzero(g == lab) for lab in dict.fromkeys(g.tolist())]
    n_groups = d.size if members is None else len(members)
    mean = float(d.mean())
    if d.size == 1 or np.all(d == d[0]):
        return Interval(mean, mean, mean, int(d.size), level, n_groups)
    rng = np.random.default_rng(seed)
    n_boot = int(n_boot)
    if members is None:
        idx = rng.integers(0, d.size, size=(n_boot, d.size))
        means = d[idx].mean(axis=1)
    else:
        pick = rng.integers(0, n_groups, size=(n_boot, n_groups))  # stage 1: groups
        sums = np.zeros(n_boot)
        counts = np.zeros(n_boot)
        for k, mem in enumerate(members):  # stage 2: units within each drawn group (vectorised per group)
            times = (pick == k).sum(axis=1)  # how often group k was drawn in each resample
            for t in range(1, int(times.max(initial=0)) + 1):
                rows = np.flatnonzero(times >= t)
                draw = mem[rng.integers(0, mem.size, size=(rows.size, mem.size))]
                sums[rows] += d[draw].sum(axis=1)
                counts[rows] += mem.size
        means = sums / counts
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return Interval(mean, float(lo), float(hi), int(d.size), level, n_groups)


def paired_values(rows: pd.DataFrame, a: str, b: str, metric: str) -> tuple[np.ndarray, np.ndarray, list]:
    """The values of ``metric`` of rows ``a`` and ``b`` (column ``modality``) on their common units
    (seed, test), in one order: ``(values a, values b, units)``."""
    ka = rows[rows["modality"] == a].set_index(["seed", "test"])[metric]
    kb = rows[rows["modality"] == b].set_index(["seed", "test"])[metric]
    units = sorted(set(ka.index) & set(kb.index))
    return (
        ka.loc[units].to_numpy(dtype=float) if units else np.zeros(0),
        kb.loc[units].to_numpy(dtype=float) if units else np.zeros(0),
        units,
    )


def compare(
    rows: pd.DataFrame,
    pairs: Sequence[tuple[str, str]],
    metrics: Sequence[str] = ("loc_f1", "cls_macro_f1"),
    *,
    n_boot: int = N_BOOT,
    level: float = LEVEL,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per comparison ``a - b`` and metric: mean paired difference, interval, units, separated.

    Comparisons whose rows share no unit are left out.
    """
    out = []
    for a, b in pairs:
        for m in metrics:
            va, vb, units = paired_values(rows, a, b, m)
            if not units:
                continue
            ok = np.isfinite(va) & np.isfinite(vb)
            if not ok.any():
                continue
            seeds = [u[0] for u, k in zip(units, ok) if k]
            iv = paired_bootstrap(va[ok], vb[ok], groups=seeds, n_boot=n_boot, level=level, seed=seed)
            out.append(
                {
                    "a": a,
                    "b": b,
                    "metric": m,
                    "mean_a": float(va[ok].mean()),
                    "mean_b": float(vb[ok].mean()),
                    "diff": iv.mean,
                    "low": iv.low,
                    "high": iv.high,
                    "n_units": iv.n,
                    "n_seeds": iv.n_groups,
                    "level": level,
                    "separated": iv.separated,
                }
            )
    cols = ["a", "b", "metric", "mean_a", "mean_b", "diff", "low", "high", "n_units", "n_seeds", "level", "separated"]
    return pd.DataFrame(out, columns=cols)
