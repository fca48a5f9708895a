"""Real-data hazards of a reference tilt-series: blank, dark or saturated tilts, and contrast polarity.

Bad tilts (:func:`bad_tilts`, from per-tilt statistics of the raw tilts, :class:`TiltStats`):

- blank: (near) constant, ``std <= 1e-3 x`` the series' median std, or one value covers >= 50 % of the pixels
  (masked or zero-filled tilts: tomoDRGN's sub-tilt-series store invisible tilts as a constant ~6e-5);
- dark: the beam blocked (grid bar, shutter) on data on an intensity scale (median mean > 3 median std, i.e.
  counts or electrons rather than normalised values): ``mean < 0.2 x`` the median mean;
- saturated: >= 1 % of the pixels at the tilt's own maximum or minimum (clipped), when that value is not shared
  by the ordinary tilts' distributions (quantised data repeat values, so the test needs >= 5 % of the pixels
  at one extreme on quantised data: integer-valued tilts).
Such tilts are excluded from fits and style targets (the content tilts they matched use the nearest kept tilt).

Contaminated tilts (:func:`dark_regions`): a large dark region (an ice crystal, carbon, a grid bar's edge, thick
ice) inside an otherwise good tilt passes the per-tilt checks above, yet its step dominates the tilt's variance, so a
blind noise fit reads it as signal (a contaminated micrograph read SNR 31 where its clean part reads 0.37). Block
means are compared with their median; the largest connected group of blocks far below it is reported when it covers
>= 5 % of the tilt.

Contrast polarity (:func:`polarity`): in a bright-field cryo-ET image, dense matter (protein, membranes, gold
beads) absorbs/scatters: it is darker than the ice, and it is a minority of the pixels, so the intensity
distribution of a low-passed tilt has a long tail towards *low* values. The statistic is the quantile skewness
``(q99 + q01 - 2 q50) / (q99 - q01)`` of the tilt after a Gaussian low-pass (sigma 2 px at the content's
sampling, which averages ~50 pixels: shot noise, whose own skew is 1/sqrt(counts), is reduced ~7x), median over
kept tilts. Negative: dense = dark (the convention of faket's projections and of raw micrographs); positive:
dense = bright (inverted, e.g. exported particles, or dark-field/HAADF data). |stat| < 0.03: undetermined.
The 1 %/99 % quantiles ignore hot pixels and single X-ray hits; the statistic is odd under ``x -> -x``, so a
flipped series reads the opposite sign exactly (tested on real data).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "TiltStats",
    "tilt_stats_raw",
    "bad_tilts",
    "polarity",
    "POLARITY_THRESHOLD",
    "dark_regions",
    "DARK_REGION_MIN_FRACTION",
]

POLARITY_THRESHOLD = 0.03


@dataclass
class TiltStats:
    """Per-tilt statistics of raw tilts, filled one tilt at a time with :meth:`add` (no second pass)."""

    n: int
    mean: np.ndarray = field(init=False)
    std: np.ndarray = field(init=False)
    frac_max: np.ndarray = field(init=False)
    frac_min: np.ndarray = field(init=False)
    frac_mode: np.ndarray = field(init=False)
    integer: np.ndarray = field(init=False)

    def __post_init__(self):
        self.mean = np.full(self.n, np.nan)
        self.std = np.full(self.n, np.nan)
        self.frac_max = np.zeros(self.n)
        self.frac_min = np.zeros(self.n)
        self.frac_mode = np.zeros(self.n)
        self.integer = np.zeros(self.n, dtype=bool)

    def add(self, i: int, tilt) -> None:
        t = np.asarray(tilt)
        f = t.reshape(-1)
        if f.dtype.kind == "f" and f.dtype.itemsize < 4:
            f = f.astype(np.float32)
        m = float(f.mean(dtype=np.float64))
        self.mean[i] = m
        self.std[i] = float(
            np.sqrt(max(float(np.mean(np.square(f - np.float32(m), dtype=np.float32), dtype=np.float64)), 0.0))
        )
        lo, hi = f.min(), f.max()
        n = f.size
        self.frac_max[i] = np.count_nonzero(f == hi) / n
        self.frac_min[i] = np.count_nonzero(f == lo) / n
        # one value covering most pixels (constant fill); sample for speed on large tilts
        s = f[:: max(1, n // 65536)]
        _, counts = np.unique(s, return_counts=True)
        self.frac_mode[i] = counts.max() / s.size
        self.integer[i] = f.dtype.kind in "iu" or bool(np.all(s == np.round(s)))


def tilt_stats_raw(stack) -> TiltStats:
    """:class:`TiltStats` of every tilt of a ``(T, Y, X)`` stack (memory-mapped stacks: one tilt at a time)."""
    st = TiltStats(stack.shape[0])
    for i in range(stack.shape[0]):
        st.add(i, stack[i])
    return st


def bad_tilts(st: TiltStats) -> dict[int, str]:
    """``{tilt index: reason}`` for blank, dark or saturated tilts (see the module doc)."""
    out: dict[int, str] = {}
    std = st.std
    med_std = float(np.median(std)) if std.size else 0.0
    med_mean = float(np.median(st.mean))
    intensity_scale = med_mean > 3 * med_std > 0
    for i in range(st.n):
        if not np.isfinite(std[i]) or std[i] <= 1e-3 * med_std or std[i] == 0 or st.frac_mode[i] >= 0.5:
            out[i] = f"blank (std {std[i]:.3g} vs median {med_std:.3g})"
        elif intensity_scale and st.mean[i] < 0.2 * med_mean:
            out[i] = f"dark (mean {st.mean[i]:.4g} vs median {med_mean:.4g})"
        else:
            lim = 0.05 if st.integer[i] else 0.01
            ext = max(st.frac_max[i], st.frac_min[i])
            if ext >= lim:
                typical = float(np.median(np.maximum(st.frac_max, st.frac_min)))
                if ext >= 3 * typical:
                    out[i] = f"saturated ({100 * ext:.1f}% of pixels at one extreme value)"
    return out


def polarity(tilts: np.ndarray, *, sigma_px: float = 2.0, max_tilts: int = 16) -> dict:
    """Contrast polarity of a (resampled) ``(T, Y, X)`` stack: ``{"statistic", "verdict", "per_tilt"}``.

    ``verdict``: ``"dark"`` (dense objects dark, faket's convention), ``"bright"`` (inverted) or
    ``"undetermined"``. Evaluated on up to ``max_tilts`` tilts spread over the series."""
    # lazy: scipy
    from scipy.ndimage import gaussian_filter

    t = np.asarray(tilts)
    T = t.shape[0]
    sel = np.unique(np.linspace(0, T - 1, min(T, max_tilts)).round().astype(int))
    vals = []
    for i in sel:
        x = gaussian_filter(np.asarray(t[i], dtype=np.float32), sigma_px, mode="reflect")
        q01, q50, q99 = np.percentile(x, [1, 50, 99])
        if q99 > q01:
            vals.append(float((q99 + q01 - 2 * q50) / (q99 - q01)))
    stat = float(np.median(vals)) if vals else 0.0
    verdict = "undetermined"
    if stat <= -POLARITY_THRESHOLD:
        verdict = "dark"
    elif stat >= POLARITY_THRESHOLD:
        verdict = "bright"
    return {
        "statistic": round(stat, 4),
        "verdict": verdict,
        "per_tilt": [round(v, 4) for v in vals],
        "definition": "median over tilts of (q99 + q01 - 2 q50) / (q99 - q01) after a Gaussian low-pass "
        f"(sigma {sigma_px:g} px at the content's sampling); < -{POLARITY_THRESHOLD}: dense "
        f"objects dark; > {POLARITY_THRESHOLD}: dense objects bright (inverted)",
    }


DARK_REGION_MIN_FRACTION = 0.05  # a dark region this large (fraction of the tilt's area) is reported
DARK_REGION_K = 5.0  # block means this many robust spreads below the median are dark


def dark_regions(
    tilts: np.ndarray, *, min_fraction: float = DARK_REGION_MIN_FRACTION, k: float = DARK_REGION_K, blocks: int = 32
) -> dict[int, dict]:
    """Large dark regions (contamination: ice crystals, carbon, a grid bar's edge, thick ice) in a ``(T, Y, X)``
    stack: ``{tilt index: {"fraction", "depth_std", "mask"}}``.

    Each tilt is cut into about ``blocks`` x ``blocks`` blocks; a block is dark when its mean is more than ``k``
    robust spreads (1.4826 MAD of the block means) and half a pixel std below the median block mean; the
    largest 8-connected group of dark blocks is reported when it covers >= ``min_fraction`` of the tilt.
    ``mask`` (bool, the tilt's shape) marks the region's blocks; ``depth_std`` is the region's mean below the
    rest, in pixel standard deviations of the rest. Such a region dominates a tilt's variance: a blind noise fit
    then reads the step as signal (a contaminated micrograph read SNR 31 where its clean part reads 0.37)."""
    # lazy: scipy
    from scipy.ndimage import label

    t = np.asarray(tilts)
    T, Y, X = t.shape
    b = max(2, min(Y, X) // blocks)
    ny, nx = Y // b, X // b
    out: dict[int, dict] = {}
    if ny < 4 or nx < 4:
        return out
    oy, ox = (Y - ny * b) // 2, (X - nx * b) // 2
    for i in range(T):
        x = np.asarray(t[i], dtype=np.float32)
        M = x[oy : oy + ny * b, ox : ox + nx * b].reshape(ny, b, nx, b).mean(axis=(1, 3), dtype=np.float64)
        med = float(np.median(M))
        spread = 1.4826 * float(np.median(np.abs(M - med)))
        sd = float(x.std(dtype=np.float64))
        dark = M < med - max(k * spread, 0.5 * sd)
        if dark.sum() < min_fraction * M.size:
            continue
        lab, n = label(dark, structure=np.ones((3, 3), dtype=bool))
        sizes = np.bincount(lab.ravel())[1:]
        j = int(np.argmax(sizes)) + 1
        frac = float(sizes[j - 1] / M.size)
        if frac < min_fraction:
            continue
        mb = lab == j
        mask = np.zeros((Y, X), dtype=bool)
        mask[oy : oy + ny * b, ox : ox + nx * b] = np.repeat(np.repeat(mb, b, axis=0), b, axis=1)
        rest = x[~mask]
        depth = (float(rest.mean()) - float(x[mask].mean())) / max(float(rest.std()), 1e-30)
        out[i] = {"fraction": round(frac, 4), "depth_std": round(depth, 3), "mask": mask}
    return out
