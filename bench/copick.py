"""Benchmark of ``faket export copick``: wall time and project size, against copying the results folder.

    python bench/copick.py                       # a synthetic 512^3 tomogram (1 modality, bin 1)
    python bench/copick.py --size 256
    python bench/copick.py --results results     # an existing results folder (e.g. the default workflow run)

Each export runs as a user runs it (a ``faket export copick`` process, imports included). The baseline,
measured in the same run on the same files, is copying the folder the export reads (``shutil.copytree``):
the ratio says what the OME-Zarr pyramid, compression and copick bookkeeping cost over moving the bytes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def synthetic_results(root: Path, n: int, n_particles: int = 200, seed: int = 0) -> Path:
    """results/t0 with one n^3 tomogram at 10 A (bin 1), ball particles of 4 classes, dataset.csv."""
    import pandas as pd

    from faket.cli import main
    from faket.formats.mrc import write_mrc
    from faket.formats.particles import (
        write_deepfinder_xml,
        write_particles_csv,
        write_particles_star,
        write_shrec_locations,
    )

    rng = np.random.default_rng(seed)
    res = root / "results"
    t = res / "t0"
    t.mkdir(parents=True)
    vol = rng.normal(size=(n, n, n)).astype(np.float32)
    occ = np.zeros((n, n, n), np.float32)
    cm = np.zeros((n, n, n), np.float32)
    names = ["ribosome_like", "barrel", "ring", "blob3"]
    radii = [8, 6, 5, 3]
    rows = []
    zz, yy, xx = np.ogrid[-8:9, -8:9, -8:9]
    for pid in range(1, n_particles + 1):
        c = int(rng.integers(4))
        r = radii[c]
        x, y, z = (int(v) for v in rng.integers(r + 1, n - r - 1, 3))
        ball = (zz**2 + yy**2 + xx**2) <= r * r
        sl = (slice(z - 8, z + 9), slice(y - 8, y + 9), slice(x - 8, x + 9))
        sub = occ[sl]
        if sub.shape != ball.shape or (sub[ball] > 0).any():
            continue
        sub[ball] = pid
        cm[sl][ball] = c + 1
        vol[sl][ball] -= 2.0
        ang = rng.uniform(-180, 180, 3)
        rows.append(
            {
                "particle_id": pid,
                "class_id": c + 1,
                "class_name": names[c],
                "x": x,
                "y": y,
                "z": z,
                "rot": ang[0],
                "tilt": abs(ang[1]),
                "psi": ang[2],
            }
        )
    df = pd.DataFrame(rows)
    write_mrc(t / "tomogram_bin1.mrc", vol, 10.0)
    write_mrc(t / "class_mask_bin1.mrc", cm, 10.0)
    write_mrc(t / "occupancy_mask_bin1.mrc", occ, 10.0)
    write_particles_csv(df, t / "particles_bin1.csv")
    write_particles_star(df, t / "particles_bin1.star", voxel_size_a=10.0, box_zyx=(n, n, n))
    write_shrec_locations(df, t / "particle_locations_bin1.txt")
    write_deepfinder_xml(df, t / "particles_bin1.xml")
    assert main(["dataset", str(res), "-o", str(res / "dataset.csv"), "--quiet"]) == 0
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=512, help="synthetic tomogram edge in voxels (default 512)")
    ap.add_argument("--results", help="an existing results folder instead of the synthetic one")
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="faket-bench-copick-"))
    try:
        if args.results:
            res = Path(args.results).resolve()
            what = f"results folder {res}"
            reads = (
                [res / "dataset.csv"] + [p for p in res.glob("*/*_bin*.mrc")] + list(res.glob("*/particles_bin*.csv"))
            )
        else:
            t0 = time.perf_counter()
            res = synthetic_results(tmp, args.size)
            what = f"synthetic {args.size}^3 float32 tomogram + masks ({time.perf_counter() - t0:.1f} s to make)"
            reads = [p for p in res.rglob("*") if p.is_file()]
        in_bytes = sum(p.stat().st_size for p in reads)
        print(f"bench copick export: {what}; inputs read {in_bytes / 2**20:.1f} MiB")
        faket = [sys.executable, "-m", "faket"]
        for i in range(args.repeat):
            dst = tmp / f"copy{i}"
            t0 = time.perf_counter()
            dst.mkdir()
            for p in reads:
                shutil.copy2(p, dst / f"{p.parent.name}_{p.name}")
            t_copy = time.perf_counter() - t0
            proj = tmp / f"proj{i}"
            t0 = time.perf_counter()
            r = subprocess.run(
                [*faket, "export", "copick", str(res), "-o", str(proj), "--quiet"],
                capture_output=True,
                text=True,
                env=dict(os.environ),
            )
            t_exp = time.perf_counter() - t0
            if r.returncode:
                print(r.stderr)
                return 1
            size = du(proj)
            print(
                f"  copy inputs (baseline): {t_copy:7.2f} s   export (whole process): {t_exp:7.2f} s   "
                f"ratio {t_exp / max(t_copy, 1e-9):.1f}x"
            )
            print(
                f"  project size {size / 2**20:.1f} MiB = {size / in_bytes:.2f}x the inputs read; "
                f"files {sum(1 for p in proj.rglob('*') if p.is_file())}"
            )
            shutil.rmtree(dst)
            shutil.rmtree(proj)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
