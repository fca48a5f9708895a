"""Benchmark: start-up, whole process as a user runs it (every ``faket <step>`` and workflow job pays it).

Times, as the median of ``--repeat`` runs of a fresh process each, measured in the same run:

- ``python -c pass`` (the interpreter's own start-up: the baseline every ratio refers to);
- ``python -c "import numba"`` and ``import numba.np.arraymath`` (what the numba CPU kernels cost
  before any faket code: numba's CPU target imports scipy.linalg and cffi when it is first used);
- ``faket --help``;
- a small ``faket project`` (16^3 volume, 61 tilts, ``--device cpu`` and ``--device auto``),
  ``faket reconstruct`` (of that tilt-series) and ``faket labels`` (24^3 masks, 8 particles, bin 2),
  with numba's on-disk cache warm;
- the same ``project`` / ``reconstruct`` with a cold numba cache (a fresh ``NUMBA_CACHE_DIR`` each run:
  the kernels are JIT-compiled), to show what ``cache=True`` saves.

Goal (issue 11): a small ``project`` / ``reconstruct`` / ``labels`` under 1 s whole process on the CPU path.

    .venv/bin/python bench/startup.py [--repeat 5] [--no-cold]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _faket() -> list[str]:
    """``python -m faket`` with this interpreter (the console script does the same plus a shim)."""
    return [sys.executable, "-m", "faket"]


def _time(cmd, *, repeat: int, env=None, fresh_cache: bool = False) -> list[float]:
    ts = []
    for _ in range(repeat):
        e = dict(os.environ if env is None else env)
        if fresh_cache:
            e["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="faket-numba-cold-")
        t0 = time.perf_counter()
        r = subprocess.run(cmd, env=e, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        ts.append(time.perf_counter() - t0)
        if r.returncode != 0:
            raise SystemExit(f"failed ({r.returncode}): {' '.join(map(str, cmd))}\n{r.stderr}")
    return ts


def _inputs(d: Path) -> dict[str, Path]:
    """Small inputs: a 16^3 volume and a 24^3 layout (masks + particles.csv) with 8 cubes."""
    import numpy as np
    import pandas as pd

    from faket.formats.mrc import write_mrc
    from faket.formats.particles import write_particles_csv

    rng = np.random.default_rng(0)
    vol = d / "vol16.mrc"
    write_mrc(vol, rng.random((16, 16, 16), dtype=np.float32), 10.0)
    lay = d / "layout"
    lay.mkdir()
    n = 24
    cls = np.zeros((n, n, n), np.float32)
    occ = np.zeros((n, n, n), np.float32)
    rows = []
    for i, (z, y, x) in enumerate(np.ndindex(2, 2, 2), start=1):
        c = (4 + 12 * z, 4 + 12 * y, 4 + 12 * x)
        sl = tuple(slice(v - 2, v + 3) for v in c)
        occ[sl] = i
        cls[sl] = 1 + i % 2
        rows.append(
            {
                "particle_id": i,
                "class_id": 1 + i % 2,
                "class_name": f"c{1 + i % 2}",
                "x": c[2],
                "y": c[1],
                "z": c[0],
                "rot": 0.0,
                "tilt": 0.0,
                "psi": 0.0,
            }
        )
    write_mrc(lay / "class_mask.mrc", cls, 10.0)
    write_mrc(lay / "occupancy_mask.mrc", occ, 10.0)
    write_particles_csv(pd.DataFrame(rows), lay / "particles.csv")
    return {"vol": vol, "layout": lay}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5, help="runs per command (median reported)")
    ap.add_argument("--no-cold", action="store_true", help="skip the cold numba cache runs")
    a = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="faket-startup-") as tmp:
        d = Path(tmp)
        inp = _inputs(d)
        f = _faket()
        tilts = d / "tilts.mrc"
        proj = [*f, "project", str(inp["vol"]), "-o", str(tilts), "--angles", "-60:60:2", "-q"]
        rec = [*f, "reconstruct", str(tilts), "-o", str(d / "tomo.mrc"), "-q"]
        lab = [*f, "labels", str(inp["layout"]), "-o", str(d / "labels"), "--bin", "2", "-q"]
        subprocess.run(proj + ["--device", "cpu"], check=True)  # warm numba's cache, make the tilt-series
        subprocess.run(rec + ["--device", "cpu"], check=True)
        cases = [
            ("python -c pass (baseline)", [sys.executable, "-c", "pass"], {}),
            ("python -c 'import numpy'", [sys.executable, "-c", "import numpy"], {}),
            ("python -c 'import numba'", [sys.executable, "-c", "import numba"], {}),
            ("python -c 'import numba.np.arraymath'", [sys.executable, "-c", "import numba.np.arraymath"], {}),
            ("python -c 'import torch'", [sys.executable, "-c", "import torch"], {}),
            ("faket --help", [*f, "--help"], {}),
            ("faket project 16^3 x 61 --device cpu", proj + ["--device", "cpu"], {}),
            ("faket project 16^3 x 61 --device auto", proj + ["--device", "auto"], {}),
            ("faket reconstruct 61 x 16^2 --device cpu", rec + ["--device", "cpu"], {}),
            ("faket labels 24^3 8 particles --bin 2", lab, {}),
        ]
        if not a.no_cold:
            cases += [
                ("faket project ... cold numba cache", proj + ["--device", "cpu"], {"fresh_cache": True}),
                ("faket reconstruct ... cold numba cache", rec + ["--device", "cpu"], {"fresh_cache": True}),
            ]
        try:
            load = " ".join(f"{v:.2f}" for v in os.getloadavg())
        except OSError:  # pragma: no cover
            load = "?"
        print(
            f"# faket start-up, whole process, median of {a.repeat} runs; {os.cpu_count()} CPUs, "
            f"load average {load}; {time.strftime('%Y-%m-%d %H:%M %Z')}"
        )
        base = None
        for name, cmd, kw in cases:
            ts = _time(cmd, repeat=a.repeat, **kw)
            med = statistics.median(ts)
            if base is None:
                base = med
            print(f"{name:44s} {med:7.3f} s  (min {min(ts):6.3f})  {med / base:6.1f}x baseline  +{med - base:6.3f} s")


if __name__ == "__main__":
    main()
