"""Tilt angles, acquisition order and dose of a tilt-series, from the files microscopes and packages write.

Formats (:func:`read_tilt_metadata`; the format is chosen by the file name, the content decides the variant):

- IMOD ``.tlt`` / ``.rawtlt``: one angle in degrees per line, in stack order (``.rawtlt``: the nominal angles
  before alignment, as ``extracttilts`` / SerialEM write them). No order or dose.
- SerialEM ``.mdoc`` (read with teamtomo's ``mdocfile``): one ``[ZValue = i]`` section per image of the stack,
  ``TiltAngle`` per section. Acquisition order from ``DateTime`` when every section has one, else from
  ``PriorRecordDose``; dose before each image from ``PriorRecordDose``, else accumulated ``ExposureDose`` in
  acquisition order. The pixel size (``PixelSpacing``, Angstrom) applies to the stack when its size equals
  ``ImageSize`` (or an integer binning of it).
- STAR (``starfile``): RELION 5 tilt-series STAR (per-tilt ``rlnTomoNominalStageTiltAngle`` and, after
  alignment, ``rlnTomoYTilt`` (preferred); dose ``rlnMicrographPreExposure``); RELION 5 ``tilt_series.star``
  (global table pointing at per-tilt-series STAR files); RELION / Warp ``tomograms.star`` with per-tilt
  projection matrices ``rlnTomoProjX/Y/Z/W`` (tilt = the Y angle of the ZYX decomposition of the rotation,
  RELION 5's ``Rz(ZRot) Ry(YTilt) Rx(XTilt)``) and ``rlnMicrographPreExposure``; Warp ``.tomostar``
  (``wrpAngleTilt``, ``wrpDose``). A STAR file holding several tilt-series is resolved by the stack's name
  (the block whose name starts the stack's file name or names its folder), or explicitly as ``F.star:NAME``.

Found automatically beside ``X.mrc`` (:func:`find_tilt_metadata`): ``X.tlt``, ``X.rawtlt``, ``X.mrc.mdoc``,
``X.mdoc``, ``X.star``, ``X.tomostar`` (first that exists).
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from faket.errors import InputError
from faket.formats.mrc import MrcData, read_mrc

__all__ = [
    "TiltMeta",
    "read_tilt_metadata",
    "read_angles",
    "find_tilt_metadata",
    "METADATA_SUFFIXES",
    "parse_exclude",
    "angle_order",
    "read_tiltseries",
    "check_angles",
    "read_tlt",
    "write_tlt",
    "tlt_path",
    "parse_angles",
]

#: suffixes looked for beside X.mrc, in this order (".mrc.mdoc" means X.mrc.mdoc)
METADATA_SUFFIXES = (".tlt", ".rawtlt", ".mrc.mdoc", ".mdoc", ".star", ".tomostar")


@dataclass
class TiltMeta:
    """Per-tilt metadata in stack order. ``order[i]``: acquisition rank of stack tilt ``i`` (0 = first exposed;
    ``None`` unknown); ``dose[i]``: electrons/A^2 received before tilt ``i`` (``None`` unknown);
    ``pixel_size_a``: the stack's pixel size when the metadata states it for this stack."""

    angles: np.ndarray
    source: Path
    format: str
    order: np.ndarray | None = None
    dose: np.ndarray | None = None
    pixel_size_a: float | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "source": str(self.source),
            "format": self.format,
            "angles_deg": [round(float(a), 4) for a in self.angles],
            "acquisition_order": None if self.order is None else [int(o) for o in self.order],
            "pre_exposure_e_per_a2": None if self.dose is None else [round(float(d), 4) for d in self.dose],
            "pixel_size_a": self.pixel_size_a,
            "notes": list(self.notes),
        }

    def take(self, idx) -> TiltMeta:
        idx = np.asarray(idx, dtype=np.int64)
        return TiltMeta(
            self.angles[idx],
            self.source,
            self.format,
            None if self.order is None else self.order[idx],
            None if self.dose is None else self.dose[idx],
            self.pixel_size_a,
            list(self.notes),
        )


def find_tilt_metadata(mrc_path: str | os.PathLike) -> Path | None:
    """The first of ``X.tlt``, ``X.rawtlt``, ``X.mrc.mdoc``, ``X.mdoc``, ``X.star``, ``X.tomostar`` that exists."""
    p = Path(mrc_path)
    for suf in METADATA_SUFFIXES:
        c = Path(str(p) + ".mdoc") if suf == ".mrc.mdoc" else p.with_suffix(suf)
        if c.is_file():
            return c
    return None


