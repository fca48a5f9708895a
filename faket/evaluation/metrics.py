"""Image metrics for judging simulated tilt-series: power spectra, spectral and Gram (style) distances,
SSIM / PSNR, per-tilt statistics.

All functions are pure (numpy arrays in, numbers / arrays out). Definitions (also in docs/qc-evaluate.md,
"Quality control"):

Radially averaged power spectrum (:func:`radial_power_spectrum`)
    The image mean is removed, ``P = |FFT2(image)|^2 / (H*W)``. With ``N = min(H, W)``, every Fourier
    sample at frequency ``(fy, fx)`` (cycles/pixel, ``numpy.fft.fftfreq``) goes to the radial bin
    ``k = round(N * sqrt(fx^2 + fy^2))``; bin ``k`` holds the mean of ``P`` over its samples, for
    ``k = 0 .. N//2``; its frequency is ``k / N`` cycles/pixel (0.5 = Nyquist).

Spectral (shape) distance (:func:`log_spectrum_distance`, :func:`spectral_distance`)
    ``L = log10(P)`` over bins ``k = 1 .. N//2`` (the DC bin is excluded; it is ~0 after mean removal).
    Each log spectrum has its own mean over those bins removed, so a global gain (a brighter or higher
    contrast image) does not count, only the spectral *shape*:
    ``D = sqrt(mean_k [(L_a(k) - mean(L_a)) - (L_b(k) - mean(L_b))]^2)``, in decades (log10 units).
    ``D = 0`` for identical shapes; an image against white noise of the same size gives the slope/shape
    difference of the image's spectrum from a flat one. When the two images have different sizes, the log
    spectrum with more bins is linearly interpolated onto the frequencies (cycles/pixel) of the other.

Gram (style) distance (:func:`gram_distance`)
    As in neural style transfer: for each chosen VGG layer ``l``, ``G_l = F_l F_l^T / (H_l W_l)`` of the
    feature maps ``F_l`` (C_l x H_l W_l) of each image; the distance is
    ``sum_l w_l * ||G_l(a) - G_l(b)||_F / ||G_l(b)||_F`` (relative Frobenius norm, weights ``w_l`` summing
    to 1). It needs a feature extractor (``faket.style.vgg``); without one the metric is skipped.

SSIM / PSNR against the content (:func:`ssim_psnr`)
    Both tilts are standardised (mean 0, std 1) first, so only structure counts, not gain or offset.
    SSIM (:func:`ssim`, the definition of ``skimage.metrics.structural_similarity`` with its defaults: 7x7
    uniform window, K1 = 0.01, K2 = 0.03) with ``data_range`` = the range of the standardised content tilt; PSNR is ``10 log10(data_range^2 / MSE)`` in dB.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np

from faket.imaging.noise import radial_power_spectrum

__all__ = [
    "radial_power_spectrum",
    "radial_power_spectra",
    "log_spectrum_distance",
    "spectral_distance",
    "stack_spectral_distances",
    "gram_matrices",
    "gram_distance",
    "ssim",
    "ssim_psnr",
    "tilt_statistics",
    "standardise",
]


def _as_image(image) -> np.ndarray:
    a = np.asarray(image, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"expected a 2-D image, got shape {a.shape}")
    if min(a.shape) < 2:
        raise ValueError(f"image too small for a spectrum: shape {a.shape}")
    return a


def radial_power_spectra(stack) -> tuple[np.ndarray, np.ndarray]:
    """:func:`radial_power_spectrum` of every image of a ``(T, Y, X)`` stack -> ``(freq, (T, K) power)``."""
    s = np.asarray(stack)
    if s.ndim == 2:
        s = s[None]
    if s.ndim != 3:
        raise ValueError(f"expected a (tilt, Y, X) stack, got shape {s.shape}")
    out = []
    freq = None
    for img in s:
        freq, p = radial_power_spectrum(img)
        out.append(p)
    return freq, np.stack(out)


def _log_shape(power: np.ndarray) -> np.ndarray:
    """log10 of the power over bins 1.. with its mean removed (a flat floor guards against zeros)."""
    p = np.asarray(power, dtype=np.float64)[1:]
    floor = max(float(p.max()) * 1e-30, np.finfo(np.float64).tiny)
    lg = np.log10(np.maximum(p, floor))
    return lg - lg.mean()


def log_spectrum_distance(freq_a, power_a, freq_b, power_b) -> float:
    """RMS difference of mean-removed log10 radial spectra over bins 1..N//2 (decades); see module doc."""
    fa, fb = np.asarray(freq_a, dtype=np.float64), np.asarray(freq_b, dtype=np.float64)
    pa, pb = np.asarray(power_a, dtype=np.float64), np.asarray(power_b, dtype=np.float64)
    if fa.shape != pa.shape or fb.shape != pb.shape:
        raise ValueError("freq and power must have the same length")
    if fa.size < 3 or fb.size < 3:
        raise ValueError("spectra need at least 3 bins (images of at least 4 pixels a side)")
    if fa.size == fb.size and np.allclose(fa, fb):
        la, lb = _log_shape(pa), _log_shape(pb)
    else:
        # interpolate the finer spectrum onto the coarser grid (both in cycles/pixel), then remove means
        if fa.size > fb.size:
            fa, pa, fb, pb = fb, pb, fa, pa
        floor_b = max(float(pb[1:].max()) * 1e-30, np.finfo(np.float64).tiny)
        lb_full = np.log10(np.maximum(pb[1:], floor_b))
        lb = np.interp(fa[1:], fb[1:], lb_full)
        lb = lb - lb.mean()
        la = _log_shape(pa)
    return float(np.sqrt(np.mean((la - lb) ** 2)))


