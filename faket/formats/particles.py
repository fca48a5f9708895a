"""Particle tables: CSV, RELION 5 STAR, SHREC 2021 ``particle_locations.txt`` and DeepFinder XML.

The table is a pandas DataFrame with exactly the columns :data:`COLUMNS`::

    particle_id  class_id  class_name  x  y  z  rot  tilt  psi

- ``particle_id`` (int >= 1) is the value of the particle's voxels in ``occupancy_mask.mrc``;
  ``class_id`` (int >= 1) the value in ``class_mask.mrc``; ``class_name`` its label.
- ``x, y, z``: the particle centre in voxels of ``volume.mrc`` (0 = centre of the first voxel;
  x = MRC column = array axis 2, z = array axis 0).
- ``rot, tilt, psi``: RELION Euler angles in degrees (ZYZ intrinsic; the matrix rotates the template
  into the particle, see :mod:`faket.rotation`).

Formats (chosen by suffix in :func:`read_particles`):

- ``.csv``: the columns above with a header line (extra columns are ignored; order free).
- ``.star``: RELION 5 tomography particles: ``rlnTomoName``, ``rlnCenteredCoordinate{X,Y,Z}Angst``
  (Angstrom from the tomogram centre), ``rlnAngleRot/Tilt/Psi``, ``rlnClassNumber`` (= class_id),
  ``rlnTomoParticleName`` (``<tomo>/<particle_id>``) and ``fakClassName`` (class label; an extra label
  RELION skips with a warning). RELION 5 takes the centre of an axis of N voxels at ``N / 2``:
  ``TomogramSet::loadTomogram`` sets ``centre = (w0/2.0, h0/2.0, d0/2.0)`` from rlnTomoSize{X,Y,Z} and
  ``ParticleSet::getParticleCoordDecenteredPixel`` computes ``pixel = centred_A / pixel_size + centre``
  (RELION 5 ``src/jaz/tomography``; pytom-match-pick's RELION 5 export also uses ``size / 2``). That is
  half a voxel from faket's geometric centre ``(N - 1) / 2``; we follow RELION:
  ``X_A = (x - N_x / 2) * voxel_size_a``, with x = 0 at the centre of the first voxel. A tomogram binned
  by B is centred on its bin-1 tomogram (N bin-1 pixels of p A; binned voxel i covers pixels
  ``[iB, iB + B)``): ``X_A = (x_b B + (B - 1) / 2 - N / 2) p``, the same Angstrom position in every binning
  (:func:`relion_centre`; the bin factor and bin-1 size are arguments of the writer and the readers).
  Reading needs the voxel size and the box (``--voxel-size``, ``box_zyx``). Older STAR files with
  ``rlnCoordinateX/Y/Z`` (voxels) are read as they are.
- ``.txt``: SHREC 2021 ``particle_locations.txt``: ``class x y z Z1 X Z2`` a line, angles ZXZ (Z1, X, Z2)
  as written by the SHREC 2021 simulator (see :mod:`faket.rotation`); NaN angles (vesicles, fiducials) read
  as 0. A line has 4 fields (``class x y z``: picks without angles, as SHREC submissions are scored) or 7;
  any other count (5, 6 or 8+) is refused: a line with part of its angles, or two lines run together,
  cannot be told from a valid one. Particle ids are the 1-based line order (as in SHREC's occupancy masks); class ids follow the
  order in which classes first appear.
- ``.xml``: a DeepFinder object list (``<objlist><object tomo_idx obj_id class_label x y z/>...``), the
  list DeepFinder's training samples patches from (with ``class_mask`` as its target) and the form of its
  picks. x, y, z in voxels as above; ``obj_id`` = particle_id, ``class_label`` = class_id; faket adds a
  ``class_name`` attribute (DeepFinder ignores it). Orientations are not written: DeepFinder's own
  ``phi/psi/the`` convention is not needed for training on faket's masks; read angles are 0.

Malformed rows raise :class:`~faket.errors.InputError` naming the file and the line number.
"""

from __future__ import annotations

import csv
import math
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from faket.errors import InputError, MissingGeometry
from faket.formats.table import _INT_COLS, COLUMNS, check_particles, empty_particles
from faket.rotation import relion_to_shrec, shrec_to_relion

