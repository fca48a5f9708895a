"""File formats: MRC volumes and tilt-series, IMOD ``.tlt`` angle files, angle specs, atomic writes.

Conventions
-----------
- Volumes are ``(Z, Y, X)`` float32 arrays; tilt-series are ``(tilt, Y, X)``; the tilt axis is Y.
- Voxel / pixel sizes are in Angstrom (``voxel_size_a``). MRC headers often carry 0 or 1 when the
  size is unknown: :func:`read_mrc` reports that as ``None`` so callers can say what they assume.
- The angles of ``X.mrc`` live beside it in ``X.tlt`` (one angle in degrees per line, IMOD style).
- Every writer here writes to a temporary file in the target folder and renames it into place, so a
  failed run never leaves a partial output (see :class:`OutputTransaction`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import mrcfile
import numpy as np

from faket.errors import InputError

__all__ = [
    "MrcData",
    "read_mrc",
    "read_mrc_header",
    "voxel_size_or_none",
    "read_volume",
    "write_mrc",
    "sidecar_path",
    "parse_range",
    "sha256sum",
    "OutputTransaction",
]


@dataclass
class MrcData:
    """An MRC file's data and its voxel size in Angstrom (``None`` when the header has none)."""

    data: np.ndarray
    voxel_size_a: float | None
    path: Path


def voxel_size_or_none(voxel_size) -> float | None:
    """The voxel size (Angstrom) an MRC header's ``voxel_size`` (x, y, z record or a number) stands for.

    ``None`` when unset: no positive finite value (0 is MRC's "unset"), or 1.0, which many tools write
    when they do not know it. Otherwise the first positive finite of x, y, z. The one place faket decides it.
    """
    if hasattr(voxel_size, "x"):
        vals = [float(voxel_size.x), float(voxel_size.y), float(voxel_size.z)]
    else:
        vals = [float(v) for v in np.atleast_1d(voxel_size)]
    positive = [v for v in vals if v > 0 and np.isfinite(v)]
    if not positive or abs(positive[0] - 1.0) < 1e-6:
        return None
    return positive[0]


def read_mrc_header(path: str | os.PathLike, what: str = "MRC file") -> tuple[tuple[int, ...], float | None]:
    """``(shape, voxel_size_a or None)`` from an MRC header, without reading the data.

    ``shape`` is ``(nz, ny, nx)`` (for a tilt-series: tilts, Y, X).
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: {what} not found" if not p.exists() else f"{p}: is a folder, expected a {what}")
    try:
        with mrcfile.open(p, mode="r", header_only=True, permissive=False) as m:
            h = m.header
            shape = (int(h.nz), int(h.ny), int(h.nx))
            vs = voxel_size_or_none(m.voxel_size)
    except (ValueError, OSError, EOFError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{p}: not a valid {what} ({msg})") from None
    return shape, vs


def readable_file(path: str | os.PathLike, what: str) -> Path:
    """``path`` as a Path when it is a readable file; else :class:`InputError` naming it and the problem."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: {what} not found")
    if p.is_dir():
        raise InputError(f"{p}: is a folder, expected a {what}")
    if not os.access(p, os.R_OK):
        raise InputError(f"{p}: {what} is not readable (permission denied)")
    return p


def mrc_open_error(path: Path, what: str, exc: BaseException) -> InputError:
    """The one-line error for an MRC file that mrcfile could not open: truncated/corrupt, or not MRC."""
    msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    low = msg.lower()
    if "smaller than" in low or "truncat" in low or "could not read" in low or "expected" in low:
        return InputError(f"{path}: {what} is truncated or corrupt ({msg})")
    return InputError(f"{path}: not a valid {what} ({msg})")


def read_mrc(
    path: str | os.PathLike,
    *,
    ndim: int | Sequence[int] | None = None,
    what: str = "MRC file",
    allow_nonfinite: bool = False,
) -> MrcData:
    """Read an MRC file fully into memory as float32 with validation.

    Raises :class:`InputError` (naming the file) when the file is missing, unreadable, not MRC,
    truncated, has an unexpected number of dimensions, an empty axis, or NaN/Inf values.
    """
    p = readable_file(path, what)
    try:
        with mrcfile.open(p, mode="r", permissive=False) as mrc:
            if mrc.data is None:
                raise InputError(f"{p}: {what} has no data block")
            data = np.asarray(mrc.data)
            voxel = voxel_size_or_none(mrc.voxel_size)
    except InputError:
        raise
    except (ValueError, OSError, EOFError, RuntimeError) as exc:
        raise mrc_open_error(p, what, exc) from None
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if data.ndim not in allowed:
            exp = " or ".join(f"{d}-D" for d in allowed)
            raise InputError(f"{p}: {what} must be {exp}, got {data.ndim}-D array of shape {data.shape}")
    if data.size == 0 or 0 in data.shape:
        raise InputError(f"{p}: {what} has an empty axis (shape {data.shape})")
    if np.iscomplexobj(data):
        raise InputError(f"{p}: {what} holds complex values; expected real densities")
    try:  # native float32: keep mrcfile's own read buffer (no second copy: 4 GB for a 1024^3 volume)
        if data.dtype != np.float32 or not data.dtype.isnative or not data.flags.c_contiguous:
            raise ValueError
        data.flags.writeable = True
    except ValueError:
        data = data.astype(np.float32, copy=True)
    if not allow_nonfinite:
        flat = data.reshape(-1)
        step = 1 << 24  # in chunks: no boolean array of the whole volume
        n = sum(int(np.count_nonzero(~np.isfinite(flat[i : i + step]))) for i in range(0, flat.size, step))
        if n:
            raise InputError(f"{p}: {what} contains {n} NaN/Inf values")
    return MrcData(data=data, voxel_size_a=voxel, path=p)


