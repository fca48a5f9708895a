"""Membranes: spheres, ellipsoids, planes and tubes with a lipid-bilayer profile (pure functions on arrays).

Geometry is in voxel units of the volume, points as ``(x, y, z)`` (x = column index), the convention of
:mod:`faket.rotation`. A membrane is a *mid-surface* (where the two leaflets meet) plus a thickness ``t``;
the density is a function of the signed distance ``d`` from the mid-surface (positive outside / on the
side the normal points to):

- two head-group Gaussians (peak ``contrast``) at ``d = +-0.35 t`` (sigma ``max(0.15 t, 0.6)`` voxel) and a
  lighter hydrocarbon core, ``0.35 * contrast`` at ``d = 0`` (sigma ``max(0.25 t, 0.6)`` voxel), the
  profile of :func:`faket.layout.vesicle_template`: two dense leaflets and a lighter core;
- the membrane's *mask* (class mask, occupancy, ``membrane_mask.mrc``) is ``|d| <= max(t / 2, 0.75)``.

Shapes (``size`` = outer size, the mid-surface sits ``t / 2`` inside it):

- ``sphere``: ``|q| - R``.
- ``ellipsoid``: semi-axes ``(a, b, c)`` along the local x, y, z axes; distance by Quilez's
  bound-corrected formula ``k0 (k0 - 1) / k1`` (exact on the axes, close elsewhere).
- ``plane``: the local z axis is the normal; it crosses the whole box and is cut by the specimen slab.
  With a curvature ``1 / rc`` (signed) it is the sphere of radius ``|rc|`` centred at ``(0, 0, rc)``:
  ``sign(rc) (|rc| - |q - (0, 0, rc)|)``; ``rc > 0`` bends the sheet towards its normal.
- ``tube``: a cylinder about the local z axis, radius ``R``; with a length it is open at both ends (a
  rounded rim), without one it crosses the box and is cut by the slab and the box.

``rotation`` (3 x 3, local -> volume, acting on ``(x, y, z)``) orients the local axes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Membrane", "bilayer_profile", "render_membrane", "align_rotation"]

SHAPES = ("sphere", "ellipsoid", "plane", "tube")


def bilayer_profile(d: np.ndarray, thickness: float) -> np.ndarray:
    """Bilayer density across the membrane at signed distance ``d`` (voxels), peak ~1 (unnormalised)."""
    t = float(thickness)
    s_head = max(0.15 * t, 0.6)
    s_core = max(0.25 * t, 0.6)
    return (
        np.exp(-((d - 0.35 * t) ** 2) / (2 * s_head**2))
        + np.exp(-((d + 0.35 * t) ** 2) / (2 * s_head**2))
        + 0.35 * np.exp(-(d**2) / (2 * s_core**2))
    )


def _profile_peak(thickness: float) -> float:
    d = np.linspace(-thickness, thickness, 4001)
    return float(bilayer_profile(d, thickness).max())


def _support(thickness: float) -> float:
    """|d| beyond which the profile is negligible (< 1e-4 of its peak)."""
    t = float(thickness)
    return 0.35 * t + 4.3 * max(0.15 * t, 0.6)


def _mask_half_width(thickness: float) -> float:
    return max(0.5 * float(thickness), 0.75)


def align_rotation(a, b) -> np.ndarray:
    """The smallest rotation (3 x 3) taking unit vector ``a`` to unit vector ``b``."""
    a = np.asarray(a, float) / np.linalg.norm(a)
    b = np.asarray(b, float) / np.linalg.norm(b)
    v = np.cross(a, b)
    c = float(a @ b)
    if c < -1 + 1e-12:  # opposite: 180 degrees about any axis perpendicular to a
        p = np.eye(3)[int(np.argmin(np.abs(a)))]
        v = np.cross(a, p)
        v /= np.linalg.norm(v)
        return 2 * np.outer(v, v) - np.eye(3)
    vx = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + vx + vx @ vx / (1 + c)


@dataclass
class Membrane:
    """One membrane: shape, centre ``(x, y, z)`` voxels, rotation (local -> volume), mid-surface radii
    (voxels: sphere ``(R, R, R)``, ellipsoid ``(a, b, c)``, tube ``(R, R, half_length or inf)``, plane
    unused) and bilayer thickness (voxels)."""

    shape: str
    centre: np.ndarray
    rotation: np.ndarray
    radii: np.ndarray
    thickness: float
    curvature_radius: float = np.inf  # planes: signed radius of curvature (voxels), > 0: centre on the +normal side

    @property
    def closed(self) -> bool:
        return self.shape in ("sphere", "ellipsoid")

    def local(self, pts: np.ndarray) -> np.ndarray:
        pts = np.asarray(pts)
        dt = pts.dtype if pts.dtype in (np.float32, np.float64) else np.float64
        return (pts - self.centre.astype(dt)) @ self.rotation.astype(dt)

    def signed_distance(self, pts: np.ndarray) -> np.ndarray:
        """Signed distance (voxels) of points ``(..., 3)`` ``(x, y, z)`` from the mid-surface."""
        q = self.local(pts)
        if self.shape == "sphere":
            return np.sqrt((q**2).sum(-1)) - self.radii[0]
        if self.shape == "ellipsoid":
            r = self.radii
            k0 = np.sqrt(((q / r) ** 2).sum(-1))
            k1 = np.sqrt(((q / r**2) ** 2).sum(-1))
            return k0 * (k0 - 1.0) / np.maximum(k1, 1e-12)
        if self.shape == "plane":
            rc = self.curvature_radius
            if np.isfinite(rc):
                return np.sign(rc) * (abs(rc) - np.sqrt(q[..., 0] ** 2 + q[..., 1] ** 2 + (q[..., 2] - rc) ** 2))
            return q[..., 2]
        if self.shape == "tube":
            rho = np.sqrt(q[..., 0] ** 2 + q[..., 1] ** 2) - self.radii[0]
            over = np.abs(q[..., 2]) - self.radii[2]
            return np.where(over > 0, np.sqrt(np.maximum(over, 0) ** 2 + rho**2), rho)
        raise ValueError(self.shape)

    def extent(self) -> float:
        """Largest distance (voxels) of a membrane voxel from the centre (inf for planes/endless tubes)."""
        if self.shape in ("sphere", "ellipsoid"):
            return float(self.radii.max()) + _support(self.thickness)
        if self.shape == "tube" and np.isfinite(self.radii[2]):
            return float(np.hypot(self.radii[0] + _support(self.thickness), self.radii[2] + _support(self.thickness)))
        return np.inf

    def sample_surface(self, rng: np.random.Generator, box_zyx, z_range, max_tries: int = 1000):
        """A point of the mid-surface, uniform by area, inside the box and the slab ``z_range``, and the
        outward unit normal there (``(x, y, z)``); None when none is found."""
        nz, ny, nx = box_zyx
        big = float(np.sqrt(nz * nz + ny * ny + nx * nx))
        for _ in range(max_tries):
            if self.shape in ("sphere", "ellipsoid"):
                u = rng.standard_normal(3)
                u /= np.linalg.norm(u)
                r = self.radii
                k = np.linalg.norm(u / r)
                if rng.random() > k * r.min():  # area element of u -> r * u is prod(r) * |u / r| dOmega
                    continue
                q = r * u
                n = u / r
            elif self.shape == "plane":
                q = np.array([rng.uniform(-big, big), rng.uniform(-big, big), 0.0])
                n = np.array([0.0, 0.0, 1.0])
                rc = self.curvature_radius
                if np.isfinite(rc):  # onto the sphere of curvature (nearly area-uniform for |rc| >> box)
                    cq = np.array([0.0, 0.0, rc])
                    v = q - cq
                    q = cq + abs(rc) * v / np.linalg.norm(v)
                    n = (cq - q) / rc
            else:  # tube
                h = min(self.radii[2], big)
                phi = rng.uniform(0, 2 * np.pi)
                q = np.array([self.radii[0] * np.cos(phi), self.radii[0] * np.sin(phi), rng.uniform(-h, h)])
                n = np.array([np.cos(phi), np.sin(phi), 0.0])
            p = self.centre + self.rotation @ q
            if not (0 <= p[0] <= nx - 1 and 0 <= p[1] <= ny - 1 and z_range[0] <= p[2] <= z_range[1] - 1):
                continue
            n = self.rotation @ n
            return p, n / np.linalg.norm(n)
        return None

    def normal_at(self, pts: np.ndarray) -> np.ndarray:
        """Outward unit normal (gradient of the distance) at points ``(n, 3)`` near the surface."""
        q = self.local(pts)
        if self.shape == "sphere":
            g = q
        elif self.shape == "ellipsoid":
            g = q / self.radii**2
        elif self.shape == "plane":
            if np.isfinite(self.curvature_radius):
                g = (np.array([0.0, 0.0, self.curvature_radius]) - q) * np.sign(self.curvature_radius)
            else:
                g = np.broadcast_to(np.array([0.0, 0.0, 1.0]), q.shape).copy()
        else:
            g = q.copy()
            g[..., 2] = 0
        g = g @ self.rotation.T
        return g / np.linalg.norm(g, axis=-1, keepdims=True)


def render_membrane(m: Membrane, box_zyx, z_range, *, contrast: float = 1.0, block: int = 8):
    """The membrane's voxels: flat indices into the ``(Z, Y, X)`` box, density values and mask flags.

    Only voxels inside the box and the slab ``z_range = (z0, z1)`` are returned (open shapes are cut
    there). Works block-wise (blocks farther from the surface than their half-diagonal are skipped), so
    memory follows the membrane's area, not the box.
    """
    nz, ny, nx = (int(v) for v in box_zyx)
    z0, z1 = int(z_range[0]), int(z_range[1])
    sup = _support(m.thickness)
    half = _mask_half_width(m.thickness)
    peak = _profile_peak(m.thickness)
    ext = m.extent()
    lo = np.array([z0, 0, 0])
    hi = np.array([z1, ny, nx])
    if np.isfinite(ext):
        c_zyx = m.centre[::-1]
        lo = np.maximum(lo, np.floor(c_zyx - ext - 1).astype(int))
        hi = np.minimum(hi, np.ceil(c_zyx + ext + 2).astype(int))
    if np.any(hi <= lo):
        return np.zeros(0, np.int64), np.zeros(0, np.float32), np.zeros(0, bool)
    # block centres
    starts = [np.arange(lo[i], hi[i], block) for i in range(3)]
    bz, by, bx = np.meshgrid(*starts, indexing="ij")
    bs = np.stack([bz.ravel(), by.ravel(), bx.ravel()], 1)
    sizes = np.minimum(bs + block, hi) - bs
    centres_xyz = (bs + (sizes - 1) / 2.0)[:, ::-1]
    radius = 0.5 * np.sqrt((sizes.astype(float) ** 2).sum(1))
    d_c = m.signed_distance(centres_xyz)
    # the ellipsoid distance is not exactly 1-Lipschitz far from the surface: be generous
    near = np.abs(d_c) <= 1.5 * radius + sup + 1
    flats, vals, masks = [], [], []
    off = np.stack(np.meshgrid(*[np.arange(block)] * 3, indexing="ij"), -1).reshape(-1, 3).astype(np.int32)
    chunk = max(1, 2_000_000 // off.shape[0])
    sel = np.flatnonzero(near)
    for s0 in range(0, len(sel), chunk):
        b = sel[s0 : s0 + chunk]
        pts = (bs[b].astype(np.int32)[:, None, :] + off[None, :, :]).reshape(-1, 3)
        if np.any(bs[b] + block > hi):
            pts = pts[(pts[:, 0] < hi[0]) & (pts[:, 1] < hi[1]) & (pts[:, 2] < hi[2])]
        d = m.signed_distance(pts[:, ::-1].astype(np.float32)).astype(np.float32)
        keep = np.abs(d) <= sup
        pts, d = pts[keep].astype(np.int64), d[keep]
        flats.append((pts[:, 0] * ny + pts[:, 1]) * nx + pts[:, 2])
        vals.append((contrast / peak * bilayer_profile(d, m.thickness)).astype(np.float32))
        masks.append(np.abs(d) <= half)
    if not flats:
        return np.zeros(0, np.int64), np.zeros(0, np.float32), np.zeros(0, bool)
    return np.concatenate(flats).astype(np.int64), np.concatenate(vals), np.concatenate(masks)