def spectral_distance(image_a, image_b) -> float:
    """Spectral shape distance between two 2-D images (:func:`log_spectrum_distance` of their spectra)."""
    fa, pa = radial_power_spectrum(image_a)
    fb, pb = radial_power_spectrum(image_b)
    return log_spectrum_distance(fa, pa, fb, pb)


def stack_spectral_distances(stack, reference, reference_index: Sequence[int] | None = None) -> np.ndarray:
    """Per-tilt spectral distance of ``stack[i]`` to ``reference[reference_index[i]]`` (default: same i)."""
    fs, ps = radial_power_spectra(stack)
    fr, pr = radial_power_spectra(reference)
    if reference_index is None:
        if pr.shape[0] != ps.shape[0]:
            raise ValueError(f"{ps.shape[0]} tilts vs {pr.shape[0]} reference tilts: give reference_index")
        reference_index = np.arange(ps.shape[0])
    idx = np.asarray(reference_index, dtype=np.int64)
    return np.array([log_spectrum_distance(fs, ps[i], fr, pr[j]) for i, j in enumerate(idx)])


# ---------------------------------------------------------------------------------------------------
# Gram (style) distance


def gram_matrices(features: Iterable) -> list[np.ndarray]:
    """``F F^T / (H W)`` of each feature map ``(C, H, W)`` (or ``(1, C, H, W)``; torch or numpy)."""
    out = []
    for f in features:
        if hasattr(f, "detach"):
            f = f.detach().cpu().double().numpy()
        f = np.asarray(f, dtype=np.float64)
        if f.ndim == 4:
            if f.shape[0] != 1:
                raise ValueError(f"one image at a time: feature batch of {f.shape[0]}")
            f = f[0]
        if f.ndim != 3:
            raise ValueError(f"feature map must be (C, H, W), got shape {f.shape}")
        c = f.shape[0]
        m = f.reshape(c, -1)
        out.append(m @ m.T / m.shape[1])
    return out


