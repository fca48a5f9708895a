"""copick names, ids and picks: faket <-> copick conversions and reading picks through copick's API."""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import parse_qs

import numpy as np
import pandas as pd

from faket.errors import InputError
from faket.rotation import relion_to_matrix, rotation_to_relion

__all__ = [
    "DEFAULT_USER",
    "MULTILABEL_NAME",
    "copick_name",
    "faket_name",
    "check_copick_id",
    "particles_to_picks",
    "picks_to_particles",
    "tomo_type_for",
    "is_non_particle",
    "template_ids",
    "object_colour",
    "radius_from_masks",
    "instance_volumes",
    "parse_copick_source",
    "stale_staging_folders",
    "read_copick_particles",
]


DEFAULT_USER = "faket"

#: copick session id of faket's picks and segmentations: "0" is copick's session of picks made by a tool
#: (``CopickPicks.from_tool``), the only session copick-torch's datasets (and ``run.tool_picks()``) read;
#: the layout seed goes into the export's provenance instead
DEFAULT_SESSION = "0"


MULTILABEL_NAME = "classes"


#: tomogram type per modality: the faket tomogram is the weighted back-projection copick users train on
#: (``wbp``, octopi's and the portal's default type); the comparison modalities get ``wbp-<modality>``.
DEFAULT_TOMO_TYPES = {"faket": "wbp", "noisy": "wbp-noisy", "baseline": "wbp-baseline", "noiseless": "wbp-noiseless"}


# copick.util.escape.sanitize_name: these characters are replaced, and leading/trailing '-' stripped
_REFUSED = re.compile(r'[<>:"/\\|?*\x00-\x1F\x7F\s_]')


_HEX = re.compile(r"[0-9a-f]{2}")


def copick_name(name: str) -> str:
    """faket class name -> a name copick accepts; reversible by :func:`faket_name`."""
    name = str(name)
    if not name:
        raise InputError("empty class name: copick needs a non-empty object name")
    out = []
    for i, ch in enumerate(name):
        if ch == "_" and 0 < i < len(name) - 1:
            out.append("-")
        elif ch in "-~_" or _REFUSED.match(ch):
            out.append("".join(f"~{b:02x}" for b in ch.encode("utf-8")))
        else:
            out.append(ch)
    return "".join(out)


def faket_name(name: str) -> str:
    """copick object name -> faket class name (inverse of :func:`copick_name`; any copick name decodes)."""
    out = bytearray()
    i = 0
    while i < len(name):
        ch = name[i]
        if ch == "~" and _HEX.fullmatch(name[i + 1 : i + 3] or ""):
            out.append(int(name[i + 1 : i + 3], 16))
            i += 3
            continue
        out += b"_" if ch == "-" else ch.encode("utf-8")
        i += 1
    return out.decode("utf-8", errors="replace")


def check_copick_id(value: str, what: str) -> str:
    """A user id, session id or tomogram type exactly as given, or one clear error when copick refuses it."""
    v = str(value)
    stripped = _REFUSED.sub("-", v).strip("-")
    if not v or stripped != v:
        raise InputError(
            f'{what} {v!r}: copick refuses it (no underscores, whitespace, <>:"/\\|?* or '
            "leading/trailing '-'); e.g. " + (repr(stripped) if stripped else "'faket'")
        )
    return v


def tomo_type_for(modality: str, overrides: Mapping[str, str] | None = None) -> str:
    """copick tomogram type of a faket modality (``faket`` -> ``wbp``, ``noisy`` -> ``wbp-noisy``, ...)."""
    if overrides and modality in overrides:
        return check_copick_id(overrides[modality], f"--tomo-type {modality}=")
    return DEFAULT_TOMO_TYPES.get(modality) or f"wbp-{copick_name(modality)}"


