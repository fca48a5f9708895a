"""Particle layouts: crowded random layouts and given particle lists -> density volume, masks, table.

Pure functions on arrays (no paths). Templates come in as a mapping ``class name -> (Z, Y, X) density``
(non-negative; see :mod:`faket.templates` for the built-in classes, MRC maps and PDB models).

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
  particle_id), and the particle table (:mod:`faket.particles` columns).

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

from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from .errors import InputError
from .particles import COLUMNS, check_particles
from .rotation import random_relion_angles, rotate_volume

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


class NotEnoughRoom(InputError):
    """Raised when a random layout could not place every requested particle (see ``layout``)."""

    def __init__(self, message: str, layout: "Layout"):
        super().__init__(message)
        self.layout = layout


@dataclass
class LayoutClass:
    """A particle class: id (1..K), name, template ``(Z, Y, X)`` and how many to place."""

    class_id: int
    name: str
    template: np.ndarray
    count: int = 0
    isotropic: bool = False


@dataclass
class Layout:
    density: np.ndarray
    class_mask: np.ndarray
    occupancy: np.ndarray
    particles: pd.DataFrame
    requested: dict[str, int] = field(default_factory=dict)
    placed: dict[str, int] = field(default_factory=dict)
    overlap_voxels: int = 0
    centres_taken: list[int] = field(default_factory=list)
    clipped: list[int] = field(default_factory=list)
    # cellular layouts (membranes, filaments): None without them
    membrane_mask: np.ndarray | None = None          # uint8: 1 on membrane bilayer voxels
    membranes: pd.DataFrame | None = None            # one row per membrane
    filaments: pd.DataFrame | None = None            # polylines: one row per point
    subunits: pd.DataFrame | None = None             # one row per filament subunit
    instances: pd.DataFrame | None = None            # occupancy id -> kind, class, item id


# --------------------------------------------------------------------------------------------------
# the layout spec (YAML mapping; documented in ``faket layout --help``)

DEFAULT_BOX = (128, 256, 256)
DEFAULT_VOXEL_SIZE = 10.0
DEFAULT_SLAB = 100
DEFAULT_COUNT_PER_CLASS = 120
DEFAULT_VESICLES = {"count": 1, "diameter_nm": 60.0, "membrane_thickness_nm": 4.0, "contrast": 1.0,
                    "name": "vesicle"}
DEFAULT_FIDUCIALS = {"count": 5, "diameter_nm": 10.0, "contrast": 10.0, "name": "fiducial"}


_CLASS_KEYS = {"template": str, "name": str, "count": int, "fraction": float, "map_voxel_size": float,
               "resolution": float, "membrane": str, "insertion_nm": float, "axis": "vec3", "leaflet": str}
_VESICLE_KEYS = {"count": int, "diameter_nm": float, "membrane_thickness_nm": float, "contrast": float,
                 "name": str}
_FIDUCIAL_KEYS = {"count": int, "diameter_nm": float, "contrast": float, "name": str}
_TOP_KEYS = {"box": list, "voxel_size": float, "slab_thickness": int, "mask_threshold": float,
             "interpolation": str, "max_tries": int, "tomo_name": str, "classes": list, "vesicles": dict,
             "fiducials": dict, "membranes": list, "filaments": list}
_MEMBRANE_KEYS = {"shape": str, "count": int, "size_nm": "size", "thickness_nm": float, "length_nm": float,
                  "normal": "vec3", "axis": "vec3", "curvature": float, "contrast": float, "name": str}
_FILAMENT_KEYS = {"type": str, "count": int, "length_nm": float, "persistence_length_nm": float, "name": str,
                  "contrast": float, "template": str, "rise_nm": float, "twist_deg": float, "radius_nm": float,
                  "map_voxel_size": float, "resolution": float}
#: defaults of a ``membranes`` entry; ``size_nm`` by shape (outer diameter; ellipsoid: outer semi-axes)
DEFAULT_MEMBRANE = {"count": 1, "thickness_nm": 4.5, "contrast": 1.0}
DEFAULT_MEMBRANE_SIZE_NM = {"sphere": 100.0, "ellipsoid": [60.0, 45.0, 35.0], "tube": 40.0}
#: defaults of a ``filaments`` entry (persistence length by type: filaments.FILAMENT_TYPES)
DEFAULT_FILAMENT = {"count": 1, "length_nm": 200.0, "contrast": 1.0}
LEAFLETS = ("outer", "inner", "both")


def _typed(value, typ, where: str):
    if typ == "vec3":
        if (not isinstance(value, list) or len(value) != 3
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
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
    raw = {k: ({} if v is None and k in ("vesicles", "fiducials") else [] if v is None and k == "classes" else v)
           for k, v in raw.items()}
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
    for key, keys, default in (("vesicles", _VESICLE_KEYS, DEFAULT_VESICLES),
                               ("fiducials", _FIDUCIAL_KEYS, DEFAULT_FIDUCIALS)):
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
    spec["membranes"] = [_membrane_entry(m, f"{source}.membranes[{i}]") for i, m in enumerate(spec.get("membranes", []))]
    spec["filaments"] = [_filament_entry(f, f"{source}.filaments[{i}]") for i, f in enumerate(spec.get("filaments", []))]
    mnames = [m["name"] for m in spec["membranes"]]
    for i, c in enumerate(classes):
        if "membrane" in c and c["membrane"] not in mnames:
            raise InputError(f"{source}.classes[{i}].membrane: no membrane named {c['membrane']!r} "
                             f"(membranes: {', '.join(mnames) or 'none'})")
    return spec


def _positive(sec: dict, keys, where: str) -> None:
    for k in keys:
        v = sec.get(k)
        if v is not None and (min(v) if isinstance(v, list) else v) <= 0:
            raise InputError(f"{where}.{k}: must be positive")


def _membrane_entry(m, where: str) -> dict:
    from .membranes import SHAPES

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
    from .filaments import FILAMENT_TYPES

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
    out = {**DEFAULT_FILAMENT, "name": kind,
           "persistence_length_nm": FILAMENT_TYPES[kind].persistence_length_nm, **f}
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
    from .templates import BUILTIN_NAMES

    return validate_spec({
        "box": list(DEFAULT_BOX), "voxel_size": DEFAULT_VOXEL_SIZE, "slab_thickness": DEFAULT_SLAB,
        "classes": [{"template": n, "count": DEFAULT_COUNT_PER_CLASS} for n in BUILTIN_NAMES],
        "vesicles": dict(DEFAULT_VESICLES), "fiducials": dict(DEFAULT_FIDUCIALS),
    }, "default spec")


# --------------------------------------------------------------------------------------------------
# spec -> class table -> layout (what ``faket layout`` runs)


@dataclass
class LayoutResult:
    """What :func:`make_layout` built: the layout, its classes (classes.json), a summary and messages."""

    layout: Layout
    spec: dict
    classes: dict[str, dict]          # classes.json: str(class_id) -> {name, kind, source, diameter_nm}
    slab_z: tuple[int, int] | None
    summary: dict
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _template_entry(c: dict, voxel_size_a: float, cache_dir, name: str | None = None) -> dict:
    from .templates import load_template

    kw = {}
    if "map_voxel_size" in c:
        kw["map_voxel_size_a"] = c["map_voxel_size"]
    if "resolution" in c:
        kw["resolution_a"] = c["resolution"]
    t = load_template(c["template"], voxel_size_a, name=name or c.get("name"), cache_dir=cache_dir, **kw)
    kind = "membrane_protein" if "membrane" in c else "particle"
    out = dict(name=name or c.get("name") or t.name, kind=kind, density=t.density, source=t.source,
               diameter_nm=float(t.diameter_nm), count=c.get("count"), fraction=c.get("fraction"),
               isotropic=False)
    if kind == "membrane_protein":
        out.update({k: c[k] for k in ("membrane", "insertion_nm", "axis", "leaflet")})
    return out


def _vesicle_entry(v: dict, voxel_size_a: float, name: str | None = None) -> dict:
    return dict(name=name or v["name"], kind="vesicle", density=vesicle_template(
        v["diameter_nm"], voxel_size_a, membrane_thickness_nm=v["membrane_thickness_nm"], value=v["contrast"]),
        source=f"vesicle: bilayer {v['membrane_thickness_nm']:g} nm", diameter_nm=float(v["diameter_nm"]),
        count=v["count"], fraction=None, isotropic=True)


def _fiducial_entry(f: dict, voxel_size_a: float, name: str | None = None) -> dict:
    return dict(name=name or f["name"], kind="fiducial",
                density=fiducial_template(f["diameter_nm"], voxel_size_a, value=f["contrast"]),
                source="gold bead", diameter_nm=float(f["diameter_nm"]), count=f["count"], fraction=None,
                isotropic=True)


def class_table(spec: dict, voxel_size_a: float, *, cache_dir=None, names: Sequence[str] | None = None,
                source: str = "particle list") -> list[dict]:
    """The particle classes of a (validated) spec, built once: a list of dicts with ``name, kind,
    density, source, diameter_nm, count, fraction, isotropic``.

    Without ``names``: the spec's ``classes`` in order, then the vesicles and the fiducials when their
    count is > 0 (class ids = positions 1..K). With ``names`` (the classes of a given particle list):
    one entry per name, looked up among the spec's classes (by name, else template file stem), the
    vesicle and fiducial sections (their name, or "vesicle"/"fiducial") and the built-in templates.
    """
    from pathlib import Path

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
    from .templates import BUILTIN_NAMES

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
            raise InputError(f"{source}: unknown class {name!r}: not in the spec's classes "
                             f"and not a built-in ({', '.join(BUILTIN_NAMES)})")
    return out


def _class_json(entry: dict) -> dict:
    return {"name": entry["name"], "kind": entry["kind"], "source": str(entry["source"]),
            "diameter_nm": float(entry["diameter_nm"])}


def _structure_classes(spec: dict, first_id: int) -> dict[str, dict]:
    """classes.json entries of the spec's membranes and filaments (ids after the particle classes)."""
    out = {}
    i = first_id
    for m in spec["membranes"]:
        size = m.get("size_nm")
        out[str(i)] = {"name": m["name"], "kind": "membrane", "source": f"membrane: {m['shape']}, bilayer "
                       f"{m['thickness_nm']:g} nm", "diameter_nm": float(max(size) * 2 if isinstance(size, list)
                                                                         else size) if size else None,
                       "shape": m["shape"], "thickness_nm": m["thickness_nm"]}
        i += 1
    for f in spec["filaments"]:
        from .filaments import FILAMENT_TYPES

        kind = FILAMENT_TYPES[f["type"]]
        out[str(i)] = {"name": f["name"], "kind": "filament",
                       "source": f"filament: {f['type']}" + (f" of {f['template']}" if f["type"] == "custom" else ""),
                       "diameter_nm": 2 * kind.outer_radius_nm() if f["type"] != "custom" else None,
                       "type": f["type"], "length_nm": f["length_nm"],
                       "persistence_length_nm": f["persistence_length_nm"]}
        i += 1
    return out