__all__ = [
    "COLUMNS",
    "empty_particles",
    "check_particles",
    "read_particles",
    "write_particles_csv",
    "write_particles_star",
    "write_shrec_locations",
    "write_deepfinder_xml",
    "relion_centre",
    "Picks",
    "read_picks",
    "PICK_FORMATS",
]


# --------------------------------------------------------------------------------------------------
# reading


#: particle-list formats by suffix (``fmt`` of :func:`read_particles`)
FORMATS = {".csv": "csv", ".star": "star", ".txt": "shrec", ".xml": "deepfinder"}

#: fields of a SHREC ``particle_locations.txt`` line: ``class x y z`` or ``class x y z Z1 X Z2``
SHREC_FIELDS = (4, 7)


def _read_text(p: Path, what: str) -> str:
    if not p.exists():
        raise InputError(f"{p}: {what} not found")
    if p.is_dir():
        raise InputError(f"{p}: is a folder, expected a {what}")
    try:
        return p.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{p}: cannot read {what} ({exc})") from None


def _is_copick(path) -> bool:
    """A copick picks source: ``copick://PROJECT/RUN/OBJECT`` or a copick picks ``.json``."""
    return str(path).startswith("copick://") or str(path).lower().endswith(".json")


def read_particles(
    path: str | os.PathLike,
    *,
    voxel_size_a: float | None = None,
    box_zyx: Sequence[int] | None = None,
    fmt: str | None = None,
    what: str = "particle list",
    bin_factor: int = 1,
    unbinned_box_zyx: Sequence[int] | None = None,
) -> pd.DataFrame:
    """Read a particle table (``.csv``, ``.star``, SHREC ``.txt`` or DeepFinder ``.xml``) into the
    standard columns.

    ``fmt`` (``csv``, ``star``, ``shrec``, ``deepfinder``) overrides the suffix. ``voxel_size_a`` and
    ``box_zyx`` are needed only for RELION 5 STAR files (centred Angstrom coordinates); for a STAR file
    without them, ``rlnTomoTiltSeriesPixelSize`` is used when present. A STAR file of a tomogram binned by
    ``bin_factor`` (voxel size and box of the binned tomogram) is centred on its bin-1 tomogram
    (``unbinned_box_zyx``, default ``box_zyx * bin_factor``): :func:`relion_centre`.
    """
    if _is_copick(path):
        # lazy: pandas
        from faket.formats.copick import read_copick_particles

        return check_particles(read_copick_particles(str(path), voxel_size_a=voxel_size_a), str(path))
    p = Path(path)
    text = _read_text(p, what)
    if fmt is None:
        fmt = FORMATS.get(p.suffix.lower())
        if fmt is None:
            raise InputError(f"{p}: unknown {what} format {p.suffix.lower()!r} (expected .csv, .star, .txt or .xml)")
    if fmt == "csv":
        df = _read_csv(p, text)
    elif fmt == "star":
        df = _read_star(p, text, voxel_size_a, box_zyx, bin_factor, unbinned_box_zyx)
    elif fmt == "shrec":
        df = _read_shrec(p, text)
    elif fmt == "deepfinder":
        df = _read_deepfinder_xml(p, text)
    else:
        raise ValueError(f"unknown particle list format {fmt!r} (expected one of {sorted(set(FORMATS.values()))})")
    return check_particles(df, str(p))


def _num(p: Path, lineno: int, name: str, value: str, *, integer: bool = False, unit: str = "line"):
    s = value.strip()
    where = f"{unit} {lineno}"
    try:
        v = float(s)
    except ValueError:
        raise InputError(f"{p}: {where}: {name} is not a number: {value!r}") from None
    if integer:
        if not math.isfinite(v) or v != int(v):
            raise InputError(f"{p}: {where}: {name} must be an integer, got {value!r}")
        return int(v)
    if not math.isfinite(v):
        raise InputError(f"{p}: {where}: {name} is not finite: {value!r}")
    return v


