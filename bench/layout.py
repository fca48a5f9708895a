"""Benchmark: a crowded random layout (goal: 512^3 at 1 nm, ~1000 particles of 8 classes, < 60 s, < 4 GB).

    .venv/bin/python bench/layout.py                 # core: templates + random_layout, in-process
    .venv/bin/python bench/layout.py --cli           # also the whole `faket layout` run (writes outputs)
    .venv/bin/python bench/layout.py --size 256 --particles 500
    .venv/bin/python bench/layout.py --cellular      # issue 15: 200x512x512 at 10 A, 3 membranes, 10
                                                     # microtubules, 20 actin, 50 membrane proteins, 1000
                                                     # soluble particles (goal < 60 s, < 4 GB); --cli too

With --cellular the in-process figure is make_layout on the spec (templates included), and the baseline
measured in the same run is the same spec without membranes, filaments and membrane proteins (1000
soluble particles alone), so the printed ratio is what the cellular structures cost.

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
    ap.add_argument("--cellular", action="store_true", help="the issue-15 cellular case (see above)")
    args = ap.parse_args()
    if args.cellular:
        return cellular(args)

    import numpy as np

    from faket import layout as L
    from faket.layout.templates import BUILTIN_NAMES, builtin_template

    names = list(BUILTIN_NAMES)[-args.classes :]
    per = [args.particles // len(names) + (1 if i < args.particles % len(names) else 0) for i in range(len(names))]
    t0 = time.perf_counter()
    tmpl = [builtin_template(n, args.voxel_size) for n in names]
    t1 = time.perf_counter()
    classes = [L.LayoutClass(i + 1, n, t.density, count=c) for i, (n, t, c) in enumerate(zip(names, tmpl, per))]
    box = (args.size, args.size, args.size)
    z0 = (args.size - args.slab) // 2
    lay = L.random_layout(classes, box, seed=args.seed, slab_z=(z0, z0 + args.slab), allow_fewer=True)
    t2 = time.perf_counter()
    rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    occ = np.count_nonzero(lay.occupancy) / (args.slab * args.size * args.size)
    print(f"classes: {', '.join(f'{n} ({t.density.shape[0]}^3)' for n, t in zip(names, tmpl))}")
    print(
        f"layout {args.size}^3 at {args.voxel_size:g} A, slab {args.slab}: placed {len(lay.particles)} of "
        f"{sum(per)} particles, {100 * occ:.1f}% of the slab occupied"
    )
    print(f"templates {t1 - t0:.2f} s, placement {t2 - t1:.2f} s, peak RSS {rss_gb:.2f} GB (in-process)")

    if args.cli:
        with tempfile.TemporaryDirectory() as td:
            spec = Path(td) / "spec.yaml"
            lines = [
                f"box: [{args.size}, {args.size}, {args.size}]",
                f"voxel_size: {args.voxel_size}",
                f"slab_thickness: {args.slab}",
                "classes:",
            ]
            lines += [f"  - template: {n}\n    count: {c}" for n, c in zip(names, per)]
            spec.write_text("\n".join(lines) + "\n")
            exe = Path(sys.executable).with_name("faket")
            t3 = time.perf_counter()
            r = subprocess.run(
                [
                    str(exe),
                    "layout",
                    "--spec",
                    str(spec),
                    "-o",
                    str(Path(td) / "out"),
                    "--seed",
                    str(args.seed),
                    "--allow-fewer",
                    "--quiet",
                ],
                capture_output=True,
                text=True,
            )
            t4 = time.perf_counter()
            if r.returncode:
                print(r.stderr, file=sys.stderr)
                return r.returncode
            child_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2
            print(f"faket layout (end to end, writes 3 MRC + lists): {t4 - t3:.2f} s, peak RSS {child_gb:.2f} GB")
    return 0


def cellular_spec(particles: int = 1000, structures: bool = True) -> dict:
    from faket.layout.templates import BUILTIN_NAMES

    names = list(BUILTIN_NAMES)[-8:]
    per = [particles // len(names) + (1 if i < particles % len(names) else 0) for i in range(len(names))]
    spec = {
        "box": [200, 512, 512],
        "voxel_size": 10.0,
        "slab_thickness": 200,
        "max_tries": 2000,
        "classes": [{"template": n, "count": c} for n, c in zip(names, per)],
    }
    if structures:
        spec["classes"].append(
            {"template": "barrel", "name": "channel", "membrane": "vesicle_membrane", "count": 50, "insertion_nm": 0.0}
        )
        spec["membranes"] = [
            {"shape": "sphere", "name": "vesicle_membrane", "size_nm": 150},
            {"shape": "ellipsoid", "size_nm": [80, 60, 45]},
            {"shape": "tube", "size_nm": 50, "length_nm": 250},
        ]
        spec["filaments"] = [
            {"type": "microtubule", "count": 10, "length_nm": 400},
            {"type": "actin", "count": 20, "length_nm": 300},
        ]
    return spec


def cellular(args) -> int:
    import json
    import os

    from faket import layout as L

    def timed(structures: bool):
        spec = L.validate_spec(cellular_spec(args.particles, structures), "bench")
        t0, c0 = time.perf_counter(), time.process_time()
        res = L.make_layout(spec, seed=args.seed, allow_fewer=True)
        return time.perf_counter() - t0, time.process_time() - c0, res

    t_base, c_base, base = timed(False)
    t_cell, c_cell, res = timed(True)
    rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    lay = res.layout
    print(f"cellular layout 200x512x512 at 10 A: placed {lay.placed}")
    print(
        f"  {len(lay.particles)} particles, {len(lay.membranes)} membranes, "
        f"{lay.filaments['filament_id'].nunique()} filaments ({len(lay.subunits)} subunits); warnings: "
        f"{res.warnings or 'none'}"
    )
    print(
        f"in-process make_layout: cellular {t_cell:.1f} s wall / {c_cell:.1f} s CPU, soluble particles alone "
        f"{t_base:.1f} s / {c_base:.1f} s (ratio {t_cell / t_base:.2f}x wall, {c_cell / c_base:.2f}x CPU), "
        f"peak RSS {rss_gb:.2f} GB (both runs, one process)"
    )
    print(f"load: {os.getloadavg()[0]:.2f} (1 min), {os.cpu_count()} CPUs")
    if args.cli:
        with tempfile.TemporaryDirectory() as td:
            spec = Path(td) / "spec.json"  # JSON is YAML
            spec.write_text(json.dumps(cellular_spec(args.particles, True)))
            t3 = time.perf_counter()
            r = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "faket",
                    "layout",
                    "--spec",
                    str(spec),
                    "-o",
                    str(Path(td) / "out"),
                    "--seed",
                    str(args.seed),
                    "--allow-fewer",
                    "--quiet",
                ],
                capture_output=True,
                text=True,
            )
            t4 = time.perf_counter()
            if r.returncode:
                print(r.stderr, file=sys.stderr)
                return r.returncode
            ch = resource.getrusage(resource.RUSAGE_CHILDREN)
            print(
                f"faket layout --spec (end to end, writes 4 MRC + tables): {t4 - t3:.1f} s wall / "
                f"{ch.ru_utime + ch.ru_stime:.1f} s CPU, peak RSS {ch.ru_maxrss / 1024**2:.2f} GB"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
