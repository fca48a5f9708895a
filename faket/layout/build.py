"""Particle layouts: crowded random layouts and given particle lists -> density volume, masks, table.

Pure functions on arrays (no paths). Templates come in as a mapping ``class name -> (Z, Y, X) density``
(non-negative; see :mod:`faket.layout.templates` for the built-in classes, MRC maps and PDB models).

Geometry and labels
-------------------
- A particle with centre ``(x, y, z)`` (voxels) and RELION angles ``(rot, tilt, psi)`` is its template
  rotated about the template's centre voxel ``(N - 1) / 2`` by ``A`` (template -> volume, see
  :mod:`faket.rotation`) and moved so that the centre voxel lands on ``(x, y, z)``.
- The particle's *mask* is the rotated template above ``mask_threshold * template.max()``, plus its
  centre voxel (so hollow particles - rings, vesicles - own their centre too). Masks never overlap in a
  random layout: placement tests the rotated mask voxel by voxel against the occupancy built so far
  (not bounding spheres). Densities are added in full (tails below the threshold may overlap).
- Outputs: ``density`` (float32, sum of rotated templates), ``class_mask`` (uint8, or int16 with more
  than 255 classes: 0 background, else class_id), ``occupancy`` (int32: 0 background, else
  particle_id), and the particle table (:mod:`faket.formats.particles` columns).

Random layouts
--------------
Particles are placed largest first (by mask volume). For each particle an orientation uniform on SO(3)
is drawn and random integer centres are tried (a cheap test of a few mask voxels first, then the full
mask) so that the whole mask lies inside the box and inside the specimen slab ``[z0, z1)``. After
``tries_per_orientation`` failed positions a new orientation is drawn; after ``max_tries`` the particle is
given up, and after ``give_up_after`` consecutive failures the rest of its class is skipped.
Classes marked isotropic (vesicles, gold beads) keep angles 0 and are not interpolated.
Everything is drawn from one ``numpy.random.Generator(seed)``: the same seed gives the same arrays.

Given lists
-----------
:func:`place_particles` puts every row at its (possibly sub-voxel) centre and angles; its centre voxel is
``round(x, y, z)`` and the sub-voxel rest is a shift inside the same interpolation. A centre outside the
box is an error; parts of a particle outside the box are clipped. Overlapping masks are allowed (the
earlier particle keeps the voxel, except that every particle keeps its own centre voxel) and reported.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from faket.errors import InputError
from faket.formats.voxel import DEFAULT_VOXEL_SIZE_A
from faket.layout.canvas import (
    Layout,
    LayoutClass,
    NotEnoughRoom,
    _template_entry,
    counts_from_fractions,
    fiducial_template,
    place_particles,
    prepare_template,
    random_layout,
    vesicle_template,
)

__all__ = [
    "validate_spec",
    "default_spec",
    "class_table",
    "make_layout",
    "LayoutResult",
    "LayoutClass",
    "Layout",
    "NotEnoughRoom",
    "vesicle_template",
    "fiducial_template",
    "prepare_template",
    "counts_from_fractions",
    "random_layout",
    "place_particles",
]


# --------------------------------------------------------------------------------------------------
# the layout spec (YAML mapping; documented in ``faket layout --help``)

DEFAULT_BOX = (128, 256, 256)
DEFAULT_VOXEL_SIZE = DEFAULT_VOXEL_SIZE_A
DEFAULT_SLAB = 100
DEFAULT_COUNT_PER_CLASS = 120
DEFAULT_VESICLES = {"count": 1, "diameter_nm": 60.0, "membrane_thickness_nm": 4.0, "contrast": 1.0, "name": "vesicle"}
DEFAULT_FIDUCIALS = {"count": 5, "diameter_nm": 10.0, "contrast": 10.0, "name": "fiducial"}


_CLASS_KEYS = {
    "template": str,
    "name": str,
    "count": int,
    "fraction": float,
    "map_voxel_size": float,
    "resolution": float,
    "membrane": str,
    "insertion_nm": float,
    "axis": "vec3",
    "leaflet": str,
}
_VESICLE_KEYS = {"count": int, "diameter_nm": float, "membrane_thickness_nm": float, "contrast": float, "name": str}
_FIDUCIAL_KEYS = {"count": int, "diameter_nm": float, "contrast": float, "name": str}
_TOP_KEYS = {
    "box": list,
    "voxel_size": float,
    "slab_thickness": int,
    "mask_threshold": float,
    "interpolation": str,
    "max_tries": int,
    "tomo_name": str,
    "classes": list,
    "vesicles": dict,
    "fiducials": dict,
    "membranes": list,
    "filaments": list,
}
_MEMBRANE_KEYS = {
    "shape": str,
    "count": int,
    "size_nm": "size",
    "thickness_nm": float,
    "length_nm": float,
    "normal": "vec3",
    "axis": "vec3",
    "curvature": float,
    "contrast": float,
    "name": str,
}
_FILAMENT_KEYS = {
    "type": str,
    "count": int,
    "length_nm": float,
    "persistence_length_nm": float,
    "name": str,
    "contrast": float,
    "template": str,
    "rise_nm": float,
    "twist_deg": float,
    "radius_nm": float,
    "map_voxel_size": float,
    "resolution": float,
}
#: defaults of a ``membranes`` entry; ``size_nm`` by shape (outer diameter; ellipsoid: outer semi-axes)
DEFAULT_MEMBRANE = {"count": 1, "thickness_nm": 4.5, "contrast": 1.0}
DEFAULT_MEMBRANE_SIZE_NM = {"sphere": 100.0, "ellipsoid": [60.0, 45.0, 35.0], "tube": 40.0}
#: defaults of a ``filaments`` entry (persistence length by type: filaments.FILAMENT_TYPES)
DEFAULT_FILAMENT = {"count": 1, "length_nm": 200.0, "contrast": 1.0}
LEAFLETS = ("outer", "inner", "both")


def _typed(value, typ, where: str):
    if typ == "vec3":
        if (
            not isinstance(value, list)
            or len(value) != 3
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        ):
            raise InputError(f"{where}: expected three numbers [x, y, z], got {value!r}")
        if not any(value):
            raise InputError(f"{where}: must not be the zero vector")
        return [float(v) for v in value]
    if typ == "size":
        if isinstance(value, list):
            return _typed(value, "vec3", where)
        return _typed(value, float, where)
    if typ is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputError(f"{where}: expected an integer, got {value!r}")
        return value
    if typ is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InputError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if typ is str:
        if not isinstance(value, str) or not value.strip():
            raise InputError(f"{where}: expected a non-empty string, got {value!r}")
        return value.strip()
    if typ is list:
        if not isinstance(value, list):
            raise InputError(f"{where}: expected a list, got {type(value).__name__}")
        return value
    if typ is dict:
        if not isinstance(value, dict):
            raise InputError(f"{where}: expected a mapping (key: value), got {type(value).__name__}")
        return value
    raise AssertionError(typ)


def _section(raw: dict, keys: dict, where: str) -> dict:
    out = {}
    for k, v in raw.items():
        if k not in keys:
            raise InputError(f"{where}: unknown key {k!r} (known: {', '.join(keys)})")
        out[k] = _typed(v, keys[k], f"{where}.{k}")
    return out


def validate_spec(raw, source: str = "spec") -> dict:
    """Check a spec mapping (see the module docstring) and fill defaults; returns a plain dict."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise InputError(f"{source}: expected a mapping of keys at the top level")
    # an empty section (``vesicles:`` with nothing under it) means "with its defaults"
    raw = {
        k: ({} if v is None and k in ("vesicles", "fiducials") else [] if v is None and k == "classes" else v)
        for k, v in raw.items()
    }
    spec = _section(raw, _TOP_KEYS, source)
    box = spec.get("box", list(DEFAULT_BOX))
    if len(box) != 3 or not all(isinstance(b, int) and not isinstance(b, bool) and b > 0 for b in box):
        raise InputError(f"{source}.box: expected three positive integers [Z, Y, X], got {box!r}")
    spec["box"] = [int(b) for b in box]
    spec.setdefault("voxel_size", DEFAULT_VOXEL_SIZE)
    if spec["voxel_size"] <= 0:
        raise InputError(f"{source}.voxel_size: must be positive")
    if "slab_thickness" in spec and spec["slab_thickness"] < 1:
        raise InputError(f"{source}.slab_thickness: must be at least 1 voxel")
    spec.setdefault("mask_threshold", 0.1)
    if not 0 < spec["mask_threshold"] < 1:
        raise InputError(f"{source}.mask_threshold: must be between 0 and 1")
    spec.setdefault("interpolation", "linear")
    if spec["interpolation"] not in ("linear", "cubic"):
        raise InputError(f"{source}.interpolation: expected linear or cubic, got {spec['interpolation']!r}")
    spec.setdefault("max_tries", 2000)
    if spec["max_tries"] < 1:
        raise InputError(f"{source}.max_tries: must be at least 1")
    spec.setdefault("tomo_name", "faket")
    classes = []
    for i, c in enumerate(spec.get("classes", [])):
        where = f"{source}.classes[{i}]"
        if not isinstance(c, dict):
            raise InputError(f"{where}: expected a mapping with template and count or fraction")
        c = _section(c, _CLASS_KEYS, where)
        if "template" not in c:
            raise InputError(f"{where}: missing key 'template'")
        if "count" in c and "fraction" in c:
            raise InputError(f"{where}: give count or fraction, not both")
        if c.get("count", 0) < 0:
            raise InputError(f"{where}.count: must be >= 0")
        if "fraction" in c and not 0 <= c["fraction"] < 1:
            raise InputError(f"{where}.fraction: must be in [0, 1)")
        if "count" not in c and "fraction" not in c:
            c["count"] = DEFAULT_COUNT_PER_CLASS
        mp_keys = [k for k in ("insertion_nm", "axis", "leaflet") if k in c]
        if "membrane" in c:
            if "fraction" in c:
                raise InputError(f"{where}: a membrane protein class takes a count, not a fraction")
            c.setdefault("insertion_nm", 0.0)
            c.setdefault("axis", [0.0, 0.0, 1.0])
            c.setdefault("leaflet", "outer")
            if c["leaflet"] not in LEAFLETS:
                raise InputError(f"{where}.leaflet: expected one of {', '.join(LEAFLETS)}, got {c['leaflet']!r}")
        elif mp_keys:
            raise InputError(f"{where}: {mp_keys[0]} needs membrane: <membrane name>")
        classes.append(c)
    spec["classes"] = classes
    for key, keys, default in (
        ("vesicles", _VESICLE_KEYS, DEFAULT_VESICLES),
        ("fiducials", _FIDUCIAL_KEYS, DEFAULT_FIDUCIALS),
    ):
        sec = _section(spec.get(key, {"count": 0}), keys, f"{source}.{key}")
        merged = dict(default)
        merged["count"] = 0 if key not in spec else merged["count"]
        merged.update(sec)
        for k in ("count",):
            if merged[k] < 0:
                raise InputError(f"{source}.{key}.{k}: must be >= 0")
        for k in ("diameter_nm", "membrane_thickness_nm", "contrast"):
            if k in merged and merged[k] <= 0:
                raise InputError(f"{source}.{key}.{k}: must be positive")
        spec[key] = merged
    spec["membranes"] = [
        _membrane_entry(m, f"{source}.membranes[{i}]") for i, m in enumerate(spec.get("membranes", []))
    ]
    spec["filaments"] = [
        _filament_entry(f, f"{source}.filaments[{i}]") for i, f in enumerate(spec.get("filaments", []))
    ]
    mnames = [m["name"] for m in spec["membranes"]]
    for i, c in enumerate(classes):
        if "membrane" in c and c["membrane"] not in mnames:
            raise InputError(
                f"{source}.classes[{i}].membrane: no membrane named {c['membrane']!r} "
                f"(membranes: {', '.join(mnames) or 'none'})"
            )
    return spec


