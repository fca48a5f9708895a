"""Euler-angle conventions and rotation of particle templates.

Internal convention: RELION ``(rot, tilt, psi)`` in degrees, ZYZ intrinsic
-----------------------------------------------------------------------------
Coordinates are ``(x, y, z)`` in voxels, with x = MRC column (array axis 2), y = array axis 1,
z = array axis 0 (``(Z, Y, X)`` arrays, see CONTRIBUTING.md).

RELION builds from ``(rot, tilt, psi)`` the matrix ``A = Rz(psi) . Ry(tilt) . Rz(rot)`` with *passive*
elementary matrices (``Rz(a) = [[cos a, sin a, 0], [-sin a, cos a, 0], [0, 0, 1]]``;
``Euler_angles2matrix`` in RELION's ``euler.cpp``). Its projector samples the reference at ``A^T`` times
the image coordinates (``Projector::project`` uses ``Ainv``), i.e. the particle is the reference rotated
*actively* by ``A``: **A rotates the reference (template) into the particle**. So a template point at
offset ``p`` (xyz, from the template centre voxel) lands at ``c + A p`` in the volume, where ``c`` is the
particle centre. In scipy terms::

    A = Rotation.from_euler("ZYZ", [rot, tilt, psi], degrees=True).inv()

(``ZYZ`` upper case = intrinsic). This is the same ``.inv()`` that teamtomo code applies to RELION angles
to get "rotate the reference onto the particle" matrices. :func:`relion_to_rotation` returns ``A``.

SHREC 2021 ``particle_locations.txt``
-------------------------------------
Each line is ``class x y z a b c``. Source: the SHREC 2021 simulator, PyTom
``pytom/simulation/MicrographModeller.py::generate_model`` (SBC-Utrecht/PyTom), writes the three angles it
passes to ``pytom.voltools.transform(..., rotation=(a, b, c), rotation_order='szxz')``. voltools negates the
angles ("CCW notation"), builds the static-frame ZXZ matrix ``M = Rz(-c) Rx(-b) Rz(-a)`` and samples the
input at ``M`` times the output coordinates (``scipy.ndimage.affine_transform``), so a template point ``p``
lands at ``M^T p = Rz(a) Rx(b) Rz(c) p``::

    R_shrec = Rotation.from_euler("ZXZ", [a, b, c], degrees=True)       # template -> volume

i.e. ZXZ intrinsic in the order (Z1, X, Z2) = (phi, theta, psi) as written in the file - *not* PyTom's own
particle-list order (phi, psi, theta) of its XML files. Coordinates x y z are voxel indices of the model
(PyTom arrays are ``(x, y, z)``, written as MRC columns x, rows y, sections z), the same as ours.
Vesicles and fiducials carry ``NaN NaN NaN`` angles in SHREC files (read as 0).

Conversions go through the rotation (template -> volume), so they are exact up to floating point;
angles come back in scipy's canonical ranges (first/third in (-180, 180], middle in [0, 180]).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

__all__ = [
    "relion_to_rotation",
    "rotation_to_relion",
    "relion_to_matrix",
    "shrec_to_rotation",
    "rotation_to_shrec",
    "shrec_to_relion",
    "relion_to_shrec",
    "random_relion_angles",
    "xyz_to_zyx_matrix",
    "rotate_volume",
]


def _angles(angles_deg) -> np.ndarray:
    a = np.asarray(angles_deg, dtype=np.float64)
    if a.shape[-1:] != (3,):
        raise ValueError(f"Euler angles need 3 values in the last axis, got shape {a.shape}")
    return a


def relion_to_rotation(angles_deg):
    """RELION ``(rot, tilt, psi)`` degrees, shape ``(3,)`` or ``(n, 3)`` -> scipy ``Rotation`` that maps
    template coordinates to volume coordinates (xyz, active)."""
    # lazy: scipy
    from scipy.spatial.transform import Rotation

    return Rotation.from_euler("ZYZ", _angles(angles_deg), degrees=True).inv()


def _as_euler(rotation, seq: str) -> np.ndarray:
    # at tilt 0 / 180 only rot + psi (or rot - psi) is defined; scipy then sets the third angle to 0
    # and warns "Gimbal lock detected", which is harmless here (the rotation is the same).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return rotation.as_euler(seq, degrees=True)


def rotation_to_relion(rotation) -> np.ndarray:
    """scipy ``Rotation`` (template -> volume, xyz) -> RELION ``(rot, tilt, psi)`` in degrees."""
    return _as_euler(rotation.inv(), "ZYZ")


def relion_to_matrix(angles_deg) -> np.ndarray:
    """RELION angles -> ``(..., 3, 3)`` matrix acting on ``(x, y, z)`` column vectors (template -> volume)."""
    return relion_to_rotation(angles_deg).as_matrix()


def shrec_to_rotation(angles_deg):
    """SHREC 2021 ``particle_locations.txt`` angles ``(Z1, X, Z2)`` -> scipy ``Rotation`` (template -> volume)."""
    # lazy: scipy
    from scipy.spatial.transform import Rotation

    return Rotation.from_euler("ZXZ", _angles(angles_deg), degrees=True)


def rotation_to_shrec(rotation) -> np.ndarray:
    """scipy ``Rotation`` (template -> volume) -> SHREC 2021 angles ``(Z1, X, Z2)`` in degrees."""
    return _as_euler(rotation, "ZXZ")


def shrec_to_relion(angles_deg) -> np.ndarray:
    """SHREC 2021 angles -> RELION ``(rot, tilt, psi)`` describing the same particle orientation."""
    return rotation_to_relion(shrec_to_rotation(angles_deg))


def relion_to_shrec(angles_deg) -> np.ndarray:
    """RELION ``(rot, tilt, psi)`` -> SHREC 2021 angles describing the same particle orientation."""
    return rotation_to_shrec(relion_to_rotation(angles_deg))


def random_relion_angles(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` orientations uniform on SO(3) (normalised Gaussian quaternions), as RELION angles ``(n, 3)``."""
    # lazy: scipy
    from scipy.spatial.transform import Rotation

    q = rng.standard_normal((n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return rotation_to_relion(Rotation.from_quat(q)).reshape(n, 3)


def xyz_to_zyx_matrix(m_xyz: np.ndarray) -> np.ndarray:
    """A matrix on ``(x, y, z)`` vectors -> the same map on ``(z, y, x)`` index vectors."""
    p = np.array([[0, 0, 1], [0, 1, 0], [1, 0, 0]], dtype=np.float64)
    return p @ np.asarray(m_xyz, dtype=np.float64) @ p


def rotate_volume(
    volume: np.ndarray,
    angles_deg: Sequence[float],
    *,
    order: int = 1,
    shift_zyx: Sequence[float] = (0.0, 0.0, 0.0),
    output_shape: Sequence[int] | None = None,
) -> np.ndarray:
    """Rotate a ``(Z, Y, X)`` template by RELION angles about its centre voxel ``(N - 1) / 2``.

    A template point at offset ``p`` (voxels, from the input centre) ends at ``c_out + shift + A p`` in the
    output, with ``A = relion_to_matrix(angles_deg)`` (template -> particle, see module docstring) and
    ``c_out`` the output centre voxel. ``shift_zyx`` places the centre at a sub-voxel offset.

    ``order`` 1 = trilinear, 3 = cubic B-spline (with prefilter; values clipped to >= 0 afterwards, since
    densities are non-negative). Outside the input is 0. Returns float32.
    """
    # lazy: scipy
    from scipy.ndimage import affine_transform

    vol = np.asarray(volume, dtype=np.float32)
    if vol.ndim != 3:
        raise ValueError(f"rotate_volume needs a 3-D array, got shape {vol.shape}")
    if order not in (0, 1, 3):
        raise ValueError(f"interpolation order must be 0, 1 or 3, got {order}")
    out_shape = tuple(int(s) for s in (output_shape if output_shape is not None else vol.shape))
    a_zyx = xyz_to_zyx_matrix(relion_to_matrix(angles_deg))
    inv = a_zyx.T  # input = c_in + A^T (o - c_out - shift)
    c_in = (np.asarray(vol.shape, dtype=np.float64) - 1) / 2
    c_out = (np.asarray(out_shape, dtype=np.float64) - 1) / 2 + np.asarray(shift_zyx, dtype=np.float64)
    offset = c_in - inv @ c_out
    out = affine_transform(
        vol, inv, offset=offset, output_shape=out_shape, order=order, mode="constant", cval=0.0, prefilter=(order == 3)
    )
    if order == 3:
        np.maximum(out, 0, out=out)
    return out.astype(np.float32, copy=False)
