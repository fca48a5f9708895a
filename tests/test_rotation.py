"""Euler conventions (RELION ZYZ, SHREC 2021 ZXZ) and template rotation, checked against scipy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from faket import rotation as rot


def _relion_A(rot_deg, tilt_deg, psi_deg):
    """RELION's Euler_angles2matrix (euler.cpp), written out from its formula."""
    a, b, g = np.deg2rad([rot_deg, tilt_deg, psi_deg])
    ca, cb, cg = np.cos([a, b, g])
    sa, sb, sg = np.sin([a, b, g])
    cc, cs, sc, ss = cb * ca, cb * sa, sb * ca, sb * sa
    return np.array(
        [
            [cg * cc - sg * sa, cg * cs + sg * ca, -cg * sb],
            [-sg * cc - cg * sa, -sg * cs + cg * ca, sg * sb],
            [sc, ss, cb],
        ]
    )


def _rz(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


def _rx(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[1.0, 0, 0], [0, c, -s], [0, s, c]])


@pytest.fixture
def angles():
    rng = np.random.default_rng(1)
    return np.column_stack([rng.uniform(-180, 180, 50), rng.uniform(0, 180, 50), rng.uniform(-180, 180, 50)])


def test_relion_matrix_is_relions_A(angles):
    for a in angles:
        np.testing.assert_allclose(rot.relion_to_matrix(a), _relion_A(*a), atol=1e-12)
    # vectorised form agrees too
    m = rot.relion_to_matrix(angles)
    assert m.shape == (50, 3, 3)
    np.testing.assert_allclose(m[7], _relion_A(*angles[7]), atol=1e-12)


def test_relion_rot90_moves_x_to_minus_y():
    # RELION's passive Rz(rot): the template's +x axis ends on the volume's -y axis for rot = 90
    np.testing.assert_allclose(rot.relion_to_matrix([90, 0, 0]) @ [1, 0, 0], [0, -1, 0], atol=1e-12)


def test_shrec_matches_voltools_szxz_construction(angles):
    # voltools: M = Rz(-c) Rx(-b) Rz(-a) samples input at M @ output  ->  forward map M^T
    for a, b, c in angles:
        m = _rz(-np.deg2rad(c)) @ _rx(-np.deg2rad(b)) @ _rz(-np.deg2rad(a))
        np.testing.assert_allclose(rot.shrec_to_rotation([a, b, c]).as_matrix(), m.T, atol=1e-12)
        # the same as scipy's extrinsic zxz with reversed angles
        np.testing.assert_allclose(
            rot.shrec_to_rotation([a, b, c]).as_matrix(),
            Rotation.from_euler("zxz", [c, b, a], degrees=True).as_matrix(),
            atol=1e-12,
        )


def test_relion_shrec_round_trip_agrees_with_scipy(angles):
    shrec = rot.relion_to_shrec(angles)
    # same physical rotation
    np.testing.assert_allclose(rot.shrec_to_rotation(shrec).as_matrix(), rot.relion_to_matrix(angles), atol=1e-10)
    back = rot.shrec_to_relion(shrec)
    np.testing.assert_allclose(rot.relion_to_matrix(back), rot.relion_to_matrix(angles), atol=1e-10)
    # away from gimbal lock the canonical angles themselves come back
    np.testing.assert_allclose(back, angles, atol=1e-8)
    # and scipy alone, from the RELION side: A = ZYZ(rot, tilt, psi)^-1
    r = Rotation.from_euler("ZYZ", angles, degrees=True).inv()
    np.testing.assert_allclose(Rotation.from_euler("ZXZ", shrec, degrees=True).as_matrix(), r.as_matrix(), atol=1e-10)


def test_random_angles_uniform_on_so3():
    a = rot.random_relion_angles(20000, np.random.default_rng(3))
    m = rot.relion_to_matrix(a)
    # E[R] = 0 for the Haar measure; cos(tilt) uniform on [-1, 1]
    assert np.abs(m.mean(axis=0)).max() < 0.02
    ct = np.cos(np.deg2rad(a[:, 1]))
    assert abs(ct.mean()) < 0.02 and abs(ct.var() - 1 / 3) < 0.01
    same = rot.random_relion_angles(5, np.random.default_rng(3))
    np.testing.assert_array_equal(same, a[:5])


def _blob(shape, centre_zyx, sigma):
    z, y, x = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    d2 = (z - centre_zyx[0]) ** 2 + (y - centre_zyx[1]) ** 2 + (x - centre_zyx[2]) ** 2
    return np.exp(-d2 / (2 * sigma**2)).astype(np.float32)


def _com_near(vol, point_zyx, radius):
    z, y, x = np.meshgrid(*[np.arange(n) for n in vol.shape], indexing="ij")
    d2 = (z - point_zyx[0]) ** 2 + (y - point_zyx[1]) ** 2 + (x - point_zyx[2]) ** 2
    w = np.where(d2 <= radius**2, vol, 0)
    s = w.sum()
    return np.array([(w * z).sum(), (w * y).sum(), (w * x).sum()]) / s, s


@pytest.mark.parametrize("order", [1, 3])
def test_rotate_volume_moves_offcentre_blob_like_scipy(order):
    n = 33
    c = (n - 1) / 2
    off_xyz = np.array([9.0, -4.0, 2.0])  # asymmetric: off-centre blob
    tmpl = _blob((n,) * 3, (c, c, c), 2.5) + 0.7 * _blob((n,) * 3, c + off_xyz[::-1], 1.5)
    rng = np.random.default_rng(7)
    for angles in [(90, 0, 0), (0, 90, 0), (30, 60, -20), *rot.random_relion_angles(3, rng)]:
        out = rot.rotate_volume(tmpl, angles, order=order)
        r = Rotation.from_euler("ZYZ", angles, degrees=True).inv()  # scipy, template -> volume
        want_xyz = r.apply(off_xyz)
        got, mass = _com_near(out, c + want_xyz[::-1], 3.5)
        # the central blob's tail pulls a little; the rotated blob must sit where scipy moves the point
        np.testing.assert_allclose(got, c + want_xyz[::-1], atol=0.35)
        # and the un-rotated place is empty unless the rotation maps it close to itself
        if np.linalg.norm(want_xyz - off_xyz) > 6:
            _, stale = _com_near(out, c + off_xyz[::-1], 1.5)
            assert stale < 0.05 * mass
        assert out.min() >= 0 and out.dtype == np.float32


def test_rotate_volume_shift_and_output_shape():
    n = 21
    c = (n - 1) / 2
    tmpl = _blob((n,) * 3, (c, c, c + 5), 1.5)  # blob at +5 x
    out = rot.rotate_volume(tmpl, (0, 0, 0), shift_zyx=(0.5, -0.25, 1.0), output_shape=(25, 25, 25))
    got, _ = _com_near(out, (12.5, 11.75, 18.0), 4)
    np.testing.assert_allclose(got, (12.5, 11.75, 18.0), atol=0.1)
    assert out.shape == (25, 25, 25)