def make_layout(spec: dict, *, seed: int = 0, particles: pd.DataFrame | None = None, allow_fewer: bool = False,
                cache_dir=None, source: str = "spec", particles_source: str = "particle list",
                progress: Callable[[int], None] | None = None,
                progress_total: Callable[[int], None] | None = None) -> LayoutResult:
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
        table = {e["name"]: e for e in class_table(spec, vs, cache_dir=cache_dir, names=names,
                                                    source=particles_source)}
        if progress_total:
            progress_total(len(df))
        lay = place_particles({k: v["density"] for k, v in table.items()}, df, box,
                              mask_threshold=spec["mask_threshold"], order=order,
                              isotropic=[k for k, v in table.items() if v["isotropic"]],
                              source=particles_source, progress=progress)
        if lay.overlap_voxels:
            warnings.append(f"{particles_source}: particle masks overlap on {lay.overlap_voxels} voxels "
                            "(the earlier particle keeps them)")
        if lay.centres_taken:
            warnings.append(f"{particles_source}: {len(lay.centres_taken)} particle centre(s) lie in another "
                            f"particle's mask (e.g. particle {lay.centres_taken[0]})")
        if lay.clipped:
            notes.append(f"{len(lay.clipped)} particle(s) clipped at the box edge")
        if spec["membranes"] or spec["filaments"]:
            warnings.append(f"{particles_source}: the spec's membranes and filaments are not placed with a "
                            "particle list (only the listed particles are)")
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
                count = counts_from_fractions({c["name"]: c["fraction"]}, {c["name"]: int((cube > thr).sum())},
                                              slab_voxels)[c["name"]]
            classes.append(LayoutClass(class_id=i, name=c["name"], template=c["density"], count=int(count),
                                       isotropic=c["isotropic"]))
        total = sum(c.count for c in classes)
        if progress_total:
            progress_total(total)
        if spec["membranes"] or spec["filaments"]:
            from .cellular import cellular_layout

            lay = cellular_layout(spec, table, classes, box, slab, seed=seed, order=order,
                                  allow_fewer=allow_fewer, cache_dir=cache_dir, progress=progress)
            what = "structures"
        else:
            lay = random_layout(classes, box, seed=seed, slab_z=slab, mask_threshold=spec["mask_threshold"],
                                order=order, max_tries=spec["max_tries"], allow_fewer=allow_fewer,
                                progress=progress)
            what = "particles"
        if sum(lay.placed.values()) < sum(lay.requested.values()):
            warnings.append("only {} of {} requested {} fit ({})".format(
                sum(lay.placed.values()), sum(lay.requested.values()), what,
                ", ".join(f"{k} {lay.placed[k]}/{lay.requested[k]}" for k in lay.requested
                          if lay.placed[k] < lay.requested[k])))
        classes_json = {str(c.class_id): _class_json(t) for c, t in zip(classes, table)}
        classes_json.update(_structure_classes(spec, len(classes) + 1))
    occupied = float(np.count_nonzero(lay.occupancy))
    frac_den = (slab[1] - slab[0]) * box[1] * box[2] if slab else int(np.prod(box))
    summary = {"n_particles": int(len(lay.particles)), "requested": lay.requested, "placed": lay.placed,
               "slab_z": list(slab) if slab else None, "occupied_fraction": occupied / frac_den,
               "classes": classes_json}
    return LayoutResult(layout=lay, spec=spec, classes=classes_json, slab_z=slab, summary=summary,
                        warnings=warnings, notes=notes)


