"""Provenance sidecars: ``X.mrc`` -> ``X.json`` with the command line, parameters, inputs with sha256,
package versions, seed and wall time."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import sys
import time
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from faket.formats.mrc import sha256sum

_PACKAGES = ("faket", "numpy", "scipy", "torch", "torchvision", "mrcfile", "numba", "gemmi", "starfile", "pandas")


def package_versions(extra: Iterable[str] = ()) -> dict[str, str]:
    """Versions of the packages that shape the numbers (only those installed)."""
    out = {"python": platform.python_version()}
    for name in (*_PACKAGES, *extra):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float) and not np.isfinite(obj):
        return str(obj)
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    return str(obj)


def describe_inputs(paths: Iterable[str | os.PathLike | None]) -> list[dict[str, Any]]:
    """Paths with size and sha256 (missing ones are skipped)."""
    out = []
    for p in paths:
        if p is None:
            continue
        p = Path(p)
        if p.is_file():
            out.append({"path": str(p), "bytes": p.stat().st_size, "sha256": sha256sum(p)})
    return out


def build_record(
    *,
    step: str,
    parameters: Mapping[str, Any],
    inputs: Iterable = (),
    seed: int | None = None,
    started: float | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Assemble a provenance record (JSON-ready)."""
    rec: dict[str, Any] = {
        "faket_step": step,
        "command_line": list(sys.argv),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        "parameters": _jsonable(dict(parameters)),
        "inputs": describe_inputs(inputs),
        "seed": seed,
        "packages": package_versions(),
        # what makes the arrays reproducible across thread counts (faket.REPRODUCIBLE_BLAS)
        "environment": {k: os.environ.get(k) for k in ("MKL_CBWR", "OMP_NUM_THREADS")},
    }
    if started is not None:
        rec["wall_time_s"] = round(time.perf_counter() - started, 3)
    if extra:
        rec.update(_jsonable(dict(extra)))
    return rec


def write_json(path: str | os.PathLike, record: Mapping[str, Any]) -> None:
    Path(path).write_text(json.dumps(_jsonable(dict(record)), indent=2, sort_keys=False) + "\n")