def _read_csv(p: Path, text: str) -> pd.DataFrame:
    lines = text.splitlines()
    reader = csv.reader(lines)
    header = None
    rows: dict[str, list] = {c: [] for c in COLUMNS}
    for lineno, fields in enumerate(reader, start=1):
        if not fields or all(not f.strip() for f in fields) or fields[0].lstrip().startswith("#"):
            continue
        if header is None:
            header = [f.strip() for f in fields]
            missing = [c for c in COLUMNS if c not in header]
            if missing:
                raise InputError(
                    f"{p}: line {lineno}: header lacks column(s) {', '.join(missing)} (expected {','.join(COLUMNS)})"
                )
            idx = {c: header.index(c) for c in COLUMNS}
            continue
        if len(fields) != len(header):
            raise InputError(f"{p}: line {lineno}: {len(fields)} fields, header has {len(header)}")
        for c in COLUMNS:
            v = fields[idx[c]]
            if c == "class_name":
                if not v.strip():
                    raise InputError(f"{p}: line {lineno}: empty class_name")
                rows[c].append(v.strip())
            else:
                rows[c].append(_num(p, lineno, c, v, integer=c in _INT_COLS))
    if header is None:
        raise InputError(f"{p}: empty particle list (no header)")
    return pd.DataFrame(rows)


def _read_shrec(p: Path, text: str) -> pd.DataFrame:
    rows: dict[str, list] = {c: [] for c in COLUMNS}
    class_ids: dict[str, int] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        s = line.split("#", 1)[0].strip()
        if not s:
            continue
        parts = s.split()
        if len(parts) not in SHREC_FIELDS:
            raise InputError(
                f"{p}: line {lineno}: expected 'class x y z' or 'class x y z Z1 X Z2' "
                f"(4 or 7 fields), got {len(parts)}: {line.strip()!r}"
            )
        name = parts[0]
        xyz = [_num(p, lineno, n, v) for n, v in zip("xyz", parts[1:4])]
        if len(parts) == 7:
            ang = []
            for n, v in zip(("Z1", "X", "Z2"), parts[4:7]):
                try:
                    f = float(v)
                except ValueError:
                    raise InputError(f"{p}: line {lineno}: angle {n} is not a number: {v!r}") from None
                ang.append(f)
            if all(math.isnan(a) for a in ang):
                ang = [0.0, 0.0, 0.0]
            elif not all(math.isfinite(a) for a in ang):
                raise InputError(f"{p}: line {lineno}: angles must be three numbers or NaN NaN NaN")
            relion = shrec_to_relion(ang) if any(ang) else np.zeros(3)
        else:
            relion = np.zeros(3)
        cid = class_ids.setdefault(name, len(class_ids) + 1)
        rows["particle_id"].append(len(rows["particle_id"]) + 1)
        rows["class_id"].append(cid)
        rows["class_name"].append(name)
        for c, v in zip("xyz", xyz):
            rows[c].append(v)
        for c, v in zip(("rot", "tilt", "psi"), relion):
            rows[c].append(float(v))
    return pd.DataFrame(rows)


def _read_deepfinder_xml(p: Path, text: str) -> pd.DataFrame:
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise InputError(f"{p}: not a readable XML object list ({exc})") from None
    objs = [o for o in root if o.tag == "object"]
    rows = []
    for n, o in enumerate(objs, start=1):
        a = o.attrib
        missing = [k for k in ("class_label", "x", "y", "z") if k not in a]
        if missing:
            raise InputError(f"{p}: object {n}: missing attribute {missing[0]!r}")

        def num(key, integer=False, n=n, a=a):
            return _num(p, n, key, a[key], integer=integer, unit="object")

        cid = num("class_label", True)
        rows.append(
            {
                "particle_id": num("obj_id", True) if "obj_id" in a else n,
                "class_id": cid,
                "class_name": a.get("class_name", f"class{cid}"),
                "x": num("x"),
                "y": num("y"),
                "z": num("z"),
                "rot": 0.0,
                "tilt": 0.0,
                "psi": 0.0,
            }
        )
    return pd.DataFrame(rows, columns=list(COLUMNS)) if rows else empty_particles()


