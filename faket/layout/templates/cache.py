"""The cache of converted templates (maps, atoms): MRC files keyed by the source file's sha256
(:func:`faket.formats.mrc.sha256sum`), the voxel size, the options and :data:`CACHE_VERSION`; written atomically."""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path

import numpy as np

from faket.errors import InputError
from faket.formats.mrc import sha256sum, write_mrc

#: Bump when the conversion of maps or atoms changes (invalidates cached templates).
CACHE_VERSION = 1


def default_cache_dir() -> Path:
    """``$FAKET_CACHE/templates`` or ``~/.cache/faket/templates``."""
    root = os.environ.get("FAKET_CACHE")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "faket"
    return base / "templates"


def _sha256(path: Path) -> str:
    try:
        return sha256sum(path)
    except OSError as exc:
        raise InputError(f"{path}: cannot read template file ({exc.strerror or exc})") from None


def _cache_key(sha: str, voxel_size_a: float, options: dict) -> str:
    opts = json.dumps(options, sort_keys=True)
    h = hashlib.sha256(f"{sha}|{voxel_size_a!r}|{opts}|v{CACHE_VERSION}".encode()).hexdigest()[:20]
    return f"{sha[:16]}-{voxel_size_a:g}A-v{CACHE_VERSION}-{h}.mrc"


def _cache_read(path: Path):
    if not path.exists():
        return None
    try:
        import mrcfile

        with mrcfile.open(path, mode="r", permissive=False) as m:
            d = np.asarray(m.data, np.float32).copy()
        n = d.shape[0]
        if d.ndim != 3 or d.shape != (n, n, n) or n % 2 == 0 or not np.isfinite(d).all():
            return None
        return d
    except Exception:  # a corrupt cache entry is recomputed
        return None


def _cache_write(path: Path, density: np.ndarray, voxel_size_a: float) -> None:
    """Write a cache entry atomically (temp file + rename); a read-only cache only costs recomputation."""
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}.mrc"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_mrc(tmp, density, voxel_size_a)
        os.replace(tmp, path)
    except OSError:
        try:
            tmp.unlink()
        except OSError:
            pass
