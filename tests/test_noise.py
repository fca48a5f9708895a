"""Tests for faket.noise and `faket noise`: the model, fits (paired, blind, SNR), CLI and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import mrcfile
import numpy as np
import pytest
import scipy.fft as sfft
from scipy.ndimage import gaussian_filter

from faket.cli import main
from faket.errors import InputError
from faket.imaging import noise as nz

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def phantom(n=128, nblob=60, seed=0, blur=1.5):
    """A projected ball phantom (chord lengths of random balls), softened: a band-limited projection."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:n, :n].astype(np.float32)
    img = np.zeros((n, n), np.float32)
    for _ in range(nblob):
        cy, cx = rng.uniform(0, n, 2)
        rad = rng.uniform(3, 12)
        d2 = rad * rad - ((yy - cy) ** 2 + (xx - cx) ** 2)
        img += 2 * np.sqrt(np.clip(d2, 0, None)) * rng.uniform(0.5, 1.5)
    img = gaussian_filter(img, blur) if blur > 0 else img
    return ((img - img.mean()) / img.std()).astype(np.float32)


def write(path, data, angles=None, voxel=10.0):
    with mrcfile.new(path, overwrite=True) as m:
        m.set_data(np.asarray(data, np.float32))
        m.voxel_size = voxel
    if angles is not None:
        Path(path).with_suffix(".tlt").write_text("".join(f"{a:g}\n" for a in angles))


def read(path):
    with mrcfile.open(path) as m:
        return np.array(m.data)


# --------------------------------------------------------------------------------------------------
# model


def test_add_noise_matches_reference_stats_and_snr():
    clean = np.stack([phantom(64, 20, seed=s) * 3 + 7 for s in range(5)])
    r, s = nz.normalise_r_sigma([0.9, 0.7, 0.5, 0.3, 0.1], [0.1, 0.3, 0.5, 0.7, 0.9])
    mean = np.array([1.0, -2.0, 3.0, 0.0, 10.0])
    std = np.array([0.5, 2.0, 1.0, 3.0, 0.1])
    noisy, content = nz.add_noise(clean, nz.NoiseCurves(r, s, mean, std), seed=3, content_noise=0.25)
    assert noisy.dtype == np.float32 and noisy.shape == clean.shape
    m, sd = nz.tilt_stats(noisy)
    np.testing.assert_allclose(m, mean, atol=1e-4)
    np.testing.assert_allclose(sd, std, rtol=1e-4)
    m2, sd2 = nz.tilt_stats(content)
    np.testing.assert_allclose(sd2, std, rtol=1e-4)
    for i in range(5):
        z = (clean[i] - clean[i].mean()) / clean[i].std()
        # correlation with the clean tilt = r / sqrt(r^2 + sigma^2) = r (standardised units)
        assert np.corrcoef(z.ravel(), noisy[i].ravel())[0, 1] == pytest.approx(r[i], abs=0.03)
        rc = r[i] / np.hypot(r[i], 0.25 * s[i])
        assert np.corrcoef(z.ravel(), content[i].ravel())[0, 1] == pytest.approx(rc, abs=0.06)


def test_add_noise_seeded_and_independent_of_chunking():
    clean = np.stack([phantom(48, 10, seed=s) for s in range(6)])
    c = nz.snr_curves(0.2, np.zeros(6), np.ones(6))
    full = nz.add_noise(clean, c, seed=11)
    again = nz.add_noise(clean, c, seed=11)
    np.testing.assert_array_equal(full, again)
    part = nz.add_noise(clean[2:5], c.take([2, 3, 4]), seed=11, tilt_indices=[2, 3, 4])
    np.testing.assert_array_equal(part, full[2:5])
    other = nz.add_noise(clean, c, seed=12)
    assert np.abs(other - full).mean() > 0.1


def test_snr_definition():
    c = nz.snr_curves([0.01, 0.25, 1.0, 4.0], np.zeros(4), np.ones(4))
    np.testing.assert_allclose(c.r**2 + c.sigma**2, 1.0)
    np.testing.assert_allclose(c.snr, [0.01, 0.25, 1.0, 4.0])
    with pytest.raises(InputError):
        nz.snr_curves(-1.0, np.zeros(2), np.ones(2))


# --------------------------------------------------------------------------------------------------
# fits


def test_paired_fit_recovers_r_and_sigma():
    rng = np.random.default_rng(0)
    clean = np.stack([phantom(96, 30, seed=s) for s in range(4)])
    snr = np.array([0.05, 0.2, 1.0, 3.0])
    noisy = np.sqrt(snr)[:, None, None] * clean + rng.standard_normal(clean.shape)
    noisy = noisy * 5 + 2  # arbitrary units: the fit standardises
    c = nz.paired_fit(noisy, clean)
    np.testing.assert_allclose(c.r, np.sqrt(snr / (1 + snr)), atol=0.03)
    np.testing.assert_allclose(c.sigma, np.sqrt(1 / (1 + snr)), atol=0.03)
    np.testing.assert_allclose(c.r**2 + c.sigma**2, 1.0, atol=1e-6)
    with pytest.raises(InputError, match="shape"):
        nz.paired_fit(noisy, clean[:3])


@pytest.mark.parametrize("snr", [0.01, 0.03, 0.1, 0.3])
def test_blind_sigma_within_15_percent(snr):
    """Synthetic references with known SNR: projected-ball phantom + white Gaussian noise."""
    rng = np.random.default_rng(int(snr * 1000))
    sig = np.stack([phantom(128, 60, seed=s) for s in range(4)])
    noise = rng.standard_normal(sig.shape).astype(np.float32)
    ref = np.sqrt(snr) * sig + noise
    truth = np.sqrt(1 / (1 + snr))
    for mtf in ("measured", "none"):
        c = nz.blind_fit(ref * 3 + 100, noise_mtf=mtf)
        assert np.all(np.abs(c.sigma / truth - 1) < 0.15), (mtf, c.sigma, truth)