def relion_centre(
    box_zyx: Sequence[int], bin_factor: int = 1, unbinned_box_zyx: Sequence[int] | None = None
) -> np.ndarray:
    """RELION 5's tomogram centre, as ``(x, y, z)`` in voxels of a tomogram of ``box_zyx`` voxels binned by
    ``bin_factor``.

    RELION 5 centres coordinates on the bin-1 tomogram: ``N / 2`` pixels per axis, ``N`` = rlnTomoSize
    (``unbinned_box_zyx``, default ``box_zyx * bin_factor``; ``TomogramSet::loadTomogram``). A faket voxel
    ``i`` binned by ``B`` covers bin-1 pixels ``[iB, iB + B)``, centre ``iB + (B - 1) / 2``, so in binned
    voxels the centre is ``(N / 2 - (B - 1) / 2) / B``: a particle keeps its Angstrom position in every
    binning. ``bin_factor`` 1: ``N / 2``.
    """
    b = int(bin_factor)
    if b < 1:
        raise ValueError(f"bin factor {bin_factor}: must be >= 1")
    full = np.asarray(
        unbinned_box_zyx if unbinned_box_zyx is not None else [int(v) * b for v in box_zyx], dtype=np.float64
    )
    nz, ny, nx = full
    return (np.array([nx, ny, nz], dtype=np.float64) / 2 - (b - 1) / 2) / b


def _star_loop_first_data_line(text: str) -> int | None:
    """1-based line number of the first data row of the first loop holding rlnAngle/coordinates."""
    lines = text.splitlines()
    in_labels = False
    for i, line in enumerate(lines, start=1):
        s = line.strip()
        if s.startswith("loop_"):
            in_labels = True
            continue
        if in_labels:
            if s.startswith("_"):
                continue
            if not s or s.startswith("#"):
                continue
            return i
    return None


def _read_star(p: Path, text: str, voxel_size_a, box_zyx, bin_factor=1, unbinned_box_zyx=None) -> pd.DataFrame:
    # lazy: starfile
    import starfile

    try:
        data = starfile.read(p, always_dict=True)
    except Exception as exc:  # starfile raises several types on bad input
        raise InputError(f"{p}: not a readable STAR file ({type(exc).__name__}: {exc})") from None
    table = None
    for blk in data.values():
        if isinstance(blk, pd.DataFrame) and ({"rlnCenteredCoordinateXAngst", "rlnCoordinateX"} & set(blk.columns)):
            table = blk
            break
    if table is None:
        raise InputError(
            f"{p}: no particle block with rlnCenteredCoordinate{{X,Y,Z}}Angst or rlnCoordinate{{X,Y,Z}} columns"
        )
    first = _star_loop_first_data_line(text) or 0
    n = len(table)

    def col(name, default=None, integer=False):
        if name not in table.columns:
            if default is None:
                raise InputError(f"{p}: STAR file has no {name} column")
            return [default] * n
        vals = []
        for i, v in enumerate(table[name].tolist()):
            vals.append(_num(p, first + i, name, str(v), integer=integer))
        return vals

    if "rlnCenteredCoordinateXAngst" in table.columns:
        vs = voxel_size_a
        if vs is None and "rlnTomoTiltSeriesPixelSize" in table.columns:
            vs = float(table["rlnTomoTiltSeriesPixelSize"].iloc[0])
        if vs is None or not vs > 0:
            raise MissingGeometry(
                f"{p}: RELION 5 centred coordinates need the voxel size (pass --voxel-size)", needs="voxel_size_a"
            )
        if box_zyx is None and unbinned_box_zyx is None:
            raise MissingGeometry(
                f"{p}: RELION 5 centred coordinates need the volume size (pass --box Z,Y,X)", needs="box_zyx"
            )
        cx, cy, cz = relion_centre(box_zyx, bin_factor, unbinned_box_zyx)
        x = np.asarray(col("rlnCenteredCoordinateXAngst")) / vs + cx
        y = np.asarray(col("rlnCenteredCoordinateYAngst")) / vs + cy
        z = np.asarray(col("rlnCenteredCoordinateZAngst")) / vs + cz
    else:
        x, y, z = (np.asarray(col(f"rlnCoordinate{a}")) for a in "XYZ")
    if "fakClassName" in table.columns:
        names = [str(v) for v in table["fakClassName"].tolist()]
    elif "rlnClassNumber" in table.columns:
        names = [f"class{int(v)}" for v in col("rlnClassNumber", integer=True)]
    else:
        names = ["particle"] * n
    if "rlnClassNumber" in table.columns:
        cids = col("rlnClassNumber", integer=True)
    else:
        order: dict[str, int] = {}
        cids = [order.setdefault(nm, len(order) + 1) for nm in names]
    pids = None
    if "rlnTomoParticleName" in table.columns:
        pids = []
        for v in table["rlnTomoParticleName"].tolist():
            m = re.search(r"(\d+)\s*$", str(v))
            if not m:
                pids = None
                break
            pids.append(int(m.group(1)))
        if pids is not None and len(set(pids)) != len(pids):
            pids = None
    if pids is None:
        pids = list(range(1, n + 1))
    return pd.DataFrame(
        {
            "particle_id": pids,
            "class_id": cids,
            "class_name": names,
            "x": x,
            "y": y,
            "z": z,
            "rot": col("rlnAngleRot", 0.0),
            "tilt": col("rlnAngleTilt", 0.0),
            "psi": col("rlnAnglePsi", 0.0),
        }
    )


