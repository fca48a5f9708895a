"""Projection and weighted back-projection: physics and cross-checks."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import ball_phantom, write_mrc
from scipy import ndimage

from faket.imaging.projection import angle_weights, backproject, bin_stack, project, ramp_filter, reconstruct

BALLS = [(0, 0, 0, 8), (10, -12, 15, 5), (-12, 14, -10, 6), (5, 20, -20, 4)]


def test_ball_projects_to_analytic_chord():
    n, r = 64, 22.0
    vol = ball_phantom((n, n, n), [(0, 0, 0, r)])
    angles = np.arange(-60, 61, 2.0)
    p = project(vol, angles, contrast="bright")
    c = np.arange(n) - (n - 1) / 2
    rho2 = c[None, :] ** 2 + c[:, None] ** 2  # (Y, U)
    chord = 2 * np.sqrt(np.clip(r**2 - rho2, 0, None))
    interior = rho2 < (0.85 * r) ** 2  # away from the rim, where voxelisation dominates
    rel = np.abs(p[:, interior] - chord[interior]) / chord[interior]
    assert rel.max() < 0.02, rel.max(axis=1)
    # dark contrast is the negated sum
    np.testing.assert_allclose(project(vol, [30.0]), -p[angles == 30], rtol=1e-6)


def test_geometry_point_lands_at_u():
    """A blob at offset (x, z) from the centre lands at u = x cos + z sin; mass is conserved."""
    nz, nx = 33, 41
    x0, z0 = 7.0, -5.0
    z, x = np.mgrid[:nz, :nx]
    blob = np.exp(-((x - (nx - 1) / 2 - x0) ** 2 + (z - (nz - 1) / 2 - z0) ** 2) / (2 * 1.5**2))
    vol = np.repeat(blob[:, None, :], 3, axis=1).astype(np.float32)
    for th in (-60.0, -20.0, 0.0, 35.0, 60.0, 75.0):
        p = project(vol, [th], contrast="bright")[0, 1]
        u_com = (p * np.arange(nx)).sum() / p.sum() - (nx - 1) / 2
        t = np.deg2rad(th)
        assert u_com == pytest.approx(x0 * np.cos(t) + z0 * np.sin(t), abs=0.02)
        assert p.sum() == pytest.approx(blob.sum(), rel=3e-3)


def test_agrees_with_skimage_radon_per_slice():
    skt = pytest.importorskip("skimage.transform")
    n = 65
    rng = np.random.default_rng(3)
    vol = ndimage.gaussian_filter(rng.random((n, 4, n)).astype(np.float32), (2, 0, 2))
    z, x = np.mgrid[:n, :n] - (n - 1) / 2
    vol *= ((x**2 + z**2) < (n / 2 - 1) ** 2)[:, None, :]
    angles = np.arange(-60, 61, 4.0)
    p = project(vol, angles, contrast="bright")
    for y in range(vol.shape[1]):
        # skimage rotates the other way: its theta is our -theta; circle=True keeps the detector at n
        s = skt.radon(vol[:, y, :], theta=-angles, circle=True).T
        rel = np.linalg.norm(s - p[:, y, :]) / np.linalg.norm(p[:, y, :])
        assert rel < 0.02, rel


def test_torch_backend_matches_numba():
    vol = ball_phantom((20, 9, 24), BALLS[:1]) + np.random.default_rng(0).random((20, 9, 24)).astype(np.float32)
    angles = [-70, -45, -10, 0, 25, 46, 80]
    a = project(vol, angles, backend="numba", detector_width=30)
    b = project(vol, angles, backend="torch", detector_width=30, chunk_y=4)
    np.testing.assert_allclose(a, b, atol=1e-5 * np.abs(a).max())
    z_off = np.arange(7) - 3.0
    ra = backproject(a, angles, z_off, n_x=24, backend="numba")
    rb = backproject(a, angles, z_off, n_x=24, backend="torch", chunk_y=5)
    np.testing.assert_allclose(ra, rb, atol=1e-5 * np.abs(ra).max())


def test_chunking_over_y_gives_identical_results():
    vol = np.random.default_rng(1).random((16, 37, 16)).astype(np.float32)
    angles = np.arange(-60, 61, 15.0)
    a = project(vol, angles)
    np.testing.assert_array_equal(a, project(vol, angles, chunk_y=16))
    np.testing.assert_array_equal(reconstruct(a, angles), reconstruct(a, angles, chunk_y=16))


def test_backprojection_is_transpose_of_pixel_driven_projection():
    """<P v, p> == <v, B p> for the back-projector's own forward model (unit weights, 1 tilt at 0)."""
    rng = np.random.default_rng(2)
    vol = rng.random((8, 3, 10)).astype(np.float32)
    p = rng.random((1, 3, 10)).astype(np.float32)
    back = backproject(p, [0.0], np.arange(8) - 3.5, n_x=10)
    fwd = project(vol, [0.0], contrast="bright")
    assert np.vdot(fwd, p) == pytest.approx(np.vdot(vol, back), rel=1e-5)


