"""Tests for faket.noise and `faket noise`: the model, fits (paired, blind, SNR), CLI and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import mrcfile
import numpy as np
import pytest
import scipy.fft as sfft
from scipy.ndimage import gaussian_filter

from faket.imaging import noise as nz
from faket.cli import main
from faket.errors import InputError

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
    np.testing.assert_allclose(c.r ** 2 + c.sigma ** 2, 1.0)
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
    np.testing.assert_allclose(c.r ** 2 + c.sigma ** 2, 1.0, atol=1e-6)
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
    np.testing.assert_allclose(c.r ** 2 + c.sigma ** 2, 1.0)
    # the blank tilts of real data (excluded tilts stored as rounding residue) are refused
    blank = d.copy()
    blank[2] = 1e-5 * rng.standard_normal(blank.shape[1:])
    with pytest.raises(InputError, match="zero variance"):
        nz.blind_fit(blank)


def test_smoothing_and_global():
    x = np.arange(21.0)
    r = 0.8 - 0.0005 * (x - 10) ** 2
    s = np.sqrt(1 - r ** 2)
    rng = np.random.default_rng(0)
    raw = nz.NoiseCurves(r + rng.normal(0, 0.02, 21), s, 5 + 0.01 * x, 2 + 0 * x)
    sm = nz.smooth_curves(raw, 2)
    assert np.abs(sm.r - r).max() < np.abs(raw.r - r).max()
    np.testing.assert_allclose(sm.r ** 2 + sm.sigma ** 2, 1.0)
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
        rc = main(["noise", str(d / "clean.mrc"), "--reference", str(d / "ref.mrc"), *extra,
                   "-o", str(out), "--content-out", str(d / f"content_{est}.mrc"), "--quiet"])
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
    rc = main(["noise", str(d / "clean.mrc"), "--reference", str(d / "micro.mrc"), "--global",
               "-o", str(d / "g.mrc"), "--quiet"])
    assert rc == 0, capsys.readouterr().err
    c = json.loads((d / "g.json").read_text())["noise_model"]["curves"]
    assert np.ptp(c["r"]) < 1e-12 and len(c["r"]) == 21
    assert np.ptp(c["mean"]) < 1e-9  # one image: one mean for all tilts
    rc = main(["noise", str(d / "clean.mrc"), "--snr", "0.1", "-o", str(d / "s.mrc"), "--seed", "4",
               "--quiet"])
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
    ref2 = np.stack([phantom(64, 20, seed=200 + s) for s in range(21)]) * np.sqrt(2.0) \
        + rng.standard_normal(ref.shape)
    write(d / "ref2.mrc", ref2 * 2, ang)
    runs = {}
    for name, refs in (("a", ["ref.mrc"]), ("b", ["ref2.mrc"]), ("ab", ["ref.mrc", "ref2.mrc"])):
        argv = ["noise", str(d / "clean.mrc"), "-o", str(d / f"{name}.mrc"), "--quiet"]
        for r in refs:
            argv += ["--reference", str(d / r)]
        assert main(argv) == 0, capsys.readouterr().err
        runs[name] = json.loads((d / f"{name}.json").read_text())["noise_model"]["curves"]
    r_avg, s_avg = nz.normalise_r_sigma((np.array(runs["a"]["r"]) + runs["b"]["r"]) / 2,
                                        (np.array(runs["a"]["sigma"]) + runs["b"]["sigma"]) / 2)
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
    assert main(["noise", str(d / "clean.mrc"), "--reference", str(d / "rev.mrc"), "--smooth-order", "-1",
                 "-o", str(d / "a.mrc"), "--quiet"]) == 0
    assert main(["noise", str(d / "clean.mrc"), "--reference", str(d / "ref.mrc"), "--smooth-order", "-1",
                 "-o", str(d / "b.mrc"), "--quiet"]) == 0
    np.testing.assert_allclose(read(d / "a.mrc"), read(d / "b.mrc"), rtol=1e-5, atol=1e-4)
    recs = json.loads((d / "a.json").read_text())["noise_model"]["references"]
    assert recs[0]["matched_index"] == list(range(20, -1, -1))
    # a reference covering only -30..30: warned nearest within the gap, failure beyond
    keep = np.abs(ang) <= 30
    write(d / "narrow.mrc", ref[keep], ang[keep])
    rc = main(["noise", str(d / "clean.mrc"), "--reference", str(d / "narrow.mrc"), "--max-angle-gap", "10",
               "-o", str(d / "n.mrc"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "no tilt within 10 deg" in err and not (d / "n.mrc").exists()
    rc = main(["noise", str(d / "clean.mrc"), "--reference", str(d / "narrow.mrc"), "--max-angle-gap", "40",
               "-o", str(d / "n.mrc"), "--quiet"])
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
    clean, refp, rcp = str(d / "clean.mrc"), str(d / "ref.mrc"), str(d / "ref_clean.mrc")
    bad = read(d / "clean.mrc")
    bad[3, 5, 5] = np.nan
    write(d / "nan.mrc", bad, ang)
    _bad(d, [str(d / "nan.mrc"), "--reference", refp], capsys, "NaN")
    flat = ref.copy()
    flat[4] = 7.0
    write(d / "flat.mrc", flat, ang)
    # a blank tilt is excluded with a warning naming it (1-based); kept by hand, it is refused
    assert main(["noise", clean, "--reference", str(d / "flat.mrc"), "--max-angle-gap", "7", "-o", str(d / "ok.mrc"),
                 "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "excluding 1 tilt(s)" in err and "5 blank" in err
    rec = json.loads((d / "ok.json").read_text())["noise_model"]["references"][0]
    assert rec["excluded_tilts_1based"] == {"5": rec["detected_bad_tilts_1based"]["5"]}
    assert 4 not in rec["matched_index"]
    rc = main(["noise", clean, "--reference", str(d / "flat.mrc"), "--keep-bad-tilts", "-o", str(d / "kb.mrc"),
               "--quiet"])
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
