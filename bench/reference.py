"""Benchmark of `faket reference`: a 256^3 volume at 61 tilts (goal < 30 s, projection included).

    .venv/bin/python bench/reference.py [--size 256] [--tilts 61] [--repeat 2] [--gradient]

Times the whole command in-process (read the volume, project with faket.projection, image formation with
CTF / envelopes / dose weighting / ice / shot noise / MTF, write REF.mrc + REF_CLEAN.mrc + sidecars) and the
two compute parts separately. The machine is shared: timings are noisy.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def volume(n: int, seed: int = 0) -> np.ndarray:
    """Random soft balls (proteins) in a slab."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    v = np.zeros((n, n, n), np.float32)
    k = max(50, n * n // 400)
    z = rng.integers(n // 3, 2 * n // 3, k)
    y, x = rng.integers(4, n - 4, (2, k))
    v[z, y, x] = 1.0
    return gaussian_filter(v, 2.0).astype(np.float32)


def main_() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--tilts", type=int, default=61)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--gradient", action="store_true", help="also use a defocus gradient (8 strips)")
    ap.add_argument("--tmp", default=None)
    a = ap.parse_args()

    import mrcfile

    from faket.cli import main
    from faket.imaging import physics as ph
    from faket.imaging.projection import project

    n, T = a.size, a.tilts
    angles = np.linspace(-60, 60, T)
    vol = volume(n)
    extra = ["--defocus-gradient", "1"] if a.gradient else []
    with tempfile.TemporaryDirectory(dir=a.tmp) as d:
        d = Path(d)
        with mrcfile.new(d / "vol.mrc") as m:
            m.set_data(vol)
            m.voxel_size = 10.0
        # warm-up (numba compilation of the projector is cached on disk after the first run)
        project(vol[:, :8], angles[:2], contrast="bright")
        times = []
        for _ in range(a.repeat):
            t0 = time.perf_counter()
            rc = main(
                [
                    "reference",
                    str(d / "vol.mrc"),
                    "-o",
                    str(d / "ref.mrc"),
                    "--clean-out",
                    str(d / "ref_clean.mrc"),
                    "--angles",
                    f"-60:60:{120 / (T - 1):g}",
                    "--device",
                    "cpu",
                    "--quiet",
                    *extra,
                ]
            )
            times.append(time.perf_counter() - t0)
            assert rc == 0
        t0 = time.perf_counter()
        proj = project(vol, angles, contrast="bright")
        t_proj = time.perf_counter() - t0
        p = ph.PhysicsParams(potential_scale_v=3.0 / float(vol.max()), defocus_gradient=1.0 if a.gradient else 0.0)
        t0 = time.perf_counter()
        ph.simulate_tiltseries(proj, angles, 10.0, p, seed=0)
        t_img = time.perf_counter() - t0
    print(
        f"faket reference {n}^3 at {T} tilts (+ noise-free twin, with I/O): best {min(times):.2f} s "
        f"of {len(times)} (goal < 30 s)"
    )
    print(
        f"  projection: {t_proj:.2f} s;  image formation (one stack): {t_img:.2f} s"
        + ("  [defocus gradient, 8 strips]" if a.gradient else "")
    )


if __name__ == "__main__":
    main_()
