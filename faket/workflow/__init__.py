"""What the Snakemake workflow (``workflow/rules/common.smk``) takes from the package: the tilt angles, the
layout box, the references of the data manifest, per-tomogram draws and the names of its outputs.

Functions raise :class:`~faket.errors.InputError` (:func:`config_problem` returns its message); ``common.smk``
names the config key and stops the run before any job starts. A cluster executor parses the Snakefile again in every job, so imports stay light
(numpy and pandas are loaded by Snakemake already).
"""

from __future__ import annotations

import json
import os
import random
import re
import sys
from pathlib import Path

import yaml

from faket.errors import InputError
from faket.formats.manifest import STAGED_KINDS, check_entry, read_manifest
from faket.formats.mrc import read_mrc_header, sha256sum
from faket.formats.names import parse_tomogram_file, tomogram_file
from faket.formats.tiltmeta import parse_angles
from faket.style.vgg import recorded_weights_kind, weights_kind  # light: no torch

__all__ = [
    "interpreter_path",
    "put_interpreter_first_on_path",
    "config_problem",
    "tilt_angles",
    "layout_box",
    "layout_is_cellular",
    "volume_shape",
    "draw",
    "tilt_chunks",
    "load_manifest",
    "reference_entry",
    "Sha256Cache",
    "tomogram_file",
    "parse_tomogram_file",
    "REFERENCE_KINDS",
    "qc_settings",
    "realism_series",
    "styled_weights_kind",
]

# what a style / noise reference can be: a physics-based tilt-series (no file) or a manifest file to stage
REFERENCE_KINDS = ("physics", *STAGED_KINDS)


def interpreter_path(environ=None) -> str:
    """``PATH`` with the folder of this interpreter first when it holds a ``faket`` command (a venv's ``bin``).

    The rules run ``faket ...`` through the shell: without this, ``.venv/bin/snakemake --cores 2`` (or
    ``.venv/bin/faket benchmark``) in a shell without the activated venv found no ``faket``, or another
    installation's, while the workflow's helpers import this one. Idempotent; other entries keep their order.
    """
    env = os.environ if environ is None else environ
    here = str(Path(sys.executable).parent)
    parts = [p for p in env.get("PATH", "").split(os.pathsep) if p]
    if not (Path(here) / "faket").is_file():
        return os.pathsep.join(parts)
    return os.pathsep.join([here, *[p for p in parts if p != here]])


def put_interpreter_first_on_path() -> None:
    """Set this process's ``PATH`` to :func:`interpreter_path` (the Snakefile calls it; its jobs inherit it)."""
    os.environ["PATH"] = interpreter_path()


def _key_path(path) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(top level)"


def config_problem(cfg: dict, schema_path: str | os.PathLike) -> str | None:
    """The config's most relevant violation of the JSON schema, as one line naming the key (``None``: valid)."""
    # lazy: jsonschema
    import jsonschema

    schema = yaml.safe_load(Path(schema_path).read_text())
    err = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(cfg))
    if err is None:
        return None
    path = list(err.absolute_path)
    m = re.search(r"\('([^']+)' (?:was|were) unexpected\)", err.message)
    if err.validator == "additionalProperties" and m:
        allowed = ", ".join(sorted(err.schema.get("properties", {})))
        return f"config key '{_key_path(path + [m.group(1)])}': unknown key (allowed here: {allowed})"
    return f"config key '{_key_path(path)}': {err.message} (see workflow/schemas/config.schema.yaml)"


def tilt_angles(spec: str) -> list[float]:
    """The angles of ``spec`` (``faket.formats.tiltmeta.parse_angles``), each strictly between -90 and 90 degrees."""
    angles = parse_angles(spec).tolist()
    if any(abs(a) >= 90 for a in angles):
        raise InputError(f"{spec!r}: every angle must lie strictly between -90 and 90 degrees")
    return angles


def layout_box(spec_path: str | os.PathLike | None, shape_zyx=None) -> tuple[int, int, int]:
    """The (Z, Y, X) box that ``faket layout [--spec spec_path] [--shape shape_zyx]`` makes.

    The spec is validated as ``faket layout`` validates it (an unknown key such as ``shape_zyx`` is an
    error here, at planning); an empty path is the built-in default spec.
    """
    if spec_path:
        # lazy: pandas
        from faket.layout.build import load_spec  # reads and validates it as faket layout does

        spec = load_spec(spec_path)
    else:
        # lazy: pandas
        from faket.layout.build import default_spec

        spec = default_spec()  # what faket layout uses without --spec
    return tuple(int(v) for v in (shape_zyx or spec["box"]))


def layout_is_cellular(spec_path: str | os.PathLike | None) -> bool:
    """Whether ``faket layout [--spec spec_path]`` makes a cellular layout (the spec has membranes or
    filaments), so that it writes, and ``faket labels`` bins, the cellular label files."""
    if not spec_path:
        # lazy: pandas
        from faket.layout.build import default_spec

        spec = default_spec()
    else:
        # lazy: pandas
        from faket.layout.build import load_spec

        spec = load_spec(spec_path)
    return bool(spec.get("membranes") or spec.get("filaments"))


def volume_shape(path: str | os.PathLike) -> tuple[int, int, int]:
    """(Z, Y, X) of an MRC volume, from its header."""
    return read_mrc_header(path, what="volume")[0]


