"""Tests for faket.physics and `faket reference`: CTF zeros, contrast sign, dose, shot noise, ice, CLI."""

from __future__ import annotations

import json

import mrcfile
import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from faket.cli import main
from faket.imaging import physics as ph


def radial_profile(img_stack, pixel_a):
    x = img_stack - img_stack.mean(axis=(1, 2), keepdims=True)
    F = (np.abs(np.fft.fft2(x)) ** 2).mean(0)
    n = img_stack.shape[1]
    k1 = np.fft.fftfreq(n, d=pixel_a)
    k = np.sqrt(k1[:, None] ** 2 + k1[None, :] ** 2)
    dk = 1.0 / (n * pixel_a)
    b = np.round(k / dk).astype(int).ravel()
    return np.bincount(b, F.ravel()) / np.maximum(np.bincount(b), 1), dk


def test_constants():
    assert ph.wavelength_a(300) == pytest.approx(0.019687, rel=1e-4)
    assert ph.wavelength_a(200) == pytest.approx(0.025079, rel=1e-4)
    assert ph.interaction_constant(300) == pytest.approx(6.526e-4, rel=2e-3)


@pytest.mark.parametrize("defocus_um", [-1.5, -3.0])
def test_psd_minima_at_ctf_zeros(defocus_um):
    """Noise-free thin specimen (a 2-voxel slab of random density, projected): the radially averaged
    power spectrum has its minima at the theoretical CTF zeros (within 3%)."""
    n, a = 512, 2.0
    rng = np.random.default_rng(1)
    slab = rng.random((3, 2, n, n)).astype(np.float32)
    projected = slab.sum(axis=1)  # line integrals through a thin specimen
    p = ph.PhysicsParams(defocus_um=defocus_um, dose_total=None, ice_phase_std=0.0, mtf="none")
    img = ph.simulate_tiltseries(projected, [0.0, 0.0, 0.0], a, p)
    rad, dk = radial_profile(img, a)
    kk = np.arange(rad.size) * dk
    zs = ph.ctf_zeros(0.2, defocus_um=defocus_um)
    # the theory itself: the CTF vanishes there
    np.testing.assert_allclose(ph.ctf(zs, defocus_um=defocus_um), 0.0, atol=1e-9)
    # zeros resolvable on this grid: at least 6 frequency bins from the next one
    ok = np.diff(zs) >= 6 * dk
    zs = zs[: (np.argmin(ok) if not ok.all() else ok.size)]
    assert zs.size >= 5
    edges = np.concatenate([[zs[0] * 0.5], (zs[1:] + zs[:-1]) / 2, [zs[-1] + (zs[-1] - zs[-2]) / 2]])
    for j, z0 in enumerate(zs):
        m = (kk > edges[j]) & (kk < edges[j + 1])
        i = np.nonzero(m)[0][np.argmin(rad[m])]
        y0, y1, y2 = rad[i - 1], rad[i], rad[i + 1]
        kmin = (i + 0.5 * (y0 - y2) / (y0 - 2 * y1 + y2)) * dk
        assert abs(kmin / z0 - 1) < 0.03, (j, z0, kmin)
        assert rad[i] < 0.1 * rad[m].max()  # a real dip, not a ripple
    # and the profile's global minima between the first zeros are not anywhere else: no dip at maxima
    mid = (zs[0] + zs[1]) / 2
    assert rad[int(round(mid / dk))] > 0.5 * rad[(kk > zs[0]) & (kk < zs[1])].max()


def test_contrast_sign_under_and_overfocus():
    n, a = 128, 4.0
    y, x = np.mgrid[:n, :n]
    blob = np.exp(-((y - 64) ** 2 + (x - 64) ** 2) / (2 * 6.0**2)).astype(np.float32)[None] * 20
    base = dict(dose_total=None, ice_phase_std=0.0, mtf="none", potential_scale_v=3.0)
    under = ph.simulate_tiltseries(blob, [0.0], a, ph.PhysicsParams(defocus_um=-3.0, **base))[0]
    over = ph.simulate_tiltseries(blob, [0.0], a, ph.PhysicsParams(defocus_um=+3.0, **base))[0]
    centre = slice(60, 69)
    bg = under[:10, :10].mean()
    assert under[centre, centre].mean() < bg - 0.01  # underfocus: dark protein
    assert over[centre, centre].mean() > over[:10, :10].mean() + 0.01  # overfocus: bright