def particles_to_picks(df: pd.DataFrame, voxel_size_a: float) -> tuple[np.ndarray, np.ndarray]:
    """faket particle rows (voxels, RELION angles) -> copick ``(positions (N, 3) A, transforms (N, 4, 4))``.

    ``location = x_voxel * voxel_size_a`` (voxel 0's centre at 0); transform = ``[[A, 0], [0, 1]]`` with
    ``A = relion_to_matrix(angles)`` (template -> tomogram, on ``(x, y, z)``), no extra shift.
    """
    if not voxel_size_a or voxel_size_a <= 0:
        raise InputError(f"voxel size {voxel_size_a!r}: copick locations need a positive voxel size")
    n = len(df)
    pos = df[["x", "y", "z"]].to_numpy(dtype=np.float64).reshape(n, 3) * float(voxel_size_a)
    t = np.zeros((n, 4, 4), dtype=np.float64)
    if n:
        t[:, :3, :3] = relion_to_matrix(df[["rot", "tilt", "psi"]].to_numpy(dtype=np.float64)).reshape(n, 3, 3)
    t[:, 3, 3] = 1.0
    return pos, t


def picks_to_particles(
    positions_a, transforms, voxel_size_a: float, *, class_name: str, class_id: int, instance_ids=None
) -> pd.DataFrame:
    """copick points of one object -> faket particle rows (voxels of a grid of ``voxel_size_a``).

    The centre is ``location + transform[:3, 3]`` (copick's ``full_positions``); angles from the rotation
    part (RELION ZYZ). ``particle_id`` = the points' ``instance_id`` (0 when absent; the caller renumbers).
    """
    # lazy: scipy
    from scipy.spatial.transform import Rotation

    pos = np.asarray(positions_a, dtype=np.float64).reshape(-1, 3)
    n = len(pos)
    t = (
        np.asarray(transforms, dtype=np.float64).reshape(n, 4, 4)
        if transforms is not None
        else np.tile(np.eye(4), (n, 1, 1))
    )
    centres = pos + t[:, :3, 3]
    if n:
        rot = t[:, :3, :3]
        det = np.linalg.det(rot)
        if not np.allclose(det, 1.0, atol=1e-3):
            i = int(np.argmax(np.abs(det - 1.0)))
            raise InputError(f"point {i + 1} of {class_name}: transform is not a rotation (det {det[i]:.3g})")
        angles = np.asarray(rotation_to_relion(Rotation.from_matrix(rot))).reshape(n, 3)
    else:
        angles = np.zeros((0, 3))
    ids = np.zeros(n, dtype=np.int64) if instance_ids is None else np.asarray(instance_ids, dtype=np.int64)
    xyz = centres / float(voxel_size_a)
    return pd.DataFrame(
        {
            "particle_id": ids,
            "class_id": np.full(n, int(class_id), dtype=np.int64),
            "class_name": [str(class_name)] * n,
            "x": xyz[:, 0],
            "y": xyz[:, 1],
            "z": xyz[:, 2],
            "rot": angles[:, 0],
            "tilt": angles[:, 1],
            "psi": angles[:, 2],
        }
    )


_NON_PARTICLE = re.compile(r"vesicle|membrane", re.IGNORECASE)


_PDB = re.compile(r"^(?:pdb)?([0-9][a-z0-9]{3})$", re.IGNORECASE)


_EMDB = re.compile(r"emd[-_]?(\d{4,5})", re.IGNORECASE)


# tab20-like, distinct; index = (class_id - 1) mod 20
_PALETTE = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
    (174, 199, 232),
    (255, 187, 120),
    (152, 223, 138),
    (255, 152, 150),
    (197, 176, 213),
    (196, 156, 148),
    (247, 182, 210),
    (199, 199, 199),
    (219, 219, 141),
    (158, 218, 229),
]


def is_non_particle(name: str, source: str = "") -> bool:
    """Membranes and vesicles are segmentation objects (copick ``is_particle = False``)."""
    return bool(_NON_PARTICLE.search(str(name)) or _NON_PARTICLE.match(str(source or "")))