def _kind(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".mdoc"):
        return "mdoc"
    if name.endswith(".star") or name.endswith(".tomostar"):
        return "star"
    return "tlt"


def read_angles(path: str | os.PathLike, *, stack: str | os.PathLike | None = None) -> np.ndarray:
    """Angles (degrees, stack order) from any supported metadata file (see the module doc)."""
    return read_tilt_metadata(path, stack=stack).angles


def read_tilt_metadata(
    path: str | os.PathLike, *, stack: str | os.PathLike | None = None, stack_shape: tuple[int, ...] | None = None
) -> TiltMeta:
    """Read tilt metadata; ``stack`` (the tilt-series file) selects a tilt-series inside a multi-series STAR
    file; ``stack_shape`` ``(T, Y, X)`` validates an mdoc's ``ImageSize`` before its pixel size is used."""
    spec = str(path)
    name = None
    p = Path(spec)
    if not p.exists() and ":" in spec:
        head, tail = spec.rsplit(":", 1)
        if Path(head).exists() and tail:
            p, name = Path(head), tail
    if not p.exists():
        raise InputError(f"{p}: angles file not found")
    if p.is_dir():
        raise InputError(f"{p}: is a folder, expected an angles file (.tlt, .rawtlt, .mdoc or .star)")
    kind = _kind(p)
    if kind == "tlt":
        a = read_tlt(p)
        return TiltMeta(a, p, "rawtlt" if p.suffix.lower() == ".rawtlt" else "tlt")
    if kind == "mdoc":
        return _read_mdoc(p, stack_shape)
    return _read_star(p, stack, name)


# --------------------------------------------------------------------------------------------------
# SerialEM .mdoc


def _parse_datetime(s) -> datetime | None:
    if not isinstance(s, str):
        return None
    s = " ".join(s.split())
    for fmt in ("%d-%b-%y %H:%M:%S", "%d-%b-%Y %H:%M:%S", "%Y-%m-%d %H:%M:%S", "%d-%b-%y %H:%M"):
        try:
            return datetime.strptime(s, fmt)
        except ValueError:
            continue
    return None


def _column(df, name):
    if name not in df.columns:
        return None
    v = df[name].to_numpy()
    try:
        v = v.astype(np.float64)
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v).all() else None


def _read_mdoc(p: Path, stack_shape) -> TiltMeta:
    # lazy: mdocfile
    import mdocfile

    log = logging.getLogger("mdocfile")  # it warns about every aliased / unknown key of real files
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        df = mdocfile.read(p)
    except Exception as exc:  # mdocfile raises pydantic / value errors on malformed files
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{p}: not a readable SerialEM .mdoc ({msg})") from None
    finally:
        log.setLevel(level)
    if "TiltAngle" not in df.columns or len(df) == 0:
        raise InputError(f"{p}: no [ZValue] sections with TiltAngle (is it a frame-set or montage .mdoc?)")
    if "ZValue" in df.columns and df["ZValue"].notna().all():
        df = df.sort_values("ZValue", kind="stable").reset_index(drop=True)
        z = df["ZValue"].to_numpy().astype(int)
        if not np.array_equal(z, np.arange(len(df))):
            raise InputError(f"{p}: ZValue sections are not 0..{len(df) - 1} (got {z.tolist()[:6]}...)")
    ang = _column(df, "TiltAngle")
    if ang is None:
        raise InputError(f"{p}: a section has no numeric TiltAngle")
    notes = []
    order = None
    if "DateTime" in df.columns:
        times = [_parse_datetime(s) for s in df["DateTime"]]
        if all(t is not None for t in times):
            secs = np.array([(t - times[0]).total_seconds() for t in times])
            order = np.argsort(np.argsort(secs, kind="stable"), kind="stable")
            notes.append("acquisition order from DateTime")
    prior = _column(df, "PriorRecordDose")
    if order is None and prior is not None:
        order = np.argsort(np.argsort(prior, kind="stable"), kind="stable")
        notes.append("acquisition order from PriorRecordDose")
    dose = None
    if prior is not None:
        dose = prior
        notes.append("dose from PriorRecordDose")
    else:
        exp = _column(df, "ExposureDose")
        if exp is not None and order is not None and (exp > 0).any():
            acq = np.argsort(order)  # stack indices in acquisition order
            cum = np.concatenate([[0.0], np.cumsum(exp[acq])[:-1]])
            dose = np.empty_like(cum)
            dose[acq] = cum
            notes.append("dose accumulated from ExposureDose in acquisition order")
    if order is None:
        notes.append("no DateTime or PriorRecordDose: acquisition order unknown")
    pix = None
    ps = _column(df, "PixelSpacing")
    if ps is not None and ps[0] > 0 and not math.isclose(ps[0], 1.0):
        pix = float(ps[0])
        if stack_shape is not None and "ImageSize" in df.columns:
            size = df["ImageSize"].iloc[0]
            try:
                sx, sy = int(size[0]), int(size[1])
            except (TypeError, ValueError, IndexError):
                sx = sy = None
            if sx:
                ny, nx = int(stack_shape[-2]), int(stack_shape[-1])
                bx, by = sx / nx, sy / ny
                if math.isclose(bx, by, rel_tol=1e-3) and abs(bx - round(bx)) < 1e-3 and round(bx) >= 1:
                    pix = pix * round(bx)
                    if round(bx) > 1:
                        notes.append(f"stack is {round(bx)}x binned from ImageSize {sx}x{sy}")
                else:
                    notes.append(f"PixelSpacing not used: ImageSize {sx}x{sy} does not match the stack {nx}x{ny}")
                    pix = None
    return TiltMeta(ang, p, "mdoc", order, dose, pix, notes)