# --------------------------------------------------------------------------------------------------
# picks (a picker's output: positions, a class or not)

#: ``--pred-format`` values of ``faket evaluate`` and the suffixes ``auto`` maps to them
PICK_FORMATS = {
    "csv": (".csv", ".tsv"),
    "star": (".star",),
    "shrec": (".txt", ".coords", ".dat"),
    "deepfinder": (".xml",),
}

_COORD_ALIASES = {
    "x": ("x", "rlncoordinatex", "coord_x", "x_voxel", "x_vox"),
    "y": ("y", "rlncoordinatey", "coord_y", "y_voxel", "y_vox"),
    "z": ("z", "rlncoordinatez", "coord_z", "z_voxel", "z_vox"),
}
_NAME_ALIASES = ("class_name", "class", "pdb", "pdb_id", "label", "rlnclassname")
_ID_ALIASES = ("class_id", "rlnclassnumber", "class_number")


@dataclass
class Picks:
    """Picked positions (voxels of the picked tomogram) in file order, with a class name or id each, or neither."""

    points_xyz: np.ndarray  # (P, 3) float64: x, y, z
    class_names: list[str] | None = None
    class_ids: list[int] | None = None

    def __len__(self) -> int:
        return int(self.points_xyz.shape[0])


def pick_format(path: str | os.PathLike, fmt: str = "auto") -> str:
    """``fmt``, or the picks format :data:`PICK_FORMATS` gives the suffix of ``path`` for ``auto``."""
    if fmt != "auto":
        if fmt not in PICK_FORMATS:
            raise ValueError(f"unknown picks format {fmt!r}")
        return fmt
    suf = Path(path).suffix.lower()
    for name, sufs in PICK_FORMATS.items():
        if suf in sufs:
            return name
    raise InputError(
        f"{path}: cannot tell the picks format from the extension {suf!r} (expected one of {', '.join(PICK_FORMATS)})"
    )