def test_blind_follows_detector_roll_off():
    """Noise coloured by a counting-detector MTF: 'measured' and 'counting' stay accurate."""
    rng = np.random.default_rng(5)
    sig = np.stack([phantom(128, 60, seed=s) for s in range(3)])
    shape = nz.noise_psd_shape((128, 128), "counting")
    n = sfft.irfft2(sfft.rfft2(rng.standard_normal(sig.shape)) * np.sqrt(shape), s=(128, 128))
    n /= n.std(axis=(1, 2), keepdims=True)
    snr = 0.1
    ref = np.sqrt(snr) * sig + n
    truth = np.sqrt(1 / (1 + snr))
    white = nz.blind_fit(ref, noise_mtf="none").sigma
    info = {}
    nz.blind_fit(ref, info=info)
    assert info["roll_off"] and info["top_ratio"] < 0.9 and info["floor_band"] == [0.35, 0.6]
    info = {}
    nz.blind_fit(np.sqrt(snr) * sig + rng.standard_normal(sig.shape), info=info)
    assert not info["roll_off"] and info["floor_band"] == [0.7, 0.95]
    for mtf in ("measured", "counting"):
        s = nz.blind_fit(ref, noise_mtf=mtf).sigma
        assert np.all(np.abs(s / truth - 1) < 0.03), (mtf, s)
    # assuming white noise under-estimates it here: the roll-off matters
    assert np.all(white < nz.blind_fit(ref, noise_mtf="counting").sigma)


def test_blind_noise_variance_additive_on_real_tilts():
    """Real tilts: adding white noise of known variance raises the blind estimate by that much."""
    f = SHARED / "tiltseries" / "pytom_p1_subtilt_41x100x100.mrc"
    if not f.exists():
        pytest.skip(f"real tilt-series not available ({f}); needs ../shared/data")
    with mrcfile.open(f, permissive=True) as m:
        d = np.array(m.data, dtype=np.float32)[::5]
    extra = 2.0 * float(d.var())
    rng = np.random.default_rng(1)
    e = rng.standard_normal(d.shape).astype(np.float32) * np.sqrt(extra)
    for mtf in ("none", "measured"):
        v0 = nz.blind_noise_variance(d, noise_mtf=mtf)
        v1 = nz.blind_noise_variance(d + e, noise_mtf=mtf)
        np.testing.assert_allclose(v1 - v0, extra, rtol=0.15, err_msg=mtf)
    # these sub-tilts are low-passed (roll-off at the top of the spectrum) and noise dominated: the default
    # estimate reads SNR < 0.1 on every tilt
    info = {}
    c = nz.blind_fit(d, info=info)
    assert info["roll_off"]
    assert np.all((c.sigma > 0.95) & (c.sigma <= 1.0))
    np.testing.assert_allclose(c.r**2 + c.sigma**2, 1.0)
    # the blank tilts of real data (excluded tilts stored as rounding residue) are refused
    blank = d.copy()
    blank[2] = 1e-5 * rng.standard_normal(blank.shape[1:])
    with pytest.raises(InputError, match="zero variance"):
        nz.blind_fit(blank)


def test_smoothing_and_global():
    x = np.arange(21.0)
    r = 0.8 - 0.0005 * (x - 10) ** 2
    s = np.sqrt(1 - r**2)
    rng = np.random.default_rng(0)
    raw = nz.NoiseCurves(r + rng.normal(0, 0.02, 21), s, 5 + 0.01 * x, 2 + 0 * x)
    sm = nz.smooth_curves(raw, 2)
    assert np.abs(sm.r - r).max() < np.abs(raw.r - r).max()
    np.testing.assert_allclose(sm.r**2 + sm.sigma**2, 1.0)
    np.testing.assert_allclose(sm.mean, raw.mean, atol=1e-9)
    g = nz.global_curves(sm)
    assert np.ptp(g.r) == 0 and np.ptp(g.sigma) == 0
    np.testing.assert_allclose(g.mean, sm.mean)
    assert nz.smooth_curves(raw, -1).r[3] == pytest.approx(nz.normalise_r_sigma(raw.r, raw.sigma)[0][3])


# --------------------------------------------------------------------------------------------------
# CLI


@pytest.fixture
def series(tmp_path):
    """Clean content (21 tilts, -60..60), a reference with its clean twin (tilt-dependent SNR)."""
    ang = np.linspace(-60, 60, 21)
    clean = np.stack([phantom(64, 20, seed=s) for s in range(21)]) * 2 + 5
    ref_clean = np.stack([phantom(64, 20, seed=100 + s) for s in range(21)])
    snr = 0.5 * np.cos(np.deg2rad(ang)) ** 2  # lower SNR at high tilt
    rng = np.random.default_rng(7)
    ref = np.sqrt(snr)[:, None, None] * ref_clean + rng.standard_normal(ref_clean.shape)
    ref = ref * (1 + 0.01 * np.arange(21))[:, None, None] + 50
    write(tmp_path / "clean.mrc", clean, ang)
    write(tmp_path / "ref.mrc", ref, ang + 0.3)
    write(tmp_path / "ref_clean.mrc", ref_clean, ang + 0.3)
    return tmp_path, ang, snr, ref


def test_cli_paired_and_blind(series, capsys):
    d, ang, snr, ref = series
    for est, extra in (("paired", ["--reference-clean", str(d / "ref_clean.mrc")]), ("blind", [])):
        out = d / f"noisy_{est}.mrc"
        rc = main(
            [
                "noise",
                str(d / "clean.mrc"),
                "--reference",
                str(d / "ref.mrc"),
                *extra,
                "-o",
                str(out),
                "--content-out",
                str(d / f"content_{est}.mrc"),
                "--quiet",
            ]
        )
        assert rc == 0, capsys.readouterr().err
        noisy = read(out)
        assert noisy.shape == (21, 64, 64)
        meta = json.loads(out.with_suffix(".json").read_text())
        model = meta["noise_model"]
        assert model["estimate"] == est
        fit_snr = np.array(model["curves"]["snr"])
        np.testing.assert_allclose(fit_snr, snr, atol=0.08)
        # output per-tilt mean/std = the reference's, smoothed by the degree-2 polynomial
        m, s = nz.tilt_stats(noisy)
        np.testing.assert_allclose(m, model["curves"]["mean"], rtol=1e-5)
        np.testing.assert_allclose(s, model["curves"]["std"], rtol=1e-4)
        rm, rs = nz.tilt_stats(ref)
        np.testing.assert_allclose(np.polyval(np.polyfit(np.arange(21), rs, 2), np.arange(21)), s, rtol=1e-4)
        np.testing.assert_allclose(m, rm, atol=0.05)
        np.testing.assert_allclose(np.loadtxt(out.with_suffix(".tlt")), ang, atol=1e-4)
        assert (d / f"content_{est}.mrc").exists()