# --------------------------------------------------------------------------------------------------
# STAR (RELION 5, Warp)


def _vec(s) -> np.ndarray:
    if isinstance(s, (list, tuple, np.ndarray)):
        return np.asarray(s, dtype=np.float64)
    return np.asarray([float(x) for x in str(s).strip().strip("[]").split(",")], dtype=np.float64)


def _block_name(key: str) -> str:
    n = key[5:] if key.startswith("data_") else key
    for suf in (".tomostar", ".mrc", ".st", ".mrcs"):
        if n.lower().endswith(suf):
            n = n[: -len(suf)]
    return n


_TILT_COLS = ("rlnTomoYTilt", "rlnTomoNominalStageTiltAngle", "rlnTomoProjZ", "wrpAngleTilt")


def _read_star(p: Path, stack, name: str | None) -> TiltMeta:
    # lazy: starfile
    import starfile

    try:
        blocks = starfile.read(p, always_dict=True)
    except Exception as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{p}: not a readable STAR file ({msg})") from None
    blocks = {k: v for k, v in blocks.items() if hasattr(v, "columns")}
    tilt_blocks = {k: v for k, v in blocks.items() if any(c in v.columns for c in _TILT_COLS)}
    if not tilt_blocks:
        # RELION 5 tilt_series.star: a global table pointing at one STAR file per tilt-series
        for v in blocks.values():
            if "rlnTomoTiltSeriesStarFile" in v.columns and "rlnTomoName" in v.columns:
                names = [str(n) for n in v["rlnTomoName"]]
                k = _select(names, stack, name, p)
                target = Path(str(v["rlnTomoTiltSeriesStarFile"].iloc[k]))
                for base in (p.parent, *p.parent.parents):
                    cand = target if target.is_absolute() else base / target
                    if cand.is_file():
                        return _read_star(cand, stack, names[k])
                raise InputError(f"{p}: tilt-series STAR file {target} of {names[k]} not found")
        raise InputError(
            f"{p}: no per-tilt table (rlnTomoNominalStageTiltAngle, rlnTomoYTilt, rlnTomoProjX..Z "
            "or wrpAngleTilt) in this STAR file"
        )
    keys = list(tilt_blocks)
    k = _select([_block_name(x) for x in keys], stack, name, p)
    key = keys[k]
    df = tilt_blocks[key]
    notes = [f"block {key}"]
    if "rlnTomoYTilt" in df.columns:
        ang = df["rlnTomoYTilt"].to_numpy(np.float64)
        fmt = "relion5-star"
        notes.append("angles from rlnTomoYTilt (aligned)")
    elif "rlnTomoNominalStageTiltAngle" in df.columns:
        ang = df["rlnTomoNominalStageTiltAngle"].to_numpy(np.float64)
        fmt = "relion5-star"
        notes.append("angles from rlnTomoNominalStageTiltAngle")
    elif "wrpAngleTilt" in df.columns:
        ang = df["wrpAngleTilt"].to_numpy(np.float64)
        fmt = "warp-tomostar"
    else:
        # lazy: scipy
        from scipy.spatial.transform import Rotation

        try:
            M = np.stack(
                [
                    np.stack(
                        [
                            _vec(df["rlnTomoProjX"].iloc[i])[:3],
                            _vec(df["rlnTomoProjY"].iloc[i])[:3],
                            _vec(df["rlnTomoProjZ"].iloc[i])[:3],
                        ]
                    )
                    for i in range(len(df))
                ]
            )
        except (KeyError, ValueError) as exc:
            raise InputError(f"{p}: block {key}: unreadable rlnTomoProjX/Y/Z matrices ({exc})") from None
        ang = Rotation.from_matrix(M).as_euler("ZYX", degrees=True)[:, 1]
        fmt = "relion-tomograms-star"
        notes.append("angles = Y of the ZYX decomposition of rlnTomoProjX/Y/Z")
    dose = None
    for c in ("rlnMicrographPreExposure", "wrpDose"):
        if c in df.columns:
            dose = df[c].to_numpy(np.float64)
            notes.append(f"dose from {c}")
            break
    order = None
    if dose is not None:
        order = np.argsort(np.argsort(dose, kind="stable"), kind="stable")
        notes.append("acquisition order from the dose")
    if not np.isfinite(ang).all():
        raise InputError(f"{p}: block {key}: tilt angles contain NaN/Inf")
    return TiltMeta(ang, p, fmt, order, dose, None, notes)