def _positive(sec: dict, keys, where: str) -> None:
    for k in keys:
        v = sec.get(k)
        if v is not None and (min(v) if isinstance(v, list) else v) <= 0:
            raise InputError(f"{where}.{k}: must be positive")


def _membrane_entry(m, where: str) -> dict:
    # lazy: pandas
    from faket.layout.membranes import SHAPES

    if not isinstance(m, dict):
        raise InputError(f"{where}: expected a mapping with shape, count, size_nm, ...")
    m = _section(m, _MEMBRANE_KEYS, where)
    if "shape" not in m:
        raise InputError(f"{where}: missing key 'shape' ({' | '.join(SHAPES)})")
    shape = m["shape"]
    if shape not in SHAPES:
        raise InputError(f"{where}.shape: expected one of {', '.join(SHAPES)}, got {shape!r}")
    out = {**DEFAULT_MEMBRANE, "name": f"{shape}_membrane", **m}
    if shape == "plane":
        for k in ("size_nm", "length_nm", "axis"):
            if k in m:
                raise InputError(f"{where}.{k}: does not apply to a plane (it crosses the box; orient it with normal)")
        out.setdefault("normal", [0.0, 0.0, 1.0])
        out.setdefault("curvature", 0.0)
    else:
        if "curvature" in m:
            raise InputError(f"{where}.curvature: applies to planes only (other shapes are curved by their size)")
        if "normal" in m:
            raise InputError(f"{where}.normal: applies to planes only (tubes take axis)")
        if "axis" in m and shape != "tube":
            raise InputError(f"{where}.axis: applies to tubes only")
        if "length_nm" in m and shape != "tube":
            raise InputError(f"{where}.length_nm: applies to tubes only")
        out.setdefault("size_nm", DEFAULT_MEMBRANE_SIZE_NM[shape])
        if shape == "ellipsoid" and not isinstance(out["size_nm"], list):
            raise InputError(f"{where}.size_nm: an ellipsoid takes three outer semi-axes [a, b, c] in nm")
        if shape != "ellipsoid" and isinstance(out["size_nm"], list):
            raise InputError(f"{where}.size_nm: a {shape} takes one outer diameter in nm")
        _positive(out, ("size_nm", "length_nm"), where)
        radius = min(out["size_nm"]) if shape == "ellipsoid" else out["size_nm"] / 2
        if radius <= out["thickness_nm"]:
            raise InputError(f"{where}.size_nm: too small for a {out['thickness_nm']:g} nm bilayer")
    if out["count"] < 0:
        raise InputError(f"{where}.count: must be >= 0")
    _positive(out, ("thickness_nm", "contrast"), where)
    return out


