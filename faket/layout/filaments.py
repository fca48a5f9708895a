"""Filaments: persistence-length random paths and the helical subunit lattices of microtubules and actin.

Pure functions on arrays. Points are ``(x, y, z)`` in voxels (x = column index), as in :mod:`faket.rotation`.

Paths (:func:`random_path`) are discrete worm-like chains with step ``ds``: each new tangent is the old
one plus a Gaussian kick perpendicular to it (about ``sqrt(ds / Lp)`` per component, set so that one step
keeps ``<cos> = exp(-ds / Lp)`` exactly), so ``<t(s) . t(0)> = exp(-s / Lp)`` (``Lp`` the persistence length). Every point keeps a margin (the
filament's outer radius + 1 voxel) from the box and the slab faces: a step that would leave is drawn
again with kicks growing up to 4 sigma (the chain turns away, no sharper than its stiffness allows), and a
chain that cannot continue is dropped and started anew by the caller. Frames along the path are parallel-transported (no twist of their own):
``T`` tangent, ``N`` and ``B = T x N`` normals.

Lattices (subunit ``i`` at arc length ``s_i`` and azimuth ``phi_i`` about the axis, at radius ``r``:
``P(s_i) + r (cos phi_i N + sin phi_i B)``):

- ``microtubule``: 13 protofilaments at radius 10.5 nm (outer diameter ~25 nm), tubulin monomers every
  4 nm along a protofilament, alpha/beta alternating (8 nm dimer repeat; beta drawn at 0.85 of alpha so
  the dimer repeat shows), protofilament ``p`` at ``phi = 2 pi p / 13`` shifted by ``p * 3 * 4 / 13`` nm
  along the axis (the 13-3 lattice, a seam between 12 and 0). Subunits (table rows) are dimers.
- ``actin``: one-start helix of subunits at radius 2.2 nm, rise 2.75 nm, twist -166.7 degrees per
  subunit (left-handed genetic helix = two right-handed long-pitch strands, diameter ~7 nm).
- ``custom``: a monomer template with a given rise, twist and radius.

Subunit orientations (RELION angles, template -> volume): the subunit's local ``z`` is the filament
tangent, local ``x`` points radially out from the axis (for a subunit on the axis: ``N`` turned by phi).
Microtubule and actin subunits are drawn as Gaussian blobs (sigma 1.4 and 1.2 nm) summed and scaled so
that the filament's maximum density is ``contrast`` (protein-density units).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from faket.rotation import relion_to_matrix

__all__ = [
    "FilamentType",
    "FILAMENT_TYPES",
    "random_path",
    "path_frames",
    "subunits",
    "render_blobs",
    "helical_priors",
    "write_filaments_star",
    "PSI_FLIP_RATIO",
]


@dataclass(frozen=True)
class FilamentType:
    name: str
    radius_nm: float  # subunit centres from the axis
    rise_nm: float  # along the axis per subunit (per monomer for microtubules)
    twist_deg: float  # about the axis per subunit (actin, custom)
    sigma_nm: float  # blob size (microtubule, actin)
    persistence_length_nm: float
    protofilaments: int = 1
    start: int = 0  # microtubule lattice start number (monomers of axial shift per turn)

    def outer_radius_nm(self, template_radius_nm: float = 0.0) -> float:
        return self.radius_nm + (2.5 * self.sigma_nm if self.sigma_nm else template_radius_nm)


FILAMENT_TYPES = {
    "microtubule": FilamentType(
        "microtubule",
        radius_nm=10.5,
        rise_nm=4.0,
        twist_deg=0.0,
        sigma_nm=1.4,
        persistence_length_nm=5.0e6,
        protofilaments=13,
        start=3,
    ),
    "actin": FilamentType(
        "actin", radius_nm=2.2, rise_nm=2.75, twist_deg=-166.7, sigma_nm=1.2, persistence_length_nm=1.7e4
    ),
    "custom": FilamentType(
        "custom", radius_nm=0.0, rise_nm=5.0, twist_deg=0.0, sigma_nm=0.0, persistence_length_nm=1.0e3
    ),
}


def _perp_basis(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.eye(3)[int(np.argmin(np.abs(t)))]
    n = np.cross(t, a)
    n /= np.linalg.norm(n)
    return n, np.cross(t, n)


def _kick_sigma(x: float) -> float:
    """Kick size so that one step keeps ``<cos> = exp(-x)`` exactly (``x = ds / Lp``).

    For a kick ``g`` (2-D Gaussian, sigma ``s`` per component) the step's ``<cos> = <(1 + |g|^2)^-1/2>
    = sqrt(pi / a) erfcx(1 / sqrt(a))`` with ``a = 2 s^2``; solved by bisection (~``sqrt(x)`` when small).
    """
    if x < 1e-8:
        return math.sqrt(x)
    # lazy: scipy
    from scipy.special import erfcx

    target = math.exp(-x)
    lo, hi = 0.0, 50.0
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        a = 2 * mid * mid
        c = math.sqrt(math.pi / a) * float(erfcx(1 / math.sqrt(a))) if a > 0 else 1.0
        lo, hi = (mid, hi) if c > target else (lo, mid)
    return 0.5 * (lo + hi)


def random_path(
    rng: np.random.Generator,
    length: float,
    persistence_length: float,
    lo,
    hi,
    *,
    step: float = 1.0,
    margin: float = 0.0,
    start=None,
    direction=None,
    max_kicks: int = 40,
):
    """A worm-like chain of ``length`` (voxels) inside ``[lo + margin, hi - 1 - margin]`` (``(x, y, z)``
    bounds, voxels): points ``(n, 3)`` every ``step`` voxels (the last step shorter), or None when it ran
    into the walls."""
    lo = np.asarray(lo, float) + margin
    hi = np.asarray(hi, float) - 1 - margin
    if np.any(hi < lo):
        return None
    lx, ly, lz = (float(v) for v in lo)
    hx, hy, hz = (float(v) for v in hi)
    n_steps = max(1, int(np.ceil(length / step)))
    p = np.asarray(start, float) if start is not None else lo + rng.random(3) * (hi - lo)
    t = rng.standard_normal(3) if direction is None else np.asarray(direction, float)
    t = t / np.linalg.norm(t)
    x, y, z = (float(v) for v in p)
    tx, ty, tz = (float(v) for v in t)
    pts = [(x, y, z)]
    sig = _kick_sigma(step / persistence_length)
    kicks = rng.standard_normal((n_steps, max_kicks, 2))
    last = step * n_steps - length
    for i in range(n_steps):
        h = step - (last if i == n_steps - 1 else 0.0)
        # an orthonormal pair perpendicular to t
        if abs(tx) <= abs(ty) and abs(tx) <= abs(tz):
            ax, ay, az = 1.0, 0.0, 0.0
        elif abs(ty) <= abs(tz):
            ax, ay, az = 0.0, 1.0, 0.0
        else:
            ax, ay, az = 0.0, 0.0, 1.0
        n1x, n1y, n1z = ty * az - tz * ay, tz * ax - tx * az, tx * ay - ty * ax
        nn = math.sqrt(n1x * n1x + n1y * n1y + n1z * n1z)
        n1x, n1y, n1z = n1x / nn, n1y / nn, n1z / nn
        n2x, n2y, n2z = ty * n1z - tz * n1y, tz * n1x - tx * n1z, tx * n1y - ty * n1x
        s = sig
        for k in range(max_kicks):
            g0, g1 = kicks[i, k, 0] * s, kicks[i, k, 1] * s
            ux, uy, uz = tx + g0 * n1x + g1 * n2x, ty + g0 * n1y + g1 * n2y, tz + g0 * n1z + g1 * n2z
            un = math.sqrt(ux * ux + uy * uy + uz * uz)
            ux, uy, uz = ux / un, uy / un, uz / un
            qx, qy, qz = x + h * ux, y + h * uy, z + h * uz
            if lx <= qx <= hx and ly <= qy <= hy and lz <= qz <= hz:
                break
            s = min(s * 1.3, 4 * sig)  # turn away from a wall, but never sharper than 4 sigma
        else:
            return None
        x, y, z, tx, ty, tz = qx, qy, qz, ux, uy, uz
        pts.append((x, y, z))
    return np.asarray(pts)


def path_frames(pts: np.ndarray):
    """Arc lengths ``(n,)`` and parallel-transported frames ``T, N, B`` ``(n, 3)`` along a polyline."""
    seg = np.diff(pts, axis=0)
    seglen = np.linalg.norm(seg, axis=1)
    s = np.concatenate([[0.0], np.cumsum(seglen)])
    T = np.empty_like(pts)
    T[:-1] = seg / seglen[:, None]
    T[-1] = T[-2]
    N = np.empty_like(pts)
    N[0] = _perp_basis(T[0])[0]
    for i in range(1, len(pts)):
        v = N[i - 1] - (N[i - 1] @ T[i]) * T[i]
        N[i] = v / np.linalg.norm(v)
    B = np.cross(T, N)
    return s, T, N, B


def _at(s_query: np.ndarray, s: np.ndarray, arr: np.ndarray) -> np.ndarray:
    return np.stack([np.interp(s_query, s, arr[:, k]) for k in range(3)], 1)


def _frame_at(s_query, s, T, N):
    t = _at(s_query, s, T)
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    n = _at(s_query, s, N)
    n -= (n * t).sum(1, keepdims=True) * t
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    return t, n, np.cross(t, n)


def subunits(
    kind: FilamentType,
    pts: np.ndarray,
    voxel_nm: float,
    *,
    rise_nm: float | None = None,
    twist_deg: float | None = None,
    radius_nm: float | None = None,
):
    """Subunits of a filament along the polyline ``pts`` (voxels).

    Returns a dict of arrays: ``pos`` (m, 3) table positions (voxels; microtubule: dimer centres),
    ``rot`` (m, 3, 3) orientations (template -> volume, xyz), ``strand`` (m,) protofilament / strand,
    ``index`` (m,) subunit index along its protofilament or strand, and the drawn ``blobs`` (k, 3) with
    ``blob_weight`` (k,) (microtubule: both monomers of each dimer).
    """
    s, T, N, B = path_frames(pts)
    total = s[-1]
    rise = (kind.rise_nm if rise_nm is None else rise_nm) / voxel_nm
    twist = np.deg2rad(kind.twist_deg if twist_deg is None else twist_deg)
    r = (kind.radius_nm if radius_nm is None else radius_nm) / voxel_nm
    if kind.name == "microtubule":
        P = kind.protofilaments
        rows = []
        for p in range(P):
            shift = (p * kind.start * rise / P) % (2 * rise)
            n_mono = int(np.floor((total - shift) / rise)) + 1 if total >= shift else 0
            n_mono -= n_mono % 2  # whole dimers only
            sm = shift + np.arange(n_mono) * rise
            rows.append((np.full(len(sm), p), np.arange(len(sm)), sm, np.full(len(sm), 2 * np.pi * p / P)))
        pf = np.concatenate([a[0] for a in rows])
        mono = np.concatenate([a[1] for a in rows])
        sm = np.concatenate([a[2] for a in rows])
        phi = np.concatenate([a[3] for a in rows])
        t, n, b = _frame_at(sm, s, T, N)
        radial = np.cos(phi)[:, None] * n + np.sin(phi)[:, None] * b
        blobs = _at(sm, s, pts) + r * radial
        weight = np.where(mono % 2 == 0, 1.0, 0.85)  # alpha, beta
        # dimers: monomer pairs (2j, 2j + 1) of a protofilament
        first = mono % 2 == 0
        d_s = sm[first] + 0.5 * rise
        dt, dn, db = _frame_at(d_s, s, T, N)
        dphi = phi[first]
        d_rad = np.cos(dphi)[:, None] * dn + np.sin(dphi)[:, None] * db
        pos = _at(d_s, s, pts) + r * d_rad
        rot = np.stack([d_rad, np.cross(dt, d_rad), dt], axis=2)
        return dict(
            pos=pos,
            rot=rot,
            strand=pf[first].astype(int),
            index=(mono[first] // 2).astype(int),
            blobs=blobs,
            blob_weight=weight,
        )
    m = int(np.floor(total / rise)) + 1
    si = np.arange(m) * rise
    phi = np.arange(m) * twist
    t, n, b = _frame_at(si, s, T, N)
    radial = np.cos(phi)[:, None] * n + np.sin(phi)[:, None] * b
    pos = _at(si, s, pts) + r * radial
    rot = np.stack([radial, np.cross(t, radial), t], axis=2)
    strand = np.arange(m) % 2 if kind.name == "actin" else np.zeros(m, int)
    index = np.arange(m) // 2 if kind.name == "actin" else np.arange(m)
    return dict(pos=pos, rot=rot, strand=strand, index=index, blobs=pos, blob_weight=np.ones(m))


def render_blobs(centres_xyz: np.ndarray, weights: np.ndarray, sigma: float, box_zyx):
    """Sum of isotropic Gaussians (sigma voxels, peak ``weight``) at ``centres``: sparse flat indices into
    the ``(Z, Y, X)`` box (inside it only) and their summed values."""
    nz, ny, nx = (int(v) for v in box_zyx)
    h = int(np.ceil(3.0 * sigma))
    o = np.arange(-h, h + 1)
    base = np.rint(centres_xyz[:, ::-1]).astype(np.int64)  # (k, 3) zyx
    frac = centres_xyz[:, ::-1] - base
    g = [np.exp(-((o[None, :] - frac[:, i : i + 1]) ** 2) / (2 * sigma**2)) for i in range(3)]
    w = (
        weights[:, None, None, None] * g[0][:, :, None, None] * g[1][:, None, :, None] * g[2][:, None, None, :]
    ).astype(np.float32)
    iz = base[:, 0:1] + o
    iy = base[:, 1:2] + o
    ix = base[:, 2:3] + o
    ok = (
        ((iz >= 0) & (iz < nz))[:, :, None, None]
        & ((iy >= 0) & (iy < ny))[:, None, :, None]
        & ((ix >= 0) & (ix < nx))[:, None, None, :]
    )
    lo = np.array([iz.min(), iy.min(), ix.min()]).clip(0)
    hi = np.minimum(np.array([iz.max(), iy.max(), ix.max()]) + 1, [nz, ny, nx])
    ly, lx = int(hi[1] - lo[1]), int(hi[2] - lo[2])
    local = (
        ((iz - lo[0])[:, :, None, None] * ly + (iy - lo[1])[:, None, :, None]) * lx + (ix - lo[2])[:, None, None, :]
    )[ok]
    w = w[ok]
    thr = 1e-4 * float(weights.max())
    if np.prod(hi - lo) <= 16_000_000:  # sum duplicates with a dense bincount over the bounding box
        acc = np.bincount(local, weights=w)
        nzi = np.flatnonzero(acc > thr)
        vals = acc[nzi]
    else:  # long diagonal filaments: a sort bounds the memory instead
        nzi, inv = np.unique(local, return_inverse=True)
        vals = np.bincount(inv, weights=w)
        keep = vals > thr
        nzi, vals = nzi[keep], vals[keep]
    z = nzi // (ly * lx) + lo[0]
    r = nzi % (ly * lx)
    flat = (z * ny + r // lx + lo[1]) * nx + r % lx + lo[2]
    return flat.astype(np.int64), vals.astype(np.float32)


# --------------------------------------------------------------------------------------------------
# writers (tables of faket.layout: polylines and subunits)


#: rlnAnglePsiFlipRatio of faket's filament subunits: 0, an ordinary prior (faket knows each filament's
#: polarity; RELION's picker writes 0.5, a bimodal prior, for segments whose polarity is unknown)
PSI_FLIP_RATIO = 0.0


def helical_priors(df, *, voxel_size_a: float):
    """RELION's helical priors of filament subunits (a ``filament_subunits*.csv`` table: ``filament_id``,
    ``subunit``, ``x, y, z`` in voxels of ``voxel_size_a``, RELION angles whose local ``z`` is the filament
    tangent, as :func:`subunits` makes them), a DataFrame in the table's row order:

    - ``rlnHelicalTubeID``: the filament id;
    - ``rlnHelicalTrackLengthAngst``: Angstrom along the filament axis from the filament's first subunit in the
      table: displacements between subunits consecutive in ``subunit`` order, projected on the mean of their
      tangents and summed (the radial part of a helical lattice drops out: 27.5 A per actin subunit, its
      rise), shifted so that the filament's smallest value is 0;
    - ``rlnAngleTiltPrior`` / ``rlnAnglePsiPrior``: the subunit's tilt and psi, which set where the
      template's z axis (RELION's helical axis) points: along the filament;
    - ``rlnAnglePsiFlipRatio``: :data:`PSI_FLIP_RATIO`.
    """
    # lazy: pandas
    import pandas as pd

    n = len(df)
    track = np.zeros(n)
    if n:
        xyz = df[["x", "y", "z"]].to_numpy(dtype=np.float64)
        tangent = relion_to_matrix(df[["rot", "tilt", "psi"]].to_numpy(dtype=np.float64)).reshape(n, 3, 3)[:, :, 2]
        fid = df["filament_id"].to_numpy()
        order = np.lexsort((df["subunit"].to_numpy(), fid))
        for f in np.unique(fid):
            idx = order[fid[order] == f]
            t = tangent[idx[1:]] + tangent[idx[:-1]]
            t /= np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-12)
            steps = np.einsum("ij,ij->i", xyz[idx[1:]] - xyz[idx[:-1]], t)
            s = np.concatenate([[0.0], np.cumsum(steps)])
            track[idx] = (s - s.min()) * float(voxel_size_a)
    return pd.DataFrame(
        {
            "rlnHelicalTubeID": df["filament_id"].to_numpy(dtype=np.int64),
            "rlnHelicalTrackLengthAngst": track,
            "rlnAngleTiltPrior": df["tilt"].to_numpy(dtype=np.float64),
            "rlnAnglePsiPrior": df["psi"].to_numpy(dtype=np.float64),
            "rlnAnglePsiFlipRatio": np.full(n, PSI_FLIP_RATIO),
        }
    )


def write_filaments_star(
    df, path, *, voxel_size_a: float, box_zyx, tomo_name: str = "faket", bin_factor: int = 1, unbinned_box_zyx=None
) -> None:
    """Filament points (polylines, or subunits with angles) as a RELION 5 STAR ``particles`` block:
    ``rlnCenteredCoordinate{X,Y,Z}Angst`` from the bin-1 tomogram's centre N/2 (as ``particles.star``;
    ``bin_factor``, ``unbinned_box_zyx``: :func:`faket.formats.particles.relion_centre`), the filament in
    ``rlnHelicalTubeID`` (1..F), ``rlnHelicalTrackLengthAngst`` along it, and for subunits
    ``rlnAngleRot/Tilt/Psi`` and RELION's helical priors (:func:`helical_priors`)."""
    # lazy: pandas, starfile
    import pandas as pd
    import starfile

    from faket.formats.particles import relion_centre

    cx, cy, cz = relion_centre(box_zyx, bin_factor, unbinned_box_zyx)
    out = {
        "rlnTomoName": [tomo_name] * len(df),
        "rlnCenteredCoordinateXAngst": (df["x"] - cx) * voxel_size_a,
        "rlnCenteredCoordinateYAngst": (df["y"] - cy) * voxel_size_a,
        "rlnCenteredCoordinateZAngst": (df["z"] - cz) * voxel_size_a,
        "rlnHelicalTubeID": df["filament_id"].astype(int),
        "rlnClassNumber": df["class_id"].astype(int),
        "fakClassName": df["class_name"],
    }
    if "arc_nm" in df:
        out["rlnHelicalTrackLengthAngst"] = df["arc_nm"] * 10.0
    if "rot" in df:
        out.update({"rlnAngleRot": df["rot"], "rlnAngleTilt": df["tilt"], "rlnAnglePsi": df["psi"]})
        pri = helical_priors(df, voxel_size_a=voxel_size_a)
        out.update({c: pri[c].to_numpy() for c in pri.columns if c != "rlnHelicalTubeID"})
    starfile.write({"particles": pd.DataFrame(out)}, path, float_format="%.12g")