def test_dose_schedule_orders():
    ang = np.array([-6.0, -4, -2, 0, 2, 4, 6])
    per, acc, rank = ph.dose_schedule(ang, 70.0, "dose-symmetric")
    np.testing.assert_allclose(per, 10.0)
    assert rank.tolist() == [6, 4, 2, 0, 1, 3, 5]
    np.testing.assert_allclose(acc, rank * 10 + 5)
    per, acc, rank = ph.dose_schedule(ang, 70.0, "sequential")
    assert rank.tolist() == [0, 1, 2, 3, 4, 5, 6]
    np.testing.assert_allclose(acc[-1], 65.0)


def test_dose_weighting_damps_high_frequencies():
    n, a = 128, 3.0
    rng = np.random.default_rng(2)
    proj = np.repeat(rng.random((1, n, n)).astype(np.float32), 7, axis=0)
    ang = np.array([-6.0, -4, -2, 0, 2, 4, 6])
    p = ph.PhysicsParams(
        defocus_um=-1.0, dose_total=140.0, ice_thickness_nm=0.0, ice_phase_std=0.0, mtf="none", dose_order="sequential"
    )
    img = ph.simulate_tiltseries(proj, ang, a, p, noise=False)
    F = np.abs(np.fft.fft2(img - img.mean(axis=(1, 2), keepdims=True))) ** 2
    k1 = np.fft.fftfreq(n, d=a)
    k = np.sqrt(k1[:, None] ** 2 + k1[None, :] ** 2)
    hi = (k > 0.08) & (k < 0.15)
    lo = (k > 0.005) & (k < 0.02)
    hi_power = F[:, hi].mean(axis=1)
    lo_power = F[:, lo].mean(axis=1)
    # same projection at every tilt: later tilts (more accumulated dose) lose high-frequency power first
    assert np.all(np.diff(hi_power) < 0)
    assert hi_power[-1] / hi_power[0] < 0.2
    assert lo_power[-1] / lo_power[0] > 3 * hi_power[-1] / hi_power[0]
    # per bin, the power ratio last/first tilt is exp(-dN / Ne(k)) (amplitude exp(-N / 2Ne))
    dN = 120.0
    pred_lo = (F[0, lo] * np.exp(-dN / ph.critical_exposure(k[lo]))).sum() / F[0, lo].sum()
    assert lo_power[-1] / lo_power[0] == pytest.approx(pred_lo, rel=0.02)
    pred_hi = (F[0, hi] * np.exp(-dN / ph.critical_exposure(k[hi]))).sum() / F[0, hi].sum()
    assert hi_power[-1] / hi_power[0] == pytest.approx(pred_hi, rel=0.02)


def test_shot_noise_ice_and_mtf_on_blank_specimen():
    n, a = 128, 5.0
    proj = np.zeros((3, n, n), np.float32)
    ang = np.array([0.0, 45.0, 60.0])
    p = ph.PhysicsParams(dose_total=30.0, ice_thickness_nm=200.0, ice_mfp_nm=350.0, ice_phase_std=0.0, mtf="none")
    img, info = ph.simulate_tiltseries(proj, ang, a, p, seed=3, return_info=True)
    expect = 10.0 * a * a * np.exp(-200.0 / np.cos(np.deg2rad(ang)) / 350.0)
    np.testing.assert_allclose(info["counted_e_per_pixel"], expect)
    np.testing.assert_allclose(img.mean(axis=(1, 2)), expect, rtol=0.01)
    np.testing.assert_allclose(img.var(axis=(1, 2)), expect, rtol=0.05)  # Poisson: variance = mean
    assert np.allclose(img, np.round(img))  # counts
    # counting MTF: variance drops by the mean of MTF^2 over the spectrum
    p2 = ph.PhysicsParams(dose_total=30.0, ice_thickness_nm=200.0, ice_phase_std=0.0, mtf="counting")
    img2 = ph.simulate_tiltseries(proj, ang, a, p2, seed=3)
    m2 = (np.sinc(np.fft.fftfreq(n) * 2 / 2) ** 2).mean() ** 2
    np.testing.assert_allclose(img2.var(axis=(1, 2)), expect * m2, rtol=0.05)
    # ice phase noise adds variance growing with the path length (1/cos)
    p3 = ph.PhysicsParams(dose_total=None, ice_thickness_nm=200.0, ice_phase_std=0.05, mtf="none", defocus_um=-2.0)
    img3 = ph.simulate_tiltseries(proj, ang, a, p3, seed=3)
    v = img3.var(axis=(1, 2))
    assert v[0] > 0 and v[2] / v[0] == pytest.approx(2.0, rel=0.1)


