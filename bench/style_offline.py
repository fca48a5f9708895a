"""Offline style (random weights) against real tilt-series, scored on HELD-OUT tilts (issue 19, section 4).

    PYTHONPATH=. .venv/bin/python bench/style_offline.py                         # every variant, both references
    PYTHONPATH=. .venv/bin/python bench/style_offline.py --refs pytom --variants "offline;multiscale"

Data flow per real reference (../shared/data/tiltseries), as the workflow runs it, through the commands:
  the real tilts in 0-based odd rows are the FIT tilts (noise fit and style reference), the even rows are
  held out and scored (cryoCAT: 4 full-field tilts 240x232, no angles: -30/-10/10/30 assumed, no pixel size:
  --assume-same-sampling, i.e. the content is made at the reference's sampling; pytom: 41 sub-tilts 100x100,
  every 4th even row scored, 11 tilts, for time);
  a `faket layout` (config/layout.yaml scaled to the area, bench/noise.py's helper) projected with `faket project`
  at the scored rows' angles -> `faket noise` (defaults: 2-D noise spectrum and signal transfer, blind fit to the FIT
  tilts, angle-matched; also the old white model) with `--content-out` -> `faket style` CONTENT --init NOISY
  --style FIT --weights random --seed 0 with each variant's options -> every modality scored against the
  held-out real tilts by `faket.evaluation.realism.realism_report` (C2ST CNN and logistic regression, RAPS
  distance, W1, kurtosis; the real-vs-real floor between two halves of the scored real tilts).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data" / "tiltseries"

# modality -> ("noise" | "style", extra options). Style runs start from the default NOISY.
VARIANTS = {
    "NOISY white (old default)": ("noise", ["--noise-spectrum", "white", "--signal-transfer", "none"]),
    "NOISY (2d, default)": ("noise", []),
    "paper (random weights)": ("style", ["--preset", "paper"]),
    "offline": ("style", []),
    "offline, step 0.005": ("style", ["--step-size", "0.005"]),
    "offline, step 0.002": ("style", ["--step-size", "0.002"]),
    "offline, 10 steps": ("style", ["--iterations", "10"]),
    "layer-norm, 10 steps": ("style", ["--iterations", "10", "--layer-norm"]),
    "softmax, 10 steps": ("style", ["--iterations", "10", "--feature-transform", "softmax"]),
    "multiscale, 10 steps": ("style", ["--iterations", "10", "--network", "multiscale"]),
    "multiscale, 3 steps": ("style", ["--network", "multiscale"]),
}


def reference(name):
    from bench.noise import _read

    if name == "cryocat":
        real = _read(SHARED / "cryocat_tilt_stack_HIV-VLP_4tilts.mrc")
        return real, np.array([-30.0, -10.0, 10.0, 30.0]), np.arange(0, 4, 2)
    if name == "pytom":
        real = _read(SHARED / "pytom_p1_subtilt_41x100x100.mrc")
        return real, np.loadtxt(SHARED / "pytom_p1_subtilt.tlt"), np.arange(0, 41, 4)
    raise SystemExit(f"unknown reference {name}")


def run_reference(name, names, tmp, seed=0, log=print):
    from bench.noise import _layout_content, _read, _write
    from faket.cli import main
    from faket.evaluation.realism import realism_report

    real, ang, score = reference(name)
    fit = np.arange(1, real.shape[0], 2)
    d = Path(tmp)
    _write(d / "fit.mrc", real[fit], ang[fit])
    clean = _layout_content(real.shape[1:], ang[score], 1, d)
    common = ["--assume-same-sampling", "--max-angle-gap", "30", "--quiet"]
    assert (
        main(
            [
                "noise",
                str(clean),
                "--reference",
                str(d / "fit.mrc"),
                *common,
                "--seed",
                "1",
                "--content-out",
                str(d / "content.mrc"),
                "-o",
                str(d / "noisy.mrc"),
            ]
        )
        == 0
    )
    gen, secs = {}, {}
    for v in names:
        kind, opts = VARIANTS[v]
        out = d / f"m{len(gen)}.mrc"
        t0 = time.perf_counter()
        if kind == "noise":
            rc = main(
                ["noise", str(clean), "--reference", str(d / "fit.mrc"), *common, "--seed", "1", *opts, "-o", str(out)]
            )
        else:
            rc = main(
                [
                    "style",
                    str(d / "content.mrc"),
                    "--init",
                    str(d / "noisy.mrc"),
                    "--style",
                    str(d / "fit.mrc"),
                    *common,
                    "--weights",
                    "random",
                    "--seed",
                    str(seed),
                    "--threads",
                    "1",
                    *opts,
                    "-o",
                    str(out),
                ]
            )
        assert rc == 0, v
        secs[v] = time.perf_counter() - t0
        gen[v] = (_read(out), ang[score])
        log(f"{name}: {v} made in {secs[v]:.0f} s")
    rep = realism_report(real, ang, gen, holdout=score.tolist(), seed=seed)
    return rep, secs, fit, score


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--refs", default="cryocat,pytom")
    ap.add_argument("--variants", default=None, help="';'-separated modality names (exact) or substrings of them")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="write the summaries here")
    ap.add_argument("--tmp", default=None)
    a = ap.parse_args(argv)
    want = a.variants.split(";") if a.variants else []
    names = [v for v in VARIANTS if not want or v in want or any(w in v and w not in VARIANTS for w in want)]
    results = {}
    for ref in a.refs.split(","):
        with tempfile.TemporaryDirectory(dir=a.tmp) as d:
            rep, _, fit, score = run_reference(ref, names, d, a.seed, log=lambda m: print(m, flush=True))
        results[ref] = {v: rep["modalities"][v]["summary"] for v in names}
        results[ref]["real vs real (floor)"] = rep["floor"]["summary"]
        print(f"\n{ref}: fitted on real rows {fit.tolist()}, scored on {score.tolist()}")
        print("| modality | C2ST CNN | C2ST logreg | RAPS | W1 | kurtosis (real) |")
        print("|---|---|---|---|---|---|")
        for v, sm in results[ref].items():
            print(
                f"| {v} | {sm['c2st_cnn']:.2f} ± {sm['c2st_cnn_std']:.2f} | {sm['c2st_logreg']:.2f} | "
                f"{sm['raps_distance']:.3f} | {sm['w1']:.3f} | {sm['kurtosis']:.1f} ({sm['real_kurtosis']:.1f}) |",
                flush=True,
            )
        if a.json:
            Path(a.json).write_text(json.dumps(results, indent=1, default=float))


if __name__ == "__main__":
    main()