def test_full_range_reconstruction_matches_phantom():
    n = 64
    vol = ball_phantom((n, n, n), BALLS)
    angles = np.arange(-90, 90, 1.0)
    rec = reconstruct(project(vol, angles, contrast="bright"), angles, thickness=n)
    assert rec.shape == vol.shape
    assert np.corrcoef(rec.ravel(), vol.ravel())[0, 1] > 0.95
    # quantitative: the centre of the big ball has density 1
    assert rec[n // 2, n // 2, n // 2] == pytest.approx(1.0, abs=0.05)


def test_limited_range_finds_ball_centres_within_one_voxel():
    n = 64
    vol = ball_phantom((n, n, n), BALLS)
    angles = np.arange(-60, 61, 2.0)
    rec = reconstruct(project(vol, angles), angles, thickness=n)
    rec = -rec  # dark contrast in, dark contrast out
    for bz, by, bx, r in BALLS:
        c = np.array([bz, by, bx]) + (n - 1) / 2
        sl = tuple(slice(int(ci - r - 3), int(ci + r + 4)) for ci in c)
        com = np.array(ndimage.center_of_mass(np.clip(rec[sl], 0, None))) + [s.start for s in sl]
        assert np.abs(com - c).max() < 1.0, (c, com)


def test_binned_z_range_reconstruction_geometry():
    """--bin 2 --z-range a:b puts a ball where the label geometry says it is."""
    n, b, (za, zb) = 64, 2, (8, 56)
    ball = (6.5, -9.5, 12.5, 5)  # centre at original indices (z, y, x) = ball + 31.5
    vol = ball_phantom((n, n, n), [ball])
    angles = np.arange(-60, 61, 2.0)
    rec = reconstruct(project(vol, angles, contrast="bright"), angles, bin=b, z_range=(za, zb), volume_z=n)
    assert rec.shape == ((zb - za) // b, n // b, n // b)
    orig = np.array(ball[:3]) + (n - 1) / 2
    expect = (orig - np.array([za, 0, 0]) - (b - 1) / 2) / b
    sub = np.clip(rec, 0, None) * (rec > 0.3 * rec.max())
    com = np.array(ndimage.center_of_mass(sub))
    assert np.abs(com - expect).max() < 0.5, (com, expect)


def test_bin_stack_block_mean_and_filters():
    a = np.arange(2 * 5 * 7, dtype=np.float32).reshape(2, 5, 7)
    bnd = bin_stack(a, 2)
    assert bnd.shape == (2, 2, 3)
    assert bnd[0, 0, 0] == pytest.approx(a[0, :2, :2].mean())
    assert bnd[1, 1, 2] == pytest.approx(a[1, 2:4, 4:6].mean())
    r = ramp_filter(256)
    f = np.fft.rfftfreq(256)
    # the real-space ramp approximates 2|f| and has a small positive DC term
    assert r[0] > 0 and np.allclose(r[20:], 2 * f[20:], atol=2e-3)
    for kind in ("shepp-logan", "cosine", "hann"):
        w = ramp_filter(256, kind)
        assert (w <= r + 1e-12).all() and w[-1] < r[-1]
    assert angle_weights(np.arange(-90, 90, 1.0)).sum() == pytest.approx(np.pi)


def test_cli_project_reconstruct_roundtrip(tmp_path, run_cli):
    import mrcfile

    n = 32
    vol = ball_phantom((n, n, n), [(0, 0, 0, 6), (5, -6, 8, 3)])
    src = write_mrc(tmp_path / "vol.mrc", vol, 8.0)
    rc, _, err = run_cli("project", src, "-o", tmp_path / "ts.mrc", "--angles", "-60:60:2", "-q")
    assert rc == 0, err
    rc, _, err = run_cli(
        "reconstruct",
        tmp_path / "ts.mrc",
        "-o",
        tmp_path / "tomo.mrc",
        "--bin",
        "2",
        "--z-range",
        "4:28",
        "--volume-z",
        n,
        "--filter",
        "shepp-logan",
        "-q",
    )
    assert rc == 0, err
    with mrcfile.open(tmp_path / "tomo.mrc") as m:
        assert m.data.shape == (12, 16, 16)
        assert float(m.voxel_size.x) == pytest.approx(16.0)
        rec = -m.data.astype(np.float32)
    ref = bin_stack(vol[4:28].reshape(12, 2, n, n).mean(1), 2)
    assert np.corrcoef(rec.ravel(), ref.ravel())[0, 1] > 0.8
    rc, _, err = run_cli("reconstruct", tmp_path / "ts.mrc", "-o", tmp_path / "t2.mrc", "--z-range", "20:10")
    assert rc == 2 and "--z-range" in err and not (tmp_path / "t2.mrc").exists()