def _filament_entry(f, where: str) -> dict:
    # lazy: pandas
    from faket.layout.filaments import FILAMENT_TYPES

    if not isinstance(f, dict):
        raise InputError(f"{where}: expected a mapping with type, count, length_nm, ...")
    f = _section(f, _FILAMENT_KEYS, where)
    if "type" not in f:
        raise InputError(f"{where}: missing key 'type' ({' | '.join(FILAMENT_TYPES)})")
    kind = f["type"]
    if kind not in FILAMENT_TYPES:
        raise InputError(f"{where}.type: expected one of {', '.join(FILAMENT_TYPES)}, got {kind!r}")
    custom_keys = ("template", "rise_nm", "twist_deg", "radius_nm", "map_voxel_size", "resolution")
    if kind == "custom":
        if "template" not in f:
            raise InputError(f"{where}: a custom filament needs template (its monomer) and rise_nm")
        if "rise_nm" not in f:
            raise InputError(f"{where}: a custom filament needs rise_nm")
    else:
        bad = [k for k in custom_keys if k in f]
        if bad:
            raise InputError(f"{where}.{bad[0]}: applies to custom filaments only")
    out = {**DEFAULT_FILAMENT, "name": kind, "persistence_length_nm": FILAMENT_TYPES[kind].persistence_length_nm, **f}
    if kind == "custom":
        out.setdefault("twist_deg", 0.0)
        out.setdefault("radius_nm", 0.0)
        if out["radius_nm"] < 0:
            raise InputError(f"{where}.radius_nm: must be >= 0")
    if out["count"] < 0:
        raise InputError(f"{where}.count: must be >= 0")
    _positive(out, ("length_nm", "persistence_length_nm", "contrast", "rise_nm"), where)
    return out