def template_ids(source: str, name: str, *, name_is_id: bool = False) -> tuple[str | None, str | None]:
    """``(pdb_id, emdb_id)`` from a template source (``.../1s3x.pdb``, ``emd_1234.map``) or, for given
    volumes (``name_is_id``: SHREC names classes by PDB id), from the class name."""
    src = str(source or "")
    base = os.path.basename(src).lower()
    for suf in (".gz",):
        base = base[: -len(suf)] if base.endswith(suf) else base
    stem, ext = os.path.splitext(base)
    m = _EMDB.search(base)
    if m:
        return None, f"EMD-{m.group(1)}"
    if ext in (".pdb", ".cif", ".ent", ".mmcif", ".pdbx"):
        m = _PDB.match(stem)
        if m:
            return m.group(1).upper(), None
    if name_is_id:
        m = _PDB.match(str(name))
        if m:
            return m.group(1).upper(), None
    return None, None


def object_colour(class_id: int) -> tuple[int, int, int, int]:
    r, g, b = _PALETTE[(int(class_id) - 1) % len(_PALETTE)]
    return (r, g, b, 255)


def radius_from_masks(occupancy: np.ndarray, pid_to_class: Mapping[int, int], voxel_size_a: float) -> dict[int, float]:
    """Per class id: the radius (A) of a ball with the mean particle volume in the occupancy mask."""
    occ = np.asarray(occupancy).astype(np.int64, copy=False).ravel()
    counts = np.bincount(occ[occ > 0])
    vols: dict[int, list[int]] = {}
    for pid, cid in pid_to_class.items():
        if pid < len(counts) and counts[pid] > 0:
            vols.setdefault(int(cid), []).append(int(counts[pid]))
    return {c: float((3 * np.mean(v) / (4 * math.pi)) ** (1 / 3) * voxel_size_a) for c, v in vols.items()}


def instance_volumes(occupancy: np.ndarray, pid_to_class: Mapping[int, int], source: str = "occupancy mask"):
    """Occupancy mask -> ``(class_id, instance volume)`` pairs, one class at a time (the volume holds the
    particle_id where that class's particles are, 0 elsewhere; int32)."""
    occ = np.asarray(occupancy)
    if occ.size and (occ.min() < 0 or occ.max() > 2**31 - 1 or not np.array_equal(occ, np.round(occ))):
        raise InputError(f"{source}: values must be non-negative integers (particle ids)")
    occ = occ.astype(np.int32)
    mx = int(occ.max()) if occ.size else 0
    lut = np.zeros(mx + 1, dtype=np.int32)
    for pid, cid in pid_to_class.items():
        if 0 < pid <= mx:
            lut[pid] = cid
    present = np.unique(occ[occ > 0])
    orphans = present[lut[present] == 0]
    if len(orphans):
        raise InputError(f"{source}: particle id {int(orphans[0])} is in the mask but not in the particle table")
    cls = lut[occ]
    for c in np.unique(lut[present]):
        yield int(c), np.where(cls == c, occ, 0)


def parse_copick_source(source: str) -> dict:
    """``copick://PROJECT/RUN/OBJECT[?user=U&session=S&voxel_spacing=V]`` or a picks JSON path -> parts.

    PROJECT is a project folder (holding ``copick_config.json``) or the config file itself; it may be a
    relative or absolute path (``copick:///abs/project/RUN/OBJECT``). OBJECT is a copick object name, a
    faket class name (mapped by :func:`copick_name`) or ``*`` (every object of the run).
    """
    s = str(source)
    if not s.startswith("copick://"):
        return {"kind": "json", "path": s}
    rest = s[len("copick://") :]
    query = {}
    if "?" in rest:
        rest, q = rest.split("?", 1)
        query = {k: v[-1] for k, v in parse_qs(q, keep_blank_values=True).items()}
    allowed = {"user", "session", "voxel_spacing", "voxel_size"}
    bad = sorted(set(query) - allowed)
    if bad:
        raise InputError(f"{s}: unknown query key {bad[0]!r} (use user=, session=, voxel_spacing=)")
    parts = rest.rstrip("/").split("/")
    if len(parts) < 3 or not parts[-1] or not parts[-2] or not "/".join(parts[:-2]):
        raise InputError(f"{s}: expected copick://PROJECT/RUN/OBJECT (PROJECT = folder or copick_config.json)")
    project = "/".join(parts[:-2])
    vs = query.get("voxel_spacing", query.get("voxel_size"))
    if vs is not None:
        try:
            vs = float(vs)
            assert vs > 0
        except (ValueError, AssertionError):
            raise InputError(
                f"{s}: voxel_spacing={query.get('voxel_spacing', query.get('voxel_size'))!r} is not a positive number"
            ) from None
    return {
        "kind": "uri",
        "project": project,
        "run": parts[-2],
        "object": parts[-1],
        "user": query.get("user") or None,
        "session": query.get("session") or None,
        "voxel_spacing": vs,
    }


