"""Training sets as copick projects: faket results <-> copick (OME-Zarr tomograms, oriented picks, segmentations).

Conventions (checked against copick 1.31's own sources; see docs/copick.md)
---------------------------------------------------------------------------
- **Location**: copick stores a pick's ``location`` in Angstrom with voxel ``i``'s *centre* at ``i x voxel
  spacing`` (copick's RELION bridge ``copick.util.relion`` puts the tomogram centre at ``N / 2 x voxel size``,
  the same ``N / 2`` as RELION 5; pickers such as octopi paint a pick at ``location / voxel_spacing`` voxels;
  OME-Zarr scale-only transforms put index ``i`` at ``i x scale``). faket's particle tables count ``x = 0`` at
  the centre of the first voxel too, so ``location_A = x_voxel x voxel_size_a`` exactly, in the grid of
  the tomogram (``particles_bin<B>.csv`` with the bin-``B`` voxel size).
- **Orientation**: copick's ``transformation_`` maps object (template) coordinates to tomogram coordinates
  (``CopickPoint.transformation``: "from the object space to the tomogram space"), acting on ``(x, y, z)``
  column vectors, translation = an extra shift added to the location. copick converts RELION angles with
  ``Rotation.from_euler("ZYZ", angles).inv()`` (``copick.util.relion.relion_rows_to_poses``), which is
  faket's :func:`faket.rotation.relion_to_matrix` (template -> particle). So the 4x4 is
  ``[[A, 0], [0, 1]]`` with ``A = relion_to_matrix(rot, tilt, psi)``.
- **Names**: copick refuses ``<>:"/\\|?*``, control characters, whitespace and underscores in object names,
  user and session ids and tomogram types (``copick.util.escape.sanitize_name``). :func:`copick_name` maps a
  faket class name reversibly: ``_`` -> ``-``, and every other refused character, ``-`` and ``~`` ->
  ``~hh`` (its UTF-8 bytes in lower-case hex), a leading or trailing ``_`` -> ``~5f``;
  :func:`faket_name` undoes it (``ribosome_like`` <-> ``ribosome-like``).

Pure conversions take and return arrays/tables; the copick glue (:func:`write_project`,
:func:`read_copick_particles`) imports copick inside the functions.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd

from faket.errors import InputError
from faket.formats.copick import (
    DEFAULT_SESSION,
    DEFAULT_USER,
    MULTILABEL_NAME,
    check_copick_id,
    copick_name,
    instance_volumes,
    is_non_particle,
    object_colour,
    particles_to_picks,
    radius_from_masks,
    template_ids,
    tomo_type_for,
)
from faket.formats.mrc import read_volume
from faket.formats.names import DATASET_CSV
from faket.formats.voxel import SAME_GRID_RTOL

__all__ = ["plan_export", "write_project"]


# --------------------------------------------------------------------------------------------------
# names


# --------------------------------------------------------------------------------------------------
# picks <-> particle table


# --------------------------------------------------------------------------------------------------
# pickable objects


# --------------------------------------------------------------------------------------------------
# copick:// sources


# --------------------------------------------------------------------------------------------------
# planning an export from a results folder (reads dataset.csv and headers; validates; no big arrays)

_NEEDED = (
    "tomogram",
    "modality",
    "bin",
    "tomogram_path",
    "class_mask",
    "occupancy_mask",
    "particles_csv",
    "shape_z",
    "shape_y",
    "shape_x",
    "voxel_size_a",
    "n_particles",
)


@dataclass
class ClassInfo:
    class_id: int
    name: str
    source: str = ""
    radius_a: float | None = None
    non_particle: bool = False
    pdb_id: str | None = None
    emdb_id: str | None = None

    @property
    def copick(self) -> str:
        return copick_name(self.name)


@dataclass
class BinEntry:
    bin: int
    voxel_size_a: float
    shape_zyx: tuple[int, int, int]
    tomograms: dict[str, Path]  # modality -> MRC
    class_mask: Path
    occupancy_mask: Path
    particles_csv: Path


@dataclass
class RunPlan:
    name: str
    folder: Path
    seed: int | None
    bins: dict[int, BinEntry] = field(default_factory=dict)
    class_ids: set[int] = field(default_factory=set)  # classes this tomogram was made with
    n_particles: dict[int, list] = field(default_factory=dict)  # bin -> [(csv line, count listed)]


@dataclass
class ExportPlan:
    dataset_csv: Path
    runs: list[RunPlan]
    classes: dict[int, ClassInfo]
    modalities: list[str]
    tables: dict = field(default_factory=dict)  # (run, bin) -> particle table

    def inputs(self) -> list[Path]:
        out = [self.dataset_csv]
        for r in self.runs:
            for b in r.bins.values():
                out += [*b.tomograms.values(), b.class_mask, b.occupancy_mask, b.particles_csv]
        return out


def _header(path: Path, what: str):
    try:
        with mrcfile.open(path, mode="r", header_only=True, permissive=False) as m:
            h = m.header
            shape = (int(h.nz), int(h.ny), int(h.nx))
            vs = float(m.voxel_size.x)
        expected = 1024 + int(h.nsymbt) + int(np.prod(shape)) * {0: 1, 1: 2, 2: 4, 6: 2, 12: 2}.get(int(h.mode), 4)
        if path.stat().st_size < expected:
            raise InputError(
                f"{path}: {what} is truncated ({path.stat().st_size} of {expected} bytes; an interrupted run?)"
            )
    except InputError:
        raise
    except (ValueError, OSError) as exc:
        raise InputError(
            f"{path}: {what} is not a valid MRC file ({str(exc).splitlines()[0] if str(exc) else exc})"
        ) from None
    return shape, vs


def _json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _layout_seed(folder: Path) -> int | None:
    for f in (
        folder / "layout" / "volume.json",
        folder / "tiltseries" / "noiseless.json",
        folder / "tiltseries" / "noisy.json",
    ):
        rec = _json(f) if f.is_file() else None
        if isinstance(rec, dict) and isinstance(rec.get("seed"), int):
            return int(rec["seed"])
    return None


def plan_export(results: str | os.PathLike, *, allow_empty: bool = False) -> ExportPlan:
    """Read and check ``RESULTS/dataset.csv`` (or the CSV itself) and the files it lists.

    Every problem is an :class:`InputError` naming the file: no dataset.csv (an interrupted run), missing
    columns, a listed file missing or truncated, shapes/voxel sizes that differ from the CSV or between the
    modalities of one binning, two binnings with one voxel size, particle counts that differ, a class id with
    two names, a particle class with no particle in a tomogram (unless ``allow_empty``).
    """
    # lazy: pandas
    from faket.formats.particles import read_particles

    res = Path(results)
    csv_path = res if res.suffix.lower() == ".csv" else res / DATASET_CSV
    if not csv_path.is_file():
        if res.is_dir() or res.suffix.lower() != ".csv":
            if not res.exists():
                raise InputError(f"{res}: results folder not found")
            raise InputError(
                f"{res}: no dataset.csv (the workflow writes it last: an interrupted run? "
                "finish it, or index the tomograms with faket dataset)"
            )
        raise InputError(f"{csv_path}: not found")
    base = csv_path.resolve().parent
    try:
        with open(csv_path, newline="") as f:
            rows = [r for r in csv.DictReader(f)]
            header = rows[0].keys() if rows else []
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{csv_path}: not a readable CSV ({exc})") from None
    if not rows:
        raise InputError(f"{csv_path}: no tomograms listed")
    missing = [c for c in _NEEDED if c not in header]
    if missing:
        raise InputError(f"{csv_path}: missing column(s) {', '.join(missing)} (write it with faket dataset)")

    runs: dict[str, RunPlan] = {}
    modalities: list[str] = []
    seen = set()
    for i, r in enumerate(rows, start=2):
        where = f"{csv_path}: line {i}"
        try:
            b = int(r["bin"])
            shape = (int(r["shape_z"]), int(r["shape_y"]), int(r["shape_x"]))
            n_particles = int(r["n_particles"])
        except (TypeError, ValueError):
            raise InputError(f"{where}: bin, shape_z/y/x and n_particles must be integers") from None
        try:
            vs = float(r["voxel_size_a"])
            assert vs > 0
        except (TypeError, ValueError, AssertionError):
            raise InputError(
                f"{where}: voxel_size_a {r['voxel_size_a']!r}: copick needs the voxel size "
                "(set it in the tomogram headers)"
            ) from None
        t, mod = r["tomogram"].strip(), r["modality"].strip()
        if not t or "/" in t or t in (".", ".."):
            raise InputError(f"{where}: tomogram name {t!r} cannot be a copick run name")
        if (t, mod, b) in seen:
            raise InputError(f"{where}: tomogram {t} modality {mod} bin {b} is listed twice")
        seen.add((t, mod, b))
        if mod not in modalities:
            modalities.append(mod)
        paths = {}
        for k in ("tomogram_path", "class_mask", "occupancy_mask", "particles_csv"):
            p = base / r[k]
            if not p.is_file():
                raise InputError(f"{p}: listed in {csv_path} ({k}) but missing (an interrupted or moved run?)")
            paths[k] = p
        for k, what in (
            ("tomogram_path", "tomogram"),
            ("class_mask", "class mask"),
            ("occupancy_mask", "occupancy mask"),
        ):
            s, v = _header(paths[k], what)
            if s != shape:
                raise InputError(f"{paths[k]}: shape {s} differs from {csv_path} ({shape})")
            if k == "tomogram_path" and abs(v - vs) > SAME_GRID_RTOL * vs:
                raise InputError(f"{paths[k]}: voxel size {v:g} A differs from {csv_path} ({vs:g} A)")
        folder = paths["tomogram_path"].parent
        run = runs.setdefault(t, RunPlan(name=t, folder=folder, seed=_layout_seed(folder)))
        entry = run.bins.get(b)
        if entry is None:
            run.bins[b] = BinEntry(
                b,
                vs,
                shape,
                {mod: paths["tomogram_path"]},
                paths["class_mask"],
                paths["occupancy_mask"],
                paths["particles_csv"],
            )
        else:
            if (entry.shape_zyx, round(entry.voxel_size_a, 3)) != (shape, round(vs, 3)):
                raise InputError(f"{where}: {t} bin {b}: shape/voxel size differ between modalities")
            if (entry.class_mask, entry.occupancy_mask, entry.particles_csv) != (
                paths["class_mask"],
                paths["occupancy_mask"],
                paths["particles_csv"],
            ):
                raise InputError(f"{where}: {t} bin {b}: label files differ between modalities")
            entry.tomograms[mod] = paths["tomogram_path"]
        run.n_particles.setdefault(b, []).append((i, n_particles))

    classes: dict[int, ClassInfo] = {}

    def add_class(cid, name, where, **kw):
        c = classes.get(cid)
        if c is None:
            classes[cid] = ClassInfo(cid, name, **kw)
        elif c.name != name:
            raise InputError(
                f"{where}: class id {cid} is {name!r} here but {c.name!r} elsewhere "
                "(copick labels must mean one object in the whole project)"
            )
        else:
            for k, v in kw.items():
                if getattr(c, k) in (None, "") and v not in (None, ""):
                    setattr(c, k, v)

    tables: dict[tuple[str, int], pd.DataFrame] = {}
    for run in runs.values():
        vss = {}
        for b, e in sorted(run.bins.items()):
            if round(e.voxel_size_a, 3) in vss:
                raise InputError(
                    f"{csv_path}: {run.name} bins {vss[round(e.voxel_size_a, 3)]} and {b} have the "
                    f"same voxel size {e.voxel_size_a:g} A (copick: one voxel spacing per binning)"
                )
            vss[round(e.voxel_size_a, 3)] = b
            df = read_particles(e.particles_csv)
            for line, n in run.n_particles[b]:
                if len(df) != n:
                    raise InputError(
                        f"{e.particles_csv}: {len(df)} particles, {csv_path} line {line} says {n} "
                        "(re-run faket dataset)"
                    )
            tables[(run.name, b)] = df
            for cid, name in df.groupby("class_id")["class_name"].first().items():
                add_class(int(cid), str(name), e.particles_csv)
        cj = run.folder / "layout" / "classes.json"
        meta = _json(cj) if cj.is_file() else None
        if isinstance(meta, dict):
            for k, v in meta.items():
                try:
                    cid = int(k)
                    name = str(v["name"])
                except (ValueError, KeyError, TypeError):
                    raise InputError(f"{cj}: expected {{class_id: {{name, source, diameter_nm}}}}") from None
                d = v.get("diameter_nm")
                add_class(
                    cid,
                    name,
                    cj,
                    source=str(v.get("source", "")),
                    radius_a=float(d) * 5.0 if isinstance(d, (int, float)) and d > 0 else None,
                )
                run.class_ids.add(cid)
        else:
            run.class_ids.update(int(c) for b in run.bins for c in tables[(run.name, b)]["class_id"].unique())
    given = any(not (r.folder / "layout" / "classes.json").is_file() for r in runs.values())
    for c in classes.values():
        c.non_particle = is_non_particle(c.name, c.source)
        c.pdb_id, c.emdb_id = template_ids(c.source, c.name, name_is_id=given and not c.source)
    # names copick refuses after mapping: two classes onto one copick name (cannot happen: the map is 1:1)
    by_copick: dict[str, int] = {}
    for c in classes.values():
        if c.copick in by_copick:
            raise InputError(f"classes {by_copick[c.copick]} and {c.class_id} map to one copick name {c.copick!r}")
        by_copick[c.copick] = c.class_id
        if c.class_id > 32767:
            raise InputError(f"class {c.name}: class id {c.class_id} is too large for a copick label")
    if not allow_empty:
        for run in runs.values():
            b0 = min(run.bins)
            df = tables[(run.name, b0)]
            have = set(int(c) for c in df["class_id"].unique())
            for cid in sorted(run.class_ids):
                c = classes[cid]
                if not c.non_particle and cid not in have:
                    raise InputError(
                        f"{run.bins[b0].particles_csv}: class {c.name} has no particle in {run.name} "
                        "(its copick picks would be empty; pass --allow-empty to write none)"
                    )
    # radius from the occupancy masks where classes.json gave none
    need = [c for c in classes.values() if c.radius_a is None]
    if need:
        from faket.formats.mrc import read_volume

        for run in runs.values():
            b0 = min(run.bins)
            df = tables[(run.name, b0)]
            todo = [c for c in need if c.radius_a is None and c.class_id in set(df["class_id"])]
            if not todo:
                continue
            occ = read_volume(run.bins[b0].occupancy_mask, what="occupancy mask").data
            radii = radius_from_masks(occ, dict(zip(df["particle_id"], df["class_id"])), run.bins[b0].voxel_size_a)
            for c in todo:
                c.radius_a = radii.get(c.class_id)
        for c in need:
            if c.radius_a is None:
                c.radius_a = 10.0 * run.bins[min(run.bins)].voxel_size_a / 2  # no voxel anywhere: a 10-voxel ball
    return ExportPlan(
        csv_path, sorted(runs.values(), key=lambda r: r.name), dict(sorted(classes.items())), modalities, tables
    )


# --------------------------------------------------------------------------------------------------
# writing a project (copick API)


def _pickable_objects(plan: ExportPlan):
    # lazy: copick
    from copick.models import PickableObject

    out = []
    for c in plan.classes.values():
        out.append(
            PickableObject(
                name=c.copick,
                is_particle=not c.non_particle,
                label=c.class_id,
                color=object_colour(c.class_id),
                radius=round(float(c.radius_a), 3) if c.radius_a else None,
                pdb_id=c.pdb_id,
                emdb_id=c.emdb_id,
                metadata={"faket": {"class_name": c.name, "class_id": c.class_id, "source": c.source}},
            )
        )
    return out


def write_project(
    plan: ExportPlan,
    staging: str | os.PathLike,
    final: str | os.PathLike,
    *,
    user_id: str = DEFAULT_USER,
    session_id: str | None = None,
    tomo_types: Mapping[str, str] | None = None,
    levels: int = 3,
    name: str = "faket",
    description: str = "",
    progress=None,
) -> dict:
    """Write the copick project of ``plan`` into the folder ``staging`` whose config names ``final`` as its
    overlay root (the caller renames ``staging`` to ``final``). Returns a summary dict.

    One run per tomogram; one voxel spacing per binning; one tomogram per modality (:func:`tomo_type_for`);
    picks per particle class (user ``user_id``, session ``session_id``, default :data:`DEFAULT_SESSION` "0",
    copick's session of a tool's picks; each run's layout seed is in the summary) from the finest binning; segmentations per binning: multilabel ``classes`` = the
    class mask, an instance segmentation per object from the occupancy mask (value = particle_id = the
    picks' instance_id), a binary one per non-particle object (membranes, vesicles).
    """
    # lazy: copick
    import copick

    # lazy: copick
    from copick.impl.filesystem import CopickRootFSSpec

    user_id = check_copick_id(user_id, "--user-id")
    if session_id is not None:
        session_id = check_copick_id(session_id, "--session-id")
    types = {m: tomo_type_for(m, tomo_types) for m in plan.modalities}
    if len(set(types.values())) != len(types):
        raise InputError(f"--tomo-type: two modalities share one tomogram type ({types})")
    if levels < 1:
        raise InputError(f"--levels {levels}: must be at least 1")
    staging = Path(staging)
    cfg_path = staging / "copick_config.json"
    objects = _pickable_objects(plan)
    final_root = copick.new_config(
        str(cfg_path),
        overlay_root=str(Path(final).resolve()),
        proj_name=name,
        proj_description=description,
        pickable_objects=objects,
    )
    # the same config, but writing into the staging folder
    root = CopickRootFSSpec(final_root.config.model_copy(update={"overlay_root": "local://" + str(staging.resolve())}))
    by_label = {c.class_id: c for c in plan.classes.values()}
    summary = {"runs": [], "tomo_types": types, "user_id": user_id, "objects": [o.name for o in objects]}
    for rp in plan.runs:
        session = session_id or DEFAULT_SESSION
        run = root.new_run(rp.name)
        b0 = min(rp.bins)
        df = plan.tables[(rp.name, b0)]
        n_picks = {}
        for b, e in sorted(rp.bins.items()):
            vs = run.new_voxel_spacing(round(e.voxel_size_a, 3))
            for mod, path in e.tomograms.items():
                data = read_volume(path, what="tomogram").data
                vs.new_tomogram(types[mod]).from_numpy(data, levels=levels)
                del data
                if progress:
                    progress()
            cm = read_volume(e.class_mask, what="class mask").data
            if cm.size and (cm.min() < 0 or not np.array_equal(cm, np.round(cm))):
                raise InputError(f"{e.class_mask}: values must be non-negative integers (class ids)")
            cm = cm.astype(np.int32)
            labels = [int(v) for v in np.unique(cm) if v > 0]
            unknown = [v for v in labels if v not in by_label]
            if unknown:
                raise InputError(
                    f"{e.class_mask}: class id {unknown[0]} has no name (not in classes.json nor the particle table)"
                )
            seg = run.new_segmentation(vs.voxel_size, MULTILABEL_NAME, session, is_multilabel=True, user_id=user_id)
            seg.from_numpy(cm)
            occ = read_volume(e.occupancy_mask, what="occupancy mask").data
            dfb = plan.tables[(rp.name, b)]
            inst = instance_volumes(
                occ,
                dict(zip((int(v) for v in dfb["particle_id"]), (int(v) for v in dfb["class_id"]))),
                str(e.occupancy_mask),
            )
            for cid, vol in inst:
                s = run.new_segmentation(
                    vs.voxel_size, by_label[cid].copick, session, user_id=user_id, is_instance=True
                )
                s.from_numpy(vol)
                del vol
            del occ
            for cid in labels:
                if by_label[cid].non_particle:
                    s = run.new_segmentation(vs.voxel_size, by_label[cid].copick, session, user_id=user_id)
                    s.from_numpy((cm == cid).astype(np.uint8))
        e0 = rp.bins[b0]
        for cid, rows in df.groupby("class_id"):
            c = by_label[int(cid)]
            if c.non_particle:
                continue
            pos, tr = particles_to_picks(rows, e0.voxel_size_a)
            picks = run.new_picks(c.copick, session, user_id=user_id)
            picks.meta.voxel_spacing = round(e0.voxel_size_a, 3)
            picks.from_numpy(pos, tr, instance_ids=rows["particle_id"].to_numpy(dtype=np.int64))
            n_picks[c.copick] = len(rows)
        summary["runs"].append(
            {
                "run": rp.name,
                "session_id": session,
                "layout_seed": rp.seed,
                "voxel_spacings": [round(e.voxel_size_a, 3) for _, e in sorted(rp.bins.items())],
                "picks": n_picks,
            }
        )
    return summary
