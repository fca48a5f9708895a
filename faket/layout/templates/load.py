"""One entry point: a built-in name, an MRC map or an atomic model -> :class:`Template` (cached)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from faket.errors import InputError
from faket.layout.templates import atoms, maps
from faket.layout.templates.base import Template, _check_voxel, diameter_nm
from faket.layout.templates.cache import _cache_key, _cache_read, _cache_write, _sha256, default_cache_dir
from faket.layout.templates.shapes import _BUILTINS, BUILTIN_NAMES, builtin_template

MAP_SUFFIXES = (".mrc", ".map", ".rec", ".mrcs")
ATOM_SUFFIXES = (".pdb", ".cif", ".ent", ".mmcif", ".pdbx")


def load_template(
    spec: str,
    voxel_size_a: float,
    *,
    name: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    map_voxel_size_a: float | None = None,
    resolution_a: float | None = None,
    assembly: str | None = "first",
    normalize: bool = True,
    use_cache: bool = True,
) -> Template:
    """A template from ``spec``: a built-in name (``ring`` or ``builtin:ring``), an MRC map
    (``.mrc/.map/.rec``) or an atomic model (``.pdb/.cif/.ent/.mmcif``, gzipped ok).

    Maps need a voxel size: the header's, or ``map_voxel_size_a`` (which overrides it); a header with
    0 or 1 and no override is an :class:`InputError`. Converted maps and models are cached in
    ``cache_dir`` (default :func:`default_cache_dir`).
    """
    v = _check_voxel(voxel_size_a)
    spec = str(spec)
    key = spec[len("builtin:") :] if spec.startswith("builtin:") else spec
    if key in _BUILTINS:
        t = builtin_template(key, v)
        if name:
            t.name = name
        return t
    p = Path(spec).expanduser()
    suffixes = [s.lower() for s in p.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    ext = suffixes[-1] if suffixes else ""
    if spec.startswith("builtin:") or (not p.exists() and ext not in MAP_SUFFIXES + ATOM_SUFFIXES):
        raise InputError(
            f"template {spec!r}: not a built-in class (known: {', '.join(BUILTIN_NAMES)}) and no such file"
        )
    if p.is_dir():
        raise InputError(f"{p}: is a folder, expected a template file")
    if ext not in MAP_SUFFIXES + ATOM_SUFFIXES:
        raise InputError(
            f"{p}: unknown template file type {ext or '(no extension)'!r} "
            f"(expected {', '.join(MAP_SUFFIXES + ATOM_SUFFIXES)})"
        )
    if not p.exists():
        raise InputError(f"{p}: template file not found")
    nm = name or p.name.split(".")[0]
    is_map = ext in MAP_SUFFIXES
    if map_voxel_size_a is not None:
        _check_voxel(map_voxel_size_a, f"{p}: map voxel size")
    if resolution_a is not None and (not np.isfinite(resolution_a) or resolution_a < 0):
        raise InputError(f"{p}: resolution {resolution_a!r} must be a non-negative number of Angstrom")
    if is_map:
        options = {"kind": "map", "map_voxel_size_a": map_voxel_size_a, "normalize": bool(normalize)}
    else:
        options = {"kind": "atoms", "resolution_a": resolution_a, "assembly": assembly}
    cache_path = None
    if use_cache:
        cdir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        cache_path = cdir / _cache_key(_sha256(p), v, options)
        cached = _cache_read(cache_path)
        if cached is not None:
            return Template(name=nm, density=cached, voxel_size_a=v, source=str(p), diameter_nm=diameter_nm(cached, v))
    if is_map:
        from faket.formats.mrc import read_volume

        m = read_volume(p, what="template map")
        mv = map_voxel_size_a if map_voxel_size_a is not None else m.voxel_size_a
        if mv is None:
            raise InputError(
                f"{p}: no voxel size in the map header (0 or 1); give the map's voxel size (map_voxel_size_a)"
            )
        t = maps.template_from_map(m.data, mv, v, nm, str(p), normalize=normalize)
    else:
        t = atoms.template_from_atoms(p, v, nm, resolution_a=resolution_a, assembly=assembly)
    if cache_path is not None:
        _cache_write(cache_path, t.density, v)
    return t
