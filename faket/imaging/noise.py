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

Randomness: tilt ``t`` draws from ``numpy.random.default_rng([seed, t])``, so a tilt's noise depends on the
seed and its index in the full tilt-series only (pass ``tilt_indices`` when handling a chunk).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from faket.errors import InputError

__all__ = ["NoiseCurves", "tilt_stats", "check_tilts", "standardise", "paired_fit", "blind_fit",
           "blind_noise_variance", "snr_curves", "smooth_curves", "global_curves", "average_curves",
           "normalise_r_sigma", "add_noise", "noise_psd_shape", "NOISE_MTFS"]

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
            return self.r ** 2 / self.sigma ** 2

    def take(self, idx) -> "NoiseCurves":
        idx = np.asarray(idx, dtype=np.int64)
        return NoiseCurves(self.r[idx], self.sigma[idx], self.mean[idx], self.std[idx])

    def to_dict(self) -> dict:
        snr = self.snr
        return {"r": self.r.tolist(), "sigma": self.sigma.tolist(), "mean": self.mean.tolist(),
                "std": self.std.tolist(),
                "snr": [float(s) if np.isfinite(s) else None for s in snr]}


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
        raise InputError(f"{what}: tilt {int(bad[0])} has zero variance (constant or blank image; "
                         f"std {std[bad[0]]:.3g} vs median {np.median(std):.3g}); {bad.size} such tilt(s)")
    return mean, std


def standardise(tilts: np.ndarray, mean=None, std=None) -> np.ndarray:
    """``(tilt - mean) / std`` per tilt, float32."""
    t = np.asarray(tilts, dtype=np.float32)
    if mean is None or std is None:
        mean, std = tilt_stats(t)
    return ((t - np.asarray(mean, np.float32)[:, None, None])
            / np.asarray(std, np.float32)[:, None, None]).astype(np.float32, copy=False)


def normalise_r_sigma(r, sigma) -> tuple[np.ndarray, np.ndarray]:
    """Scale ``(r, sigma)`` so that ``r**2 + sigma**2 = 1`` (clip ``r`` to [0, 1], ``sigma`` >= 0)."""
    r = np.clip(np.asarray(r, dtype=np.float64), 0.0, None)
    s = np.clip(np.asarray(sigma, dtype=np.float64), 0.0, None)
    n = np.sqrt(r ** 2 + s ** 2)
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


def blind_noise_variance(tilts: np.ndarray, *, band: tuple[float, float] = (0.7, 0.95),
                         noise_mtf: str = "measured", plateau: tuple[float, float] = (0.35, 0.6),
                         axis_exclude: int = 1, info: dict | None = None) -> np.ndarray:
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
    chunk = max(1, int(2 ** 24 // max(1, Y * X)))

    def spectra():
        for a in range(0, T, chunk):
            x = t[a:a + chunk]
            x = x - x.mean(axis=(1, 2), keepdims=True)
            F = sfft.rfft2(x, workers=-1)
            yield a, (F.real ** 2 + F.imag ** 2) / (Y * X)

    if noise_mtf != "measured":
        mask = _band_mask(Y, X, band, axis_exclude)
        shape = noise_psd_shape((Y, X), noise_mtf)
        full_mean = float((shape * W).sum() / (Y * X))
        correction = full_mean / float(shape[mask].mean())
        out = np.empty(T)
        for a, P in spectra():
            out[a:a + P.shape[0]] = _ring_floor(P, mask, f) * correction
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
        info.update({"top_ratio": ratio, "floor_band": list(band if flat else plateau),
                     "roll_off": not flat})
    return total / (Y * X)


def blind_fit(noisy: np.ndarray, *, band: tuple[float, float] = (0.7, 0.95), noise_mtf: str = "measured",
              what: str = "reference", info: dict | None = None) -> NoiseCurves:
    """Per-tilt ``r`` and ``sigma`` from a noisy reference alone (see the module docstring)."""
    mean, std = check_tilts(noisy, what)
    nv = blind_noise_variance(noisy, band=band, noise_mtf=noise_mtf, info=info)
    s2 = np.clip(nv / std ** 2, 0.0, 1.0)
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


def add_noise(clean: np.ndarray, curves: NoiseCurves, *, seed: int = 0,
              tilt_indices: Sequence[int] | None = None, content_noise: float | None = None,
              clean_stats: tuple[np.ndarray, np.ndarray] | None = None, progress=None,
              what: str = "clean tilt-series"):
    """Apply the per-tilt model to a clean ``(T, Y, X)`` stack.

    Returns the NOISY stack (float32), or ``(noisy, content)`` when ``content_noise`` is given (the CONTENT
    modality uses ``content_noise * sigma`` and the same noise draw). ``tilt_indices`` are the tilts' indices
    in the full series (default ``0..T-1``): they and ``seed`` alone decide each tilt's noise.
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
    it = range(T) if progress is None else progress(range(T))
    for i in it:
        rng = np.random.default_rng([int(seed), int(idx[i])])
        e = rng.standard_normal(clean.shape[1:], dtype=np.float32)
        np.subtract(clean[i], np.float32(cm[i]), out=z, casting="unsafe")
        z *= np.float32(curves.r[i] / cs[i])  # r * standardised clean tilt
        if content is not None:
            y = np.multiply(e, np.float32(content_noise * curves.sigma[i]), out=content[i])
            y += z
            _match(y, curves.mean[i], curves.std[i])
        y = np.multiply(e, np.float32(curves.sigma[i]), out=noisy[i])
        y += z
        _match(y, curves.mean[i], curves.std[i])
    return (noisy, content) if content is not None else noisy