def test_seeded_chunk_independent_and_defocus_gradient():
    n, a = 64, 6.0
    rng = np.random.default_rng(4)
    proj = rng.random((4, n, n)).astype(np.float32) * 10
    ang = np.array([-60.0, -20.0, 0.0, 40.0])
    p = ph.PhysicsParams()
    one = ph.simulate_tiltseries(proj, ang, a, p, seed=5)
    np.testing.assert_array_equal(one, ph.simulate_tiltseries(proj, ang, a, p, seed=5))
    part = ph.simulate_tiltseries(proj[2:], ang[2:], a, p, seed=5, tilt_indices=[2, 3], series_angles_deg=ang)
    np.testing.assert_array_equal(part, one[2:])
    assert not np.array_equal(one, ph.simulate_tiltseries(proj, ang, a, p, seed=6))
    g = ph.PhysicsParams(defocus_gradient=1.0, dose_total=None, ice_phase_std=0.0)
    f = ph.PhysicsParams(defocus_gradient=0.0, dose_total=None, ice_phase_std=0.0)
    ig, info = ph.simulate_tiltseries(proj, ang, a, g, return_info=True)
    i0 = ph.simulate_tiltseries(proj, ang, a, f)
    np.testing.assert_allclose(ig[2], i0[2], atol=1e-5)  # 0 deg: flat, no gradient
    d = np.abs(ig[0] - i0[0])
    assert d.mean() > 0.01 * i0[0].std()
    # the defocus is nominal at the tilt axis and changes towards the edges
    assert d[:, :4].mean() > 3 * d[:, 30:34].mean() and d[:, -4:].mean() > 3 * d[:, 30:34].mean()
    half = (n - 1) / 2 * a * np.tan(np.deg2rad(-60.0)) * 1e-4
    np.testing.assert_allclose(info["defocus_um_at_edges"][0], [-3.0 + half, -3.0 - half], atol=1e-9)


# --------------------------------------------------------------------------------------------------
# CLI


@pytest.fixture
def volume(tmp_path):
    rng = np.random.default_rng(0)
    v = np.zeros((24, 32, 32), np.float32)
    idx = rng.integers(4, 20, size=(15, 3))
    v[idx[:, 0], idx[:, 1], idx[:, 2]] = 1.0
    v = gaussian_filter(v, 1.5).astype(np.float32)
    path = tmp_path / "vol.mrc"
    with mrcfile.new(path) as m:
        m.set_data(v)
        m.voxel_size = 8.0
    return path


