"""Fast single-axis tilt-series projection and weighted (filtered) back-projection.

Geometry (shared by :func:`project` and :func:`backproject`)
------------------------------------------------------------
Volumes are ``(Z, Y, X)``; tilt-series ``(tilt, Y, U)``; the tilt axis is Y. The centre of an axis
with N samples is index ``(N - 1) / 2``. For a tilt angle ``theta`` a point at offset ``(x, z)`` voxels
from the volume centre lands at detector column offset::

    u = x cos(theta) + z sin(theta)

so the beam runs along ``(-sin(theta), cos(theta))`` in the (x, z) plane. A projection is the line
integral of the volume along the beam (unit: voxel length), evaluated with Joseph's method: the ray is
sampled at every Z plane (``|theta| <= 45``) or every X column (``|theta| > 45``) with linear
interpolation across the other axis and weighted by the path length per step (``1/|cos|`` or
``1/|sin|``). Every Y row sees the same geometry, so the work runs over XZ planes with Y as the
contiguous, vectorised axis.

Back-projection is the pixel-driven transpose used by filtered back-projection: every output voxel
reads the filtered projections at its ``u`` with linear interpolation, weighted by the angular
interval each tilt represents.

CPU kernels are numba-compiled (parallel over chunks of Y); small inputs (below :data:`SMALL_WORK`
interpolations) run the same arithmetic in numpy instead, without importing numba; :mod:`torch` kernels
serve CUDA devices (and are cross-checked against the CPU kernels in the tests).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import numpy as np

from faket.errors import InputError

__all__ = [
    "project",
    "backproject",
    "reconstruct",
    "ramp_filter",
    "filter_projections",
    "bin_stack",
    "angle_weights",
    "FILTERS",
]

FILTERS = ("ramp", "shepp-logan", "cosine", "hann", "none")

# Y-rows handled together by one thread (the vectorised inner loop): large enough to amortise the
# index arithmetic, small enough that one XZ plane of a chunk stays in L1/L2. 64 measured best here
# (256^3, 61 tilts: 16 lanes 0.37 s, 32 0.23 s, 64 0.19 s).
_CHUNK_LANES = 64


def _lanes_for(n_y: int) -> int:
    """Lanes per chunk: ``_CHUNK_LANES``, fewer for thin volumes so that both cores get a chunk."""
    if n_y >= 2 * _CHUNK_LANES:
        return _CHUNK_LANES
    return max(8, -(-n_y // 16) * 8)


# --------------------------------------------------------------------------------------------------
# numba kernels (compiled lazily on first use, cached on disk)

_KERNELS: dict[str, Callable] = {}


def _numba_kernels():
    if _KERNELS:
        return _KERNELS
    # lazy: numba
    import numba
    from numba import njit, prange

    @njit(parallel=True, fastmath=False, cache=True, nogil=True)
    def project_chunks(vol, cos_t, sin_t, n_u, cu, cx, cz, out):  # pragma: no cover - compiled
        # vol: (C, Z, X, L) float32 (C chunks of L lanes of Y); out: (C, T, U, L) float32 zeroed
        n_c, n_z, n_x, n_l = vol.shape
        n_t = cos_t.shape[0]
        for c in prange(n_c):
            for t in range(n_t):
                ct = cos_t[t]
                st = sin_t[t]
                o = out[c, t]
                if abs(ct) >= abs(st):
                    w = 1.0 / abs(ct)
                    for z in range(n_z):
                        zo = z - cz
                        plane = vol[c, z]
                        for j in range(n_u):
                            xf = ((j - cu) - zo * st) / ct + cx
                            fl = math.floor(xf)
                            i0 = int(fl)
                            f1 = xf - fl
                            w1 = np.float32(f1 * w)
                            w0 = np.float32((1.0 - f1) * w)
                            if i0 >= 0 and i0 + 1 < n_x:
                                for k in range(n_l):
                                    o[j, k] += w0 * plane[i0, k] + w1 * plane[i0 + 1, k]
                            elif i0 == -1:
                                for k in range(n_l):
                                    o[j, k] += w1 * plane[0, k]
                            elif i0 == n_x - 1:
                                for k in range(n_l):
                                    o[j, k] += w0 * plane[i0, k]
                else:
                    w = 1.0 / abs(st)
                    for x in range(n_x):
                        xo = x - cx
                        for j in range(n_u):
                            zf = ((j - cu) - xo * ct) / st + cz
                            fl = math.floor(zf)
                            i0 = int(fl)
                            f1 = zf - fl
                            w1 = np.float32(f1 * w)
                            w0 = np.float32((1.0 - f1) * w)
                            if i0 >= 0 and i0 + 1 < n_z:
                                for k in range(n_l):
                                    o[j, k] += w0 * vol[c, i0, x, k] + w1 * vol[c, i0 + 1, x, k]
                            elif i0 == -1:
                                for k in range(n_l):
                                    o[j, k] += w1 * vol[c, 0, x, k]
                            elif i0 == n_z - 1:
                                for k in range(n_l):
                                    o[j, k] += w0 * vol[c, i0, x, k]

    @njit(parallel=True, fastmath=False, cache=True, nogil=True)
    def backproject_chunks(proj, cos_t, sin_t, wts, n_x, z_off, cu, cx, out):  # pragma: no cover
        # proj: (C, T, U, L) float32; z_off: (Zo,) z offsets from the rotation axis (voxels)
        # out: (C, Zo, X, L) float32 zeroed
        n_c, n_t, n_u, n_l = proj.shape
        n_zo = z_off.shape[0]
        for c in prange(n_c):
            for zi in range(n_zo):
                zo = z_off[zi]
                o = out[c, zi]
                for t in range(n_t):
                    ct = cos_t[t]
                    st = sin_t[t]
                    wt = wts[t]
                    p = proj[c, t]
                    base = zo * st + cu
                    for x in range(n_x):
                        uf = (x - cx) * ct + base
                        fl = math.floor(uf)
                        i0 = int(fl)
                        f1 = uf - fl
                        w1 = np.float32(f1 * wt)
                        w0 = np.float32((1.0 - f1) * wt)
                        if i0 >= 0 and i0 + 1 < n_u:
                            for k in range(n_l):
                                o[x, k] += w0 * p[i0, k] + w1 * p[i0 + 1, k]
                        elif i0 == -1:
                            for k in range(n_l):
                                o[x, k] += w1 * p[0, k]
                        elif i0 == n_u - 1:
                            for k in range(n_l):
                                o[x, k] += w0 * p[i0, k]

    _KERNELS["project"] = project_chunks
    _KERNELS["backproject"] = backproject_chunks
    _KERNELS["numba"] = numba
    return _KERNELS


# --------------------------------------------------------------------------------------------------
# numpy kernels for small inputs (no numba import)

# Below SMALL_WORK interpolations (tilts x samples along the beam x detector columns x Y rows for a
# projection; tilts x output voxels for a back-projection) `backend="auto"` runs the numpy kernels below on
# the CPU instead of numba: importing numba and loading its cached kernels costs ~0.4-0.9 s per process,
# more than numpy needs for such inputs (64^3 x 61 tilts, 16 M interpolations: ~0.1-0.2 s). They repeat the
# numba kernels' float32 operations in the same order, so the results are the same floats
# (tests/test_projection_small.py); larger inputs take the numba kernels unchanged.
SMALL_WORK = 1 << 24


def _interp_weights(f, w, n_s):
    """Joseph / linear interpolation at positions ``f`` (float64) on ``n_s`` samples, as the numba kernels
    compute it: clipped indices i0, i1 = i0 + 1 and float32 weights ``(1 - frac) w``, ``frac w``, zero for an
    index outside ``[0, n_s)`` (the kernels then add only the other term, or nothing)."""
    fl = np.floor(f)
    i0 = fl.astype(np.int64)
    f1 = f - fl
    w1 = (f1 * w).astype(np.float32)
    w0 = ((1.0 - f1) * w).astype(np.float32)
    w0[(i0 < 0) | (i0 >= n_s)] = 0
    w1[(i0 + 1 < 0) | (i0 + 1 >= n_s)] = 0
    return np.clip(i0, 0, n_s - 1), np.clip(i0 + 1, 0, n_s - 1), w0, w1


def _project_numpy(vol, cos_t, sin_t, n_u, cu, cx, cz) -> np.ndarray:
    """(Z, Y, X) -> (T, U, Y) line integrals, the numba ``project_chunks`` loop in numpy (vectorised over
    detector columns and Y, looping over tilts and the driving axis in the kernel's order)."""
    n_z, n_y, n_x = vol.shape
    v_zx = np.ascontiguousarray(np.asarray(vol, dtype=np.float32).transpose(0, 2, 1))  # (Z, X, Y)
    v_xz = np.ascontiguousarray(v_zx.transpose(1, 0, 2))  # (X, Z, Y)
    out = np.zeros((cos_t.size, n_u, n_y), np.float32)
    j = np.arange(n_u, dtype=np.float64) - cu
    for t in range(cos_t.size):
        ct, st = float(cos_t[t]), float(sin_t[t])
        if abs(ct) >= abs(st):  # one step per Z plane, interpolate along X
            src, n_s = v_zx, n_x
            f = (j[None, :] - (np.arange(n_z)[:, None] - cz) * st) / ct + cx
            w = 1.0 / abs(ct)
        else:  # one step per X column, interpolate along Z
            src, n_s = v_xz, n_z
            f = (j[None, :] - (np.arange(n_x)[:, None] - cx) * ct) / st + cz
            w = 1.0 / abs(st)
        i0, i1, w0, w1 = _interp_weights(f, w, n_s)
        o = out[t]
        for d in range(f.shape[0]):
            p = src[d]
            o += w0[d, :, None] * p[i0[d]] + w1[d, :, None] * p[i1[d]]
    return out


def _backproject_numpy(tilts, cos_t, sin_t, wts, n_x, z_off, cu, cx) -> np.ndarray:
    """(T, Y, U) -> (Zo, X, Y), the numba ``backproject_chunks`` loop in numpy (tilts in the kernel's order)."""
    p = np.ascontiguousarray(np.asarray(tilts, dtype=np.float32).transpose(0, 2, 1))  # (T, U, Y)
    n_u, n_y = p.shape[1:]
    out = np.zeros((z_off.size, n_x, n_y), np.float32)
    xo = np.arange(n_x, dtype=np.float64) - cx
    for t in range(p.shape[0]):
        uf = xo[None, :] * cos_t[t] + (z_off[:, None] * sin_t[t] + cu)
        i0, i1, w0, w1 = _interp_weights(uf, float(wts[t]), n_u)
        out += w0[..., None] * p[t][i0] + w1[..., None] * p[t][i1]
    return out


# --------------------------------------------------------------------------------------------------
# helpers


def _check_angles(angles_deg) -> np.ndarray:
    a = np.asarray(angles_deg, dtype=np.float64).ravel()
    if a.size == 0:
        raise InputError("no tilt angles given")
    # The CLI refuses |angle| >= 90 (a tilt-series never reaches it); the core accepts the full
    # half-turn [-90, 90] so that complete-range phantoms can be tested.
    if not np.isfinite(a).all() or (np.abs(a) > 90).any():
        raise InputError("tilt angles must be finite with |angle| <= 90 deg")
    return a


def _use_numba(device, backend: str) -> bool:
    """CPU kernels (numba, or numpy for small inputs) unless ``backend="torch"``; torch for any other device."""
    if backend not in ("auto", "numba", "numpy", "torch"):
        raise InputError(f"backend {backend}: expected auto, numba, numpy or torch")
    cpu = device is None or str(device) == "cpu"
    if backend in ("numba", "numpy") and not cpu:
        raise InputError(f"the {backend} backend runs on the CPU only, not on {device}")
    return cpu and backend != "torch"


def _small(backend: str, work: int) -> bool:
    """The numpy kernels: asked for, or ``auto`` with less than :data:`SMALL_WORK` interpolations."""
    return backend == "numpy" or (backend == "auto" and work <= SMALL_WORK)


def _y_blocks(n_y: int, rows_per_block: int):
    for y0 in range(0, n_y, rows_per_block):
        yield y0, min(n_y, y0 + rows_per_block)


def _to_lanes(a: np.ndarray, lanes: int) -> tuple[np.ndarray, int]:
    """``(A, Yb, B)`` view -> ``(C, A, B, lanes)`` contiguous float32 (Y split into chunks of ``lanes``,
    zero-padded), written in one pass with no intermediate copy."""
    n_a, n, n_b = a.shape
    n_c = -(-n // lanes)
    out = np.zeros((n_c, n_a, n_b, lanes), np.float32)
    for c in range(n_c):
        y0, y1 = c * lanes, min(n, (c + 1) * lanes)
        out[c, :, :, : y1 - y0] = a[:, y0:y1, :].transpose(0, 2, 1)
    return out, n


def _from_lanes(a: np.ndarray, n: int) -> np.ndarray:
    """``(C, ..., lanes)`` -> ``(..., n)``."""
    a = np.moveaxis(a, 0, -2)
    a = a.reshape(a.shape[:-2] + (-1,))
    return a[..., :n]


def _default_rows(n_other: int, lanes: int, budget_bytes: int = 128 << 20) -> int:
    """Y rows per block so that a block of ``n_other`` floats per row stays within the budget."""
    rows = max(lanes, budget_bytes // max(1, 4 * n_other))
    return int(rows // lanes * lanes) or lanes


# --------------------------------------------------------------------------------------------------
# projection


def project(
    volume: np.ndarray,
    angles_deg: Sequence[float],
    *,
    detector_width: int | None = None,
    contrast: str = "dark",
    device=None,
    chunk_y: int | None = None,
    progress: Callable[[int], None] | None = None,
    backend: str = "auto",
) -> np.ndarray:
    """Line-integral projections of a volume tilted about Y.

    Parameters
    ----------
    volume : (Z, Y, X) float array.
    angles_deg : (T,) tilt angles in degrees, ``|angle| < 90``.
    detector_width : U, detector columns (default X), centred on the volume centre.
    contrast : ``"dark"`` (default) negates the sums so dense matter is darker than the background,
        as in the microscope (FakET's ``0 - sum``); ``"bright"`` keeps the raw line integrals.
    device : ``None``/``"cpu"`` for the numba kernels, or a torch device (e.g. ``"cuda:0"``).
    chunk_y : Y rows processed together (bounds the working memory); default keeps ~128 MB per block.
    progress : called with the number of Y rows finished after each block.
    backend : ``"auto"`` (on the CPU numba, or numpy below :data:`SMALL_WORK` interpolations; torch
        elsewhere), ``"numba"``, ``"numpy"`` (the small path at any size) or ``"torch"``.

    Returns
    -------
    (T, Y, U) float32 tilt-series in voxel-length units.
    """
    if contrast not in ("dark", "bright"):
        raise InputError(f"--contrast {contrast}: expected dark or bright")
    vol = np.asarray(volume)
    if vol.ndim != 3:
        raise InputError(f"volume must be 3-D (Z, Y, X), got shape {vol.shape}")
    a = _check_angles(angles_deg)
    n_z, n_y, n_x = vol.shape
    n_u = int(detector_width or n_x)
    if n_u < 1:
        raise InputError(f"--detector-width {detector_width}: must be positive")
    th = np.deg2rad(a)
    cos_t, sin_t = np.cos(th), np.sin(th)
    out = np.empty((a.size, n_y, n_u), dtype=np.float32)
    lanes = _lanes_for(n_y if not chunk_y else min(n_y, int(chunk_y)))
    rows = int(chunk_y) if chunk_y else _default_rows(n_z * n_x + a.size * n_u, lanes)
    if rows < 1:
        raise InputError(f"--chunk-y {chunk_y}: must be at least 1")
    cu, cx, cz = (n_u - 1) / 2.0, (n_x - 1) / 2.0, (n_z - 1) / 2.0
    if _use_numba(device, backend) and _small(backend, a.size * max(n_z, n_x) * n_u * n_y):
        out[:] = _project_numpy(vol, cos_t, sin_t, n_u, cu, cx, cz).transpose(0, 2, 1)
        if progress:
            progress(n_y)
    elif _use_numba(device, backend):
        k = _numba_kernels()
        for y0, y1 in _y_blocks(n_y, rows):
            blk_l, n = _to_lanes(vol[:, y0:y1, :], lanes)  # (C, Z, X, L)
            acc = np.zeros((blk_l.shape[0], a.size, n_u, lanes), np.float32)
            k["project"](blk_l, cos_t, sin_t, n_u, cu, cx, cz, acc)
            out[:, y0:y1, :] = _from_lanes(acc, n).transpose(0, 2, 1)  # (T,U,Yb) -> (T,Yb,U)
            if progress:
                progress(y1 - y0)
    else:
        _project_torch(vol, cos_t, sin_t, n_u, cu, cx, cz, out, device or "cpu", rows, progress)
    if contrast == "dark":
        np.negative(out, out=out)
    return out


def _project_torch(vol, cos_t, sin_t, n_u, cu, cx, cz, out, device, rows, progress):
    # lazy: torch
    import torch

    dev = torch.device(device)
    n_z, n_y, n_x = vol.shape
    j = torch.arange(n_u, device=dev, dtype=torch.float64) - cu
    for y0, y1 in _y_blocks(n_y, rows):
        v = torch.as_tensor(np.ascontiguousarray(vol[:, y0:y1, :]), dtype=torch.float32, device=dev)
        v = v.permute(0, 2, 1).contiguous()  # (Z, X, Yb)
        for t, (ct, st) in enumerate(zip(cos_t, sin_t)):
            if abs(ct) >= abs(st):
                zo = torch.arange(n_z, device=dev, dtype=torch.float64) - cz
                pos = (j[None, :] - zo[:, None] * st) / ct + cx  # (Z, U) position along X
                src, n_s, w = v, n_x, 1.0 / abs(ct)
                res = _interp_sum(src, pos, n_s, w, along_x=True)
            else:
                xo = torch.arange(n_x, device=dev, dtype=torch.float64) - cx
                pos = (j[None, :] - xo[:, None] * ct) / st + cz  # (X, U) position along Z
                res = _interp_sum(v, pos, n_z, 1.0 / abs(st), along_x=False)
            out[t, y0:y1, :] = res.T.cpu().numpy()
        if progress:
            progress(y1 - y0)


def _interp_sum(v, pos, n_s, w, *, along_x: bool):
    """Sum over the driving axis of linear interpolation of ``v`` at ``pos``; returns (U, Yb)."""
    # lazy: torch
    import torch

    fl = torch.floor(pos)
    f1 = (pos - fl).to(torch.float32)
    i0 = fl.to(torch.int64)
    res = None
    for idx, wt in ((i0, 1.0 - f1), (i0 + 1, f1)):
        valid = (idx >= 0) & (idx < n_s)
        idc = idx.clamp(0, n_s - 1)
        wv = (wt * valid.to(torch.float32) * w)[..., None]  # (D, U, 1)
        if along_x:  # v (Z, X, Yb), driving axis Z, idx (Z, U) indexes X
            g = torch.gather(v, 1, idc[..., None].expand(-1, -1, v.shape[2]))
        else:  # driving axis X, idx (X, U) indexes Z: v.permute -> (X, Z, Yb)
            vx = v.permute(1, 0, 2)
            g = torch.gather(vx, 1, idc[..., None].expand(-1, -1, v.shape[2]))
        term = (g * wv).sum(0)
        res = term if res is None else res + term
    return res


# --------------------------------------------------------------------------------------------------
# filtering, binning, back-projection


def angle_weights(angles_deg: Sequence[float]) -> np.ndarray:
    """Angular interval (radians) each tilt represents: half the distance to its neighbours
    (one-sided at the ends), so that the weights sum to the covered range plus one step."""
    a = np.deg2rad(np.asarray(angles_deg, dtype=np.float64))
    if a.size == 1:
        return np.array([np.pi])
    order = np.argsort(a)
    s = a[order]
    d = np.diff(s)
    w_sorted = np.empty_like(s)
    w_sorted[1:-1] = (d[:-1] + d[1:]) / 2
    w_sorted[0] = d[0]
    w_sorted[-1] = d[-1]
    w = np.empty_like(w_sorted)
    w[order] = w_sorted
    return w


def ramp_filter(n: int, kind: str = "ramp") -> np.ndarray:
    """Frequency response (``rfft`` layout, length ``n // 2 + 1``) of the reconstruction filter for a
    padded length ``n``: the band-limited ramp built in real space (Kak & Slaney, eq. 61), which avoids
    the DC offset of a sampled ``|f|``, times the window of ``kind``."""
    if kind not in FILTERS:
        raise InputError(f"--filter {kind}: expected one of {', '.join(FILTERS)}")
    if kind == "none":
        return np.ones(n // 2 + 1)
    k = np.arange(n)
    k = np.where(k <= n // 2, k, k - n)
    h = np.zeros(n)
    h[0] = 0.25
    odd = (k % 2) == 1
    h[odd] = -1.0 / (np.pi * k[odd]) ** 2
    resp = 2 * np.real(np.fft.rfft(h))  # ~ |f| in cycles/sample, 2*|f|... see reconstruct scale
    f = np.fft.rfftfreq(n)  # 0..0.5
    if kind == "shepp-logan":
        x = np.pi * f
        resp = resp * np.where(f == 0, 1.0, np.sin(x) / np.where(x == 0, 1, x))
    elif kind == "cosine":
        resp = resp * np.cos(np.pi * f)
    elif kind == "hann":
        resp = resp * (0.5 + 0.5 * np.cos(2 * np.pi * f))
    return resp


def filter_projections(tilts: np.ndarray, kind: str = "ramp", *, small: bool = False) -> np.ndarray:
    """Filter each row of a ``(T, Y, U)`` tilt-series along U (zero-padded to a power of two >= 2U).

    ``small``: numpy's FFT instead of scipy's (no scipy.fft import, ~0.1 s, for the small path of
    :func:`reconstruct`); the same to float32 rounding (both are pocketfft)."""
    n_u = tilts.shape[-1]
    n = max(64, int(2 ** math.ceil(math.log2(2 * n_u))))
    resp = ramp_filter(n, kind).astype(np.float32)
    out = np.empty(tilts.shape, dtype=np.float32)
    if small:
        rfft, irfft = np.fft.rfft, np.fft.irfft
    else:
        # lazy: scipy
        import scipy.fft as sfft

        rfft = functools.partial(sfft.rfft, workers=-1)
        irfft = functools.partial(sfft.irfft, workers=-1)
    for t in range(tilts.shape[0]):  # per tilt: bounded memory
        F = rfft(tilts[t].astype(np.float32), n=n, axis=-1)
        F *= resp
        out[t] = irfft(F, n=n, axis=-1)[..., :n_u]
    return out


def bin_stack(tilts: np.ndarray, b: int) -> np.ndarray:
    """Block-mean binning of a ``(T, Y, U)`` stack by ``b`` in Y and U (blocks start at index 0,
    trailing rows/columns that do not fill a block are dropped), as a camera bins pixels."""
    if b == 1:
        return np.asarray(tilts, dtype=np.float32)
    t, ny, nu = tilts.shape
    ny_b, nu_b = ny // b, nu // b
    if ny_b < 1 or nu_b < 1:
        raise InputError(f"--bin {b}: larger than the tilt images ({ny}x{nu})")
    a = np.asarray(tilts[:, : ny_b * b, : nu_b * b], dtype=np.float32)
    return a.reshape(t, ny_b, b, nu_b, b).mean(axis=(2, 4), dtype=np.float64).astype(np.float32)


def backproject(
    tilts: np.ndarray,
    angles_deg: Sequence[float],
    z_offsets: np.ndarray,
    *,
    n_x: int | None = None,
    weights: np.ndarray | None = None,
    center_u: float | None = None,
    center_x: float | None = None,
    device=None,
    chunk_y: int | None = None,
    progress: Callable[[int], None] | None = None,
    backend: str = "auto",
) -> np.ndarray:
    """Back-project a ``(T, Y, U)`` stack into a ``(len(z_offsets), Y, n_x)`` volume.

    ``z_offsets`` are the output planes' z offsets from the rotation axis, in voxels; ``center_u`` and
    ``center_x`` the detector and volume positions of the axis (defaults: ``(U-1)/2``, ``(n_x-1)/2``).
    Each voxel sums ``weights[t] * tilts[t, y, u(x, z)]`` with linear interpolation in ``u``.
    """
    a = _check_angles(angles_deg)
    t_n, n_y, n_u = tilts.shape
    if t_n != a.size:
        raise InputError(f"{a.size} angles for {t_n} tilts")
    n_x = int(n_x or n_u)
    w = np.ones(a.size) if weights is None else np.asarray(weights, dtype=np.float64)
    th = np.deg2rad(a)
    cos_t, sin_t = np.cos(th), np.sin(th)
    cu = (n_u - 1) / 2.0 if center_u is None else float(center_u)
    cx = (n_x - 1) / 2.0 if center_x is None else float(center_x)
    z_off = np.asarray(z_offsets, dtype=np.float64)
    n_zo = z_off.size
    out = np.empty((n_zo, n_y, n_x), dtype=np.float32)
    lanes = _lanes_for(n_y if not chunk_y else min(n_y, int(chunk_y)))
    rows = int(chunk_y) if chunk_y else _default_rows(t_n * n_u + n_zo * n_x, lanes)
    if _use_numba(device, backend) and _small(backend, t_n * n_zo * n_x * n_y):
        out[:] = _backproject_numpy(tilts, cos_t, sin_t, w, n_x, z_off, cu, cx).transpose(0, 2, 1)
        if progress:
            progress(n_y)
    elif _use_numba(device, backend):
        k = _numba_kernels()
        for y0, y1 in _y_blocks(n_y, rows):
            blk_l, n = _to_lanes(tilts[:, y0:y1, :], lanes)  # (C, T, U, L)
            acc = np.zeros((blk_l.shape[0], n_zo, n_x, lanes), np.float32)
            k["backproject"](blk_l, cos_t, sin_t, w, n_x, z_off, cu, cx, acc)
            out[:, y0:y1, :] = _from_lanes(acc, n).transpose(0, 2, 1)
            if progress:
                progress(y1 - y0)
    else:
        _backproject_torch(tilts, cos_t, sin_t, w, n_x, z_off, cu, cx, out, device or "cpu", rows, progress)
    return out


def _backproject_torch(tilts, cos_t, sin_t, w, n_x, z_off, cu, cx, out, device, rows, progress):
    # lazy: torch
    import torch

    dev = torch.device(device)
    t_n, n_y, n_u = tilts.shape
    xo = torch.arange(n_x, device=dev, dtype=torch.float64) - cx
    zo = torch.as_tensor(z_off, device=dev, dtype=torch.float64)
    for y0, y1 in _y_blocks(n_y, rows):
        p = torch.as_tensor(np.ascontiguousarray(tilts[:, y0:y1, :]), dtype=torch.float32, device=dev)
        p = p.permute(0, 2, 1).contiguous()  # (T, U, Yb)
        acc = torch.zeros((zo.numel(), n_x, y1 - y0), dtype=torch.float32, device=dev)
        for t in range(t_n):
            uf = zo[:, None] * sin_t[t] + xo[None, :] * cos_t[t] + cu  # (Zo, X)
            fl = torch.floor(uf)
            f1 = (uf - fl).to(torch.float32)
            i0 = fl.to(torch.int64)
            for idx, wt in ((i0, 1.0 - f1), (i0 + 1, f1)):
                valid = (idx >= 0) & (idx < n_u)
                g = p[t][idx.clamp(0, n_u - 1)]  # (Zo, X, Yb)
                acc += g * (wt * valid.to(torch.float32) * float(w[t]))[..., None]
        out[:, y0:y1, :] = acc.permute(0, 2, 1).cpu().numpy()
        if progress:
            progress(y1 - y0)


def reconstruction_origin(
    n_u0: int,
    bin: int = 1,
    *,
    thickness: int | None = None,
    z_range: tuple[int, int] | None = None,
    volume_z: int | None = None,
) -> tuple[float, float, float]:
    """``(x, y, z)`` original (unbinned) voxel coordinates of the centre of :func:`reconstruct`'s output voxel
    ``(0, 0, 0)``, for a tilt-series ``n_u0`` pixels wide: binned voxel ``i`` covers original indices
    ``[i*bin, i*bin + bin)`` (X, Y: ``(bin-1)/2``); Z: ``a + (bin-1)/2`` with ``z_range=(a, b)``, else the
    first of ``thickness`` planes centred on the tilt axis, which sits at the centre ``(volume_z - 1)/2`` of a
    volume of Z size ``volume_z`` (default: ``n_u0``, as :func:`reconstruct`). Times the unbinned voxel size:
    the tomogram's MRC header origin (Angstrom), the same as ``faket labels`` writes on its masks."""
    b = int(bin)
    h = (b - 1) / 2.0
    if z_range is not None:
        return (h, h, float(z_range[0]) + h)
    nz0 = int(volume_z or n_u0)
    nz = int(thickness or n_u0 // b)
    return (h, h, (nz0 - 1) / 2.0 - (nz - 1) / 2.0 * b)


def reconstruct(
    tilts: np.ndarray,
    angles_deg: Sequence[float],
    *,
    filter: str = "ramp",
    bin: int = 1,
    thickness: int | None = None,
    z_range: tuple[int, int] | None = None,
    volume_z: int | None = None,
    device=None,
    chunk_y: int | None = None,
    progress: Callable[[int], None] | None = None,
    backend: str = "auto",
) -> np.ndarray:
    """Weighted (filtered) back-projection of a ``(T, Y, U)`` tilt-series into a ``(Z, Y', X')`` volume.

    Steps: (1) bin the tilts by ``bin`` (block mean, see :func:`bin_stack`); (2) filter every row along
    U (:func:`ramp_filter` of kind ``filter``); (3) back-project with the geometry of :func:`project`,
    each tilt weighted by its angular interval (:func:`angle_weights`), so that a full, evenly sampled
    range reproduces the densities of the projected volume (line-integral units per voxel).

    Output Z (in output voxels of size ``bin``): ``thickness`` planes centred on the rotation axis, or
    with ``z_range=(a, b)`` the slab of original volume indices ``[a, b)`` of a volume with Z size
    ``volume_z`` (default: the unbinned detector width), i.e. output plane k lies at original index
    ``a + k*bin + (bin-1)/2``. X' = U // bin, Y' = Y // bin; the rotation axis stays at the original
    ``(U-1)/2``, so binned voxel ``i`` covers original indices ``[i*bin, i*bin + bin)``.
    """
    a = _check_angles(angles_deg)
    if tilts.ndim != 3 or tilts.shape[0] != a.size:
        raise InputError(f"tilt-series of shape {tilts.shape} does not match {a.size} angles")
    b = int(bin)
    if b < 1:
        raise InputError(f"--bin {bin}: must be at least 1")
    n_u0 = tilts.shape[2]
    binned = bin_stack(tilts, b)
    n_ub = binned.shape[2]
    # positions in binned units of the rotation axis (original centre (U0-1)/2)
    c_b = ((n_u0 - 1) / 2.0 - (b - 1) / 2.0) / b
    if z_range is not None and thickness is not None:
        raise InputError("give either --thickness or --z-range, not both")
    if z_range is not None:
        za, zb = z_range
        nz0 = int(volume_z or n_u0)
        n_out = (zb - za) // b
        if n_out < 1:
            raise InputError(f"--z-range {za}:{zb} is thinner than one binned voxel (bin {b})")
        z_orig = za + np.arange(n_out) * b + (b - 1) / 2.0
        z_off = (z_orig - (nz0 - 1) / 2.0) / b
    else:
        nz = int(thickness or n_ub)
        if nz < 1:
            raise InputError(f"--thickness {thickness}: must be at least 1")
        z_off = np.arange(nz) - (nz - 1) / 2.0
    w = angle_weights(a)
    # ramp_filter response is 2|f| (cycles/sample); FBP: f = sum_t dtheta_t * (p_t * |f|) -> factor 1/2
    w = w * 0.5
    small = _use_numba(device, backend) and _small(backend, a.size * z_off.size * n_ub * binned.shape[1])
    filt = filter_projections(binned, filter, small=small)
    return backproject(
        filt,
        a,
        z_off,
        n_x=n_ub,
        weights=w,
        center_u=c_b,
        center_x=c_b,
        device=device,
        chunk_y=chunk_y,
        progress=progress,
        backend=backend,
    )