def default_spec() -> dict:
    """The built-in default layout (crowded, every built-in class, one vesicle, five fiducials)."""
    # lazy: pandas
    from faket.layout.templates import BUILTIN_NAMES

    return validate_spec(
        {
            "box": list(DEFAULT_BOX),
            "voxel_size": DEFAULT_VOXEL_SIZE,
            "slab_thickness": DEFAULT_SLAB,
            "classes": [{"template": n, "count": DEFAULT_COUNT_PER_CLASS} for n in BUILTIN_NAMES],
            "vesicles": dict(DEFAULT_VESICLES),
            "fiducials": dict(DEFAULT_FIDUCIALS),
        },
        "default spec",
    )


# --------------------------------------------------------------------------------------------------
# spec -> class table -> layout (what ``faket layout`` runs)


@dataclass
class LayoutResult:
    """What :func:`make_layout` built: the layout, its classes (classes.json), a summary and messages."""

    layout: Layout
    spec: dict
    classes: dict[str, dict]  # classes.json: str(class_id) -> {name, kind, source, diameter_nm}
    slab_z: tuple[int, int] | None
    summary: dict
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _vesicle_entry(v: dict, voxel_size_a: float, name: str | None = None) -> dict:
    return dict(
        name=name or v["name"],
        kind="vesicle",
        density=vesicle_template(
            v["diameter_nm"], voxel_size_a, membrane_thickness_nm=v["membrane_thickness_nm"], value=v["contrast"]
        ),
        source=f"vesicle: bilayer {v['membrane_thickness_nm']:g} nm",
        diameter_nm=float(v["diameter_nm"]),
        count=v["count"],
        fraction=None,
        isotropic=True,
    )


