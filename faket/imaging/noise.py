"""Tilt-aware noise for projections: the FakET per-tilt model, its fits (paired, blind, by hand).

The model (per tilt ``t`` of a clean tilt-series ``c``)
-------------------------------------------------------
1. standardise the clean tilt: ``z = (c - mean(c)) / std(c)``;
2. ``y = r[t] * z + sigma[t] * e`` with ``e`` white Gaussian noise of unit variance;
3. match the tilt's mean and std to the reference's: ``out = (y - mean(y)) / std(y) * std_ref[t] + mean_ref[t]``.

The CONTENT modality is the same with ``content_noise * sigma[t]`` (default 0.25) and the same ``e``.

Definition of ``r`` and ``sigma``
---------------------------------
Both live on *standardised* tilts: a standardised reference tilt is modelled as ``r * z + sigma * e``
with ``z`` and ``e`` of unit variance and uncorrelated, so

    ``r**2 + sigma**2 = 1``,    ``SNR = r**2 / sigma**2``,    ``r = sqrt(SNR / (1 + SNR))``,
    ``sigma = sqrt(1 / (1 + SNR))``.

``r`` is the fraction of the tilt's standard deviation explained by the clean signal, ``sigma`` the noise
fraction. Because step 3 re-standardises, only the ratio ``r / sigma`` (the SNR) shapes the output; every fit
here is normalised so that ``r**2 + sigma**2 = 1`` holds exactly after smoothing and averaging.

Fits
----
- :func:`paired_fit` (the paper's): with a clean twin of the reference, ``r`` minimises
  ``std(noisy_std - r * clean_std)`` over ``r in [0, 1]`` (closed form: the correlation, clipped), ``sigma`` is
  the std of that residual (``= sqrt(1 - r**2)``).
- :func:`blind_fit` (new): from the reference alone. The noise variance is read from the tilt's power
  spectrum at high spatial frequency (mean periodogram in rings off the image axes), where a cryo-ET tilt
  has little signal left: a white floor, unless the top of the spectrum rolls off (detector MTF, binning,
  low-pass filter), which is then followed as measured (``noise_mtf="measured"``, default; ``"none"``:
  white floor at 0.7-0.95 Nyquist; ``"counting"``: floor shaped by a counting detector's MTF);
  ``sigma**2 = noise variance / var(tilt)``, see :func:`blind_noise_variance`.
  Assumption: the signal has little power where the floor is read (CTF envelopes, dose damage, specimen and
  alignment blur). Where it has, the noise is over-estimated (an upper bound on ``sigma``).
- :func:`snr_curves`: by hand.
Curves are smoothed with a polynomial over the reference tilt index (:func:`smooth_curves`), the BASELINE
uses one ``r`` / ``sigma`` for all tilts (:func:`global_curves`), fits of several references are averaged
(:func:`average_curves`).

Noise spectrum, signal transfer, distribution matching (docs/noise.md)
-----------------------------------------------------------------------
:func:`tilt_spectra` (smoothed 2-D and ring spectra), :func:`noise_spectra` (the reference's spectrum minus the
signal's share: ``white`` / ``radial`` / ``2d``), :func:`signal_transfer` (the reference signal's radial spectrum
over the clean tilt's, a :class:`RadialTransfer`) feed :func:`add_noise` (``spectra=``, ``transfer=``);
:func:`match_distribution` maps tilts onto reference distributions (redistributor).

Randomness: tilt ``t`` draws from ``numpy.random.default_rng([seed, t])``, so a tilt's noise depends on the
seed and its index in the full tilt-series only (pass ``tilt_indices`` when handling a chunk).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from faket.errors import InputError

__all__ = [
    "NoiseCurves",
    "tilt_stats",
    "check_tilts",
    "standardise",
    "paired_fit",
    "blind_fit",
    "blind_noise_variance",
    "snr_curves",
    "smooth_curves",
    "global_curves",
    "average_curves",
    "normalise_r_sigma",
    "add_noise",
    "BLIND_SNR_RESOLVED",
    "unresolved_tilts",
    "noise_psd_shape",
    "NOISE_MTFS",
    "NOISE_SPECTRA",
    "DEFAULT_NOISE_SPECTRUM",
    "spectrum_grid",
    "smoothed_psd",
    "residual_psd",
    "radial_average",
    "grid_mean",
    "regrid",
    "noise_spectra",
    "colour_noise",
    "spectra_summary",
    "SIGNAL_TRANSFERS",
    "RadialTransfer",
    "tilt_spectra",
    "ring_frequencies",
    "transferred_psd",
    "DEFAULT_SIGNAL_TRANSFER",
    "signal_transfer",
    "MATCHES",
    "DEFAULT_MATCH",
    "match_distribution",
]

NOISE_MTFS = ("measured", "none", "counting")


@dataclass
class NoiseCurves:
    """Per-tilt noise model: ``r``, ``sigma`` (standardised units, ``r**2 + sigma**2 = 1``) and the target
    ``mean`` / ``std`` of each output tilt. All ``(T,)`` float64."""

    r: np.ndarray
    sigma: np.ndarray
    mean: np.ndarray
    std: np.ndarray

    def __post_init__(self) -> None:
        self.r = np.asarray(self.r, dtype=np.float64).ravel()
        self.sigma = np.asarray(self.sigma, dtype=np.float64).ravel()
        self.mean = np.asarray(self.mean, dtype=np.float64).ravel()
        self.std = np.asarray(self.std, dtype=np.float64).ravel()
        n = {self.r.size, self.sigma.size, self.mean.size, self.std.size}
        if len(n) != 1:
            raise ValueError("NoiseCurves: r, sigma, mean, std must have the same length")

    def __len__(self) -> int:
        return self.r.size

    @property
    def snr(self) -> np.ndarray:
        """``r**2 / sigma**2`` per tilt (inf where sigma is 0)."""
        with np.errstate(divide="ignore"):
            return self.r**2 / self.sigma**2

    def take(self, idx) -> NoiseCurves:
        idx = np.asarray(idx, dtype=np.int64)
        return NoiseCurves(self.r[idx], self.sigma[idx], self.mean[idx], self.std[idx])

    def to_dict(self) -> dict:
        snr = self.snr
        return {
            "r": self.r.tolist(),
            "sigma": self.sigma.tolist(),
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "snr": [float(s) if np.isfinite(s) else None for s in snr],
        }


# --------------------------------------------------------------------------------------------------
# statistics and checks


def _mean_std(x: np.ndarray, tmp: np.ndarray | None = None) -> tuple[float, float]:
    """Mean and population std of one float32 tilt, two-pass with numpy's pairwise float32 sums
    (relative error ~1e-7, 4x faster than a float64 reduction)."""
    f = x.reshape(-1)
    if f.dtype != np.float32:
        f = f.astype(np.float32)
    if tmp is None:
        tmp = np.empty_like(f)
    tmp = tmp.reshape(-1)
    m = f.mean(dtype=np.float32)
    np.subtract(f, m, out=tmp)
    np.square(tmp, out=tmp)
    return float(m), float(np.sqrt(tmp.mean(dtype=np.float32)))


def tilt_stats(tilts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-tilt mean and (population) std, float64 arrays, of a ``(T, Y, X)`` stack."""
    t = np.asarray(tilts)
    T = t.shape[0]
    mean = np.empty(T)
    std = np.empty(T)
    tmp = np.empty(t[0].size, dtype=np.float32)
    for i in range(T):
        mean[i], std[i] = _mean_std(t[i], tmp)
    return mean, std