def copick_config_path(project: str | os.PathLike) -> Path:
    """The config file of a copick project given as its folder (holding ``copick_config.json``) or the file."""
    p = Path(project)
    return p / "copick_config.json" if p.is_dir() else p


def _open_project(project: str, source: str):
    # lazy: copick
    import copick

    cfg = copick_config_path(project)
    if not cfg.is_file():
        raise InputError(f"{source}: no copick project at {project} (no {cfg.name})")
    try:
        return copick.from_file(str(cfg))
    except Exception as exc:  # pydantic / json errors
        raise InputError(
            f"{source}: {cfg} is not a readable copick config "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        ) from None


def get_run(root, run: str, source: str):
    """The run ``run`` of an open copick project; InputError naming ``source`` and listing runs otherwise."""
    r = root.get_run(run)
    if r is None:
        names = ", ".join(x.name for x in root.runs[:10])
        raise InputError(f"{source}: no run {run!r} in the project (runs: {names or 'none'})")
    return r


def _finish_table(frames: list[pd.DataFrame]) -> pd.DataFrame:
    # lazy: pandas
    from faket.formats.table import COLUMNS, empty_particles

    if not frames:
        return empty_particles()
    df = pd.concat(frames, ignore_index=True)[list(COLUMNS)]
    ids = df["particle_id"].to_numpy()
    if len(df) and ((ids < 1).any() or len(np.unique(ids)) != len(ids)):
        df["particle_id"] = np.arange(1, len(df) + 1)  # picker output: instance ids 0 or repeated
    return df


def read_copick_particles(source: str, *, voxel_size_a: float | None = None) -> pd.DataFrame:
    """copick picks -> faket particle table (voxels of a grid of the chosen voxel size).

    ``source``: ``copick://PROJECT/RUN/OBJECT[?user=U&session=S&voxel_spacing=V]`` or a copick picks JSON
    file (``.../Picks/<user>_<session>_<object>.json``). Voxel size, first found of: the URI's
    ``voxel_spacing``, ``voxel_size_a`` (the caller's grid), the run's smallest voxel spacing (copick's
    own rule), the picks file's ``voxel_spacing``. User/session: the URI's, else the only (user, session)
    pair that has picks of the object(s) in the run (several: an error listing them).
    Class names are :func:`faket_name` of the object names; class ids their copick ``label``.
    """
    src = parse_copick_source(source)
    if src["kind"] == "json":
        return _read_picks_json(Path(src["path"]), voxel_size_a)
    root = _open_project(src["project"], source)
    run = get_run(root, src["run"], source)
    objects = {o.name: o for o in root.pickable_objects}
    obj = src["object"]
    if obj == "*":
        wanted = None
    elif obj in objects:
        wanted = [obj]
    elif copick_name(obj) in objects:
        wanted = [copick_name(obj)]
    else:
        raise InputError(f"{source}: no object {obj!r} in the project (objects: {', '.join(objects)})")
    picks = run.get_picks(object_name=wanted, user_id=src["user"], session_id=src["session"])
    picks = [p for p in picks if p.pickable_object_name in objects]
    pairs = sorted({(p.user_id, p.session_id) for p in picks})
    if not picks:
        raise InputError(
            f"{source}: no picks of {obj} in run {src['run']}"
            + (f" by user {src['user']}" if src["user"] else "")
            + (f" in session {src['session']}" if src["session"] else "")
        )
    if len(pairs) > 1:
        listed = ", ".join(f"user={u}&session={s}" for u, s in pairs[:6])
        raise InputError(f"{source}: picks of several users/sessions ({listed}): add ?user=..&session=..")
    vs = src["voxel_spacing"] or voxel_size_a
    if vs is None and run.voxel_spacings:
        vs = min(v.voxel_size for v in run.voxel_spacings)
    frames = []
    for p in sorted(picks, key=lambda p: (objects[p.pickable_object_name].label or 0, p.pickable_object_name)):
        v = vs or p.meta.voxel_spacing
        if not v:
            raise InputError(f"{source}: no voxel size to turn Angstrom into voxels: add ?voxel_spacing=V")
        o = objects[p.pickable_object_name]
        try:
            pos, tr = p.numpy()  # loads the points from storage
            ids = p.instance_ids()
        except Exception as exc:  # a corrupt picks file
            raise InputError(
                f"{source}: cannot read the picks of {o.name} ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''})"
            ) from None
        frames.append(
            picks_to_particles(pos, tr, v, class_name=faket_name(o.name), class_id=o.label or 1, instance_ids=ids)
        )
    return _finish_table(frames)