# --------------------------------------------------------------------------------------------------
# simple templates (vesicles, gold)


def _odd_box(radius_vox: float, margin: int = 3) -> int:
    n = int(np.ceil(2 * radius_vox)) + 2 * margin + 1
    return n + (1 - n % 2)


def _radius_grid(n: int) -> np.ndarray:
    c = (n - 1) / 2
    a = np.arange(n, dtype=np.float32) - c
    return np.sqrt(a[:, None, None] ** 2 + a[None, :, None] ** 2 + a[None, None, :] ** 2)


def vesicle_template(diameter_nm: float, voxel_size_a: float, *, membrane_thickness_nm: float = 4.0,
                     value: float = 1.0) -> np.ndarray:
    """A hollow sphere with a lipid-bilayer radial profile (outer diameter ``diameter_nm``).

    Profile across the membrane: two head-group Gaussians (peak ``value``) at +-0.35 thickness from the
    mid-plane plus a weaker hydrocarbon core (0.35 ``value``); widths never below 0.6 voxel so the
    bilayer stays resolved on coarse grids.
    """
    vs_nm = voxel_size_a / 10.0
    t = membrane_thickness_nm / vs_nm
    r_mid = diameter_nm / vs_nm / 2 - t / 2
    if r_mid <= t:
        raise InputError(f"vesicle diameter {diameter_nm:g} nm is too small for a "
                         f"{membrane_thickness_nm:g} nm membrane")
    n = _odd_box(r_mid + t)
    d = _radius_grid(n) - r_mid
    s_head = max(0.15 * t, 0.6)
    s_core = max(0.25 * t, 0.6)
    prof = (np.exp(-((d - 0.35 * t) ** 2) / (2 * s_head ** 2)) + np.exp(-((d + 0.35 * t) ** 2) / (2 * s_head ** 2))
            + 0.35 * np.exp(-(d ** 2) / (2 * s_core ** 2)))
    prof /= prof.max()
    return (value * prof).astype(np.float32)


