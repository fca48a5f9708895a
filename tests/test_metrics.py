"""faket.metrics: spectra, spectral / Gram distances, SSIM / PSNR, per-tilt statistics."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from faket.evaluation import metrics


def smooth_image(shape=(64, 64), sigma=2.0, seed=0):
    r = np.random.default_rng(seed)
    return gaussian_filter(r.normal(size=shape), sigma)


def test_radial_spectrum_of_a_cosine_peaks_at_its_frequency():
    n = 64
    x = np.arange(n)
    img = np.cos(2 * np.pi * 8 * x / n)[None, :] * np.ones((n, 1))
    freq, p = metrics.radial_power_spectrum(img)
    assert freq.shape == (n // 2 + 1,) and freq[-1] == pytest.approx(0.5)
    assert int(np.argmax(p)) == 8
    assert freq[8] == pytest.approx(8 / n)
    # Parseval: sum of |F|^2/(HW) = sum of squares; the cosine's energy sits in 2 samples of bin 8
    counts = np.bincount(np.rint(n * np.hypot(*np.meshgrid(np.fft.fftfreq(n), np.fft.fftfreq(n)))).astype(int).ravel())
    assert p[8] * counts[8] == pytest.approx((img**2).sum(), rel=1e-9)


def test_white_noise_spectrum_is_flat_and_smooth_image_falls():
    r = np.random.default_rng(1)
    _, pw = metrics.radial_power_spectrum(r.normal(size=(128, 128)))
    # flat: mean power ~ variance 1 at low and high frequency alike
    assert pw[5:20].mean() == pytest.approx(1.0, rel=0.2)
    assert pw[45:64].mean() == pytest.approx(1.0, rel=0.2)
    _, ps = metrics.radial_power_spectrum(smooth_image((128, 128)))
    assert ps[5:10].mean() > 100 * ps[50:64].mean()


def test_spectral_distance_meaning():
    r = np.random.default_rng(2)
    img = smooth_image()
    slightly = img + 0.1 * img.std() * r.normal(size=img.shape)
    noise = r.normal(size=img.shape)
    d_self = metrics.spectral_distance(img, img)
    d_slight = metrics.spectral_distance(img, slightly)
    d_noise = metrics.spectral_distance(img, noise)
    assert d_self == pytest.approx(0.0, abs=1e-12)
    assert d_slight < d_noise
    assert d_noise > 0.5  # decades: the smooth image's spectrum falls by orders of magnitude
    # gain and offset do not change the spectral shape
    assert metrics.spectral_distance(img, 3.0 * img + 7.0) == pytest.approx(0.0, abs=1e-9)
    # symmetric
    assert metrics.spectral_distance(noise, img) == pytest.approx(d_noise)


def test_spectral_distance_across_sizes_uses_common_frequencies():
    a = smooth_image((64, 64), seed=3)
    b = smooth_image((128, 128), seed=4)
    noise = np.random.default_rng(5).normal(size=(128, 128))
    assert metrics.spectral_distance(a, b) < 0.5 * metrics.spectral_distance(a, noise)


def test_stack_spectral_distances_per_tilt_with_index():
    r = np.random.default_rng(6)
    ref = np.stack([smooth_image(seed=s) for s in range(3)])
    stack = np.stack([ref[2], r.normal(size=(64, 64))])
    d = metrics.stack_spectral_distances(stack, ref, [2, 0])
    assert d.shape == (2,)
    assert d[0] == pytest.approx(0.0, abs=1e-12)
    assert d[1] > 0.5
    with pytest.raises(ValueError):
        metrics.stack_spectral_distances(stack, ref)


def test_gram_distance_with_simple_features():
    # two hand-made "layers": the image itself and its gradient magnitude (1, H, W) maps
    def feats(img):
        g = np.hypot(*np.gradient(img))
        return [img[None], np.stack([img, g])]

    a = smooth_image(seed=7)
    assert metrics.gram_distance(a, a, feats) == pytest.approx(0.0, abs=1e-12)
    near = a * 1.05
    far = np.random.default_rng(8).normal(size=a.shape) * 5
    assert 0 < metrics.gram_distance(near, a, feats) < metrics.gram_distance(far, a, feats)
    g = metrics.gram_matrices([np.ones((2, 4, 4))])[0]
    np.testing.assert_allclose(g, np.ones((2, 2)))


def test_ssim_psnr_standardised():
    r = np.random.default_rng(9)
    c = smooth_image(seed=10)
    s, p = metrics.ssim_psnr(c, c)
    assert s == pytest.approx(1.0) and p == np.inf
    s2, p2 = metrics.ssim_psnr(5 * c - 2, c)  # gain/offset do not count
    assert s2 == pytest.approx(1.0) and p2 > 200  # identical up to float rounding
    s_lo, p_lo = metrics.ssim_psnr(c + 0.3 * c.std() * r.normal(size=c.shape), c)
    s_hi, p_hi = metrics.ssim_psnr(c + 1.0 * c.std() * r.normal(size=c.shape), c)
    assert 1 > s_lo > s_hi
    assert p_lo > p_hi
    # PSNR definition: 10 log10(range^2 / mse) of standardised images
    x = c + 0.3 * c.std() * r.normal(size=c.shape)
    a, b = metrics.standardise(x), metrics.standardise(c)
    expect = 10 * np.log10((b.max() - b.min()) ** 2 / np.mean((a - b) ** 2))
    assert metrics.ssim_psnr(x, c)[1] == pytest.approx(expect)


def test_tilt_statistics():
    s = np.stack([np.full((4, 4), 2.0), np.arange(16.0).reshape(4, 4)])
    st = metrics.tilt_statistics(s)
    np.testing.assert_allclose(st["mean"], [2.0, 7.5])
    np.testing.assert_allclose(st["std"], [0.0, np.arange(16.0).std()])
    np.testing.assert_allclose(st["max"], [2.0, 15.0])


def test_spectral_distance_on_real_tilts(shared_data):
    """Real cryo-ET tilts (PyTom sub-tilt-series): a slightly noised copy stays much closer in spectral
    shape than white noise, and a smoothed copy (resolution lost) moves away."""
    from faket.formats.tiltmeta import read_tiltseries

    d = shared_data / "tiltseries"
    m, _ = read_tiltseries(d / "pytom_p1_subtilt_41x100x100.mrc", d / "pytom_p1_subtilt.tlt")
    x = m.data[20].astype(np.float64)
    r = np.random.default_rng(11)
    slight = metrics.spectral_distance(x, x + 0.1 * x.std() * r.normal(size=x.shape))
    white = metrics.spectral_distance(x, r.normal(size=x.shape))
    blurred = metrics.spectral_distance(x, gaussian_filter(x, 1.5))
    assert slight < 0.2 * white
    assert blurred > 3 * slight


def test_ssim_matches_scikit_image_definition():
    skm = pytest.importorskip("skimage.metrics")
    r = np.random.default_rng(12)
    c = smooth_image((48, 40), seed=13)
    x = c + 0.5 * r.normal(size=c.shape)
    rng = float(c.max() - c.min())
    for win in (7, 5):
        ours = metrics.ssim(x, c, data_range=rng, win_size=win)
        ref = skm.structural_similarity(x, c, data_range=rng, win_size=win)
        assert ours == pytest.approx(ref, rel=1e-10)