def test_cli_single_image_reference_global_and_snr(series, capsys):
    d, ang, snr, ref = series
    write(d / "micro.mrc", ref[10])
    rc = main(
        [
            "noise",
            str(d / "clean.mrc"),
            "--reference",
            str(d / "micro.mrc"),
            "--global",
            "-o",
            str(d / "g.mrc"),
            "--quiet",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    c = json.loads((d / "g.json").read_text())["noise_model"]["curves"]
    assert np.ptp(c["r"]) < 1e-12 and len(c["r"]) == 21
    assert np.ptp(c["mean"]) < 1e-9  # one image: one mean for all tilts
    rc = main(["noise", str(d / "clean.mrc"), "--snr", "0.1", "-o", str(d / "s.mrc"), "--seed", "4", "--quiet"])
    assert rc == 0
    c = json.loads((d / "s.json").read_text())["noise_model"]["curves"]
    np.testing.assert_allclose(c["snr"], 0.1)
    s = read(d / "s.mrc")
    clean = read(d / "clean.mrc")
    z = (clean[0] - clean[0].mean()) / clean[0].std()
    assert np.corrcoef(z.ravel(), s[0].ravel())[0, 1] == pytest.approx(np.sqrt(0.1 / 1.1), abs=0.05)


def test_cli_several_references_are_averaged(series, capsys):
    d, ang, snr, ref = series
    rng = np.random.default_rng(9)
    ref2 = np.stack([phantom(64, 20, seed=200 + s) for s in range(21)]) * np.sqrt(2.0) + rng.standard_normal(ref.shape)
    write(d / "ref2.mrc", ref2 * 2, ang)
    runs = {}
    for name, refs in (("a", ["ref.mrc"]), ("b", ["ref2.mrc"]), ("ab", ["ref.mrc", "ref2.mrc"])):
        argv = ["noise", str(d / "clean.mrc"), "-o", str(d / f"{name}.mrc"), "--quiet"]
        for r in refs:
            argv += ["--reference", str(d / r)]
        assert main(argv) == 0, capsys.readouterr().err
        runs[name] = json.loads((d / f"{name}.json").read_text())["noise_model"]["curves"]
    r_avg, s_avg = nz.normalise_r_sigma(
        (np.array(runs["a"]["r"]) + runs["b"]["r"]) / 2, (np.array(runs["a"]["sigma"]) + runs["b"]["sigma"]) / 2
    )
    np.testing.assert_allclose(runs["ab"]["r"], r_avg, rtol=1e-9)
    np.testing.assert_allclose(runs["ab"]["sigma"], s_avg, rtol=1e-9)
    np.testing.assert_allclose(runs["ab"]["std"], (np.array(runs["a"]["std"]) + runs["b"]["std"]) / 2)
    # the second reference has SNR ~2: the average lies between the two
    assert np.all(np.array(runs["a"]["snr"]) < np.array(runs["ab"]["snr"]))
    assert np.all(np.array(runs["ab"]["snr"]) < np.array(runs["b"]["snr"]))


def test_cli_matches_reference_by_angle(series, capsys):
    d, ang, snr, ref = series
    # a reference whose tilts are in reverse order with their angles: matching by angle undoes it
    write(d / "rev.mrc", ref[::-1], (ang + 0.3)[::-1])
    assert (
        main(
            [
                "noise",
                str(d / "clean.mrc"),
                "--reference",
                str(d / "rev.mrc"),
                "--smooth-order",
                "-1",
                "-o",
                str(d / "a.mrc"),
                "--quiet",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "noise",
                str(d / "clean.mrc"),
                "--reference",
                str(d / "ref.mrc"),
                "--smooth-order",
                "-1",
                "-o",
                str(d / "b.mrc"),
                "--quiet",
            ]
        )
        == 0
    )
    np.testing.assert_allclose(read(d / "a.mrc"), read(d / "b.mrc"), rtol=1e-5, atol=1e-4)
    recs = json.loads((d / "a.json").read_text())["noise_model"]["references"]
    assert recs[0]["matched_index"] == list(range(20, -1, -1))
    # a reference covering only -30..30: warned nearest within the gap, failure beyond
    keep = np.abs(ang) <= 30
    write(d / "narrow.mrc", ref[keep], ang[keep])
    rc = main(
        [
            "noise",
            str(d / "clean.mrc"),
            "--reference",
            str(d / "narrow.mrc"),
            "--max-angle-gap",
            "10",
            "-o",
            str(d / "n.mrc"),
            "--quiet",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "no tilt within 10 deg" in err and not (d / "n.mrc").exists()
    rc = main(
        [
            "noise",
            str(d / "clean.mrc"),
            "--reference",
            str(d / "narrow.mrc"),
            "--max-angle-gap",
            "40",
            "-o",
            str(d / "n.mrc"),
            "--quiet",
        ]
    )
    assert rc == 0 and "nearest reference tilt" in capsys.readouterr().err


def _bad(d, argv, capsys, expect):
    out = d / "bad.mrc"
    rc = main(["noise", *argv, "-o", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert expect in err, err
    # one error line (warnings, e.g. the synthetic reference's bright polarity, may precede it)
    assert len([ln for ln in err.strip().splitlines() if "warning:" not in ln]) == 1 and "Traceback" not in err
    assert not out.exists() and not out.with_suffix(".json").exists()
    assert not list(d.glob(".bad*"))


def test_cli_bad_input(series, capsys):
    d, ang, snr, ref = series
    clean, refp = str(d / "clean.mrc"), str(d / "ref.mrc")
    bad = read(d / "clean.mrc")
    bad[3, 5, 5] = np.nan
    write(d / "nan.mrc", bad, ang)
    _bad(d, [str(d / "nan.mrc"), "--reference", refp], capsys, "NaN")
    flat = ref.copy()
    flat[4] = 7.0
    write(d / "flat.mrc", flat, ang)
    # a blank tilt is excluded with a warning naming it (1-based); kept by hand, it is refused
    assert (
        main(
            [
                "noise",
                clean,
                "--reference",
                str(d / "flat.mrc"),
                "--max-angle-gap",
                "7",
                "-o",
                str(d / "ok.mrc"),
                "--quiet",
            ]
        )
        == 0
    )
    err = capsys.readouterr().err
    assert "excluding 1 tilt(s)" in err and "5 blank" in err
    rec = json.loads((d / "ok.json").read_text())["noise_model"]["references"][0]
    assert rec["excluded_tilts_1based"] == {"5": rec["detected_bad_tilts_1based"]["5"]}
    assert 4 not in rec["matched_index"]
    rc = main(
        ["noise", clean, "--reference", str(d / "flat.mrc"), "--keep-bad-tilts", "-o", str(d / "kb.mrc"), "--quiet"]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "kept suspicious tilts" in err and "zero variance" in err.strip().splitlines()[-1]
    assert not (d / "kb.mrc").exists()
    write(d / "small.mrc", read(d / "ref_clean.mrc")[:, :32], ang)
    _bad(d, [clean, "--reference", refp, "--reference-clean", str(d / "small.mrc")], capsys, "shape")
    _bad(d, [clean, "--reference", refp, "--snr", "-0.5"], capsys, "--snr")
    _bad(d, [clean, "--reference", refp, "--estimate", "paired"], capsys, "--reference-clean")
    _bad(d, [clean], capsys, "--reference")
    _bad(d, [clean, "--reference", refp, "--content-noise", "-1"], capsys, "--content-noise")
    rc = main(["noise", clean, "--reference", refp, "-o", refp, "--quiet"])
    assert rc == 2 and "also an input" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------------
# coloured noise (--noise-spectrum), signal transfer, distribution matching


def _aniso_spectrum(n=64):
    """A known anisotropic spectrum on an (n, n//2+1) grid: a ridge along fy (power at low |fx|)."""
    fy = np.fft.fftfreq(n)[:, None] * 2.0
    fx = np.fft.rfftfreq(n)[None, :] * 2.0
    return 0.3 + 3.0 * np.exp(-((fx / 0.3) ** 2)) * np.exp(-((fy / 0.8) ** 2)) + 0 * fy


def _mid_band(n):
    fy = np.fft.fftfreq(n)[:, None] * 2.0
    fx = np.fft.rfftfreq(n)[None, :] * 2.0
    f = np.sqrt(fy**2 + fx**2)
    return (f >= 0.2) & (f <= 0.8)


def test_coloured_noise_has_the_given_spectrum():
    """Tolerance: the radially averaged spectrum within 10 % of the given one in 0.2-0.8 Nyquist, the 2-D
    spectrum within 10 % on average there, the anisotropy (x/y power ratio) within 10 %, unit variance."""
    n = 64
    S = _aniso_spectrum(n)
    e = np.random.default_rng(0).standard_normal((4, 256, 256), dtype=np.float32)
    c = np.stack([nz.colour_noise(x, S) for x in e])
    np.testing.assert_allclose(c.var(axis=(1, 2)), 1.0, rtol=0.05)
    P = nz.smoothed_psd(c, n, standardise_tilts=False).mean(axis=0)
    want = S.copy()
    want[0, 0] = 0.0
    want /= nz.grid_mean(want)
    mid = _mid_band(n)
    rad, rad_want = nz.radial_average(P), nz.radial_average(want)
    assert np.abs(rad[mid] / rad_want[mid] - 1).max() < 0.10
    assert abs(np.mean(P[mid] / want[mid]) - 1) < 0.10
    a = nz.spectra_summary(P[None])["anisotropy_x_over_y"][0]
    a_want = nz.spectra_summary(want[None])["anisotropy_x_over_y"][0]
    assert a == pytest.approx(a_want, rel=0.10) and a < 0.5
    # white noise through a flat spectrum is white (and unchanged but for its mean)
    flat = nz.colour_noise(e[0], np.ones_like(S))
    np.testing.assert_allclose(flat, e[0] - e[0].mean(), atol=1e-4)


def test_spectrum_interpolates_across_grid_sizes():
    """A spectrum estimated on a small reference's grid colours a larger, non-square content tilt."""
    S = _aniso_spectrum(32)
    e = np.random.default_rng(1).standard_normal((2, 300, 200), dtype=np.float32)
    c = np.stack([nz.colour_noise(x, S) for x in e])
    P = nz.smoothed_psd(c, 32, standardise_tilts=False).mean(axis=0)
    want = S.copy()
    want[0, 0] = 0.0
    want /= nz.grid_mean(want)
    mid = _mid_band(32)
    rad, rad_want = nz.radial_average(P), nz.radial_average(want)
    assert np.abs(rad[mid] / rad_want[mid] - 1).max() < 0.10


def test_noise_spectra_remove_the_signal_share():
    """ref = r z + sigma e_c with e_c coloured: ref spectrum minus r^2 x clean spectrum is e_c's spectrum."""
    n = 32
    S = _aniso_spectrum(n)
    rng = np.random.default_rng(2)
    z = np.stack([phantom(128, 40, seed=s) for s in range(3)])
    ec = np.stack([nz.colour_noise(rng.standard_normal((128, 128), dtype=np.float32), S) for _ in range(3)])
    r, s = nz.normalise_r_sigma([0.6] * 3, [0.8] * 3)
    ref = r[:, None, None] * z + s[:, None, None] * ec
    got = nz.noise_spectra(nz.smoothed_psd(ref, n), r, "2d", clean_psd=nz.smoothed_psd(z, n)).mean(axis=0)
    want = S.copy()
    want[0, 0] = 0.0
    want /= nz.grid_mean(want)
    mid = _mid_band(n)
    assert abs(np.median(got[mid] / want[mid]) - 1) < 0.15
    # without the subtraction the signal's low-frequency power would count as noise
    full = nz.noise_spectra(nz.smoothed_psd(ref, n), r, "2d").mean(axis=0)
    low = nz.radial_average(full)[0, 1] / nz.radial_average(got)[0, 1]
    assert low > 1.5
    flat = nz.noise_spectra(nz.smoothed_psd(ref, n), r, "white")
    np.testing.assert_array_equal(flat, 1.0)
    rad = nz.noise_spectra(nz.smoothed_psd(ref, n), r, "radial", clean_psd=nz.smoothed_psd(z, n))
    np.testing.assert_allclose(rad, nz.radial_average(rad), rtol=1e-9)


def test_add_noise_white_and_2d_differ_and_are_seeded():
    clean = np.stack([phantom(96, 20, seed=s) for s in range(4)])
    c = nz.snr_curves(0.2, np.zeros(4), np.ones(4))
    S = np.broadcast_to(_aniso_spectrum(32), (4, 32, 17)).copy()
    white = nz.add_noise(clean, c, seed=5)
    col = nz.add_noise(clean, c, seed=5, spectra=S)
    again = nz.add_noise(clean, c, seed=5, spectra=S)
    np.testing.assert_array_equal(col, again)
    part = nz.add_noise(clean[1:3], c.take([1, 2]), seed=5, spectra=S[1:3], tilt_indices=[1, 2])
    np.testing.assert_array_equal(part, col[1:3])
    assert np.abs(col - white).mean() > 0.1
    m, sd = nz.tilt_stats(col)
    np.testing.assert_allclose(sd, 1.0, rtol=1e-4)
    # the residual after removing the signal has the given anisotropy; white's is isotropic
    z = (clean - clean.mean(axis=(1, 2), keepdims=True)) / clean.std(axis=(1, 2), keepdims=True)
    res_c = col - c.r[:, None, None] * z
    res_w = white - c.r[:, None, None] * z
    a_c = np.median(nz.spectra_summary(nz.smoothed_psd(res_c, 32))["anisotropy_x_over_y"])
    a_w = np.median(nz.spectra_summary(nz.smoothed_psd(res_w, 32))["anisotropy_x_over_y"])
    assert a_c < 0.5 and 0.8 < a_w < 1.25


def test_signal_transfer_blurs_sharp_content_like_the_reference():
    """Sharp dense beads (heavy dark tail) + a reference whose signal is blurred: the measured transfer brings
    the output's kurtosis to the reference's; without it the tail stays heavy."""
    from scipy.stats import kurtosis

    rng = np.random.default_rng(3)
    n = 128
    yy, xx = np.mgrid[:n, :n]
    clean = np.zeros((2, n, n), np.float32)
    for t in range(2):
        for _ in range(6):  # sharp beads, 10x denser than the rest
            cy, cx = rng.uniform(10, n - 10, 2)
            clean[t] -= 10 * ((yy - cy) ** 2 + (xx - cx) ** 2 < 16)
        clean[t] -= phantom(n, 30, seed=t, blur=0) * 0.3
    sig = np.stack([gaussian_filter(x, 3.0) for x in clean])
    sig = (sig - sig.mean(axis=(1, 2), keepdims=True)) / sig.std(axis=(1, 2), keepdims=True)
    ref = np.sqrt(0.6) * sig + np.sqrt(0.4) * rng.standard_normal(sig.shape)
    k_ref = np.median([kurtosis(x.ravel()) for x in ref])
    fit = nz.blind_fit(ref, noise_mtf="none")
    _, Pr = nz.tilt_spectra(ref, 32, ring_n=n)
    _, Pc = nz.tilt_spectra(clean, 32, ring_n=n)
    H = nz.signal_transfer(Pr, Pc, nz.ring_frequencies(n), fit.r, fit.sigma)
    plain = nz.add_noise(clean, fit, seed=1)
    blurred = nz.add_noise(clean, fit, seed=1, transfer=H)
    k_plain = np.median([kurtosis(x.ravel()) for x in plain])
    k_blur = np.median([kurtosis(x.ravel()) for x in blurred])
    assert k_plain > 2 * k_ref
    assert abs(k_blur - k_ref) < abs(k_plain - k_ref) / 3
    np.testing.assert_array_equal(blurred, nz.add_noise(clean, fit, seed=1, transfer=H))


def test_match_distribution_takes_the_reference_quantiles():
    rng = np.random.default_rng(4)
    gen = rng.standard_normal((2, 96, 96)).astype(np.float32)
    target = [rng.gamma(2.0, 3.0, size=(80, 70)), np.round(rng.normal(40, 4, size=(60, 60)))]  # one quantised
    out = nz.match_distribution(gen, target, seed=1)
    q = np.linspace(0.01, 0.99, 25)
    for o, t, tol in zip(out, target, (0.02 * np.ptp(np.quantile(target[0], [0.01, 0.99])), 1.0)):
        assert np.abs(np.quantile(o, q) - np.quantile(t, q)).max() < tol  # quantised target: one step
    # monotone: the image (the order of the pixels) is kept
    for o, g_ in zip(out, gen):
        assert np.all(np.diff(o.ravel()[np.argsort(g_.ravel())]) >= -1e-9)
    np.testing.assert_array_equal(out, nz.match_distribution(gen, target, seed=1))


def test_cli_defaults_are_the_modules():
    from faket.cli import noise as cli_noise

    assert cli_noise.NOISE_SPECTRA == nz.NOISE_SPECTRA and cli_noise.DEFAULT_NOISE_SPECTRUM == nz.DEFAULT_NOISE_SPECTRUM
    assert cli_noise.SIGNAL_TRANSFERS == nz.SIGNAL_TRANSFERS
    assert cli_noise.DEFAULT_SIGNAL_TRANSFER == nz.DEFAULT_SIGNAL_TRANSFER
    assert cli_noise.MATCHES == nz.MATCHES and cli_noise.DEFAULT_MATCH == nz.DEFAULT_MATCH
    assert cli_noise.SPECTRUM_MATCHES == nz.SPECTRUM_MATCHES
    assert cli_noise.DEFAULT_SPECTRUM_MATCH == nz.DEFAULT_SPECTRUM_MATCH


def test_cli_noise_spectrum_transfer_match_and_provenance(series, capsys):
    d, ang, snr, ref = series
    clean = str(d / "clean.mrc")
    runs = {}
    for name, extra in (
        ("default", []),
        ("white", ["--noise-spectrum", "white", "--signal-transfer", "none"]),
        ("again", []),
        ("radial", ["--noise-spectrum", "radial"]),
        ("dist", ["--match", "distribution"]),
    ):
        rc = main(
            [
                "noise",
                clean,
                "--reference",
                str(d / "ref.mrc"),
                "-o",
                str(d / f"{name}.mrc"),
                "--seed",
                "3",
                "--quiet",
                *extra,
            ]
        )
        assert rc == 0, capsys.readouterr().err
        runs[name] = read(d / f"{name}.mrc")
    model = json.loads((d / "default.json").read_text())["noise_model"]
    assert model["noise_spectrum"]["kind"] == "2d" and model["signal_transfer"]["kind"] == "measured"
    assert model["match"]["kind"] == "meanstd"
    assert len(model["noise_spectrum"]["summary"]["anisotropy_x_over_y"]) == 21
    assert model["references"][0]["spectrum"]["grid"] == model["noise_spectrum"]["grid"]
    white = json.loads((d / "white.json").read_text())["noise_model"]
    assert white["noise_spectrum"]["kind"] == "white" and white["noise_spectrum"]["summary"] is None
    np.testing.assert_array_equal(runs["default"], runs["again"])  # same seed, same arrays
    assert np.abs(runs["default"] - runs["white"]).mean() > 0.1 * runs["white"].std()
    assert np.abs(runs["radial"] - runs["default"]).mean() > 0
    # --match distribution: each tilt takes the matched reference tilt's quantiles
    idx = json.loads((d / "dist.json").read_text())["noise_model"]["references"][0]["matched_index"]
    q = np.linspace(0.02, 0.98, 13)
    for t in (0, 10, 20):
        spread = np.ptp(np.quantile(ref[idx[t]], [0.02, 0.98]))
        assert np.abs(np.quantile(runs["dist"][t], q) - np.quantile(ref[idx[t]], q)).max() < 0.03 * spread


def test_cli_physics_reference_as_noise_reference(tmp_path, capsys):
    """`faket reference` output is just another reference: the 2-D spectrum and the transfer are learnt from it,
    blind and paired (with its clean twin)."""
    from conftest import ball_phantom, write_mrc

    vol = ball_phantom((24, 48, 48), [(0, 5, -6, 6), (2, -8, 8, 5), (-3, 10, 10, 4)]) * 1.0
    write_mrc(tmp_path / "vol.mrc", vol)
    assert (
        main(
            [
                "reference",
                str(tmp_path / "vol.mrc"),
                "-o",
                str(tmp_path / "ref.mrc"),
                "--angles=-30:30:30",
                "--clean-out",
                str(tmp_path / "ref_clean.mrc"),
                "--quiet",
            ]
        )
        == 0
    )
    assert (
        main(["project", str(tmp_path / "vol.mrc"), "-o", str(tmp_path / "clean.mrc"), "--angles=-30:30:30", "--quiet"])
        == 0
    )
    for est, extra in (("blind", []), ("paired", ["--reference-clean", str(tmp_path / "ref_clean.mrc")])):
        out = tmp_path / f"n_{est}.mrc"
        rc = main(
            [
                "noise",
                str(tmp_path / "clean.mrc"),
                "--reference",
                str(tmp_path / "ref.mrc"),
                *extra,
                "-o",
                str(out),
                "--quiet",
            ]
        )
        assert rc == 0, capsys.readouterr().err
        m = json.loads(out.with_suffix(".json").read_text())["noise_model"]
        assert m["estimate"] == est and m["noise_spectrum"]["kind"] == "2d"
        assert np.isfinite(read(out)).all() and read(out).shape == (3, 48, 48)


def test_one_tilt_series_are_accepted_everywhere(tmp_path, capsys):
    """faket project / reference --angles 0 write one-tilt stacks (2-D on disk, as MRC stores one image);
    faket noise takes them as clean series and as references, and a 2-D micrograph as clean input."""
    from conftest import ball_phantom, write_mrc

    vol = ball_phantom((16, 40, 40), [(0, 4, -5, 6), (1, -6, 6, 5)])
    write_mrc(tmp_path / "vol.mrc", vol)
    assert (
        main(["project", str(tmp_path / "vol.mrc"), "-o", str(tmp_path / "one.mrc"), "--angles", "0", "--quiet"]) == 0
    )
    assert (
        main(["reference", str(tmp_path / "vol.mrc"), "-o", str(tmp_path / "ref1.mrc"), "--angles", "0", "--quiet"])
        == 0
    )
    rc = main(
        [
            "noise",
            str(tmp_path / "one.mrc"),
            "--reference",
            str(tmp_path / "ref1.mrc"),
            "-o",
            str(tmp_path / "noisy1.mrc"),
            "--content-out",
            str(tmp_path / "content1.mrc"),
            "--quiet",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    meta = json.loads((tmp_path / "noisy1.json").read_text())
    assert meta["output"]["shape"] == [1, 40, 40]
    # a micrograph without angles as the clean input
    write(tmp_path / "micro.mrc", read(tmp_path / "one.mrc"))
    rc = main(
        [
            "noise",
            str(tmp_path / "micro.mrc"),
            "--reference",
            str(tmp_path / "ref1.mrc"),
            "-o",
            str(tmp_path / "noisy2.mrc"),
            "--quiet",
        ]
    )
    assert rc == 0, capsys.readouterr().err


def test_warns_where_the_blind_fit_cannot_tell_signal_from_noise(series, capsys):
    d, ang, snr, ref = series
    rng = np.random.default_rng(11)
    pure = rng.standard_normal(ref.shape).astype(np.float32) * 3 + 40
    pure[:5] += 2.0 * np.stack([phantom(64, 20, seed=300 + s) for s in range(5)])  # tilts 1-5 hold signal
    write(d / "pure.mrc", pure, ang)
    rc = main(["noise", str(d / "clean.mrc"), "--reference", str(d / "pure.mrc"), "-o", str(d / "p.mrc"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 0
    line = [ln for ln in err.splitlines() if "cannot tell signal from noise" in ln]
    assert len(line) == 1
    named = [int(v) for v in line[0].split("stack order: ")[1].split(")")[0].split(", ")]
    assert set(named) >= set(range(8, 22)) and not set(named) & {1, 2, 3}
    # no warning on a reference with resolved signal
    main(["noise", str(d / "clean.mrc"), "--reference", str(d / "ref.mrc"), "-o", str(d / "q.mrc"), "--quiet"])
    assert "cannot tell signal from noise" not in capsys.readouterr().err


def test_pytom_reference_warns_noise_dominated(shared_data, tmp_path, capsys):
    """The real PyTom sub-tilts read blind SNR ~0 (r 0.02-0.07): the warning names the tilts."""
    src = shared_data / "tiltseries" / "pytom_p1_subtilt_41x100x100.mrc"
    ang = np.loadtxt(shared_data / "tiltseries" / "pytom_p1_subtilt.tlt")
    clean = np.stack([phantom(100, 30, seed=s) for s in range(41)])
    write(tmp_path / "clean.mrc", clean, ang)
    rc = main(
        [
            "noise",
            str(tmp_path / "clean.mrc"),
            "--reference",
            str(src),
            "--reference-angles-file",
            str(shared_data / "tiltseries" / "pytom_p1_subtilt.tlt"),
            "--assume-same-sampling",
            "-o",
            str(tmp_path / "n.mrc"),
            "--quiet",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 0 and "cannot tell signal from noise on" in err and "pytom_p1_subtilt" in err


def test_wall_time_covers_the_whole_step(series, capsys, monkeypatch):
    """wall_time_s in the sidecar counts the step's work, not only the writing of its outputs."""
    import time

    d, ang, snr, ref = series
    orig = nz.add_noise

    def slow(*a, **k):
        time.sleep(0.6)
        return orig(*a, **k)

    monkeypatch.setattr(nz, "add_noise", slow)
    assert (
        main(["noise", str(d / "clean.mrc"), "--reference", str(d / "ref.mrc"), "-o", str(d / "w.mrc"), "--quiet"]) == 0
    )
    assert json.loads((d / "w.json").read_text())["wall_time_s"] >= 0.6


@pytest.fixture
def style_files(tmp_path):
    ang = np.array([-20.0, 0.0, 20.0])
    rng = np.random.default_rng(5)
    content = np.stack([phantom(48, 12, seed=s) for s in range(3)])
    ref = np.stack([phantom(48, 12, seed=50 + s) for s in range(3)]) + rng.gamma(2.0, 1.0, (3, 48, 48))
    write(tmp_path / "content.mrc", content, ang)
    write(tmp_path / "noisy.mrc", content + rng.standard_normal(content.shape), ang)
    write(tmp_path / "ref.mrc", ref * 3 + 20, ang + 1)
    return tmp_path


def _style(d, out, *extra):
    return main(
        [
            "style",
            str(d / "content.mrc"),
            "--style",
            str(d / "ref.mrc"),
            "--init",
            str(d / "noisy.mrc"),
            "-o",
            str(out),
            "--weights",
            "random",
            "--threads",
            "2",
            "--iterations",
            "1",
            "-q",
            *extra,
        ]
    )


def test_style_match_distribution(style_files, capsys):
    d = style_files
    assert _style(d, d / "m.mrc", "--match", "distribution") == 0, capsys.readouterr().err
    out, ref = read(d / "m.mrc"), read(d / "ref.mrc")
    s = json.loads((d / "m.json").read_text())["style"]
    assert s["match"] == "distribution"
    q = np.linspace(0.02, 0.98, 13)
    for t, j in enumerate(s["references"][0]["matched_index"]):
        spread = np.ptp(np.quantile(ref[j], [0.02, 0.98]))
        assert np.abs(np.quantile(out[t], q) - np.quantile(ref[j], q)).max() < 0.03 * spread
    assert _style(d, d / "p.mrc") == 0
    assert json.loads((d / "p.json").read_text())["style"]["match"] == "meanstd"
    assert np.abs(read(d / "p.mrc") - out).max() > 0


def test_one_tilt_style_chunk_is_a_series_for_noise_and_style(style_files, capsys):
    """faket style --tilts 1:2 writes one tilt (2-D on disk): faket noise takes it as a clean series and as a
    reference, faket style as content and init."""
    d = style_files
    assert _style(d, d / "one.mrc", "--tilts", "1:2") == 0, capsys.readouterr().err
    with mrcfile.open(d / "one.mrc") as m:
        assert m.data.ndim == 2  # MRC stores one image as 2-D
    assert (
        main(["noise", str(d / "one.mrc"), "--reference", str(d / "ref.mrc"), "-o", str(d / "n1.mrc"), "--quiet"]) == 0
    ), capsys.readouterr().err
    assert json.loads((d / "n1.json").read_text())["output"]["shape"][0] == 1
    assert (
        main(
            [
                "noise",
                str(d / "content.mrc"),
                "--reference",
                str(d / "one.mrc"),
                "-o",
                str(d / "n2.mrc"),
                "--max-angle-gap",
                "30",
                "--quiet",
            ]
        )
        == 0
    ), capsys.readouterr().err
    rc = main(
        [
            "style",
            str(d / "one.mrc"),
            "--style",
            str(d / "ref.mrc"),
            "--init",
            str(d / "one.mrc"),
            "-o",
            str(d / "s1.mrc"),
            "--weights",
            "random",
            "--iterations",
            "1",
            "-q",
        ]
    )
    assert rc == 0, capsys.readouterr().err


def test_cli_match_distribution_needs_a_reference(series, capsys):
    d, ang, snr, ref = series
    rc = main(["noise", str(d / "clean.mrc"), "--snr", "0.1", "--match", "distribution", "-o", str(d / "x.mrc")])
    err = capsys.readouterr().err
    assert rc == 2 and "--match distribution needs --reference" in err and len(err.strip().splitlines()) == 1
    assert not (d / "x.mrc").exists()


# --------------------------------------------------------------------------------------------------
# radial spectrum matching (--match-spectrum radial)


def _raps_dist(a, b):
    from faket.evaluation.realism import raps_distance

    return raps_distance(a, b)


def test_match_radial_spectrum_takes_the_target_spectrum_and_keeps_phases():
    rng = np.random.default_rng(0)
    tilts = np.stack([phantom(96, 40, seed=s) + 0.5 * rng.standard_normal((96, 96)) for s in range(3)])
    tilts = (tilts * 3.0 + 7.0).astype(np.float32)
    # targets of another size with a steep spectrum (smooth) and a flat one (white)
    targets = [
        gaussian_filter(rng.standard_normal((80, 80)), 3.0),
        rng.standard_normal((120, 120)),
        [gaussian_filter(rng.standard_normal((96, 96)), 1.0), gaussian_filter(rng.standard_normal((96, 96)), 1.0)],
    ]
    out, resid = nz.match_radial_spectrum(tilts, targets)
    assert out.shape == tilts.shape and out.dtype == np.float32
    for i in range(3):
        tg = targets[i][0] if isinstance(targets[i], list) else targets[i]
        before, after = _raps_dist(tilts[i], tg), _raps_dist(out[i], tg)
        assert after < 0.5 * before and after < 0.12, (i, before, after)
        assert resid[i] < 0.1
        # mean and std kept; zero-phase filter: the Fourier phases of the kept band do not change
        assert abs(out[i].mean() - tilts[i].mean()) < 1e-3 and abs(out[i].std() / tilts[i].std() - 1) < 1e-4
        Fa, Fb = np.fft.rfft2(tilts[i]), np.fft.rfft2(out[i])
        m = (np.abs(Fa) > 1e-3 * np.abs(Fa).max()) & (np.abs(Fb) > 1e-3 * np.abs(Fb).max())
        m[0, 0] = False
        dphi = np.angle(Fb[m] / Fa[m])
        assert np.abs(dphi).max() < 1e-3
    # a tilt that already has the target's spectrum is hardly changed
    same, _ = nz.match_radial_spectrum(tilts[:1], [tilts[0]])
    assert np.abs(same - tilts[:1]).max() < 0.05 * tilts[0].std()


def test_match_radial_spectrum_band_keeps_the_top_of_the_spectrum():
    """A Fourier-padded reference has an empty top band: beyond ``band`` the tilt keeps the gain at its edge,
    not the empty band's (which would wipe the content's fine detail)."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 64, 64)).astype(np.float32)
    rad = np.sqrt(np.fft.fftfreq(64)[:, None] ** 2 + np.fft.rfftfreq(64)[None, :] ** 2)
    padded = np.fft.irfft2(np.fft.rfft2(rng.standard_normal((64, 64))) * (rad < 0.35), s=(64, 64))
    full, _ = nz.match_radial_spectrum(x, [padded])
    banded, _ = nz.match_radial_spectrum(x, [padded], band=0.3)
    top = rad > 0.4
    p_full = np.abs(np.fft.rfft2(full[0]))[top].mean()
    p_band = np.abs(np.fft.rfft2(banded[0]))[top].mean()
    assert p_band > 5 * p_full


def test_cli_match_spectrum_default_on_real_pytom_tilts(shared_data, tmp_path, capsys):
    """On the real PyTom sub-tilts, fitted on the even tilts: the default (radial) brings every NOISY tilt's
    spectrum closer to its held-out real angle neighbour than --match-spectrum none; provenance says so."""
    src = shared_data / "tiltseries" / "pytom_p1_subtilt_41x100x100.mrc"
    tlt = shared_data / "tiltseries" / "pytom_p1_subtilt.tlt"
    ang = np.loadtxt(tlt)
    clean = np.stack([phantom(100, 30, seed=s) for s in range(41)])
    write(tmp_path / "clean.mrc", clean, ang)
    odd = ",".join(str(i) for i in range(1, 42, 2))
    outs = {}
    for kind in ("radial", "none"):
        extra = [] if kind == "radial" else ["--match-spectrum", "none"]
        rc = main(
            [
                "noise",
                str(tmp_path / "clean.mrc"),
                "--reference",
                str(src),
                "--reference-angles-file",
                str(tlt),
                "--assume-same-sampling",
                "--exclude-tilts",
                odd,
                "--max-angle-gap",
                "25",
                "-o",
                str(tmp_path / f"{kind}.mrc"),
                "--quiet",
                *extra,
            ]
        )
        assert rc == 0, capsys.readouterr().err
        outs[kind] = read(tmp_path / f"{kind}.mrc")
    rec = json.loads((tmp_path / "radial.json").read_text())["noise_model"]["spectrum_match"]
    assert rec["kind"] == "radial" and rec["band_cycles_per_px"] == 0.5 and rec["residual_log10_median"] < 0.1
    assert json.loads((tmp_path / "none.json").read_text())["noise_model"]["spectrum_match"]["kind"] == "none"
    with mrcfile.open(src) as m:
        real = np.array(m.data)
    held = np.arange(0, 41, 2)  # 0-based rows of the odd 1-based tilts: never fitted on
    d_radial, d_none = [], []
    for t in range(41):
        j = held[np.argmin(np.abs(ang[held] - ang[t]))]
        d_radial.append(_raps_dist(outs["radial"][t], real[j]))
        d_none.append(_raps_dist(outs["none"][t], real[j]))
    assert np.median(d_radial) < 0.7 * np.median(d_none), (np.median(d_radial), np.median(d_none))
