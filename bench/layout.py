"""Benchmark: a crowded random layout (goal: 512^3 at 1 nm, ~1000 particles of 8 classes, < 60 s, < 4 GB).

    .venv/bin/python bench/layout.py                 # core: templates + random_layout, in-process
    .venv/bin/python bench/layout.py --cli           # also the whole `faket layout` run (writes outputs)
    .venv/bin/python bench/layout.py --size 256 --particles 500

Peak RSS is ru_maxrss (resource.getrusage) of this process, and of the child for --cli. Timings are
noisy on a shared machine; the numbers printed are one run.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=512, help="box edge in voxels (default 512)")
    ap.add_argument("--slab", type=int, default=200, help="specimen slab thickness in voxels (default 200)")
    ap.add_argument("--particles", type=int, default=1000, help="total particles (default 1000)")
    ap.add_argument("--classes", type=int, default=8, help="number of built-in classes (default 8)")
    ap.add_argument("--voxel-size", type=float, default=10.0, help="Angstrom (default 10 = 1 nm)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cli", action="store_true", help="also time `faket layout` end to end")
    args = ap.parse_args()

    import numpy as np

    from faket import layout as L
    from faket.templates import BUILTIN_NAMES, builtin_template

    names = list(BUILTIN_NAMES)[-args.classes:]
    per = [args.particles // len(names) + (1 if i < args.particles % len(names) else 0) for i in range(len(names))]
    t0 = time.perf_counter()
    tmpl = [builtin_template(n, args.voxel_size) for n in names]
    t1 = time.perf_counter()
    classes = [L.LayoutClass(i + 1, n, t.density, count=c) for i, (n, t, c) in enumerate(zip(names, tmpl, per))]
    box = (args.size, args.size, args.size)
    z0 = (args.size - args.slab) // 2
    lay = L.random_layout(classes, box, seed=args.seed, slab_z=(z0, z0 + args.slab), allow_fewer=True)
    t2 = time.perf_counter()
    rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2
    occ = np.count_nonzero(lay.occupancy) / (args.slab * args.size * args.size)
    print(f"classes: {', '.join(f'{n} ({t.density.shape[0]}^3)' for n, t in zip(names, tmpl))}")
    print(f"layout {args.size}^3 at {args.voxel_size:g} A, slab {args.slab}: placed {len(lay.particles)} of "
          f"{sum(per)} particles, {100 * occ:.1f}% of the slab occupied")
    print(f"templates {t1 - t0:.2f} s, placement {t2 - t1:.2f} s, peak RSS {rss_gb:.2f} GB (in-process)")

    if args.cli:
        with tempfile.TemporaryDirectory() as td:
            spec = Path(td) / "spec.yaml"
            lines = [f"box: [{args.size}, {args.size}, {args.size}]", f"voxel_size: {args.voxel_size}",
                     f"slab_thickness: {args.slab}", "classes:"]
            lines += [f"  - template: {n}\n    count: {c}" for n, c in zip(names, per)]
            spec.write_text("\n".join(lines) + "\n")
            exe = Path(sys.executable).with_name("faket")
            t3 = time.perf_counter()
            r = subprocess.run([str(exe), "layout", "--spec", str(spec), "-o", str(Path(td) / "out"),
                                "--seed", str(args.seed), "--allow-fewer", "--quiet"], capture_output=True, text=True)
            t4 = time.perf_counter()
            if r.returncode:
                print(r.stderr, file=sys.stderr)
                return r.returncode
            child_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024 ** 2
            print(f"faket layout (end to end, writes 3 MRC + lists): {t4 - t3:.2f} s, peak RSS {child_gb:.2f} GB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