def _fiducial_entry(f: dict, voxel_size_a: float, name: str | None = None) -> dict:
    return dict(
        name=name or f["name"],
        kind="fiducial",
        density=fiducial_template(f["diameter_nm"], voxel_size_a, value=f["contrast"]),
        source="gold bead",
        diameter_nm=float(f["diameter_nm"]),
        count=f["count"],
        fraction=None,
        isotropic=True,
    )


def class_table(
    spec: dict,
    voxel_size_a: float,
    *,
    cache_dir=None,
    names: Sequence[str] | None = None,
    source: str = "particle list",
) -> list[dict]:
    """The particle classes of a (validated) spec, built once: a list of dicts with ``name, kind,
    density, source, diameter_nm, count, fraction, isotropic``.

    Without ``names``: the spec's ``classes`` in order, then the vesicles and the fiducials when their
    count is > 0 (class ids = positions 1..K). With ``names`` (the classes of a given particle list):
    one entry per name, looked up among the spec's classes (by name, else template file stem), the
    vesicle and fiducial sections (their name, or "vesicle"/"fiducial") and the built-in templates.
    """
    if names is None:
        out = [_template_entry(c, voxel_size_a, cache_dir) for c in spec["classes"]]
        if spec["vesicles"]["count"] > 0:
            out.append(_vesicle_entry(spec["vesicles"], voxel_size_a))
        if spec["fiducials"]["count"] > 0:
            out.append(_fiducial_entry(spec["fiducials"], voxel_size_a))
        seen = [c["name"] for c in out]
        dup = {n for n in seen if seen.count(n) > 1}
        if dup:
            raise InputError(f"class name {sorted(dup)[0]!r} is used twice (give the classes distinct names)")
        return out
    # lazy: pandas
    from faket.layout.templates import BUILTIN_NAMES

    by_name = {(c.get("name") or Path(c["template"]).name.split(".")[0]): c for c in spec["classes"]}
    out = []
    for name in names:
        if name in by_name:
            out.append(_template_entry(by_name[name], voxel_size_a, cache_dir, name=name))
        elif name in (spec["vesicles"]["name"], "vesicle"):
            out.append(_vesicle_entry(spec["vesicles"], voxel_size_a, name=name))
        elif name in (spec["fiducials"]["name"], "fiducial"):
            out.append(_fiducial_entry(spec["fiducials"], voxel_size_a, name=name))
        elif name in BUILTIN_NAMES:
            out.append(_template_entry({"template": name}, voxel_size_a, cache_dir, name=name))
        else:
            raise InputError(
                f"{source}: unknown class {name!r}: not in the spec's classes "
                f"and not a built-in ({', '.join(BUILTIN_NAMES)})"
            )
    return out


