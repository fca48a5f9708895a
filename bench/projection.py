"""Benchmark: projection and reconstruction against the original FakET building blocks.

Baselines, measured in the same run on the same data:
- projection: scikit-image ``radon`` per Y slice in 2 processes (what the original FakET projector did);
- reconstruction: radontea ``backproject_3d`` with the ramp filter (the original reconstruction).
Goals (issue 2): projection >= 20x faster, reconstruction >= 10x faster; projecting a 512x1024x1024 volume
with peak RSS <= input + output + 512 MB (``--memory``).

Besides the steady-state times (kernels warm, in this process), the whole process as a user runs it:
``faket project VOL.mrc -o T.mrc --angles-file A.tlt --device cpu`` against a process that reads the same
MRC, runs the skimage baseline and writes an MRC (interpreter start-up, imports, I/O and all; median of
``--repeat`` runs each).

    .venv/bin/python bench/projection.py [--size 256] [--tilts 61] [--threads 2] [--repeat 3] [--memory]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np


def _radon_slices(args):
    """The original FakET projector: skimage radon of each XZ slice without a circular mask
    (circle=False pads to the diagonal), then the central detector window is cut out."""
    from skimage.transform import radon

    vol_part, angles = args
    n = vol_part.shape[2]
    out = []
    for y in range(vol_part.shape[1]):
        s = radon(vol_part[:, y, :], theta=-angles, circle=False).T  # skimage theta = our -theta
        off = s.shape[1] // 2 - n // 2
        out.append(s[:, off : off + n])
    return np.stack(out, axis=1)


def baseline_project(vol, angles, workers=2):
    parts = np.array_split(np.arange(vol.shape[1]), workers)
    with ProcessPoolExecutor(workers) as ex:
        res = list(ex.map(_radon_slices, [(vol[:, p, :], angles) for p in parts]))
    return np.concatenate(res, axis=1)


def baseline_reconstruct(tilts, angles, ncpus=2):
    import radontea

    # radontea: sinogram (A, Y, N) -> volume in ODTbrain order; angles in radians
    return radontea.backproject_3d(tilts, np.deg2rad(angles), filtering="ramp", ncpus=ncpus)


def timed(fn, *a, repeat=3, **k):
    ts, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn(*a, **k)
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts)), out


def phantom(n, seed=0):
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    v = ndimage.gaussian_filter(rng.random((n, n, n), dtype=np.float32), 2)
    return (v - v.mean()).astype(np.float32)


def radon_child(src, dst, tlt, workers):
    """Run in a subprocess: the skimage baseline as a whole process (read MRC + angles, project, write MRC)."""
    import mrcfile

    with mrcfile.open(src, permissive=True) as m:
        vol = np.asarray(m.data, dtype=np.float32)
    angles = np.loadtxt(tlt, ndmin=1)
    out = baseline_project(vol, angles, workers=workers)
    with mrcfile.new(dst, overwrite=True) as m:
        m.set_data(np.ascontiguousarray(out, dtype=np.float32))


def whole_process(vol, angles, threads, repeat):
    """Median wall time of ``faket project`` and of the skimage baseline, each a fresh process."""
    import tempfile

    from faket.formats.mrc import write_mrc
    from faket.formats.tiltmeta import write_tlt

    with tempfile.TemporaryDirectory(prefix="faket-bench-") as d:
        src, tlt = os.path.join(d, "vol.mrc"), os.path.join(d, "vol.tlt")
        write_mrc(src, vol, 10.0)
        write_tlt(tlt, angles)
        ours = [
            sys.executable,
            "-m",
            "faket",
            "project",
            src,
            "-o",
            os.path.join(d, "t.mrc"),
            "--angles-file",
            tlt,
            "--device",
            "cpu",
            "--threads",
            str(threads),
            "-q",
        ]
        base = [
            sys.executable,
            __file__,
            "--_radon_child",
            src,
            os.path.join(d, "b.mrc"),
            tlt,
            "--threads",
            str(threads),
        ]
        subprocess.run(ours, check=True)  # numba's on-disk cache warm, as after the first run
        res = []
        for cmd in (ours, base, [sys.executable, "-c", "pass"]):
            ts = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                subprocess.run(cmd, check=True)
                ts.append(time.perf_counter() - t0)
            res.append(float(np.median(ts)))
    return res


def memory_child(nz, ny, nx, tilts):
    """Run in a subprocess: project a (nz, ny, nx) volume, report peak RSS vs input + output."""
    from faket.imaging.projection import project

    vol = np.ones((nz, ny, nx), np.float32)  # allocated and touched: counts fully in RSS
    angles = np.linspace(-60, 60, tilts)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t0 = time.perf_counter()
    out = project(vol, angles)
    dt = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"seconds": dt, "peak_rss": peak, "rss_before": base, "input": vol.nbytes, "output": out.nbytes}))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--tilts", type=int, default=61)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--memory", action="store_true", help="also run the 512x1024x1024 memory check")
    ap.add_argument("--memory-shape", default="512,1024,1024")
    ap.add_argument("--repeat", type=int, default=3, help="whole-process runs per command (median)")
    ap.add_argument("--_child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--_radon_child", nargs=3, default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a._radon_child:
        radon_child(*a._radon_child, a.threads)
        return
    if a._child:
        memory_child(*[int(v) for v in a._child.split(",")], a.tilts)
        return
    import numba
    import torch

    numba.set_num_threads(a.threads)
    torch.set_num_threads(a.threads)
    from faket.imaging.projection import project, reconstruct

    n = a.size
    angles = np.linspace(-60, 60, a.tilts)
    vol = phantom(n)
    z, x = np.mgrid[:n, :n] - (n - 1) / 2
    vol *= ((x**2 + z**2) < (n / 2) ** 2)[:, None, :]  # zero outside the circle: fair to both
    print(f"# faket projection benchmark: {n}^3 volume, {a.tilts} tilts, {a.threads} threads, {os.cpu_count()} CPUs")
    project(vol[:, :16], angles)  # compile / load numba kernels outside the timing
    reconstruct(project(vol[:, :16], angles), angles)

    t_ours, p = timed(project, vol, angles, contrast="bright")
    t_base, pb = timed(baseline_project, vol, angles, workers=a.threads, repeat=1)
    rel = np.linalg.norm(pb - p) / np.linalg.norm(p)
    print(
        f"projection      faket {t_ours:7.3f} s   skimage radon x{a.threads} procs {t_base:7.3f} s   "
        f"speed-up {t_base / t_ours:6.1f}x (goal >= 20x)   rel. L2 difference {rel:.4f}"
    )
    w_ours, w_base, w_py = whole_process(vol, angles, a.threads, a.repeat)
    print(
        f"projection, whole process   faket project {w_ours:7.3f} s   skimage radon process {w_base:7.3f} s   "
        f"speed-up {w_base / w_ours:6.1f}x   (python -c pass {w_py:.3f} s; faket start-up and I/O = "
        f"{w_ours - t_ours:.3f} s of {w_ours:.3f} s)"
    )

    t_rec, rec = timed(reconstruct, p, angles)
    t_rbase, rb = timed(baseline_reconstruct, p, angles, ncpus=a.threads, repeat=1)
    corr = np.corrcoef(rec.ravel(), np.asarray(rb).ravel())[0, 1]
    c_ours = np.corrcoef(rec.ravel(), vol.ravel())[0, 1]
    c_base = np.corrcoef(np.asarray(rb).ravel(), vol.ravel())[0, 1]
    print(
        f"reconstruction  faket {t_rec:7.3f} s   radontea backproject_3d {t_rbase:7.3f} s   "
        f"speed-up {t_rbase / t_rec:6.1f}x (goal >= 10x)   corr with baseline {corr:.3f}; "
        f"with the phantom: faket {c_ours:.3f}, baseline {c_base:.3f}"
    )
    if a.memory:
        cmd = [sys.executable, __file__, "--_child", a.memory_shape, "--tilts", str(a.tilts)]
        r = subprocess.run(cmd, capture_output=True, text=True, check=True)
        m = json.loads(r.stdout.strip().splitlines()[-1])
        mb = 1 << 20
        extra = (m["peak_rss"] - m["input"] - m["output"]) / mb
        print(
            f"memory          projecting {a.memory_shape} x {a.tilts} tilts in {m['seconds']:.1f} s: "
            f"peak RSS {m['peak_rss'] / mb:.0f} MB = input {m['input'] / mb:.0f} + output "
            f"{m['output'] / mb:.0f} + {extra:.0f} MB (goal <= +512 MB; includes the interpreter, "
            f"numpy and numba, {m['rss_before'] / mb - m['input'] / mb:.0f} MB before projecting)"
        )


if __name__ == "__main__":
    main()
