"""Shared test fixtures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data`` beside the project; skips when absent (e.g. on a user's machine)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared test data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def run_cli(capsys):
    """Run ``faket`` in-process: returns (exit code, stdout, stderr)."""
    from faket.cli import main

    def _run(*argv):
        rc = main([str(a) for a in argv])
        out = capsys.readouterr()
        return rc, out.out, out.err

    return _run


def ball_phantom(shape, balls):
    """Sum of anti-aliased uniform balls ``(z, y, x, radius)`` in voxels from the volume centre."""
    nz, ny, nx = shape
    z, y, x = np.meshgrid(
        np.arange(nz) - (nz - 1) / 2, np.arange(ny) - (ny - 1) / 2, np.arange(nx) - (nx - 1) / 2, indexing="ij"
    )
    vol = np.zeros(shape, np.float32)
    for bz, by, bx, r in balls:
        d = np.sqrt((x - bx) ** 2 + (y - by) ** 2 + (z - bz) ** 2)
        vol += np.clip(r + 0.5 - d, 0, 1).astype(np.float32)
    return vol


def write_mrc(path, data, voxel_size=10.0):
    import mrcfile

    with mrcfile.new(path, overwrite=True) as m:
        m.set_data(np.asarray(data, np.float32))
        if voxel_size:
            m.voxel_size = voxel_size
    return Path(path)
