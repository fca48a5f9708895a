"""Picker speed: CPU seconds per training patch and per segmented voxel, by patch size and training
precision (faket picker).

    PYTHONPATH=. python bench/picker.py [--sizes 16,24,32] [--precisions fp32,bf16] [--steps 4] [--batch 8]
                                        [--threads 1]

``ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16`` in the environment shows a CPU without AMX (bf16 is slower there).

Whole-process figures as a user runs them are in the benchmark's sidecars (results/benchmark/models/*/
model.json: seconds and cpu_seconds); this prints steady-state figures (after one warm-up step) and the ratio
of each row to the first (the baseline measured in the same run: the first size in the first precision). CPU
seconds (process time) are reported beside wall seconds because the machine may be shared: budgets of the
benchmark are planned from CPU time.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="16,24,32")
    ap.add_argument("--precisions", default="fp32", help="comma-separated: fp32, bf16, auto")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    from faket.picker.segment import segment
    from faket.picker.train import train_picker

    rng = np.random.default_rng(0)
    vol = rng.normal(size=(24, 128, 128)).astype(np.float32)
    mask = (rng.random(size=vol.shape) < 0.05).astype(np.int64) * rng.integers(1, 11, size=vol.shape)
    base = None
    print(f"threads {a.threads}; volume {vol.shape}; batch {a.batch}")
    print("patch  precision  train_cpu_s/patch  train_wall_s/patch  ratio   segment_cpu_s  segment_wall_s")
    for P in [int(s) for s in a.sizes.split(",")]:
        for prec in a.precisions.split(","):
            kw = dict(batch=a.batch, patch=P, seed=0, precision=prec)
            warm = train_picker([vol], [mask], 11, steps=1, **kw)
            r = train_picker([vol], [mask], 11, steps=a.steps, model=warm.model, **kw)
            cpu = r.cpu_seconds / (a.steps * a.batch)
            wall = r.seconds / (a.steps * a.batch)
            base = base or cpu
            c0, t0 = time.process_time(), time.perf_counter()
            segment(r.model, vol, patch=P, overlap=0.25, batch=a.batch)
            print(
                f"{P:5d}  {r.precision:9s}  {cpu:17.3f}  {wall:18.3f}  {cpu / base:5.2f}  "
                f"{time.process_time() - c0:13.1f}  {time.perf_counter() - t0:14.1f}"
            )


if __name__ == "__main__":
    main()