def _read_picks_json(path: Path, voxel_size_a: float | None) -> pd.DataFrame:
    # lazy: copick
    from copick.models import CopickPicksFile

    if not path.is_file():
        raise InputError(f"{path}: copick picks file not found")
    try:
        meta = CopickPicksFile(**json.loads(path.read_text()))
    except Exception as exc:
        raise InputError(
            f"{path}: unknown particle list format (a .json list must be copick picks; "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        ) from None
    if meta.unit.lower() not in ("angstrom", "a", "å"):
        raise InputError(f"{path}: unit {meta.unit!r}; copick picks are read in angstrom")
    vs = voxel_size_a or meta.voxel_spacing
    if not vs:
        raise InputError(
            f"{path}: no voxel size to turn Angstrom into voxels (the file has none; pass one, "
            "e.g. --voxel-size, or read it as copick://PROJECT/RUN/OBJECT)"
        )
    label = None
    # .../ExperimentRuns/<run>/Picks/<file>.json: the config beside ExperimentRuns gives the label
    if path.parent.name == "Picks" and len(path.parents) > 3:
        cfg = path.parents[3] / "copick_config.json"
        if cfg.is_file():
            try:
                objs = json.loads(cfg.read_text()).get("pickable_objects", [])
                label = next((o.get("label") for o in objs if o.get("name") == meta.pickable_object_name), None)
            except (ValueError, OSError):
                label = None
    pts = meta.points or []
    pos = np.array([[p.location.x, p.location.y, p.location.z] for p in pts], dtype=np.float64).reshape(-1, 3)
    tr = np.array([p.transformation for p in pts], dtype=np.float64).reshape(-1, 4, 4)
    ids = np.array([p.instance_id or 0 for p in pts], dtype=np.int64)
    df = picks_to_particles(
        pos, tr, vs, class_name=faket_name(meta.pickable_object_name), class_id=label or 1, instance_ids=ids
    )
    return _finish_table([df])


# --------------------------------------------------------------------------------------------------
# staging folders of exports killed mid-way


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    except OSError:
        return False
    return True


def stale_staging_folders(project: str | os.PathLike) -> list[Path]:
    """The hidden staging and backup folders of exports of ``project`` (``.NAME.tmp-PID``, ``.NAME.old-PID``
    beside it) whose process is gone: what an export killed mid-way (SIGKILL) leaves behind. Folders of a
    live process (an export running now) are not listed."""
    p = Path(project)
    pat = re.compile(r"\." + re.escape(p.name) + r"\.(?:tmp|old)-(\d+)")
    if not p.parent.is_dir():
        return []
    return sorted(
        q for q in p.parent.iterdir() if (m := pat.fullmatch(q.name)) and q.is_dir() and not _pid_alive(int(m.group(1)))
    )