def draw(seed: int, key: str, spec):
    """A fixed value, or one drawn from ``seed`` for ``key``: ``[low, high]`` uniform (4 significant
    digits), a list of names: one of them. The same seed and key always give the same value."""
    if not isinstance(spec, list):
        return spec
    rng = random.Random(f"faket:{seed}:{key}")
    if all(isinstance(v, str) for v in spec):
        return spec[rng.randrange(len(spec))]
    lo, hi = float(spec[0]), float(spec[1])
    if hi < lo:
        raise InputError(f"range [{lo:g}, {hi:g}] must go from low to high")
    return float(f"{lo + (hi - lo) * rng.random():.4g}")


def tilt_chunks(n_tilts: int, per_job: int) -> list[str]:
    """Tilt ranges ``a-b`` of ``per_job`` tilts each (0 or >= n_tilts: one range of every tilt)."""
    if per_job <= 0 or per_job >= n_tilts:
        return [f"0-{n_tilts}"]
    return [f"{a}-{min(a + per_job, n_tilts)}" for a in range(0, n_tilts, per_job)]


# --------------------------------------------------------------------------------------------------
# references from the data manifest


def load_manifest(path: str | os.PathLike) -> dict:
    """name -> :class:`faket.formats.manifest.Entry`, read and validated by :func:`faket.formats.manifest.read_manifest`
    (short rows, duplicate names, a local entry without sha256 ... are errors)."""
    return {e.name: e for e in read_manifest(path)}


def reference_entry(
    entries: dict, name: str, root: str | os.PathLike, *, source: str = "data_manifest.csv", sha_fn=None
):
    """The entry ``name`` if it can serve as a reference: physics, or a staged kind whose file exists and
    matches its sha256 (:func:`faket.formats.manifest.check_entry`)."""
    if name not in entries:
        raise InputError(f"{name!r} is not an entry of {source} (known: {', '.join(sorted(entries))})")
    e = entries[name]
    if e.kind not in REFERENCE_KINDS:
        raise InputError(
            f"{name!r} is a {e.kind}; a reference must be {', '.join(REFERENCE_KINDS[:-1])} or {REFERENCE_KINDS[-1]}"
        )
    prob = check_entry(e, root, sha_fn=sha_fn, source=source)
    if prob is not None:
        raise InputError(f"{name!r}: {prob.problem}")
    return e


class Sha256Cache:
    """:func:`faket.formats.mrc.sha256sum` cached in a JSON file by (absolute path, size, mtime): the Snakefile is
    parsed at every start (and in every cluster job), the reference files need not be read each time."""

    def __init__(self, cache_file: str | os.PathLike):
        self.cache_file = Path(cache_file)

    def __call__(self, path: str | os.PathLike) -> str:
        try:
            cache = json.loads(self.cache_file.read_text())
        except (OSError, ValueError):
            cache = {}
        st = os.stat(path)
        key = f"{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}"
        if key not in cache:
            cache[key] = sha256sum(path)
            self.cache_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.cache_file.with_name(f"{self.cache_file.name}.{os.getpid()}")
            tmp.write_text(json.dumps(cache))
            os.replace(tmp, self.cache_file)
        return cache[key]


# --------------------------------------------------------------------------------------------------
# what the outputs report


def styled_weights_kind(sidecars, configured: str) -> str:
    """The kind of VGG-19 weights (imagenet, random, file) the styled tilt-series were made with, read from
    their provenance ``sidecars`` (where ``faket style`` reports it: a .pth copy of the ImageNet file counts as
    imagenet); when none exists yet (a dry run), the kind of the ``configured`` style.weights."""
    kinds = set()
    for p in sidecars:
        try:
            kind = recorded_weights_kind(json.loads(Path(p).read_text()))
        except (OSError, ValueError):
            continue
        if kind is not None:
            kinds.add(kind)
    if len(kinds) > 1:
        raise InputError(f"the styled tilt-series were made with different VGG weights ({', '.join(sorted(kinds))})")
    return kinds.pop() if kinds else weights_kind(configured)


# --------------------------------------------------------------------------------------------------
# qc (faket qc, and faket realism against a real reference)

QC_DEFAULTS = {"enabled": True, "realism": None}
# the tilt-series faket realism compares with a real reference, by modality: (name in the report, file stem)
REALISM_SERIES = {"noisy": ("NOISY", "noisy"), "baseline": ("BASELINE", "baseline"), "faket": ("FAKET", "faket")}
REALISM_KINDS = ("tiltseries", "micrograph")  # real images; a tomogram reference is projected, not measured


def qc_settings(value) -> dict:
    """The config key ``qc``: ``true`` / ``false`` (faket qc on / off) or ``{enabled, realism}`` -> that dict
    with its defaults (``enabled`` true, ``realism`` null = off)."""
    if isinstance(value, bool):
        return {**QC_DEFAULTS, "enabled": value}
    if not isinstance(value, dict) or set(value) - set(QC_DEFAULTS):
        raise InputError(f"{value!r}: expected true, false or {{enabled: true|false, realism: true|false|null}}")
    return {**QC_DEFAULTS, **value}


def realism_series(modalities, reference_kind: str) -> list[tuple[str, str]]:
    """``(name, file stem)`` of the tilt-series ``faket realism`` measures for a tomogram whose reference is of
    ``reference_kind``: NOISY always (the noise step makes it), BASELINE and FAKET when they are modalities;
    none when the reference is not a real image (physics-based, or a projected tomogram)."""
    if reference_kind not in REALISM_KINDS:
        return []
    return [REALISM_SERIES[m] for m in ("noisy", "baseline", "faket") if m == "noisy" or m in modalities]