def _select(names: list[str], stack, name: str | None, p: Path) -> int:
    if name is not None:
        for i, n in enumerate(names):
            if n == name or _block_name(n) == name:
                return i
        raise InputError(f"{p}: no tilt-series named {name!r} (has: {', '.join(names)})")
    if len(names) == 1:
        return 0
    if stack is not None:
        sp = Path(stack)
        stem = sp.name
        hits = [
            i
            for i, n in enumerate(names)
            if n and (stem == n or stem.startswith(n + "_") or stem.startswith(n + ".") or sp.parent.name == n)
        ]
        if len(hits) == 1:
            return hits[0]
    raise InputError(
        f"{p}: holds {len(names)} tilt-series ({', '.join(names[:8])}); name one as --angles-file {p}:NAME"
    )


# --------------------------------------------------------------------------------------------------
# helpers


def angle_order(angles) -> np.ndarray:
    """Stack indices sorted by angle (stable): the permutation that puts a dose-symmetric stack in tilt order."""
    return np.argsort(np.asarray(angles, dtype=np.float64), kind="stable")


def parse_exclude(spec: str | None, n_tilts: int, *, option: str = "--exclude-tilts") -> np.ndarray:
    """``"1,5,40-41"`` (1-based tilt numbers in stack order, ranges inclusive, as IMOD's EXCLUDELIST) -> sorted
    0-based indices. Raises :class:`InputError` on bad syntax or numbers outside ``1..n_tilts``."""
    if spec is None or not str(spec).strip():
        return np.zeros(0, dtype=np.int64)
    out = set()
    for part in str(spec).split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part[1:]:
                a, b = part.split("-", 1)
                lo, hi = int(a), int(b)
            else:
                lo = hi = int(part)
        except ValueError:
            raise InputError(f"{option} {spec}: {part!r} is not a tilt number or a range like 40-41") from None
        if lo > hi:
            raise InputError(f"{option} {spec}: range {part} runs backwards")
        if lo < 1 or hi > n_tilts:
            raise InputError(
                f"{option} {spec}: tilt {lo if lo < 1 else hi} outside 1..{n_tilts} "
                "(tilt numbers start at 1, in stack order)"
            )
        out.update(range(lo - 1, hi))
    return np.asarray(sorted(out), dtype=np.int64)


# ---------------------------------------------------------------------------------------------------
# IMOD .tlt files, angle specs, and a tilt-series with its angles