def _picks_from_frame(df: pd.DataFrame, source: str) -> Picks:
    """Picks from a free-form CSV table: x, y, z columns (several spellings), optional class name / id."""
    cols = {str(c).strip().lower().lstrip("_"): c for c in df.columns}
    xyz = []
    for ax, aliases in _COORD_ALIASES.items():
        hit = next((cols[a] for a in aliases if a in cols), None)
        if hit is None:
            raise InputError(f"{source}: no {ax} column (need x, y, z; has {', '.join(map(str, df.columns))})")
        vals = pd.to_numeric(df[hit], errors="coerce").to_numpy(dtype=np.float64)
        if not np.isfinite(vals).all():
            i = int(np.argmax(~np.isfinite(vals)))
            raise InputError(f"{source}: row {i + 1}: column {hit} is not a finite number ({df[hit].iloc[i]!r})")
        xyz.append(vals)
    names = ids = None
    name_col = next((cols[a] for a in _NAME_ALIASES if a in cols), None)
    id_col = next((cols[a] for a in _ID_ALIASES if a in cols), None)
    if name_col is not None:
        names = [str(v).strip() for v in df[name_col].tolist()]
    if id_col is not None:
        vals = pd.to_numeric(df[id_col], errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(vals) | (vals != np.round(vals))
        if bad.any():
            i = int(np.argmax(bad))
            raise InputError(f"{source}: row {i + 1}: {id_col} is not an integer class id ({df[id_col].iloc[i]!r})")
        ids = vals.astype(np.int64).tolist()
    return Picks(np.stack(xyz, axis=1).reshape(-1, 3), names, ids)


def _picks_from_particles(df: pd.DataFrame, *, has_class: bool) -> Picks:
    """Picks from a :func:`read_particles` table: class ids only when the names are the reader's
    ``class<id>`` placeholders; no class when the file has no class column (``has_class``)."""
    pts = df[["x", "y", "z"]].to_numpy(dtype=np.float64).reshape(-1, 3)
    names = [str(v) for v in df["class_name"]]
    ids = [int(v) for v in df["class_id"]]
    if has_class and names and all(n == f"class{i}" for n, i in zip(names, ids)):
        return Picks(pts, None, ids)  # only class numbers (rlnClassNumber, class_label): compare ids
    if not has_class:
        return Picks(pts, None, None)  # no class at all
    return Picks(pts, names, None)


def read_picks(
    path: str | os.PathLike,
    fmt: str = "auto",
    *,
    voxel_size_a: float | None = None,
    box_zyx: Sequence[int] | None = None,
    bin_factor: int = 1,
    unbinned_box_zyx: Sequence[int] | None = None,
) -> Picks:
    """Read picks: a CSV with x, y, z (and optionally class_name / class_id), RELION STAR, SHREC
    ``class x y z [Z1 X Z2]`` text (the one SHREC reader, :func:`read_particles`'s) or a DeepFinder
    object list.

    ``voxel_size_a`` / ``box_zyx`` (of the picked tomogram) are needed for RELION 5 centred STAR
    coordinates; without them :class:`~faket.errors.MissingGeometry` says which is missing. A STAR file of
    a binned tomogram is centred on its bin-1 tomogram: ``bin_factor``, ``unbinned_box_zyx``
    (:func:`relion_centre`).
    """
    if str(path).startswith("copick://") or (fmt == "auto" and _is_copick(path)):
        return _picks_from_particles(read_particles(path, voxel_size_a=voxel_size_a), has_class=True)  # copick
    p = Path(path)
    fmt = pick_format(p, fmt)
    if fmt == "csv":
        _read_text(p, "picks file")
        try:
            df = pd.read_csv(p, sep=None, engine="python", comment="#")
        except pd.errors.EmptyDataError:
            raise InputError(f"{p}: picks file is empty") from None
        except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
            raise InputError(f"{p}: not a readable CSV ({str(exc).splitlines()[0]})") from None
        return _picks_from_frame(df, str(p))
    if fmt == "shrec":
        df = read_particles(p, fmt="shrec", what="picks file")
        return Picks(
            df[["x", "y", "z"]].to_numpy(dtype=np.float64).reshape(-1, 3), [str(v) for v in df["class_name"]], None
        )
    if fmt == "deepfinder":
        if p.suffix.lower() != ".xml":
            raise InputError(f"{p}: a DeepFinder object list must end in .xml")
        return _picks_from_particles(
            read_particles(p, fmt="deepfinder", what="picks file"), has_class=True
        )  # class_label is required
    # STAR
    text = _read_text(p, "picks file")
    if "rlnCenteredCoordinateXAngst" in text:
        if box_zyx is None:
            raise MissingGeometry(f"{p}: RELION 5 centred coordinates need the picked tomogram's size", needs="box_zyx")
        if voxel_size_a is None and "rlnTomoTiltSeriesPixelSize" not in text:
            raise MissingGeometry(
                f"{p}: RELION 5 centred coordinates need the picked tomogram's voxel size", needs="voxel_size_a"
            )
    df = read_particles(
        p,
        voxel_size_a=voxel_size_a,
        box_zyx=box_zyx,
        fmt="star",
        what="picks file",
        bin_factor=bin_factor,
        unbinned_box_zyx=unbinned_box_zyx,
    )
    return _picks_from_particles(df, has_class="rlnClassNumber" in text or "fakClassName" in text)


# --------------------------------------------------------------------------------------------------
# writing


def write_particles_csv(df: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write the table as CSV with full float precision (reads back exactly)."""
    out = check_particles(df, str(path))
    out.to_csv(path, index=False, float_format=None)


def write_particles_star(
    df: pd.DataFrame,
    path: str | os.PathLike,
    *,
    voxel_size_a: float,
    box_zyx: Sequence[int],
    tomo_name: str = "faket",
    bin_factor: int = 1,
    unbinned_box_zyx: Sequence[int] | None = None,
) -> None:
    """Write a RELION 5 tomography particles STAR file (one ``particles`` block, starfile-readable).

    ``df`` in voxels of a tomogram of ``box_zyx`` voxels of ``voxel_size_a`` binned by ``bin_factor`` from a
    bin-1 tomogram of ``unbinned_box_zyx`` (default ``box_zyx * bin_factor``): the centred coordinates are
    Angstrom from the bin-1 tomogram's centre (:func:`relion_centre`), the same in every binning.
    """
    # lazy: starfile
    import starfile

    out = check_particles(df, str(path))
    if not voxel_size_a or voxel_size_a <= 0:
        raise InputError(f"{path}: STAR output needs a positive voxel size")
    cx, cy, cz = relion_centre(box_zyx, bin_factor, unbinned_box_zyx)
    star = pd.DataFrame(
        {
            "rlnTomoName": [tomo_name] * len(out),
            "rlnTomoParticleName": [f"{tomo_name}/{int(i)}" for i in out["particle_id"]],
            "rlnCenteredCoordinateXAngst": (out["x"] - cx) * voxel_size_a,
            "rlnCenteredCoordinateYAngst": (out["y"] - cy) * voxel_size_a,
            "rlnCenteredCoordinateZAngst": (out["z"] - cz) * voxel_size_a,
            "rlnAngleRot": out["rot"],
            "rlnAngleTilt": out["tilt"],
            "rlnAnglePsi": out["psi"],
            "rlnClassNumber": out["class_id"].astype(int),
            "fakClassName": out["class_name"],
        }
    )
    starfile.write({"particles": star}, path, float_format="%.12g")


def _fmt(v: float) -> str:
    v = float(v)
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    return repr(v)


def write_shrec_locations(df: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write SHREC 2021 ``particle_locations.txt`` (``class x y z Z1 X Z2``), rows in particle_id order.

    x, y, z are integers, as SHREC's evaluation script reads them (``int(x)``): the centre rounded to the
    nearest voxel (``numpy.rint``, half to even: the voxel a pick there looks up in ``faket evaluate``, and the
    one ``faket labels`` gives each particle in a binned mask). Exact positions are in the CSV / STAR lists.
    SHREC's own readers take the line number as the occupancy id, so the ids are only kept when they are
    1..N; class names must not contain whitespace.
    """
    out = check_particles(df, str(path)).sort_values("particle_id")
    bad = [n for n in out["class_name"].unique() if re.search(r"\s", n)]
    if bad:
        raise InputError(f"{path}: class name {bad[0]!r} contains whitespace (not allowed in SHREC format)")
    ang = relion_to_shrec(out[["rot", "tilt", "psi"]].to_numpy()) if len(out) else np.zeros((0, 3))
    xyz = np.rint(out[["x", "y", "z"]].to_numpy(dtype=np.float64)).astype(np.int64) if len(out) else np.zeros((0, 3))
    lines = []
    for (_, r), a, c in zip(out.iterrows(), ang, xyz):
        lines.append(" ".join([r["class_name"], *(str(int(v)) for v in c), *(repr(float(v) + 0.0) for v in a)]))
    Path(path).write_text("".join(line + "\n" for line in lines))


def write_deepfinder_xml(df: pd.DataFrame, path: str | os.PathLike, *, tomo_idx: int = 0) -> None:
    """Write a DeepFinder object list (``objlist`` XML): tomo_idx, obj_id (= particle_id), class_label
    (= class_id), class_name, x, y, z (voxels, full precision), rows in particle_id order."""
    out = check_particles(df, str(path)).sort_values("particle_id")
    root = ET.Element("objlist")
    for _, r in out.iterrows():
        ET.SubElement(
            root,
            "object",
            {
                "tomo_idx": str(int(tomo_idx)),
                "obj_id": str(int(r["particle_id"])),
                "class_label": str(int(r["class_id"])),
                "class_name": str(r["class_name"]),
                "x": _fmt(r["x"]),
                "y": _fmt(r["y"]),
                "z": _fmt(r["z"]),
            },
        )
    ET.indent(root)
    Path(path).write_bytes(ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n")
