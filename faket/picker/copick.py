"""Reading tomograms from and writing picks into an existing copick project (copick's own API).

The picker uses it for a user's annotated copick project as a test set (``benchmark.test: {copick: ...}``,
``faket picker truth --copick``) and for its picks (``faket picker localize --copick``). Conventions as in
:mod:`faket.formats.copick`: locations in Angstrom with voxel 0's centre at 0, object names through
:func:`~faket.formats.copick.copick_name` / :func:`~faket.formats.copick.faket_name`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import numpy as np
import pandas as pd

from faket.errors import InputError
from faket.formats.copick import (
    _open_project,
    check_copick_id,
    copick_config_path,
    copick_name,
    get_run,
    particles_to_picks,
    read_copick_particles,
)

DEFAULT_PICKER_USER = "faket-picker"


def open_project(project: str):
    """The copick root of a project folder (with ``copick_config.json``) or config file; InputError naming it."""
    return _open_project(str(project), str(project))


def config_path(project: str):
    """The project's ``copick_config.json`` (for provenance and workflow inputs)."""
    return copick_config_path(project)


def run_names(project: str) -> list[str]:
    return [r.name for r in open_project(project).runs]


def _voxel_spacing(run, project: str, voxel_spacing: float | None):
    spacings = sorted(v.voxel_size for v in run.voxel_spacings)
    if not spacings:
        raise InputError(f"{project}: run {run.name} has no tomograms (no voxel spacing)")
    if voxel_spacing is None:
        if len(spacings) > 1:
            raise InputError(
                f"{project}: run {run.name} has voxel spacings {spacings}; choose one (voxel_spacing / --voxel-spacing)"
            )
        voxel_spacing = spacings[0]
    vs = next((v for v in run.voxel_spacings if abs(v.voxel_size - float(voxel_spacing)) < 1e-3), None)
    if vs is None:
        raise InputError(f"{project}: run {run.name} has no voxel spacing {voxel_spacing:g} (has {spacings})")
    return vs


def read_tomogram(
    project: str, run: str, tomo_type: str | None = None, voxel_spacing: float | None = None
) -> tuple[np.ndarray, float]:
    """``(tomogram (Z, Y, X) float32, voxel size A)`` of one run. Without ``tomo_type`` the run's only
    tomogram type; without ``voxel_spacing`` its only voxel spacing (several: an error listing them)."""
    root = open_project(project)
    r = get_run(root, run, str(project))
    vs = _voxel_spacing(r, project, voxel_spacing)
    types = sorted(t.tomo_type for t in vs.tomograms)
    if tomo_type is None:
        if len(types) != 1:
            raise InputError(
                f"{project}: run {run} at {vs.voxel_size:g} A has tomogram types {types or 'none'}; "
                "choose one (tomo_type / --tomo-type)"
            )
        tomo_type = types[0]
    found = vs.get_tomograms(tomo_type)
    tomo = found[0] if found else None  # several of one type (portal projects): the first
    if tomo is None:
        raise InputError(f"{project}: run {run} has no tomogram {tomo_type!r} at {vs.voxel_size:g} A (has {types})")
    try:
        data = np.asarray(tomo.numpy(), dtype=np.float32)
    except Exception as exc:  # a missing or corrupt zarr store
        raise InputError(f"{project}: cannot read tomogram {tomo_type} of run {run} ({type(exc).__name__})") from None
    if data.ndim != 3:
        raise InputError(f"{project}: tomogram {tomo_type} of run {run} is not 3D (shape {data.shape})")
    return data, float(vs.voxel_size)


def read_truth(
    project: str, run: str, voxel_size_a: float, *, user: str | None = None, session: str | None = None
) -> pd.DataFrame:
    """Every particle object's picks of ``run`` as a faket particle table in voxels of ``voxel_size_a``
    (non-particle objects such as membranes are left out)."""
    q = {k: v for k, v in (("user", user), ("session", session), ("voxel_spacing", voxel_size_a)) if v}
    df = read_copick_particles(f"copick://{project}/{run}/*?{urlencode(q)}", voxel_size_a=voxel_size_a)
    root = open_project(project)
    keep = {o.name for o in root.pickable_objects if o.is_particle}
    return df[[copick_name(n) in keep for n in df["class_name"]]].reset_index(drop=True)


def object_radii(project: str) -> dict[str, float]:
    """``{faket class name: radius A}`` of the project's particle objects that state a radius."""
    # lazy: pandas
    from faket.formats.copick import faket_name

    return {
        faket_name(o.name): float(o.radius)
        for o in open_project(project).pickable_objects
        if o.is_particle and o.radius
    }


def check_pick_classes(project: str, class_names) -> None:
    """InputError unless every class is a pickable object of the project (checked before anything is written)."""
    objects = {o.name for o in open_project(project).pickable_objects}
    missing = sorted(n for n in {str(c) for c in class_names} if copick_name(n) not in objects)
    if missing:
        raise InputError(
            f"{project}: class {missing[0]!r} is not a pickable object of the project "
            f"(objects: {', '.join(sorted(objects)) or 'none'})"
        )


def write_picks(
    project: str,
    run: str,
    picks: pd.DataFrame,
    voxel_size_a: float,
    *,
    user_id: str = DEFAULT_PICKER_USER,
    session_id: str = "0",
) -> dict[str, Any]:
    """Write a faket particle table (voxels of a grid of ``voxel_size_a``) as copick picks of ``run`` (created
    when missing), one picks file per class (user ``user_id``, session ``session_id``; replaced when it
    exists). Every class must be a pickable object of the project. Returns ``{object: n_picks}``."""
    user_id = check_copick_id(user_id, "--user-id")
    session_id = check_copick_id(session_id, "--session-id")
    check_pick_classes(project, picks["class_name"])
    root = open_project(project)
    r = root.get_run(run) or root.new_run(run)
    written = {}
    for name, rows in picks.groupby("class_name", sort=True):
        pos, tr = particles_to_picks(rows, voxel_size_a)
        p = r.new_picks(copick_name(str(name)), session_id, user_id=user_id, exist_ok=True)
        p.meta.voxel_spacing = round(float(voxel_size_a), 3)
        scores = rows["score"].to_numpy(dtype=np.float64) if "score" in rows else None
        p.from_numpy(pos, tr, scores=scores)
        written[copick_name(str(name))] = len(rows)
    return written