def read_tiltseries(
    path: str | os.PathLike,
    angles_file: str | os.PathLike | None = None,
    *,
    require_angles: bool = True,
    allow_single: bool = False,
    what: str = "tilt-series",
) -> tuple[MrcData, np.ndarray | None]:
    """Read a ``(tilt, Y, X)`` stack and its angles (from ``angles_file`` or ``X.tlt`` beside it; any format of
    :mod:`faket.formats.tiltmeta`: ``.tlt``, ``.rawtlt``, SerialEM ``.mdoc``, RELION 5 / Warp STAR).

    With ``allow_single``, a 2-D image is accepted as a one-tilt stack (angles may then be missing).
    Returns the data (always 3-D) and the angles in degrees (``None`` when absent and not required).
    """
    ndims = (2, 3) if allow_single else (3,)
    m = read_mrc(path, ndim=ndims, what=what)
    if m.data.ndim == 2:
        m.data = m.data[None]
    tlt = Path(angles_file) if angles_file is not None else (find_tilt_metadata(path) or tlt_path(path))
    angles = None
    if angles_file is not None or tlt.exists():
        angles = read_angles(angles_file if angles_file is not None else tlt, stack=path)
    elif require_angles and not (allow_single and m.data.shape[0] == 1):
        raise InputError(f"{m.path}: no tilt angles: expected {tlt} beside it (or pass --angles-file)")
    if angles is not None:
        check_angles(angles, m.data.shape[0], source=tlt, stack=m.path)
    return m, angles


def check_angles(angles: np.ndarray, n_tilts: int | None, *, source, stack=None) -> None:
    """Validate tilt angles: finite, |angle| < 90, and one per tilt of the stack."""
    if angles.size == 0:
        raise InputError(f"{source}: no tilt angles")
    if not np.isfinite(angles).all():
        raise InputError(f"{source}: tilt angles contain NaN/Inf")
    bad = np.abs(angles) >= 90
    if bad.any():
        raise InputError(f"{source}: tilt angle {angles[bad][0]:g} deg is out of range (|angle| must be < 90)")
    if n_tilts is not None and angles.size != n_tilts:
        where = f" but {stack} has {n_tilts} tilts" if stack is not None else f" but {n_tilts} are needed"
        raise InputError(f"{source}: {angles.size} tilt angles{where}")


def tlt_path(mrc_path: str | os.PathLike) -> Path:
    """``X.mrc`` -> ``X.tlt``."""
    p = Path(mrc_path)
    return p.with_suffix(".tlt")


def read_tlt(path: str | os.PathLike) -> np.ndarray:
    """Read an IMOD-style angle file (one number per line; blank lines and ``#`` comments ignored)."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: angles file not found")
    vals = []
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{p}: cannot read angles file ({exc})") from None
    for i, line in enumerate(text.splitlines(), start=1):
        s = line.split("#", 1)[0].strip()
        if not s:
            continue
        try:
            vals.append(float(s.split()[0]))
        except ValueError:
            raise InputError(f"{p}: line {i}: not an angle: {line.strip()!r}") from None
    return np.asarray(vals, dtype=np.float64)


def write_tlt(path: str | os.PathLike, angles_deg: Sequence[float]) -> None:
    """Write angles, one per line, with enough digits to round-trip float32 input exactly."""
    text = "".join(f"{float(a):.6g}\n" for a in angles_deg)
    Path(path).write_text(text)


_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"


def parse_angles(spec: str) -> np.ndarray:
    """Parse an angle spec in degrees.

    ``"-60:60:2"`` is start:stop:step with both ends included (when stop is on the grid);
    ``"-60:60"`` uses step 1; ``"-60,-30,0,30"`` is an explicit list; a single number is one angle.
    """
    s = spec.strip()
    if re.fullmatch(rf"{_NUM}(?::{_NUM}){{1,2}}", s):
        parts = [float(x) for x in s.split(":")]
        start, stop = parts[0], parts[1]
        step = parts[2] if len(parts) == 3 else 1.0
        if step == 0:
            raise InputError(f"--angles {spec}: step must not be 0")
        if (stop - start) * step < 0:
            raise InputError(f"--angles {spec}: step {step:g} does not go from {start:g} to {stop:g}")
        n = int(np.floor((stop - start) / step + 1e-9)) + 1
        return start + step * np.arange(n, dtype=np.float64)
    if re.fullmatch(rf"{_NUM}(?:\s*,\s*{_NUM})*", s):
        return np.asarray([float(x) for x in s.split(",")], dtype=np.float64)
    raise InputError(f"--angles {spec!r}: expected start:stop:step (e.g. -60:60:2) or a comma list")
