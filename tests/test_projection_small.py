"""The numpy path of projection / back-projection for small inputs (no numba import) against the numba kernels."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from conftest import ball_phantom, write_mrc

from faket.imaging import projection as P

ANGLES = np.arange(-60, 61, 2.0)
# the numpy kernels repeat the numba kernels' float operations in the same order: equal bit for bit on the
# machines tested; the tolerance allows a compiler that contracts a multiply-add (fastmath is off, so it
# should not)
RTOL = 1e-6


def _close(a, b, rtol=RTOL):
    scale = max(float(np.abs(b).max()), 1e-30)
    assert float(np.abs(a - b).max()) <= rtol * scale, float(np.abs(a - b).max()) / scale


@pytest.mark.parametrize("shape, width", [((16, 16, 16), None), ((20, 12, 30), 37), ((33, 17, 25), 19)])
def test_small_projection_equals_numba(shape, width):
    rng = np.random.default_rng(1)
    vol = rng.random(shape, dtype=np.float32)
    angles = np.concatenate([ANGLES, [-90.0, -75.0, 50.5, 89.0, 90.0]])  # both driving axes, edges
    ref = P.project(vol, angles, detector_width=width, backend="numba")
    got = P.project(vol, angles, detector_width=width, backend="numpy")
    assert got.dtype == np.float32 and got.shape == ref.shape
    _close(got, ref)


def test_small_backprojection_and_reconstruction_equal_numba():
    vol = ball_phantom((24, 20, 28), [(0, 0, 0, 6), (4, -3, 7, 3)])
    tilts = P.project(vol, ANGLES, backend="numba")
    z = np.arange(11) - 4.7
    w = P.angle_weights(ANGLES)
    _close(
        P.backproject(tilts, ANGLES, z, n_x=31, weights=w, center_u=13.2, backend="numpy"),
        P.backproject(tilts, ANGLES, z, n_x=31, weights=w, center_u=13.2, backend="numba"),
    )
    for kw in ({"bin": 1}, {"bin": 2, "z_range": (4, 20), "volume_z": 24}, {"bin": 3, "thickness": 5}):
        ref = P.reconstruct(tilts, ANGLES, backend="numba", **kw)
        got = P.reconstruct(tilts, ANGLES, backend="numpy", **kw)
        # the small path filters with numpy's FFT instead of scipy's: equal to float32 rounding
        _close(got, ref, rtol=1e-5)


def test_auto_takes_the_small_path_only_for_small_inputs(monkeypatch):
    """``backend="auto"`` on the CPU: numpy below the size threshold, numba above it (same results)."""
    calls = []
    real = P._numba_kernels
    monkeypatch.setattr(P, "_numba_kernels", lambda: calls.append(1) or real())
    vol = np.random.default_rng(2).random((16, 16, 16), dtype=np.float32)
    small = P.project(vol, ANGLES)
    assert calls == []
    monkeypatch.setattr(P, "SMALL_WORK", 10)  # everything is "large" now
    large = P.project(vol, ANGLES)
    assert calls
    np.testing.assert_array_equal(small, large)


def test_numpy_backend_is_cpu_only():
    from faket.errors import InputError

    with pytest.raises(InputError, match="CPU"):
        P.project(np.zeros((4, 4, 4), np.float32), [0.0], device="cuda:0", backend="numpy")


def test_small_project_and_reconstruct_do_not_import_numba(tmp_path):
    """A small `faket project` / `reconstruct` on the CPU never imports numba (its import is most of their
    start-up, docs/performance.md#start-up)."""
    vol = write_mrc(tmp_path / "v.mrc", np.random.default_rng(3).random((16, 16, 16), dtype=np.float32))
    code = (
        "import sys; from faket.cli import main; "
        f"rc = main(['project', r'{vol}', '-o', r'{tmp_path / 't.mrc'}', '--angles', '-60:60:2', '-q', "
        "'--device', 'cpu']); "
        f"rc |= main(['reconstruct', r'{tmp_path / 't.mrc'}', '-o', r'{tmp_path / 'r.mrc'}', '-q', "
        "'--device', 'cpu']); "
        "print(rc, 'numba' in sys.modules, 'scipy.fft' in sys.modules, 'torch' in sys.modules)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.split() == ["0", "False", "False", "False"], r.stdout + r.stderr
    import mrcfile

    assert mrcfile.read(tmp_path / "r.mrc").shape == (16, 16, 16)