def test_cli_reference(volume, tmp_path, capsys):
    out = tmp_path / "ref.mrc"
    rc = main(
        [
            "reference",
            str(volume),
            "-o",
            str(out),
            "--angles",
            "-30:30:15",
            "--dose",
            "60",
            "--clean-out",
            str(tmp_path / "ref_clean.mrc"),
            "--device",
            "cpu",
            "--quiet",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    with mrcfile.open(out) as m:
        ref = np.array(m.data)
        assert float(m.voxel_size.x) == pytest.approx(8.0)
    with mrcfile.open(tmp_path / "ref_clean.mrc") as m:
        clean = np.array(m.data)
    assert ref.shape == clean.shape == (5, 32, 32)
    np.testing.assert_allclose(np.loadtxt(out.with_suffix(".tlt")), [-30, -15, 0, 15, 30])
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["physics"]["voltage_kv"] == 300.0 and meta["physics"]["dose_total"] == 60.0
    assert meta["physics"]["defocus_um"] == -3.0 and meta["physics"]["dose_order"] == "dose-symmetric"
    assert meta["parameters"]["cs_mm"] == 2.7
    # mean counts: 12 e-/A^2 per tilt * 64 A^2 * ice transmission
    expect = np.array(meta["derived"]["counted_e_per_pixel"])
    np.testing.assert_allclose(expect, 12 * 64 * np.exp(-150 / np.cos(np.deg2rad([-30, -15, 0, 15, 30])) / 350))
    np.testing.assert_allclose(ref.mean(axis=(1, 2)), expect, rtol=0.02)
    np.testing.assert_allclose(clean.mean(axis=(1, 2)), expect, rtol=0.01)
    assert np.all(ref.std(axis=(1, 2)) > clean.std(axis=(1, 2)))
    # the paired noise fit on the pair sees a low SNR (shot noise dominates at 12 e-/A^2 per tilt)
    rc = main(
        [
            "noise",
            str(tmp_path / "ref_clean.mrc"),
            "--reference",
            str(out),
            "--reference-clean",
            str(tmp_path / "ref_clean.mrc"),
            "-o",
            str(tmp_path / "n.mrc"),
            "--quiet",
        ]
    )
    assert rc == 0
    snr = json.loads((tmp_path / "n.json").read_text())["noise_model"]["curves"]["snr"]
    assert all(0 < s < 1 for s in snr)


@pytest.mark.parametrize(
    "argv,expect",
    [
        (["--dose", "-5"], "--dose"),
        (["--dose", "0"], "--dose"),
        (["--amplitude-contrast", "1.5"], "--amplitude-contrast"),
        (["--voltage-kv", "0"], "--voltage-kv"),
        (["--angles", "-95:95:5"], "out of range"),
        (["--ice-thickness-nm", "-10"], "--ice-thickness-nm"),
    ],
)
def test_cli_reference_bad_input(volume, tmp_path, capsys, argv, expect):
    out = tmp_path / "bad.mrc"
    rc = main(["reference", str(volume), "-o", str(out), "--device", "cpu", "--quiet", *argv])
    err = capsys.readouterr().err
    assert rc == 2 and expect in err, err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists() and not out.with_suffix(".json").exists()


def test_cli_reference_bad_volume(tmp_path, capsys):
    v = np.ones((8, 8, 8), np.float32)
    v[1, 2, 3] = np.inf
    with mrcfile.new(tmp_path / "inf.mrc") as m:
        m.set_data(v)
    rc = main(["reference", str(tmp_path / "inf.mrc"), "-o", str(tmp_path / "o.mrc"), "--quiet"])
    assert rc == 2 and "NaN/Inf" in capsys.readouterr().err
    with mrcfile.new(tmp_path / "zero.mrc") as m:
        m.set_data(np.zeros((8, 8, 8), np.float32))
    rc = main(["reference", str(tmp_path / "zero.mrc"), "-o", str(tmp_path / "o.mrc"), "--quiet"])
    assert rc == 2 and "all zeros" in capsys.readouterr().err
    assert not (tmp_path / "o.mrc").exists()


def test_cli_reference_potential_scale(volume, tmp_path, capsys):
    """Default: 3 V per unit (protein-density units of faket layout); --max-potential-v scales the volume's
    maximum instead; the phase contrast of the noise-free twin grows with the potential."""
    vmax = float(np.abs(mrcfile.read(volume)).max())
    contrast = {}
    for name, extra in (("default", []), ("max", ["--max-potential-v", "6"])):
        out = tmp_path / f"{name}.mrc"
        rc = main(
            [
                "reference",
                str(volume),
                "-o",
                str(out),
                "--angles",
                "0:0:1",
                "--no-noise",
                "--quiet",
                "--device",
                "cpu",
                *extra,
            ]
        )
        assert rc == 0, capsys.readouterr().err
        meta = json.loads(out.with_suffix(".json").read_text())
        contrast[name] = (meta["physics"]["potential_scale_v"], float(mrcfile.read(out).std()))
    assert contrast["default"][0] == 3.0
    assert contrast["max"][0] == pytest.approx(6.0 / vmax, rel=1e-6)
    ratio = contrast["max"][1] / contrast["default"][1]
    assert ratio == pytest.approx(contrast["max"][0] / 3.0, rel=0.1)  # weak phase: contrast ~ potential
    with pytest.raises(SystemExit) as exc:  # argparse: not allowed together
        main(
            [
                "reference",
                str(volume),
                "-o",
                str(tmp_path / "x.mrc"),
                "--max-potential-v",
                "1",
                "--potential-scale-v",
                "2",
                "--quiet",
            ]
        )
    assert exc.value.code == 2 and not (tmp_path / "x.mrc").exists()
    assert "not allowed with" in capsys.readouterr().err