def check_tilts(tilts: np.ndarray, what: str = "tilt-series") -> tuple[np.ndarray, np.ndarray]:
    """Raise :class:`InputError` on NaN/Inf or a (near) zero-variance tilt; return per-tilt mean, std."""
    t = np.asarray(tilts)
    if t.ndim != 3:
        raise InputError(f"{what}: expected a (tilt, Y, X) stack, got shape {t.shape}")
    if t.shape[1] < 2 or t.shape[2] < 2:
        raise InputError(f"{what}: tilts of shape {t.shape[1:]} are too small")
    if not np.isfinite(t).all():
        n = int((~np.isfinite(t)).sum())
        raise InputError(f"{what}: contains {n} NaN/Inf values")
    mean, std = tilt_stats(t)
    scale = np.maximum(np.abs(mean), 1.0)
    # constant tilts, and blank ones (excluded tilts stored as rounding residue, std < 1e-3 x the median)
    bad = np.nonzero(~(std > 1e-6 * scale) | (std < 1e-3 * np.median(std)))[0]
    if bad.size:
        raise InputError(
            f"{what}: tilt {int(bad[0])} has zero variance (constant or blank image; "
            f"std {std[bad[0]]:.3g} vs median {np.median(std):.3g}); {bad.size} such tilt(s)"
        )
    return mean, std


def standardise(tilts: np.ndarray, mean=None, std=None) -> np.ndarray:
    """``(tilt - mean) / std`` per tilt, float32."""
    t = np.asarray(tilts, dtype=np.float32)
    if mean is None or std is None:
        mean, std = tilt_stats(t)
    return ((t - np.asarray(mean, np.float32)[:, None, None]) / np.asarray(std, np.float32)[:, None, None]).astype(
        np.float32, copy=False
    )


def normalise_r_sigma(r, sigma) -> tuple[np.ndarray, np.ndarray]:
    """Scale ``(r, sigma)`` so that ``r**2 + sigma**2 = 1`` (clip ``r`` to [0, 1], ``sigma`` >= 0)."""
    r = np.clip(np.asarray(r, dtype=np.float64), 0.0, None)
    s = np.clip(np.asarray(sigma, dtype=np.float64), 0.0, None)
    n = np.sqrt(r**2 + s**2)
    with np.errstate(invalid="ignore", divide="ignore"):
        rr = np.where(n > 0, r / n, 0.0)
        ss = np.where(n > 0, s / n, 1.0)
    return np.clip(rr, 0.0, 1.0), np.clip(ss, 0.0, 1.0)


# --------------------------------------------------------------------------------------------------
# fits


def paired_fit(noisy: np.ndarray, clean: np.ndarray, *, what: str = "reference") -> NoiseCurves:
    """The paper's fit from a noisy reference and its clean twin (same shape, same tilts).

    On standardised tilts, ``r = argmin_{r in [0,1]} std(noisy - r * clean)`` = clip(correlation, 0, 1)
    and ``sigma = std(noisy - r * clean)``. ``mean`` / ``std`` are the noisy reference's.
    """
    noisy = np.asarray(noisy)
    clean = np.asarray(clean)
    if noisy.shape != clean.shape:
        raise InputError(f"{what}: noisy shape {noisy.shape} and clean shape {clean.shape} differ")
    mn, sn = check_tilts(noisy, what)
    mc, sc = check_tilts(clean, f"{what} (clean)")
    T = noisy.shape[0]
    r = np.empty(T)
    sigma = np.empty(T)
    for i in range(T):
        a = (noisy[i].astype(np.float64) - mn[i]) / sn[i]
        b = (clean[i].astype(np.float64) - mc[i]) / sc[i]
        rho = float(np.mean(a * b))  # the minimiser of var(a - r b) for var(b) = 1
        r[i] = min(max(rho, 0.0), 1.0)
        sigma[i] = float(np.std(a - r[i] * b))
    return NoiseCurves(r, sigma, mn, sn)