def _class_json(entry: dict) -> dict:
    return {
        "name": entry["name"],
        "kind": entry["kind"],
        "source": str(entry["source"]),
        "diameter_nm": float(entry["diameter_nm"]),
    }


def _structure_classes(spec: dict, first_id: int) -> dict[str, dict]:
    """classes.json entries of the spec's membranes and filaments (ids after the particle classes)."""
    out = {}
    i = first_id
    for m in spec["membranes"]:
        size = m.get("size_nm")
        out[str(i)] = {
            "name": m["name"],
            "kind": "membrane",
            "source": f"membrane: {m['shape']}, bilayer {m['thickness_nm']:g} nm",
            "diameter_nm": float(max(size) * 2 if isinstance(size, list) else size) if size else None,
            "shape": m["shape"],
            "thickness_nm": m["thickness_nm"],
        }
        i += 1
    for f in spec["filaments"]:
        # lazy: pandas
        from faket.layout.filaments import FILAMENT_TYPES

        kind = FILAMENT_TYPES[f["type"]]
        out[str(i)] = {
            "name": f["name"],
            "kind": "filament",
            "source": f"filament: {f['type']}" + (f" of {f['template']}" if f["type"] == "custom" else ""),
            "diameter_nm": 2 * kind.outer_radius_nm() if f["type"] != "custom" else None,
            "type": f["type"],
            "length_nm": f["length_nm"],
            "persistence_length_nm": f["persistence_length_nm"],
        }
        i += 1
    return out