def fiducial_template(diameter_nm: float, voxel_size_a: float, *, value: float = 1.0) -> np.ndarray:
    """A gold bead: a uniform ball of ``value`` with an anti-aliased (one voxel) edge."""
    r = diameter_nm * 10.0 / voxel_size_a / 2
    if r < 0.5:
        raise InputError(f"fiducial diameter {diameter_nm:g} nm is below one voxel ({voxel_size_a:g} A)")
    n = _odd_box(r, margin=2)
    ball = np.clip(r + 0.5 - _radius_grid(n), 0.0, 1.0)
    return (value * ball).astype(np.float32)


# --------------------------------------------------------------------------------------------------
# prepared templates and rotated instances


@dataclass
class _Prepared:
    cls: LayoutClass
    template: np.ndarray      # odd cube big enough for any rotation, centre at (m - 1) / 2
    threshold: float          # absolute
    mask_voxels: int          # unrotated mask size (for fractions and ordering)


@dataclass
class _Instance:
    mask_off: np.ndarray      # (n, 3) int offsets (dz, dy, dx) of mask voxels from the centre voxel
    dens: np.ndarray          # density crop
    dens_lo: np.ndarray       # (3,) offset of dens[0, 0, 0] from the centre voxel
    lo: np.ndarray            # (3,) min mask offset
    hi: np.ndarray            # (3,) max mask offset