def read_volume(path: str | os.PathLike, what: str = "volume") -> MrcData:
    """Read a 3-D ``(Z, Y, X)`` MRC volume."""
    return read_mrc(path, ndim=3, what=what)


def sidecar_path(mrc_path: str | os.PathLike) -> Path:
    """``X.mrc`` -> ``X.json`` (the provenance sidecar)."""
    p = Path(mrc_path)
    return p.with_suffix(".json")


def parse_range(spec: str, name: str = "--z-range") -> tuple[int, int]:
    """Parse ``a:b`` into a half-open integer range."""
    m = re.fullmatch(r"\s*([-+]?\d+)\s*:\s*([-+]?\d+)\s*", spec)
    if not m:
        raise InputError(f"{name} {spec!r}: expected a:b with integers")
    a, b = int(m.group(1)), int(m.group(2))
    if b <= a:
        raise InputError(f"{name} {spec!r}: end must be larger than start")
    return a, b


def sha256sum(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def write_mrc(
    path: str | os.PathLike, data: np.ndarray, voxel_size_a: float | None, *, image_stack: bool = False, origin_a=None
) -> None:
    """Write ``data`` as float32 MRC (overwriting). ``image_stack`` marks a tilt-series (ispg 0);
    ``origin_a`` = (x, y, z) header origin in Angstrom: where voxel (0, 0, 0) sits in the full volume."""
    arr = np.ascontiguousarray(data, dtype=np.float32)
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(arr)
        if image_stack and arr.ndim == 3:
            mrc.set_image_stack()
        elif arr.ndim == 3:
            mrc.set_volume()
        if voxel_size_a is not None and voxel_size_a > 0:
            mrc.voxel_size = float(voxel_size_a)
        if origin_a is not None:
            mrc.header.origin = tuple(float(v) for v in origin_a)
        _set_header_stats(mrc.header, arr)


def _set_header_stats(header, arr: np.ndarray) -> None:
    """min / max / mean / rms header fields, computed in slabs (float64 sums of float32 slabs): as exact
    as mrcfile's ``update_header_stats`` without its whole-array float64 temporaries."""
    flat = arr.reshape(arr.shape[0], -1) if arr.ndim > 1 else arr.reshape(1, -1)
    n = arr.size
    lo, hi, s1 = np.inf, -np.inf, 0.0
    step = max(1, (16 << 20) // max(1, flat.shape[1] * 4))
    for i in range(0, flat.shape[0], step):
        blk = flat[i : i + step]
        lo = min(lo, float(blk.min()))
        hi = max(hi, float(blk.max()))
        s1 += float(blk.sum(dtype=np.float64))
    mean = s1 / n
    s2 = 0.0
    for i in range(0, flat.shape[0], step):
        d = flat[i : i + step] - np.float32(mean)
        s2 += float(np.einsum("ij,ij->", d, d, dtype=np.float64))
    header.dmin, header.dmax, header.dmean = lo, hi, mean
    header.rms = float(np.sqrt(s2 / n))


class OutputTransaction:
    """Collect outputs as temporary files in their target folders; rename all at commit.

    >>> with OutputTransaction() as tx:                      # doctest: +SKIP
    ...     tmp = tx.path("out/TILTS.mrc")    # write to tmp
    ...     write_mrc(tmp, arr, 10.0)
    # leaving the block without error renames every temp file to its target; an exception removes them.
    """

    def __init__(self) -> None:
        self._pairs: list[tuple[Path, Path]] = []

    def path(self, target: str | os.PathLike) -> Path:
        target = Path(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}{target.suffix}"
        self._pairs.append((tmp, target))
        return tmp

    @property
    def targets(self) -> list[Path]:
        return [t for _, t in self._pairs]

    def commit(self) -> None:
        for tmp, target in self._pairs:
            if tmp.exists():
                os.replace(tmp, target)
        self._pairs.clear()

    def rollback(self) -> None:
        for tmp, _ in self._pairs:
            with contextlib.suppress(FileNotFoundError):
                if tmp.is_dir():
                    import shutil

                    shutil.rmtree(tmp)
                else:
                    tmp.unlink()
        self._pairs.clear()

    def __enter__(self) -> OutputTransaction:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            self.commit()
        else:
            self.rollback()
        return False
