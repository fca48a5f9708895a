"""Large real references: a 41 x 4096 x 4096 stack at 1.5 A brought to a 10 A content, whole process.

    .venv/bin/python bench/reference_io.py [--dir /tmp] [--dtypes float32,int16,float16] [--n 4096] [--tilts 41]
                                           [--content 512] [--style]

For each dtype it writes a synthetic stack of that size (noise + dark blobs, header 1.5 A; 2.7 GB as float32,
1.4 GB as int16/float16) with mrcfile's memory-mapped writer, then runs, each in a fresh process as a user would:

  baseline : faket noise CLEAN.mrc --reference SMALL.mrc  (the same reference already at 10 A: 41 x 614 x 614)
  large    : faket noise CLEAN.mrc --reference BIG.mrc    (memory-mapped, Fourier-cropped tilt by tilt)
  [--style : faket style CONTENT.mrc --style BIG.mrc --tilts 0:1 --weights random, and the same with SMALL.mrc]

and reports wall time, peak RSS and CPU time (user + system) (/usr/bin/time -v), and large - baseline = the
reference side. On a shared machine the wall time depends on the load; the CPU time does not (much): CPU s / 2
is what the reference side costs on 2 otherwise idle cores. Targets
(issue 14): <= 1 GB above the content's needs, < 60 s for the reference side on 2 cores. The stacks are deleted
at the end (check ``df -h`` first: about 5.5 GB are needed at once). Note: the stack was just written, so it is
read from the page cache; a cold read adds file size / disk rate.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def write_big(path: Path, n_tilts: int, n: int, dtype: str, pixel: float = 1.5, seed: int = 0) -> float:
    import mrcfile
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    small = gaussian_filter(rng.random((n // 16, n // 16)).astype(np.float32), 2)
    blobs = np.kron(small - small.mean(), np.ones((16, 16), np.float32)) * -40.0
    with mrcfile.new_mmap(
        path, shape=(n_tilts, n, n), mrc_mode={"float32": 2, "int16": 1, "float16": 12}[dtype], overwrite=True
    ) as m:
        for i in range(n_tilts):
            t = rng.standard_normal((n, n), dtype=np.float32) * 20.0 + 200.0 + blobs
            m.data[i] = t.astype(dtype) if dtype != "int16" else np.rint(t).astype(np.int16)
        m.voxel_size = pixel
        m.set_image_stack()
    return time.perf_counter() - t0


def timed(cmd: list[str], env: dict) -> tuple[float, float, int, str, float]:
    """(wall s, peak RSS GB, exit code, stderr tail, CPU s = user + system) of one whole process."""
    t0 = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr)
    rss = int(m.group(1)) / 1024**2 if m else float("nan")
    tail = "\n".join(ln for ln in p.stderr.splitlines() if ln.startswith("faket"))[-400:]
    cpu = sum(float(x) for x in re.findall(r"(?:User|System) time \(seconds\): ([\d.]+)", p.stderr))
    return wall, rss, p.returncode, tail, cpu


def main_() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default="/tmp")
    ap.add_argument("--dtypes", default="float32,int16,float16")
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--tilts", type=int, default=41)
    ap.add_argument("--content", type=int, default=512, help="content tilt size at 10 A (default 512)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--style", action="store_true", help="also time faket style (one tilt) with the big reference")
    a = ap.parse_args()

    import mrcfile

    from faket.formats.mrc import write_mrc
    from faket.formats.tiltmeta import write_tlt
    from faket.imaging.sampling import plan_resample, resample_stack

    print(f"disk: {shutil.disk_usage(a.dir).free / 1e9:.1f} GB free in {a.dir}; load: {os.getloadavg()}")
    print(
        f"{'step':6} {'dtype':8} {'file GB':>7} {'base s':>7} {'base GB':>7} {'large s':>8} {'large GB':>8} "
        f"{'ref-side s':>10} {'ref-side GB':>11} {'base cpu':>6} {'lg cpu':>6} {'ref cpu s':>9}",
        flush=True,
    )
    work = Path(tempfile.mkdtemp(prefix="faket_refio_", dir=a.dir))
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS=str(a.threads))
    py = sys.executable
    angles = np.linspace(-60, 60, a.tilts)
    try:
        rng = np.random.default_rng(1)
        clean = rng.random((a.tilts, a.content, a.content)).astype(np.float32)
        write_mrc(work / "clean.mrc", clean, 10.0, image_stack=True)
        write_tlt(work / "clean.tlt", angles)
        rows = []

        def show(row):
            step, dt, size_gb, wt, r0, r1 = row
            print(
                f"{step:6} {dt:8} {size_gb:7.2f} {r0[0]:7.1f} {r0[1]:7.2f} {r1[0]:8.1f} {r1[1]:8.2f} "
                f"{r1[0] - r0[0]:10.1f} {r1[1] - r0[1]:11.2f} {r0[4]:6.1f} {r1[4]:6.1f} {r1[4] - r0[4]:9.1f}"
                + ("" if not (r0[2] or r1[2]) else "  FAILED"),
                f"(load {os.getloadavg()[0]:.1f})",
                flush=True,
            )

        for dt in a.dtypes.split(","):
            big = work / f"big_{dt}.mrc"
            wt = write_big(big, a.tilts, a.n, dt)
            write_tlt(big.with_suffix(".tlt"), angles)
            size_gb = big.stat().st_size / 1e9
            # the same reference already at 10 A (what the content needs anyway): the baseline
            plan = plan_resample((a.n, a.n), 1.5, 10.0)
            with mrcfile.mmap(big, permissive=True) as m:
                small = resample_stack(m.data, plan, workers=a.threads)
            write_mrc(work / "small.mrc", small, 10.0, image_stack=True)
            write_tlt(work / "small.tlt", angles)
            base = [
                py,
                "-m",
                "faket",
                "noise",
                str(work / "clean.mrc"),
                "-o",
                str(work / "n.mrc"),
                "--threads",
                str(a.threads),
            ]
            r0 = timed([*base, "--reference", str(work / "small.mrc")], env)
            r1 = timed([*base, "--reference", str(big)], env)
            if r0[2] or r1[2]:
                print(r0[3], r1[3], sep="\n")
            rows.append(("noise", dt, size_gb, wt, r0, r1))
            show(rows[-1])
            if a.style:
                sbase = [
                    py,
                    "-m",
                    "faket",
                    "style",
                    str(work / "clean.mrc"),
                    "--tilts",
                    "0:1",
                    "--weights",
                    "random",
                    "--iterations",
                    "1",
                    "-o",
                    str(work / "s.mrc"),
                    "--threads",
                    str(a.threads),
                ]
                s0 = timed([*sbase, "--style", str(work / "small.mrc")], env)
                s1 = timed([*sbase, "--style", str(big)], env)
                rows.append(("style", dt, size_gb, wt, s0, s1))
                show(rows[-1])
            big.unlink()
        print(
            f"\n{a.tilts} x {a.n} x {a.n} reference at 1.5 A -> {plan.shape_out[0]}^2 at 10 A; content "
            f"{a.tilts} x {a.content}^2; {a.threads} threads; whole processes (/usr/bin/time -v)"
        )
        print(
            f"{'step':6} {'dtype':8} {'file GB':>7} {'base s':>7} {'base GB':>7} {'large s':>8} {'large GB':>8} "
            f"{'ref-side s':>10} {'ref-side GB':>11} {'base cpu':>6} {'lg cpu':>6} {'ref cpu s':>9}"
        )
        for row in rows:
            show(row)
        print(f"load after: {os.getloadavg()}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main_()