def prepare_template(template: np.ndarray, *, mask_threshold: float = 0.1, name: str = "template"):
    """Pad ``template`` into an odd cube that holds it in any orientation; return (cube, threshold)."""
    t = np.asarray(template, dtype=np.float32)
    if t.ndim != 3 or t.size == 0:
        raise InputError(f"template {name!r}: expected a 3-D array, got shape {t.shape}")
    if not np.isfinite(t).all():
        raise InputError(f"template {name!r}: contains NaN/Inf")
    if t.min() < 0:
        t = np.maximum(t, 0)
    tmax = float(t.max())
    if tmax <= 0:
        raise InputError(f"template {name!r}: empty (no positive density)")
    if not 0 < mask_threshold < 1:
        raise InputError(f"mask_threshold {mask_threshold}: must be between 0 and 1")
    c = (np.asarray(t.shape) - 1) / 2
    nz = np.argwhere(t > tmax * 1e-6)
    r = float(np.sqrt(((nz - c) ** 2).sum(axis=1)).max()) if len(nz) else 0.0
    m = _odd_box(r, margin=1)
    if all(s == m for s in t.shape) and m % 2 == 1:
        cube = t
    else:
        cube = np.zeros((m, m, m), np.float32)
        if all(s % 2 == 1 for s in t.shape):  # integer centre: pad/crop without interpolation
            cc = (m - 1) // 2
            src = [slice(max(0, (s - 1) // 2 - cc), min(s, (s - 1) // 2 - cc + m)) for s in t.shape]
            dst = [slice(sl.start - ((s - 1) // 2 - cc), sl.stop - ((s - 1) // 2 - cc)) for sl, s in zip(src, t.shape)]
            cube[tuple(dst)] = t[tuple(src)]
        else:  # half-voxel centre: resample onto the odd grid (centre to centre)
            cube = rotate_volume(t, (0.0, 0.0, 0.0), order=1, output_shape=(m, m, m))
    return cube, mask_threshold * tmax


def _prepare(cls: LayoutClass, mask_threshold: float) -> _Prepared:
    cube, thr = prepare_template(cls.template, mask_threshold=mask_threshold, name=cls.name)
    return _Prepared(cls=cls, template=cube, threshold=thr, mask_voxels=int((cube > thr).sum()) or 1)


def _instance(p: _Prepared, angles, order: int, shift_zyx=(0.0, 0.0, 0.0)) -> _Instance:
    if (p.cls.isotropic or not np.any(angles)) and not np.any(shift_zyx):
        vol = p.template
    else:
        vol = rotate_volume(p.template, angles, order=order, shift_zyx=shift_zyx)
    m = vol.shape[0]
    c = (m - 1) // 2
    mask = vol > p.threshold
    mask[c, c, c] = True
    mask_idx = np.argwhere(mask)
    off = (mask_idx - c).astype(np.int64)
    support = np.argwhere(vol > 0)
    lo_d = support.min(axis=0)
    hi_d = support.max(axis=0) + 1
    dens = vol[lo_d[0]:hi_d[0], lo_d[1]:hi_d[1], lo_d[2]:hi_d[2]]
    return _Instance(mask_off=off, dens=dens, dens_lo=(lo_d - c).astype(np.int64),
                     lo=off.min(axis=0), hi=off.max(axis=0))


def counts_from_fractions(fractions: Mapping[str, float], mask_voxels: Mapping[str, int],
                          slab_voxels: int) -> dict[str, int]:
    """Volume fraction of the slab per class -> particle counts (rounded)."""
    return {k: int(round(f * slab_voxels / max(1, mask_voxels[k]))) for k, f in fractions.items()}


# --------------------------------------------------------------------------------------------------
# the volume being built


class _Canvas:
    def __init__(self, box_zyx, n_class_max: int):
        self.shape = tuple(int(v) for v in box_zyx)
        if len(self.shape) != 3 or min(self.shape) < 1:
            raise InputError(f"box {box_zyx}: expected three positive sizes Z, Y, X")
        self.density = np.zeros(self.shape, np.float32)
        self.occupancy = np.zeros(self.shape, np.int32)
        self.class_mask = np.zeros(self.shape, np.uint8 if n_class_max <= 255 else np.int16)
        nz, ny, nx = self.shape
        self.strides = np.array([ny * nx, nx, 1], dtype=np.int64)
        self.occ_flat = self.occupancy.reshape(-1)
        self.cls_flat = self.class_mask.reshape(-1)

    def add_density(self, inst: _Instance, centre_zyx) -> bool:
        """Add the instance's density at ``centre``; returns True when it was clipped at the box."""
        start = np.asarray(centre_zyx, dtype=np.int64) + inst.dens_lo
        stop = start + np.asarray(inst.dens.shape)
        a = np.maximum(start, 0)
        b = np.minimum(stop, self.shape)
        if np.any(b <= a):
            return True
        src = tuple(slice(int(a[i] - start[i]), int(b[i] - start[i])) for i in range(3))
        dst = tuple(slice(int(a[i]), int(b[i])) for i in range(3))
        self.density[dst] += inst.dens[src]
        return bool(np.any(a > start) or np.any(b < stop))


# --------------------------------------------------------------------------------------------------
# random layouts


def _check_classes(classes: Sequence[LayoutClass]) -> None:
    seen_ids, seen_names = set(), set()
    for c in classes:
        if c.class_id < 1 or c.class_id > 32767:
            raise InputError(f"class {c.name!r}: class_id {c.class_id} must be in 1..32767")
        if c.class_id in seen_ids:
            raise InputError(f"class_id {c.class_id} used twice")
        if c.name in seen_names:
            raise InputError(f"class {c.name!r} defined twice")
        if c.count < 0:
            raise InputError(f"class {c.name!r}: count {c.count} must be >= 0")
        seen_ids.add(c.class_id)
        seen_names.add(c.name)


def random_layout(classes: Sequence[LayoutClass], box_zyx: Sequence[int], *, seed: int = 0,
                  slab_z: tuple[int, int] | None = None, mask_threshold: float = 0.1, order: int = 1,
                  max_tries: int = 2000, tries_per_orientation: int = 250, give_up_after: int = 3,
                  allow_fewer: bool = False,
                  progress: Callable[[int], None] | None = None, canvas: "_Canvas | None" = None,
                  first_id: int = 1) -> Layout:
    """Place ``cls.count`` copies of every class at random, without mask overlaps.

    ``slab_z = (z0, z1)`` confines whole particle masks to Z indices ``[z0, z1)`` (default: the box).
    Raises :class:`NotEnoughRoom` (an :class:`InputError` that carries the partial layout) when some
    particles did not fit, unless ``allow_fewer``. ``progress(n)`` is called with each finished particle.
    ``canvas`` (internal) fills a volume that already holds other structures; ids start at ``first_id``.
    """
    _check_classes(classes)
    if canvas is None:
        canvas = _Canvas(box_zyx, max([c.class_id for c in classes], default=1))
    nz = canvas.shape[0]
    z0, z1 = (0, nz) if slab_z is None else (int(slab_z[0]), int(slab_z[1]))
    if not (0 <= z0 < z1 <= nz):
        raise InputError(f"slab {z0}:{z1} must lie within the box Z range 0:{nz}")
    bounds_lo = np.array([z0, 0, 0], dtype=np.int64)
    bounds_hi = np.array([z1, canvas.shape[1], canvas.shape[2]], dtype=np.int64)
    rng = np.random.default_rng(seed)
    prepared = [_prepare(c, mask_threshold) for c in classes if c.count > 0]
    prepared.sort(key=lambda p: (-p.mask_voxels, p.cls.class_id))

    rows: list[tuple] = []
    placed = {c.name: 0 for c in classes}
    requested = {c.name: int(c.count) for c in classes}
    pid = first_id - 1
    for p in prepared:
        fails = 0
        for _ in range(p.cls.count):
            if fails >= give_up_after:
                if progress:
                    progress(1)
                continue
            res = _place_random(canvas, p, rng, bounds_lo, bounds_hi, order=order, max_tries=max_tries,
                                tries_per_orientation=tries_per_orientation)
            if res is None:
                fails += 1
            else:
                fails = 0
                centre, angles, inst = res
                pid += 1
                flat = int(centre @ canvas.strides) + inst.mask_off @ canvas.strides
                canvas.occ_flat[flat] = pid
                canvas.cls_flat[flat] = p.cls.class_id
                canvas.add_density(inst, centre)
                rows.append((pid, p.cls.class_id, p.cls.name, float(centre[2]), float(centre[1]),
                             float(centre[0]), *(float(a) for a in angles)))
                placed[p.cls.name] += 1
            if progress:
                progress(1)
    df = check_particles(pd.DataFrame(rows, columns=list(COLUMNS)) if rows else
                         pd.DataFrame({c: [] for c in COLUMNS}), "layout")
    layout = Layout(density=canvas.density, class_mask=canvas.class_mask, occupancy=canvas.occupancy,
                    particles=df, requested=requested, placed=placed)
    short = {k: (placed[k], requested[k]) for k in requested if placed[k] < requested[k]}
    if short and not allow_fewer:
        total_p = sum(placed.values())
        total_r = sum(requested.values())
        detail = ", ".join(f"{k} {a}/{b}" for k, (a, b) in short.items())
        raise NotEnoughRoom(f"only {total_p} of {total_r} requested particles fit ({detail}); lower the "
                            "counts/fractions, enlarge the box or slab, or pass --allow-fewer", layout)
    return layout


def _place_random(canvas: _Canvas, p: _Prepared, rng: np.random.Generator, bounds_lo, bounds_hi, *,
                  order: int, max_tries: int, tries_per_orientation: int, batch: int = 64):
    tries = 0
    while tries < max_tries:
        if p.cls.isotropic:
            angles = np.zeros(3)
        else:
            angles = random_relion_angles(1, rng)[0]
        inst = _instance(p, angles, order)
        lo_c = bounds_lo - inst.lo            # centre range so the whole mask is inside
        hi_c = bounds_hi - inst.hi            # exclusive
        if np.any(hi_c <= lo_c):
            return None
        offs = inst.mask_off @ canvas.strides
        k_sample = min(len(offs), 48)
        sample = np.concatenate([[0], rng.choice(offs, size=k_sample, replace=False)])
        budget = min(tries_per_orientation, max_tries - tries)
        used = 0
        while used < budget:
            k = min(batch, budget - used)
            cz = rng.integers(lo_c[0], hi_c[0], k)
            cy = rng.integers(lo_c[1], hi_c[1], k)
            cx = rng.integers(lo_c[2], hi_c[2], k)
            base = cz * canvas.strides[0] + cy * canvas.strides[1] + cx
            free = ~(canvas.occ_flat[base[:, None] + sample[None, :]] != 0).any(axis=1)
            for j in np.flatnonzero(free):
                if not canvas.occ_flat[base[j] + offs].any():
                    return np.array([cz[j], cy[j], cx[j]], dtype=np.int64), angles, inst
            used += k
        tries += budget
        if p.cls.isotropic and tries >= max_tries:
            break
    return None


# --------------------------------------------------------------------------------------------------
# given particle lists


def place_particles(templates: Mapping[str, np.ndarray], particles: pd.DataFrame, box_zyx: Sequence[int],
                    *, mask_threshold: float = 0.1, order: int = 1, isotropic: Sequence[str] = (),
                    source: str = "particle list",
                    progress: Callable[[int], None] | None = None) -> Layout:
    """Put every particle of the table at its centre and orientation (table order; ids and classes kept).

    ``templates`` maps each ``class_name`` of the table to its density; a missing one is an error. Classes
    named in ``isotropic`` (spheres: vesicles, beads) are not rotated.
    """
    df = check_particles(particles, source)
    box = tuple(int(v) for v in box_zyx)
    unknown = sorted(set(df["class_name"]) - set(templates))
    if unknown:
        raise InputError(f"{source}: unknown class {unknown[0]!r} (known: {', '.join(sorted(templates)) or 'none'})")
    xyz = df[["x", "y", "z"]].to_numpy()
    centre = np.floor(xyz[:, ::-1] + 0.5).astype(np.int64)          # (z, y, x) voxel
    outside = np.any((centre < 0) | (centre >= np.asarray(box)), axis=1)
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        r = df.iloc[i]
        raise InputError(f"{source}: particle {int(r['particle_id'])} at x={r['x']:g} y={r['y']:g} "
                         f"z={r['z']:g} is outside the box (X {box[2]}, Y {box[1]}, Z {box[0]}); "
                         f"{int(outside.sum())} particle(s) outside")
    class_ids = df.groupby("class_name")["class_id"].first().to_dict()
    canvas = _Canvas(box, int(df["class_id"].max()) if len(df) else 1)
    prepared = {}
    for name in sorted(set(df["class_name"])):
        cls = LayoutClass(class_id=int(class_ids[name]), name=name, template=templates[name],
                          isotropic=name in set(isotropic))
        prepared[name] = _prepare(cls, mask_threshold)
    layout = Layout(density=canvas.density, class_mask=canvas.class_mask, occupancy=canvas.occupancy,
                    particles=df)
    shape = np.asarray(box)
    centres: set[int] = set()
    for i, r in enumerate(df.itertuples(index=False)):
        p = prepared[r.class_name]
        shift = xyz[i, ::-1] - centre[i]
        inst = _instance(p, (r.rot, r.tilt, r.psi), order, shift_zyx=shift)
        vox = centre[i] + inst.mask_off
        inside = np.all((vox >= 0) & (vox < shape), axis=1)
        if not inside.all():
            layout.clipped.append(int(r.particle_id))
        flat = vox[inside] @ canvas.strides
        cur = canvas.occ_flat[flat]
        free = cur == 0
        layout.overlap_voxels += int((~free).sum())
        canvas.occ_flat[flat[free]] = r.particle_id
        canvas.cls_flat[flat[free]] = r.class_id
        # the centre voxel always carries its own particle, unless it is another particle's centre
        cflat = int(centre[i] @ canvas.strides)
        if cflat in centres:
            layout.centres_taken.append(int(r.particle_id))
        else:
            centres.add(cflat)
            canvas.occ_flat[cflat] = r.particle_id
            canvas.cls_flat[cflat] = r.class_id
        canvas.add_density(inst, centre[i])
        if progress:
            progress(1)
    counts = df["class_name"].value_counts().to_dict()
    layout.requested = {k: int(v) for k, v in counts.items()}
    layout.placed = dict(layout.requested)
    return layout