def gram_distance(
    image_a, image_b, features_fn: Callable[[np.ndarray], Sequence], weights: Sequence[float] | None = None
) -> float:
    """Weighted relative Frobenius distance of Gram matrices of two images' features (``b`` = target).

    ``features_fn(image)`` returns a list of feature maps (one per layer, ``(C, H, W)`` or ``(1, C, H, W)``).
    ``weights`` (one per layer) are normalised to sum 1; default equal.
    """
    ga = gram_matrices(features_fn(np.asarray(image_a)))
    gb = gram_matrices(features_fn(np.asarray(image_b)))
    if len(ga) != len(gb) or not ga:
        raise ValueError("features_fn must return the same non-empty list of layers for both images")
    w = np.ones(len(ga)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.size != len(ga):
        raise ValueError(f"{w.size} weights for {len(ga)} layers")
    w = w / w.sum()
    d = 0.0
    for wi, a, b in zip(w, ga, gb):
        nb = np.linalg.norm(b)
        d += wi * np.linalg.norm(a - b) / (nb if nb > 0 else 1.0)
    return float(d)


# ---------------------------------------------------------------------------------------------------
# SSIM / PSNR, statistics


def standardise(image) -> np.ndarray:
    """``(x - mean) / std`` (std 0 -> only the mean removed)."""
    a = np.asarray(image, dtype=np.float64)
    s = a.std()
    return (a - a.mean()) / (s if s > 0 else 1.0)


def ssim(image, reference, *, data_range: float, win_size: int = 7) -> float:
    """Mean structural similarity with a ``win_size`` square uniform window (Wang et al. 2004).

    The same definition as ``skimage.metrics.structural_similarity`` with its defaults: ``K1 = 0.01``,
    ``K2 = 0.03``, sample (N-1) covariances, the mean taken over pixels at least ``(win_size-1)/2`` from
    the border. Implemented here with scipy so that scikit-image is not a dependency.
    """
    # lazy: scipy
    from scipy.ndimage import uniform_filter

    a = np.asarray(image, dtype=np.float64)
    b = np.asarray(reference, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    if win_size % 2 != 1 or win_size > min(a.shape):
        raise ValueError(f"win_size {win_size} must be odd and at most the image size {a.shape}")
    npix = win_size**a.ndim
    cov_norm = npix / (npix - 1)
    f = lambda x: uniform_filter(x, size=win_size)  # noqa: E731
    ux, uy = f(a), f(b)
    vx = cov_norm * (f(a * a) - ux * ux)
    vy = cov_norm * (f(b * b) - uy * uy)
    vxy = cov_norm * (f(a * b) - ux * uy)
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    pad = (win_size - 1) // 2
    return float(s[pad : -pad or None, pad : -pad or None].mean())


def ssim_psnr(image, content) -> tuple[float, float]:
    """SSIM and PSNR (dB) of ``image`` against ``content`` after standardising both (see module doc)."""
    a = standardise(_as_image(image))
    c = standardise(_as_image(content))
    if a.shape != c.shape:
        raise ValueError(f"shapes differ: {a.shape} vs content {c.shape}")
    rng = float(c.max() - c.min())
    if rng <= 0:
        rng = 1.0
    small = min(a.shape)
    win = 7 if small >= 7 else (small if small % 2 else small - 1)
    s = ssim(a, c, data_range=rng, win_size=max(win, 1))
    mse = float(np.mean((a - c) ** 2))
    psnr = float("inf") if mse == 0 else float(10.0 * np.log10(rng * rng / mse))
    return s, psnr


def tilt_statistics(stack) -> dict[str, np.ndarray]:
    """Per-tilt ``mean``, ``std``, ``min``, ``max`` of a ``(T, Y, X)`` stack (float64 arrays of length T)."""
    s = np.asarray(stack)
    if s.ndim == 2:
        s = s[None]
    flat = s.reshape(s.shape[0], -1).astype(np.float64)
    return {"mean": flat.mean(axis=1), "std": flat.std(axis=1), "min": flat.min(axis=1), "max": flat.max(axis=1)}