def make_layout(
    spec: dict,
    *,
    seed: int = 0,
    particles: pd.DataFrame | None = None,
    allow_fewer: bool = False,
    cache_dir=None,
    source: str = "spec",
    particles_source: str = "particle list",
    progress: Callable[[int], None] | None = None,
    progress_total: Callable[[int], None] | None = None,
) -> LayoutResult:
    """Build the layout of a validated spec: random (the default) or the given ``particles`` table.

    ``progress_total(n)`` is called once with the number of particles, ``progress(k)`` as they are placed.
    A random layout that cannot hold every requested particle raises :class:`NotEnoughRoom` unless
    ``allow_fewer`` (then ``warnings`` says what is missing).
    """
    box = tuple(spec["box"])
    vs = float(spec["voxel_size"])
    order = 1 if spec["interpolation"] == "linear" else 3
    warnings: list[str] = []
    notes: list[str] = []
    if particles is not None:
        df = particles
        if len(df) == 0:
            raise InputError(f"{particles_source}: no particles")
        names = list(dict.fromkeys(df["class_name"]))
        table = {e["name"]: e for e in class_table(spec, vs, cache_dir=cache_dir, names=names, source=particles_source)}
        if progress_total:
            progress_total(len(df))
        lay = place_particles(
            {k: v["density"] for k, v in table.items()},
            df,
            box,
            mask_threshold=spec["mask_threshold"],
            order=order,
            isotropic=[k for k, v in table.items() if v["isotropic"]],
            source=particles_source,
            progress=progress,
        )
        if lay.overlap_voxels:
            warnings.append(
                f"{particles_source}: particle masks overlap on {lay.overlap_voxels} voxels "
                "(the earlier particle keeps them)"
            )
        if lay.centres_taken:
            warnings.append(
                f"{particles_source}: {len(lay.centres_taken)} particle centre(s) lie in another "
                f"particle's mask (e.g. particle {lay.centres_taken[0]})"
            )
        if lay.clipped:
            notes.append(f"{len(lay.clipped)} particle(s) clipped at the box edge")
        if spec["membranes"] or spec["filaments"]:
            warnings.append(
                f"{particles_source}: the spec's membranes and filaments are not placed with a "
                "particle list (only the listed particles are)"
            )
        ids = lay.particles.groupby("class_name")["class_id"].first().to_dict()
        classes_json = {str(int(ids[n])): _class_json(table[n]) for n in sorted(table, key=lambda k: ids[k])}
        slab = None
    else:
        nz = box[0]
        thick = spec.get("slab_thickness", nz)
        if thick > nz:
            raise InputError(f"slab_thickness {thick} is larger than the box Z size {nz}")
        z0 = (nz - thick) // 2
        slab = (z0, z0 + thick)
        table = class_table(spec, vs, cache_dir=cache_dir)
        if not table and not (spec["membranes"] or spec["filaments"]):
            raise InputError(f"{source}: no classes to place (add classes, vesicles or fiducials)")
        classes = []
        slab_voxels = thick * box[1] * box[2]
        for i, c in enumerate(table, start=1):
            count = c["count"]
            if count is None:  # fraction -> count from the unrotated mask volume
                cube, thr = prepare_template(c["density"], mask_threshold=spec["mask_threshold"], name=c["name"])
                count = counts_from_fractions(
                    {c["name"]: c["fraction"]}, {c["name"]: int((cube > thr).sum())}, slab_voxels
                )[c["name"]]
            classes.append(
                LayoutClass(
                    class_id=i, name=c["name"], template=c["density"], count=int(count), isotropic=c["isotropic"]
                )
            )
        total = sum(c.count for c in classes)
        if progress_total:
            progress_total(total)
        if spec["membranes"] or spec["filaments"]:
            # lazy: pandas
            from faket.layout.cellular import cellular_layout

            lay = cellular_layout(
                spec,
                table,
                classes,
                box,
                slab,
                seed=seed,
                order=order,
                allow_fewer=allow_fewer,
                cache_dir=cache_dir,
                progress=progress,
            )
            what = "structures"
        else:
            lay = random_layout(
                classes,
                box,
                seed=seed,
                slab_z=slab,
                mask_threshold=spec["mask_threshold"],
                order=order,
                max_tries=spec["max_tries"],
                allow_fewer=allow_fewer,
                progress=progress,
            )
            what = "particles"
        if sum(lay.placed.values()) < sum(lay.requested.values()):
            warnings.append(
                "only {} of {} requested {} fit ({})".format(
                    sum(lay.placed.values()),
                    sum(lay.requested.values()),
                    what,
                    ", ".join(
                        f"{k} {lay.placed[k]}/{lay.requested[k]}"
                        for k in lay.requested
                        if lay.placed[k] < lay.requested[k]
                    ),
                )
            )
        classes_json = {str(c.class_id): _class_json(t) for c, t in zip(classes, table)}
        classes_json.update(_structure_classes(spec, len(classes) + 1))
    occupied = float(np.count_nonzero(lay.occupancy))
    frac_den = (slab[1] - slab[0]) * box[1] * box[2] if slab else int(np.prod(box))
    summary = {
        "n_particles": int(len(lay.particles)),
        "requested": lay.requested,
        "placed": lay.placed,
        "slab_z": list(slab) if slab else None,
        "occupied_fraction": occupied / frac_den,
        "classes": classes_json,
    }
    return LayoutResult(
        layout=lay, spec=spec, classes=classes_json, slab_z=slab, summary=summary, warnings=warnings, notes=notes
    )


# --------------------------------------------------------------------------------------------------
# simple templates (vesicles, gold)


# --------------------------------------------------------------------------------------------------
# prepared templates and rotated instances


# --------------------------------------------------------------------------------------------------
# the volume being built


# --------------------------------------------------------------------------------------------------
# random layouts


# --------------------------------------------------------------------------------------------------
# given particle lists


def load_spec(path) -> dict:
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: spec file not found")
    try:
        raw = yaml.safe_load(p.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{p}: cannot read spec ({exc})") from None
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise InputError(f"{p}: not valid YAML{where} ({first})") from None
    return validate_spec(raw, str(p))