def noise_psd_shape(shape_yx: Sequence[int], noise_mtf: str = "none") -> np.ndarray:
    """Relative noise power per rfft2 frequency bin (``(Y, X//2+1)``), 1 for white noise."""
    Y, X = int(shape_yx[0]), int(shape_yx[1])
    if noise_mtf == "none":
        return np.ones((Y, X // 2 + 1))
    if noise_mtf == "counting":
        fy = np.fft.fftfreq(Y) * 2.0  # Nyquist = 1
        fx = np.fft.rfftfreq(X) * 2.0
        return (np.sinc(fy / 2.0)[:, None] * np.sinc(fx / 2.0)[None, :]) ** 2
    raise ValueError(f"noise_mtf {noise_mtf!r}: expected one of {NOISE_MTFS}")


def _band_mask(Y: int, X: int, band: tuple[float, float], axis_exclude: int) -> np.ndarray:
    fy = np.fft.fftfreq(Y) * 2.0
    fx = np.fft.rfftfreq(X) * 2.0
    f = np.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)
    m = (f >= band[0]) & (f <= band[1])
    # edges of a non-periodic image put power on the axes: leave them out
    iy = np.minimum(np.arange(Y), Y - np.arange(Y))
    ix = np.arange(X // 2 + 1)
    m &= (iy[:, None] > axis_exclude) & (ix[None, :] > axis_exclude)
    if m.sum() < 16:  # tiny images: fall back to the band alone
        m = (f >= band[0]) & (f <= band[1])
    return m


def _ring_stat(P: np.ndarray) -> np.ndarray:
    """Noise power of one ring of periodogram values (rows: tilts): their mean.

    The mean, not the median / ln 2: real tilts are often anisotropic (e.g. interpolated or filtered along
    one axis), and the median of a ring that mixes directions of different power is biased low (the
    PyTom sub-tilts read SNR 0.55 with the median, 0.04 with the mean; adding known white noise to them
    is recovered within a few % only with the mean)."""
    return P.mean(axis=1)


def _ring_floor(P: np.ndarray, mask: np.ndarray, f: np.ndarray, width: float = 0.05) -> np.ndarray:
    """Mean over rings (``width`` in Nyquist units) inside ``mask`` of the ring's mean periodogram."""
    fm = f[mask]
    Pm = P[:, mask]
    k = np.floor((fm - fm.min()) / width).astype(np.int64)
    vals, wts = [], []
    for j in np.unique(k):
        sel = k == j
        if sel.sum() < 8:
            continue
        vals.append(_ring_stat(Pm[:, sel]))
        wts.append(sel.sum())
    if not vals:
        return _ring_stat(Pm)
    return np.average(np.stack(vals, axis=1), axis=1, weights=np.asarray(wts, float))


def blind_noise_variance(
    tilts: np.ndarray,
    *,
    band: tuple[float, float] = (0.7, 0.95),
    noise_mtf: str = "measured",
    plateau: tuple[float, float] = (0.35, 0.6),
    axis_exclude: int = 1,
    info: dict | None = None,
) -> np.ndarray:
    """Noise variance per tilt (per pixel), from the high-frequency floor of the power spectrum.

    The periodogram ``|FFT(x - mean)|**2 / N`` of white noise of variance ``v`` has mean ``v`` in every
    bin (Parseval); it is averaged over rings 0.05 wide (in Nyquist units; the image axes, where the edges of
    a non-periodic image put power, are left out). The noise variance is the mean of the noise power
    spectrum over all frequencies:

    - ``noise_mtf="none"``: white noise at the floor measured in ``band`` (fractions of Nyquist).
    - ``"counting"``: noise shaped by ``sinc(fx/2)**2 sinc(fy/2)**2`` (counting detector or block binning);
      the floor in ``band`` is rescaled by the shape's mean over all frequencies / its mean in the band.
    - ``"measured"`` (default): the noise is white at a level ``L`` except where the data's own spectrum
      is significantly below ``L`` (3 standard errors): there a detector MTF, binning or a low-pass filter
      rolls signal and noise off together, and the ring's measured power is the noise. ``L`` is the floor in
      ``band`` when the top of the spectrum is flat (median over tilts of power at 0.85-0.95 / 0.7-0.8 of
      Nyquist >= 0.9: a white floor is reached), else the level in ``plateau`` (the spectrum rolls off at
      the top, so the floor is read below the roll-off). ``info`` (a dict) receives that decision.
    """
    # lazy: scipy
    import scipy.fft as sfft

    if noise_mtf not in NOISE_MTFS:
        raise ValueError(f"noise_mtf {noise_mtf!r}: expected one of {NOISE_MTFS}")
    t = np.asarray(tilts, dtype=np.float32)
    T, Y, X = t.shape
    # weights of rfft bins in the full two-sided spectrum
    w = np.full(X // 2 + 1, 2.0)
    w[0] = 1.0
    if X % 2 == 0:
        w[-1] = 1.0
    W = np.broadcast_to(w[None, :], (Y, X // 2 + 1))
    fy = np.fft.fftfreq(Y) * 2.0
    fx = np.fft.rfftfreq(X) * 2.0
    f = np.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)
    chunk = max(1, int(2**24 // max(1, Y * X)))

    def spectra():
        for a in range(0, T, chunk):
            x = t[a : a + chunk]
            x = x - x.mean(axis=(1, 2), keepdims=True)
            F = sfft.rfft2(x, workers=-1)
            yield a, (F.real**2 + F.imag**2) / (Y * X)

    if noise_mtf != "measured":
        mask = _band_mask(Y, X, band, axis_exclude)
        shape = noise_psd_shape((Y, X), noise_mtf)
        full_mean = float((shape * W).sum() / (Y * X))
        correction = full_mean / float(shape[mask].mean())
        out = np.empty(T)
        for a, P in spectra():
            out[a : a + P.shape[0]] = _ring_floor(P, mask, f) * correction
        return out

    offaxis = _band_mask(Y, X, (0.0, 10.0), axis_exclude)
    edges = np.arange(0.0, f.max() + 0.05, 0.05)
    ring = np.clip(np.digitize(f, edges) - 1, 0, edges.size - 1)
    masks = [(ring == k) & offaxis for k in range(edges.size)]
    ks = [k for k in range(edges.size) if masks[k].sum() >= 8]
    centre = edges[ks] + 0.025
    n_bins = np.array([masks[k].sum() for k in ks], dtype=np.float64)
    ring_w = np.array([W[ring == k].sum() for k in ks], dtype=np.float64)
    # ring label per bin (0: not used), then one bincount per tilt gives every ring's mean power
    label = np.zeros((Y, X // 2 + 1), dtype=np.int64)
    for j, k in enumerate(ks):
        label[masks[k]] = j + 1
    label = label.ravel()
    levels = np.empty((T, len(ks)))
    for a, P in spectra():
        for i in range(P.shape[0]):
            sums = np.bincount(label, weights=P[i].ravel(), minlength=len(ks) + 1)
            levels[a + i] = sums[1:] / n_bins

    def level(lo, hi):
        sel = (centre >= lo) & (centre <= hi)
        if not sel.any():
            return None
        return levels[:, sel] @ n_bins[sel] / n_bins[sel].sum()

    top_hi, top_lo = level(0.85, 0.95), level(0.7, 0.8)
    l_band, l_plateau = level(*band), level(*plateau)
    if l_plateau is None:  # tiny images: one band for all
        l_plateau = levels @ n_bins / n_bins.sum()
    ratio = None
    if top_hi is not None and top_lo is not None and l_band is not None:
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = float(np.nanmedian(top_hi / top_lo))
    flat = ratio is not None and ratio >= 0.9
    L = l_band if flat else l_plateau
    tol = 1.0 - 3.0 / np.sqrt(n_bins)  # significantly below L: 3 standard errors of a mean of exponentials
    noise_ring = np.where(levels < tol[None, :] * L[:, None], levels, L[:, None])
    total = noise_ring @ ring_w + L * (Y * X - ring_w.sum())  # sparse rings count at L
    if info is not None:
        info.update({"top_ratio": ratio, "floor_band": list(band if flat else plateau), "roll_off": not flat})
    return total / (Y * X)


BLIND_SNR_RESOLVED = 0.03  # below this blind SNR the fit cannot tell signal from noise (docs/noise.md, Validation)


def unresolved_tilts(c: NoiseCurves, threshold: float = BLIND_SNR_RESOLVED) -> np.ndarray:
    """Indices of the tilts whose (blind) SNR is below ``threshold``: there the fit cannot tell signal from
    noise (a 1 % error of sigma is an SNR error of ~0.02 at SNR 0.01)."""
    return np.nonzero(~(c.snr >= threshold))[0]


def blind_fit(
    noisy: np.ndarray,
    *,
    band: tuple[float, float] = (0.7, 0.95),
    noise_mtf: str = "measured",
    what: str = "reference",
    info: dict | None = None,
    exclude: dict[int, np.ndarray] | None = None,
) -> NoiseCurves:
    """Per-tilt ``r`` and ``sigma`` from a noisy reference alone (see the module docstring).

    ``exclude`` (tilt index -> boolean mask of pixels, e.g. :func:`faket.imaging.refcheck.dark_regions`): the
    tilt's mean and std (the variance the noise is a share of, and the output's target) are taken over the
    other pixels, so a contaminated region's step is not read as signal."""
    mean, std = check_tilts(noisy, what)
    for i, m in (exclude or {}).items():
        keep = ~np.asarray(m, dtype=bool)
        if keep.sum() >= 16:
            v = np.asarray(noisy[i], dtype=np.float64)[keep]
            mean[i], std[i] = float(v.mean()), float(v.std())
    nv = blind_noise_variance(noisy, band=band, noise_mtf=noise_mtf, info=info)
    s2 = np.clip(nv / std**2, 0.0, 1.0)
    return NoiseCurves(np.sqrt(1.0 - s2), np.sqrt(s2), mean, std)


def snr_curves(snr: float | Sequence[float], mean, std) -> NoiseCurves:
    """``r``, ``sigma`` from an SNR (one value or one per tilt) and the target mean / std per tilt."""
    mean = np.asarray(mean, dtype=np.float64).ravel()
    s = np.broadcast_to(np.asarray(snr, dtype=np.float64), mean.shape).copy()
    if not np.isfinite(s).all() or (s < 0).any():
        raise InputError(f"--snr {snr}: must be a finite number >= 0")
    return NoiseCurves(np.sqrt(s / (1.0 + s)), np.sqrt(1.0 / (1.0 + s)), mean, std)


def _polyfit_eval(y: np.ndarray, order: int) -> np.ndarray:
    n = y.size
    if order < 0 or n <= 1:
        return y.copy()
    order = min(order, n - 1)
    x = np.arange(n, dtype=np.float64)
    p = np.polynomial.Polynomial.fit(x, y, order)
    return p(x)


def smooth_curves(c: NoiseCurves, order: int = 2) -> NoiseCurves:
    """Fit each curve with a polynomial of ``order`` over the tilt index (``order < 0``: unchanged), keep
    ``std > 0``, renormalise ``r**2 + sigma**2 = 1``."""
    r = _polyfit_eval(c.r, order)
    s = _polyfit_eval(c.sigma, order)
    m = _polyfit_eval(c.mean, order)
    sd = _polyfit_eval(c.std, order)
    sd = np.where(sd > 0, sd, np.min(c.std[c.std > 0]) if (c.std > 0).any() else 1.0)
    r, s = normalise_r_sigma(r, s)
    return NoiseCurves(r, s, m, sd)


def global_curves(c: NoiseCurves) -> NoiseCurves:
    """BASELINE: one ``r`` and one ``sigma`` (their means) for every tilt; mean / std stay per tilt."""
    r, s = normalise_r_sigma(np.full(len(c), c.r.mean()), np.full(len(c), c.sigma.mean()))
    return NoiseCurves(r, s, c.mean.copy(), c.std.copy())


def average_curves(curves: Sequence[NoiseCurves]) -> NoiseCurves:
    """Average several references' curves (already on the same tilts), renormalised."""
    if not curves:
        raise ValueError("average_curves: no curves")
    r = np.mean([c.r for c in curves], axis=0)
    s = np.mean([c.sigma for c in curves], axis=0)
    m = np.mean([c.mean for c in curves], axis=0)
    sd = np.mean([c.std for c in curves], axis=0)
    r, s = normalise_r_sigma(r, s)
    return NoiseCurves(r, s, m, sd)


# --------------------------------------------------------------------------------------------------
# noise spectra (coloured noise)

NOISE_SPECTRA = ("white", "radial", "2d")
DEFAULT_NOISE_SPECTRUM = "2d"  # chosen by C2ST on the shared real tilt-series (docs/noise.md)
SPECTRUM_GRID = 128  # largest side of the frequency grid a spectrum is estimated on (Welch-like smoothing)
SPECTRUM_FLOOR = 0.05  # the noise spectrum is never below this fraction of the reference's own spectrum


def spectrum_grid(*shapes_yx: Sequence[int], max_grid: int = SPECTRUM_GRID) -> int:
    """Side ``n`` of the square frequency grid spectra are estimated on: at most ``max_grid`` and at most half
    the smallest image side (so every grid bin averages >= 4 periodogram bins), even, >= 4."""
    m = min(min(int(s[-2]), int(s[-1])) for s in shapes_yx)
    n = min(int(max_grid), m // 2)
    n -= n % 2
    return max(n, 4)


def _rfft_weights(X: int, n: int) -> np.ndarray:
    """Weight of each rfft column in the full two-sided spectrum (1 for DC and the even-size Nyquist, else 2)."""
    w = np.full(n, 2.0)
    w[0] = 1.0
    if X % 2 == 0:
        w[-1] = 1.0
    return w


def _grid_labels(Y: int, X: int, n: int) -> np.ndarray:
    """Bin label (into the ``(n, n//2+1)`` grid, flattened) of every rfft2 bin of a ``(Y, X)`` image."""
    ky = np.mod(np.rint(np.fft.fftfreq(Y) * n).astype(np.int64), n)
    kx = np.minimum(np.rint(np.fft.rfftfreq(X) * n).astype(np.int64), n // 2)
    return (ky[:, None] * (n // 2 + 1) + kx[None, :]).ravel()


def smoothed_psd(
    tilts: np.ndarray, n: int, *, smooth: float = 1.0, standardise_tilts: bool = True, workers: int = -1
) -> np.ndarray:
    """Smoothed 2-D power spectra of a ``(T, Y, X)`` stack on an ``(n, n//2+1)`` grid (see :func:`tilt_spectra`)."""
    return tilt_spectra(tilts, n, smooth=smooth, standardise_tilts=standardise_tilts, workers=workers)[0]


def ring_frequencies(ring_n: int) -> np.ndarray:
    """Centre frequencies (cycles per pixel) of the rings of :func:`tilt_spectra`: ``k / ring_n`` up to the corner."""
    return np.arange(int(np.rint(ring_n * math.sqrt(0.5))) + 2) / float(ring_n)


def tilt_spectra(
    tilts: np.ndarray,
    n: int,
    *,
    ring_n: int | None = None,
    smooth: float = 1.0,
    standardise_tilts: bool = True,
    workers: int = -1,
):
    """Smoothed 2-D power spectra of a ``(T, Y, X)`` stack on an ``(n, n//2+1)`` rfft grid: ``(T, n, n//2+1)``.

    Per tilt: (standardised,) Hann-windowed (no edge cross), periodogram ``|FFT|**2 / sum(window**2)``, averaged
    into the grid's bins (each grid bin the mean of the periodogram bins nearest to its frequency: Daniell
    smoothing, same resolution as Welch averaging on ``n``-pixel tiles), then a Gaussian of ``smooth`` grid bins
    (periodic). Units: variance per frequency bin, so the mean over the full two-sided grid is the tilt's
    variance (1 for standardised tilts) up to the window's loss of the DC bin.

    With ``ring_n``, also the rotationally averaged spectra ``(T, K)`` from the same periodograms, unsmoothed,
    in rings ``1 / ring_n`` cycles per pixel wide (:func:`ring_frequencies`). Returns ``(grid, rings or None)``."""
    # lazy: scipy
    import scipy.fft as sfft
    from scipy.ndimage import gaussian_filter

    t = np.asarray(tilts)
    T, Y, X = t.shape
    wy = np.hanning(Y + 2)[1:-1].astype(np.float32)
    wx = np.hanning(X + 2)[1:-1].astype(np.float32)
    win = wy[:, None] * wx[None, :]
    norm = float(np.sum(win.astype(np.float64) ** 2))
    lab = _grid_labels(Y, X, n)
    G = n * (n // 2 + 1)
    counts = np.bincount(lab, minlength=G).astype(np.float64)
    out = np.empty((T, n, n // 2 + 1))
    rings = None
    if ring_n is not None:
        K = ring_frequencies(ring_n).size
        fr = np.sqrt(np.fft.fftfreq(Y)[:, None] ** 2 + np.fft.rfftfreq(X)[None, :] ** 2)
        rlab = np.minimum(np.rint(fr * ring_n).astype(np.int64), K - 1).ravel()
        rw = np.broadcast_to(_rfft_weights(X, X // 2 + 1)[None, :], fr.shape).ravel()
        rden = np.bincount(rlab, weights=rw, minlength=K)
        rings = np.zeros((T, K))
    for i in range(T):
        x = np.asarray(t[i], dtype=np.float32)
        m, s = _mean_std(x)
        x = (x - np.float32(m)) * win
        if standardise_tilts and s > 0:
            x *= np.float32(1.0 / s)
        F = sfft.rfft2(x, workers=workers)
        P = (F.real**2 + F.imag**2).ravel()
        sums = np.bincount(lab, weights=P, minlength=G)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[i] = (sums / counts).reshape(n, n // 2 + 1) / norm
            if rings is not None:
                rings[i] = np.bincount(rlab, weights=P * rw, minlength=K) / rden / norm
    # empty grid bins (only when an image side is < n): from their neighbours
    empty = counts.reshape(n, n // 2 + 1) == 0
    if empty.any():
        out[:, empty] = np.nan
        for i in range(T):
            o = out[i]
            good = np.nan_to_num(o)
            wgt = gaussian_filter((~np.isnan(o)).astype(float), 1.0, mode="wrap")
            o[np.isnan(o)] = (gaussian_filter(good, 1.0, mode="wrap") / np.maximum(wgt, 1e-12))[np.isnan(o)]
    if smooth:
        # periodic in fy; along fx the rfft half plane is mirrored at 0 (P(fy, -fx) = P(-fy, fx))
        ext = np.concatenate([np.roll(out[:, ::-1, 1:][:, :, ::-1], 1, axis=1), out], axis=2)
        ext = gaussian_filter(ext, (0, smooth, smooth), mode=("wrap", "wrap", "nearest"))
        out = ext[:, :, n // 2 :]
    if rings is not None:
        rings = np.nan_to_num(rings)
    return out, rings


def residual_psd(noisy: np.ndarray, clean: np.ndarray, r, n: int, **kw) -> np.ndarray:
    """Smoothed spectra of the paired fit's residuals ``standardise(noisy) - r standardise(clean)``: the noise's
    own spectrum when a clean twin exists."""
    T = len(noisy)
    out = []
    for i in range(T):
        a = np.asarray(noisy[i], dtype=np.float32)
        b = np.asarray(clean[i], dtype=np.float32)
        ma, sa = _mean_std(a)
        mb, sb = _mean_std(b)
        res = (a - np.float32(ma)) / np.float32(sa) - np.float32(float(np.ravel(r)[i]) / sb) * (b - np.float32(mb))
        out.append(smoothed_psd(res[None], n, standardise_tilts=False, **kw)[0])
    return np.stack(out)


def regrid(P: np.ndarray, n: int) -> np.ndarray:
    """Grid spectra ``(..., m, m//2+1)`` linearly interpolated to an ``(n, n//2+1)`` grid."""
    m = P.shape[-2]
    if m == n:
        return np.asarray(P, dtype=np.float64)
    Ay = _interp_matrix(n, m, half=False)
    AxT = _interp_matrix(n, m, half=True).T
    return np.einsum("ij,...jk,kl->...il", Ay, np.asarray(P, dtype=np.float64), AxT)


def radial_average(P: np.ndarray) -> np.ndarray:
    """Rotational average of ``(..., n, n//2+1)`` grid spectra, returned on the same grid (rings 1 bin wide)."""
    n = P.shape[-2]
    f = np.sqrt(np.fft.fftfreq(n)[:, None] ** 2 + np.fft.rfftfreq(n)[None, :] ** 2)
    k = np.rint(f * n).astype(np.int64).ravel()
    W = np.broadcast_to(_rfft_weights(n, n // 2 + 1)[None, :], (n, n // 2 + 1)).ravel()
    K = k.max() + 1
    flat = P.reshape(-1, k.size)
    den = np.bincount(k, weights=W, minlength=K)
    out = np.empty_like(flat)
    for i in range(flat.shape[0]):
        ring = np.bincount(k, weights=flat[i] * W, minlength=K) / np.maximum(den, 1e-300)
        out[i] = ring[k]
    return out.reshape(P.shape)


def grid_mean(S: np.ndarray, X: int | None = None) -> np.ndarray:
    """Mean over the full two-sided spectrum of rfft-grid spectra ``(..., Ny, Nx//2+1)`` (image width ``X``)."""
    ny, nc = S.shape[-2], S.shape[-1]
    X = 2 * (nc - 1) if X is None else X
    w = _rfft_weights(X, nc)
    return (S * w).sum(axis=(-2, -1)) / (ny * X)


def transferred_psd(clean_psd: np.ndarray, transfer: RadialTransfer) -> np.ndarray:
    """Grid spectra ``(T, n, n//2+1)`` of clean tilts after :func:`signal_transfer` (and re-standardisation)."""
    P = np.array(clean_psd, dtype=np.float64)
    n = P.shape[-2]
    f = np.sqrt(np.fft.fftfreq(n)[:, None] ** 2 + np.fft.rfftfreq(n)[None, :] ** 2)
    for i in range(P.shape[0]):
        P[i] *= np.interp(f, transfer.freq, transfer.gain[i])
        m = float(grid_mean(P[i]))
        if m > 0:
            P[i] /= m
    return P


def noise_spectra(
    ref_psd: np.ndarray, r: np.ndarray, kind: str, *, clean_psd: np.ndarray | None = None, floor: float = SPECTRUM_FLOOR
) -> np.ndarray:
    """Noise power spectrum shapes ``(T, n, n//2+1)``, each of mean 1 over the full grid.

    ``ref_psd``: smoothed spectra of the standardised reference tilts matched to each content tilt;
    ``r``: the signal share per tilt (the noise model's ``r``); ``clean_psd``: spectra of the standardised clean
    tilts. The noise spectrum is the reference's minus the signal's share, ``ref_psd - r**2 clean_psd``
    (so that signal plus noise has the reference's spectrum), never below ``floor x ref_psd``; without
    ``clean_psd``, ``ref_psd`` is taken as the noise's (paired fits pass the residual's spectrum). ``kind``:
    ``"2d"`` as is, ``"radial"`` its rotational average, ``"white"`` flat."""
    if kind not in NOISE_SPECTRA:
        raise ValueError(f"noise spectrum {kind!r}: expected one of {NOISE_SPECTRA}")
    P = np.asarray(ref_psd, dtype=np.float64)
    if kind == "white":
        return np.ones_like(P)
    S = P.copy()
    if clean_psd is not None:
        r2 = np.asarray(r, dtype=np.float64).reshape(-1, 1, 1) ** 2
        S = np.maximum(P - r2 * np.asarray(clean_psd, dtype=np.float64), floor * P)
    if kind == "radial":
        S = radial_average(S)
    S[:, 0, 0] = 0.0  # no DC: the noise has mean 0
    m = grid_mean(S)
    m = np.where(m > 0, m, 1.0)
    return S / m[:, None, None]


def _interp_matrix(n_out: int, n: int, half: bool) -> np.ndarray:
    """Linear interpolation from an ``n``-bin frequency grid to ``n_out``'s (``half``: rfft axis, else periodic)."""
    if half:
        c = np.fft.rfftfreq(n_out) * n
        lo = np.clip(np.floor(c).astype(np.int64), 0, n // 2)
        hi = np.minimum(lo + 1, n // 2)
        size = n // 2 + 1
    else:
        c = np.mod(np.fft.fftfreq(n_out) * n, n)
        lo = np.floor(c).astype(np.int64) % n
        hi = (lo + 1) % n
        size = n
    a = c - np.floor(c)
    M = np.zeros((c.size, size))
    rows = np.arange(c.size)
    np.add.at(M, (rows, lo), 1.0 - a)
    np.add.at(M, (rows, hi), a)
    return M


def _interp_index(n_out: int, n: int, half: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Linear interpolation from an ``n``-bin frequency grid to ``n_out``'s: (lower bin, upper bin, weight of the
    upper) per output bin (``half``: rfft axis, else periodic)."""
    if half:
        c = np.fft.rfftfreq(n_out) * n
        lo = np.clip(np.floor(c).astype(np.int64), 0, n // 2)
        hi = np.minimum(lo + 1, n // 2)
    else:
        c = np.mod(np.fft.fftfreq(n_out) * n, n)
        lo = np.floor(c).astype(np.int64) % n
        hi = (lo + 1) % n
    return lo, hi, (c - np.floor(c)).astype(np.float32)


class _Colourer:
    """Colours white noise of one image shape with grid spectra (interpolation indices cached)."""

    def __init__(self, shape_yx, n: int, workers: int = -1):
        self.Y, self.X = int(shape_yx[0]), int(shape_yx[1])
        self.iy = _interp_index(self.Y, n, half=False)
        self.ix = _interp_index(self.X, n, half=True)
        self.w = _rfft_weights(self.X, self.X // 2 + 1).astype(np.float32)
        self.workers = workers

    def gain(self, S: np.ndarray) -> np.ndarray:
        """``sqrt`` of the spectrum on the image's rfft grid, normalised to unit variance, DC 0 (float32; separable
        linear interpolation: rows first on the small grid, then columns)."""
        S = np.asarray(S, dtype=np.float32)
        lo, hi, a = self.iy
        R = S[lo] * (1.0 - a)[:, None] + S[hi] * a[:, None]  # (Y, n//2+1)
        lo, hi, a = self.ix
        G = R[:, lo]
        G *= (1.0 - a)[None, :]
        G += R[:, hi] * a[None, :]  # (Y, X//2+1)
        np.maximum(G, 0.0, out=G)
        G[0, 0] = 0.0
        m = float(G.sum(axis=0, dtype=np.float64) @ self.w) / (self.Y * self.X)
        if m > 0:
            G *= np.float32(1.0 / m)
        return np.sqrt(G, out=G)

    def __call__(self, e: np.ndarray, S: np.ndarray) -> np.ndarray:
        # lazy: scipy
        import scipy.fft as sfft

        F = sfft.rfft2(e, workers=self.workers)
        F *= self.gain(S)
        return sfft.irfft2(F, s=(self.Y, self.X), workers=self.workers).astype(np.float32, copy=False)


def _filter(x: np.ndarray, gain: np.ndarray, workers: int = -1) -> np.ndarray:
    """``x`` filtered with amplitude ``gain`` on its rfft2 grid (zero phase)."""
    # lazy: scipy
    import scipy.fft as sfft

    F = sfft.rfft2(x, workers=workers)
    F *= gain
    return sfft.irfft2(F, s=x.shape, workers=workers).astype(np.float32, copy=False)


def colour_noise(e: np.ndarray, spectrum: np.ndarray) -> np.ndarray:
    """White noise ``e`` (Y, X) coloured by a grid spectrum ``(n, n//2+1)``: ``irfft2(rfft2(e) * sqrt(S))``,
    ``S`` interpolated (linearly) to the image's frequency grid and normalised to mean 1 (unit variance),
    its DC bin 0."""
    e = np.asarray(e, dtype=np.float32)
    return _Colourer(e.shape, spectrum.shape[-2])(e, np.asarray(spectrum, dtype=np.float64))


def spectra_summary(S: np.ndarray, bands=(0.0, 0.1, 0.25, 0.5, 0.75, 1.0)) -> dict:
    """A compact record of grid spectra ``(T, n, n//2+1)`` (mean 1 each): per band of |f| (Nyquist units) the
    mean power (median over tilts), and per tilt the anisotropy ``power along x / power along y`` in
    0.25-0.75 Nyquist (directions within 30 deg of each axis)."""
    n = S.shape[-2]
    fy = np.fft.fftfreq(n)[:, None] * 2.0
    fx = np.fft.rfftfreq(n)[None, :] * 2.0
    f = np.sqrt(fy**2 + fx**2)
    W = np.broadcast_to(_rfft_weights(n, n // 2 + 1)[None, :], f.shape)
    prof = []
    for lo, hi in zip(bands[:-1], bands[1:]):
        m = (f >= lo) & (f < hi)
        m[0, 0] = False
        prof.append(float(np.median((S[:, m] * W[m]).sum(axis=1) / W[m].sum())) if m.any() else None)
    ang = np.degrees(np.arctan2(np.abs(fy) + 0 * fx, fx + 0 * fy))
    mid = (f >= 0.25) & (f <= 0.75)
    along_x = mid & (ang <= 30)
    along_y = mid & (ang >= 60)
    aniso = None
    if along_x.any() and along_y.any():
        aniso = [
            round(float(a), 3) for a in (S[:, along_x].mean(axis=1) / np.maximum(S[:, along_y].mean(axis=1), 1e-300))
        ]
    return {
        "grid": [int(n), int(n // 2 + 1)],
        "bands_nyquist": list(bands),
        "band_power_median": [None if p is None else round(p, 4) for p in prof],
        "anisotropy_x_over_y": aniso,
    }


SIGNAL_TRANSFERS = ("none", "measured")
DEFAULT_SIGNAL_TRANSFER = "measured"  # chosen by C2ST / kurtosis on the shared real tilt-series (docs/noise.md)
MAX_TRANSFER_GAIN = 2.0


@dataclass
class RadialTransfer:
    """Per-tilt radial power gains ``gain`` ``(T, K)`` at ring frequencies ``freq`` ``(K,)`` (cycles per pixel)."""

    freq: np.ndarray
    gain: np.ndarray

    def __len__(self) -> int:
        return self.gain.shape[0]

    def take(self, idx) -> RadialTransfer:
        return RadialTransfer(self.freq, self.gain[np.asarray(idx, dtype=np.int64)])

    def on_grid(self, i: int, shape_yx) -> np.ndarray:
        """Amplitude gains (``sqrt``) of tilt ``i`` on an image's rfft2 grid, float32."""
        Y, X = int(shape_yx[0]), int(shape_yx[1])
        f = np.sqrt(np.fft.fftfreq(Y)[:, None] ** 2 + np.fft.rfftfreq(X)[None, :] ** 2)
        return np.sqrt(np.interp(f, self.freq, self.gain[i])).astype(np.float32)

    def summary(self, bands=(0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5)) -> dict:
        """Median over tilts of the power gain in bands of |f| (cycles per pixel)."""
        out = []
        for lo, hi in zip(bands[:-1], bands[1:]):
            m = (self.freq >= lo) & (self.freq < hi)
            out.append(round(float(np.median(self.gain[:, m].mean(axis=1))), 4) if m.any() else None)
        return {"bands_cycles_per_px": list(bands), "power_gain_median": out}


def signal_transfer(
    ref_rings: np.ndarray, clean_rings: np.ndarray, freq: np.ndarray, r, sigma, *, max_gain: float = MAX_TRANSFER_GAIN
) -> RadialTransfer:
    """The reference's measured signal transfer relative to the clean tilts (rotational averages, per tilt).

    ``ref_rings`` / ``clean_rings``: ring spectra (:func:`tilt_spectra`, standardised tilts) of the reference
    tilt matched to each content tilt and of the clean tilt, at ``freq``. Power gain = the reference's signal
    spectrum (its spectrum minus the white noise level ``sigma**2``, >= 0) over the clean tilt's share
    ``r**2 x clean spectrum``, at most ``max_gain**2``, 1 at DC; no signal (``r = 0``): gain 1. Filtering the
    clean tilt with it gives the content the reference signal's radial spectrum: the blur of the real image
    (CTF envelopes, detector MTF, dose, alignment) that a projection lacks, and without which sharp dense objects
    (gold beads) make a heavy dark tail."""
    P = np.asarray(ref_rings, dtype=np.float64)
    C = np.asarray(clean_rings, dtype=np.float64)
    r2 = np.asarray(r, dtype=np.float64).reshape(-1, 1) ** 2
    s2 = np.asarray(sigma, dtype=np.float64).reshape(-1, 1) ** 2
    sig = np.maximum(P - s2, 0.0)
    den = r2 * C
    with np.errstate(invalid="ignore", divide="ignore"):
        H = np.where(den > 0, sig / den, 0.0)
    H = np.clip(H, 0.0, max_gain**2)
    H[:, 0] = 1.0
    H[(r2[:, 0] <= 1e-6) | ~(H[:, 1:] > 0).any(axis=1)] = 1.0
    return RadialTransfer(np.asarray(freq, dtype=np.float64), H)


# --------------------------------------------------------------------------------------------------
# intensity matching

MATCHES = ("meanstd", "distribution")
DEFAULT_MATCH = "meanstd"


def match_distribution(
    tilts: np.ndarray,
    targets: Sequence[np.ndarray],
    *,
    seed: int = 0,
    tilt_indices: Sequence[int] | None = None,
    bins: int | None = None,
    progress=None,
) -> np.ndarray:
    """Map each tilt's intensities onto a target distribution (``redistributor``, Harar et al.).

    ``targets[i]`` holds the values whose distribution tilt ``i`` should follow (e.g. the angle-matched real
    tilt at the content's sampling; several arrays are pooled). Per tilt, ``R = F_target^-1 o F_tilt`` with both
    CDFs learned on a lattice of ``bins`` quantiles (redistributor's default: min(size, 5000)), piecewise linear
    and monotone: the order of the pixels (the image) is kept, their values take the target's quantiles. Ties in
    quantised targets are broken by redistributor's seeded jitter (``default_rng([seed, tilt index])``)."""
    # lazy: redistributor
    from redistributor import LearnedDistribution, Redistributor

    t = np.asarray(tilts, dtype=np.float32)
    T = t.shape[0]
    if len(targets) != T:
        raise ValueError(f"match_distribution: {len(targets)} targets for {T} tilts")
    idx = np.arange(T) if tilt_indices is None else np.asarray(tilt_indices, dtype=np.int64)
    out = np.empty_like(t)
    it = range(T) if progress is None else progress(range(T))
    for i in it:
        tg = targets[i]
        tg = (
            np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in tg])
            if isinstance(tg, (list, tuple))
            else np.asarray(tg, dtype=np.float64).ravel()
        )
        src = t[i].astype(np.float64).ravel()
        rng_s = np.random.default_rng([int(seed), int(idx[i]), 0])
        rng_t = np.random.default_rng([int(seed), int(idx[i]), 1])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            S = LearnedDistribution(src, bins=None if bins is None else min(bins, src.size), seed=rng_s)
            G = LearnedDistribution(tg, bins=None if bins is None else min(bins, tg.size), seed=rng_t)
            out[i] = Redistributor(S, G).transform(src).reshape(t.shape[1:])
    return out


# --------------------------------------------------------------------------------------------------
# spectrum matching

SPECTRUM_MATCHES = ("none", "radial")
DEFAULT_SPECTRUM_MATCH = "radial"  # chosen by held-out C2ST on the shared real tilt-series (docs/noise.md)
SPECTRUM_MATCH_ITERATIONS = 3
SPECTRUM_MATCH_SMOOTH = 1.0  # rings (Gaussian sigma) the log spectra are smoothed over
MAX_MATCH_GAIN = 100.0  # amplitude gain limits of the matching filter: 1/100 .. 100


def radial_power_spectrum(image) -> tuple[np.ndarray, np.ndarray]:
    """Radially averaged power spectrum of a 2-D image (periodic, unwindowed: ``faket realism``'s RAPS).

    Returns ``(freq, power)``: ``freq[k] = k / N`` cycles/pixel and ``power[k]`` the mean of
    ``|FFT|^2 / (H*W)`` of the mean-removed image over the samples at radius ``k`` (``N = min(H, W)``,
    ``k = 0 .. N//2``).
    """
    a = np.asarray(image, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"expected a 2-D image, got shape {a.shape}")
    if min(a.shape) < 2:
        raise ValueError(f"image too small for a spectrum: shape {a.shape}")
    h, w = a.shape
    n = min(h, w)
    a = a - a.mean()
    p = np.abs(np.fft.fft2(a)) ** 2 / (h * w)
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.fftfreq(w)[None, :]
    k = np.rint(n * np.sqrt(fx * fx + fy * fy)).astype(np.int64).ravel()
    nb = n // 2 + 1
    keep = k < nb
    sums = np.bincount(k[keep], weights=p.ravel()[keep], minlength=nb)
    counts = np.bincount(k[keep], minlength=nb)
    power = sums / np.maximum(counts, 1)
    freq = np.arange(nb, dtype=np.float64) / n
    return freq, power


def _log_rings(img: np.ndarray, f_out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Smoothed natural-log :func:`radial_power_spectrum` of one image, DC ring dropped: ``(freq, log power)``;
    with ``f_out``, interpolated at those frequencies (constant beyond the last ring)."""
    # lazy: scipy
    from scipy.ndimage import gaussian_filter1d

    a = np.asarray(img, dtype=np.float64)
    s = float(a.std())
    f, p = radial_power_spectrum(a / s if s > 0 else a)
    lp = gaussian_filter1d(np.log(np.maximum(p[1:], 1e-30)), SPECTRUM_MATCH_SMOOTH, mode="nearest")
    f = f[1:]
    return (f, lp) if f_out is None else (f_out, np.interp(f_out, f, lp))


def match_radial_spectrum(
    tilts: np.ndarray,
    targets: Sequence,
    *,
    band: float = 0.5,
    iterations: int = SPECTRUM_MATCH_ITERATIONS,
    progress=None,
) -> tuple[np.ndarray, np.ndarray]:
    """Give each tilt the radially averaged power spectrum of its target tilt(s): a zero-phase radial filter.

    ``targets[i]``: an array (or a list of arrays, whose log spectra are averaged) holding the real tilt(s)
    matched to tilt ``i`` at the tilts' sampling (sizes may differ: spectra are compared in cycles per pixel).
    Per tilt and iteration: the smoothed log radial spectra (periodic, unwindowed, as ``faket realism``'s RAPS)
    of the standardised tilt and target, the amplitude gain ``exp((log P_target - log P_tilt) / 2)`` at each
    pixel's radius (within 1/MAX_MATCH_GAIN .. MAX_MATCH_GAIN), applied in Fourier space; beyond ``band``
    (cycles per pixel: the top of the target's band, e.g. a Fourier-padded reference's) the gain at ``band``.
    Each tilt keeps its mean and standard deviation, and its phases: the filter is zero-phase, so particles stay
    where the labels say. Returns ``(matched tilts, residual log10 distance per tilt)`` where the distance is the
    RMS difference of the mean-removed log10 ring spectra after matching, within ``band``.
    """
    # lazy: scipy
    import scipy.fft as sfft

    t = np.asarray(tilts, dtype=np.float32)
    T, Y, X = t.shape
    if len(targets) != T:
        raise ValueError(f"match_radial_spectrum: {len(targets)} targets for {T} tilts")
    fr = np.sqrt(np.fft.fftfreq(Y)[:, None] ** 2 + np.fft.rfftfreq(X)[None, :] ** 2)
    fr = np.minimum(fr, band)  # beyond the band: the gain at its edge
    n = min(Y, X)
    f1 = np.arange(1, n // 2 + 1) / n  # the tilts' ring frequencies (radial_power_spectrum's, DC dropped)
    f1b = np.minimum(f1, band)
    inb = f1 <= band
    out = np.empty_like(t)
    resid = np.zeros(T)
    lo, hi = math.log(1.0 / MAX_MATCH_GAIN), math.log(MAX_MATCH_GAIN)
    it = range(T) if progress is None else progress(range(T))
    for i in it:
        tg = targets[i] if isinstance(targets[i], (list, tuple)) else [targets[i]]
        L_t = np.mean([_log_rings(a, f1b)[1] for a in tg], axis=0)  # target log rings at the tilts' frequencies
        x = t[i].astype(np.float64)
        mean, std = float(x.mean()), float(x.std())
        if std > 0:
            x = (x - mean) / std
            for _ in range(max(int(iterations), 0)):
                g = np.exp(np.clip(0.5 * np.interp(fr, f1b, L_t - _log_rings(x, f1b)[1]), lo, hi))
                g[0, 0] = 0.0
                x = sfft.irfft2(sfft.rfft2(x) * g, s=(Y, X))
                x = (x - float(x.mean())) / float(x.std() or 1.0)
        d = (_log_rings(x, f1b)[1] - L_t)[inb] / math.log(10.0)
        resid[i] = float(np.sqrt(np.mean((d - d.mean()) ** 2))) if d.size else 0.0
        out[i] = (x * std + mean).astype(np.float32) if std > 0 else t[i]
    return out, resid


# --------------------------------------------------------------------------------------------------
# synthesis


def _match(y: np.ndarray, mean: float, std: float) -> np.ndarray:
    """Rescale ``y`` (mean ~0) in place to the given mean and std (4 passes over the tilt)."""
    f = y.reshape(-1)
    m = float(f.mean(dtype=np.float32))
    var = max(float(np.dot(f, f)) / f.size - m * m, 0.0)  # accurate: y is centred on ~0
    s = math.sqrt(var)
    scale = np.float32(std / s if s > 0 else 0.0)
    y *= scale
    y += np.float32(mean - m * float(scale))
    return y


def add_noise(
    clean: np.ndarray,
    curves: NoiseCurves,
    *,
    seed: int = 0,
    tilt_indices: Sequence[int] | None = None,
    content_noise: float | None = None,
    clean_stats: tuple[np.ndarray, np.ndarray] | None = None,
    progress=None,
    what: str = "clean tilt-series",
    spectra: np.ndarray | None = None,
    transfer: np.ndarray | None = None,
):
    """Apply the per-tilt model to a clean ``(T, Y, X)`` stack.

    Returns the NOISY stack (float32), or ``(noisy, content)`` when ``content_noise`` is given (the CONTENT
    modality uses ``content_noise * sigma`` and the same noise draw). ``tilt_indices`` are the tilts' indices
    in the full series (default ``0..T-1``): they and ``seed`` alone decide each tilt's noise.

    ``spectra`` (``(T, n, n//2+1)`` grid spectra, :func:`noise_spectra`): the noise of tilt ``i`` is the same
    white draw coloured by ``spectra[i]`` (:func:`colour_noise`: unit variance, so ``sigma`` keeps its meaning);
    ``None``: white. ``transfer`` (:class:`RadialTransfer`, :func:`signal_transfer`): the clean tilt is
    filtered with its gains before it is standardised.
    """
    clean = np.asarray(clean)
    T = clean.shape[0]
    if len(curves) != T:
        raise ValueError(f"add_noise: {len(curves)} curve values for {T} tilts")
    if content_noise is not None and (not np.isfinite(content_noise) or content_noise < 0):
        raise InputError(f"--content-noise {content_noise}: must be >= 0")
    if clean_stats is None:
        clean_stats = check_tilts(clean, what)
    cm, cs = clean_stats
    idx = np.arange(T) if tilt_indices is None else np.asarray(tilt_indices, dtype=np.int64)
    if idx.size != T:
        raise ValueError("add_noise: tilt_indices must have one index per tilt")
    noisy = np.empty(clean.shape, dtype=np.float32)
    content = np.empty(clean.shape, dtype=np.float32) if content_noise is not None else None
    z = np.empty(clean.shape[1:], dtype=np.float32)
    if spectra is not None and (np.ndim(spectra) != 3 or len(spectra) != T):
        raise ValueError(f"add_noise: spectra must be (T, n, n//2+1) with T = {T}")
    if transfer is not None and len(transfer) != T:
        raise ValueError(f"add_noise: transfer has {len(transfer)} tilts for {T}")
    col = None if spectra is None else _Colourer(clean.shape[1:], np.shape(spectra)[1])
    it = range(T) if progress is None else progress(range(T))
    for i in it:
        rng = np.random.default_rng([int(seed), int(idx[i])])
        e = rng.standard_normal(clean.shape[1:], dtype=np.float32)
        if col is not None:
            e = col(e, spectra[i])
        np.subtract(clean[i], np.float32(cm[i]), out=z, casting="unsafe")
        scale = cs[i]
        if transfer is not None:
            zf = _filter(z, transfer.on_grid(i, z.shape))
            sf = _mean_std(zf)[1]
            if sf > 0:
                z[...] = zf
                scale = sf
        z *= np.float32(curves.r[i] / scale)  # r * standardised clean tilt
        if content is not None:
            y = np.multiply(e, np.float32(content_noise * curves.sigma[i]), out=content[i])
            y += z
            _match(y, curves.mean[i], curves.std[i])
        y = np.multiply(e, np.float32(curves.sigma[i]), out=noisy[i])
        y += z
        _match(y, curves.mean[i], curves.std[i])
    return (noisy, content) if content is not None else noisy
