"""Realism of NOISY and STYLED tilt-series against real data (random VGG weights: this machine has no ImageNet).

    .venv/bin/python bench/realism.py                       # the default sweep on both real references
    .venv/bin/python bench/realism.py --speed               # time `faket realism` (61 x 512^2 vs 41 tilts, < 2 min)
    .venv/bin/python bench/realism.py --table               # `faket realism` of NOISY on every shared real reference
    .venv/bin/python bench/realism.py --table --ref cryocat --physics --layout cryocat=config/cryocat-vlp-layout.yaml
                                                            # the same with a layout of the cryoCAT specimen (VLPs)
    .venv/bin/python bench/realism.py --table --ref cryocat --physics --seeds 0-7 [--layout ...]   # mean over 8 seeds
    .venv/bin/python bench/realism.py --ref pytom --configs "paper;it=20,lr=0.15;it=20,lr=0.02,cw=0.1"

Data flow (as the workflow runs it):
  phantom volume (random dense balls of several sizes, the density a `faket layout` produces) -> `project`
  at the reference's angles -> blind noise fit to the REAL reference (`faket.noise.blind_fit`, white floor, degree-2
  smoothing, matched by angle) -> NOISY (sigma) and CONTENT (0.25 sigma) -> style transfer (content = CONTENT,
  init = NOISY, style = the real reference) -> every tilt rescaled to the reference tilt's mean/std.

Sampling (issue 14): ``--sampling true`` brings a reference whose pixel size is known (tomodrgn: 12 A in its header)
or stated (``--ref-pixel NAME=A``) to the content's pixel size (``--content-pixel``, default 10 A) with
faket.sampling, as faket noise / style now do; ``own`` uses it at its own sampling (the old behaviour). The
metrics are always taken against the reference at one physical sampling, so the two modes are comparable: at
the coarser of the two samplings (where both carry the full band; outputs are Fourier-cropped to it when the
reference is coarser than the content). A Fourier-padded reference is fitted with the "measured" noise model
(its top band is empty). pytom and cryocat have no known pixel size: for them both modes are the same.

References (../shared/data/tiltseries):
  pytom   : pytom_p1_subtilt_41x100x100.mrc, 41 tilts -60..60 (every --stride-th tilt is used), 100x100
  cryocat : cryocat_tilt_stack_HIV-VLP_4tilts.mrc, 4 full-field tilts 240x232 (no angles: -30,-10,10,30 assumed;
            matching is then by index, which is what a 4-tilt reference needs anyway)
  tomodrgn: tomodrgn_warptools_Unt/Unt_083/Unt_083_12.00A_000001.mrcs, 37 ribosome sub-tilts 32x32 float16 at 12 A,
            angles from the Warp/RELION STAR, its 3 blank tilts excluded (faket.refcheck); every --stride-th kept tilt

Metrics, per output tilt against its matched reference tilt, averaged over tilts:
  D    : spectral shape distance (`faket.metrics.log_spectrum_distance`: RMS of the difference of mean-removed
         log10 radially averaged power spectra, decades);
  SNR  : blind-estimated SNR (`faket.noise.blind_fit(noise_mtf="none")`, same estimator as for the reference);
         reported as the output's median SNR and |log10(SNR_out / SNR_ref)| (0 = same noise level).
A config is better than NOISY on both counts when D_styled < D_noisy and |dlogSNR|_styled < |dlogSNR|_noisy.

Config syntax: ``paper`` or comma-separated ``key=value`` with keys it (iterations = initial iterations),
lr (step size), cw (content weight), decay (EMA decay), tv, pool (max/avg), ms (min scale).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data" / "tiltseries"

# white noise floor at 0.7-0.95 Nyquist: the "measured" roll-off model finds no noise plateau on the small
# pytom sub-tilts (SNR 0), so the plain white-floor estimator is used for the fit and for every SNR here
SNR_MTF = "none"

DEFAULT_CONFIGS = (
    "paper;it=5;it=20;it=50;"
    "lr=0.05;it=5,lr=0.05;it=20,lr=0.05;"
    "lr=0.02;it=20,lr=0.02;"
    "it=20,cw=0.1;it=20,lr=0.05,cw=0.1;it=50,lr=0.05,cw=0.1"
)


def load_reference(name: str, stride: int):
    """(tilts, angles, file name, pixel size in A or None)."""
    import mrcfile

    if name == "pytom":
        p = SHARED / "pytom_p1_subtilt_41x100x100.mrc"
        with mrcfile.open(p, permissive=True) as m:
            ref = np.asarray(m.data, np.float32)
        ang = np.loadtxt(SHARED / "pytom_p1_subtilt.tlt")
        sel = np.arange(0, ref.shape[0], stride)
        return ref[sel], ang[sel], p.name, None
    if name == "cryocat":
        p = SHARED / "cryocat_tilt_stack_HIV-VLP_4tilts.mrc"
        with mrcfile.open(p, permissive=True) as m:
            ref = np.asarray(m.data, np.float32)
        return ref, np.array([-30.0, -10.0, 10.0, 30.0]), p.name, None
    if name == "tomodrgn":
        from faket.formats.tiltmeta import read_tilt_metadata
        from faket.imaging.refcheck import bad_tilts, tilt_stats_raw

        d = SHARED / "tomodrgn_warptools_Unt"
        p = d / "Unt_083" / "Unt_083_12.00A_000001.mrcs"
        with mrcfile.open(p, permissive=True) as m:
            ref = np.asarray(m.data, np.float32)
            pix = float(m.voxel_size.x)
        meta = read_tilt_metadata(d / "warptools_test_4-tomos_10-ptcls_box-32_angpix-12_tomograms.star", stack=p)
        bad = bad_tilts(tilt_stats_raw(ref))
        keep = np.array([i for i in np.argsort(meta.angles, kind="stable") if i not in bad])[::stride]
        return ref[keep], meta.angles[keep], p.name, pix
    raise SystemExit(f"unknown reference {name}")


def phantom_volume(shape_zyx, seed=0, fill=0.12):
    """Random dense balls (radii 2..9 voxels, densities 0.5..1.5) in a slab: a crowded-cell-like layout."""
    rng = np.random.default_rng(seed)
    nz, ny, nx = shape_zyx
    vol = np.zeros(shape_zyx, np.float32)
    target = fill * vol.size
    filled = 0.0
    while filled < target:
        r = rng.uniform(2, 9)
        c = np.array([rng.uniform(nz * 0.3, nz * 0.7), rng.uniform(0, ny), rng.uniform(0, nx)])
        lo = np.maximum(np.floor(c - r - 1).astype(int), 0)
        hi = np.minimum(np.ceil(c + r + 2).astype(int), shape_zyx)
        zz, yy, xx = np.ogrid[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        d = np.sqrt((zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2)
        vol[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] += (np.clip(r + 0.5 - d, 0, 1) * rng.uniform(0.5, 1.5)).astype(
            np.float32
        )
        filled += 4.19 * r**3
    return vol


def make_inputs(ref, angles, seed=0, noise_mtf=SNR_MTF):
    from faket.imaging import noise as nz
    from faket.imaging.projection import project

    T, H, W = ref.shape
    vol = phantom_volume((max(H, W), H, W), seed=seed)
    clean = project(vol, angles)
    fit = nz.smooth_curves(nz.blind_fit(ref, noise_mtf=noise_mtf), 2)
    noisy, content = nz.add_noise(clean, fit, seed=seed, content_noise=0.25)
    return clean, noisy, content, fit


def parse_config(spec: str):
    from faket.style import StyleSettings

    s = StyleSettings()
    spec = spec.strip()
    if spec == "paper":
        return s
    for kv in spec.split(","):
        k, v = kv.split("=")
        k = k.strip()
        if k == "it":
            s.iterations = s.initial_iterations = int(v)
        elif k == "lr":
            s.step_size = float(v)
        elif k == "cw":
            s.content_weight = float(v)
        elif k == "decay":
            s.avg_decay = float(v)
        elif k == "tv":
            s.tv_weight = float(v)
        elif k == "pool":
            s.pooling = v
        elif k == "ms":
            s.min_scale = int(v)
        else:
            raise SystemExit(f"unknown config key {k}")
    return s


def metrics(stack, ref, ref_snr_med):
    from faket.evaluation.metrics import stack_spectral_distances
    from faket.imaging import noise as nz

    # per tilt, against the reference at the content's sampling (shapes may differ: compared in cycles/pixel)
    d = stack_spectral_distances(stack, ref, np.arange(stack.shape[0]))
    snr = nz.blind_fit(stack, noise_mtf=SNR_MTF).snr
    med = float(np.median(snr))
    return float(d.mean()), med, abs(float(np.log10(max(med, 1e-6) / max(ref_snr_med, 1e-6))))


def evaluate(
    ref_name,
    configs,
    *,
    stride=4,
    seed=0,
    threads=2,
    precision="fp32",
    quiet=False,
    sampling="true",
    content_pixel=10.0,
    stated=None,
):
    import torch

    from faket.imaging import noise as nz
    from faket.imaging.sampling import plan_resample, resample_stack
    from faket.style import Reference, StyleTransfer, stylize_series
    from faket.style.vgg import build_vgg

    torch.set_num_threads(threads)
    ref_raw, angles, fname, pix = load_reference(ref_name, stride)
    if stated and ref_name in stated:
        pix = stated[ref_name]
    # what noise fit and style see: the reference at the content's pixel size (true) or at its own (own)
    ref = ref_raw
    if pix is not None and sampling == "true":
        ref = resample_stack(ref_raw, plan_resample(ref_raw.shape[1:], pix, content_pixel))
    # compared at the coarser of the two samplings, where both images carry the full band: a reference coarser
    # than the content is Fourier-padded for use (nothing above its own Nyquist), so the outputs are brought back
    cmp_pixel = None if pix is None else max(pix, content_pixel)
    truth = ref_raw if pix is None else resample_stack(ref_raw, plan_resample(ref_raw.shape[1:], pix, cmp_pixel))

    def to_cmp(stack):
        if cmp_pixel is None or abs(cmp_pixel / content_pixel - 1) < 1e-6:
            return stack
        return resample_stack(stack, plan_resample(stack.shape[1:], content_pixel, cmp_pixel))

    # a Fourier-padded reference has an empty top band: the white floor at 0.7-0.95 Nyquist would read ~0 noise;
    # the "measured" model (faket noise's default) follows that roll-off
    padded = pix is not None and sampling == "true" and pix > content_pixel * 1.01
    clean, noisy, content, fit = make_inputs(ref, angles, seed, noise_mtf="measured" if padded else SNR_MTF)
    ref_snr = float(np.median(nz.blind_fit(truth, noise_mtf=SNR_MTF).snr))
    rows = []
    d, snr, dl = metrics(to_cmp(noisy), truth, ref_snr)
    rows.append(("noisy", d, snr, dl, 0.0))
    d, snr, dl = metrics(to_cmp(content), truth, ref_snr)
    rows.append(("content", d, snr, dl, 0.0))
    if not quiet:
        print(f"  [{ref_name}] reference blind SNR {ref_snr:.3g}", flush=True)
        for name, d, snr, dl, _ in rows:
            print(f"  [{ref_name}] {name:28s} D={d:.3f} SNR={snr:.3g} |dlogSNR|={dl:.3f}", flush=True)
    models = {}
    for spec in configs:
        s = parse_config(spec)
        s.precision = precision
        s.final_loss = False
        key = s.pooling
        if key not in models:
            models[key] = build_vgg("random", depth=s.depth, pooling=s.pooling, seed=seed)[0]
        eng = StyleTransfer(models[key], s)
        t0 = time.perf_counter()
        out, _ = stylize_series(eng, content, noisy, [Reference(ref, index=np.arange(ref.shape[0]))], tilt_batch=4)
        dt = time.perf_counter() - t0
        d, snr_o, dl = metrics(to_cmp(out), truth, ref_snr)
        rows.append((spec, d, snr_o, dl, dt))
        if not quiet:
            print(f"  [{ref_name}] {spec:28s} D={d:.3f} SNR={snr_o:.3g} |dlogSNR|={dl:.3f} ({dt:.1f} s)", flush=True)
    return {
        "reference": fname,
        "n_tilts": int(ref.shape[0]),
        "shape": list(ref.shape[1:]),
        "ref_snr": ref_snr,
        "rows": rows,
        "sampling": sampling,
        "pixel": pix,
        "content_pixel": content_pixel,
        "raw_shape": list(ref_raw.shape[1:]),
        "cmp_pixel": cmp_pixel,
    }


def print_table(res):
    px = "unknown pixel size" if res["pixel"] is None else f"{res['pixel']:g} A -> content {res['content_pixel']:g} A"
    print(
        f"\nreference {res['reference']} ({res['n_tilts']} tilts {res['raw_shape']}, {px}; sampling "
        f"{res['sampling']}: used at {res['shape']}), blind SNR {res['ref_snr']:.3g}"
        + ("" if res["cmp_pixel"] is None else f" (all compared at {res['cmp_pixel']:g} A)")
    )
    noisy = res["rows"][0]
    print(f"{'config':30s} {'D (dec)':>8s} {'SNR':>8s} {'|dlogSNR|':>10s} {'both better':>12s} {'s':>6s}")
    for name, d, snr, dl, dt in res["rows"]:
        better = "" if name in ("noisy", "content") else ("yes" if d < noisy[1] and dl < noisy[3] else "no")
        print(f"{name:30s} {d:8.3f} {snr:8.3g} {dl:10.3f} {better:>12s} {dt:6.1f}")


# ---------------------------------------------------------------------------------------------------------
# --speed: the time of `faket realism` (issue 19: 61 x 512^2 against a 41-tilt real series, < 2 min on 2 cores)


def _coloured_stack(n, shape, seed, slope):
    """Gaussian noise with amplitude ~ f**slope."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((n, *shape)).astype(np.float32)
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.rfftfreq(shape[1])[None]
    f = np.hypot(fx, fy)
    f[0, 0] = 1.0
    return np.fft.irfft2(np.fft.rfft2(w) * (f**slope).astype(np.float32), s=shape).astype(np.float32)


def speed(tilts=61, real_tilts=41, size=512, repeat=1, threads=2, keep=None):
    """Write a generated (tilts x size^2, -60..60) and a real-like (real_tilts x size^2) series with .tlt files,
    run ``faket realism GEN --real REAL --holdout odd`` as a user runs it, print the wall and CPU time."""
    import os
    import resource
    import subprocess
    import tempfile

    from faket.formats.mrc import write_mrc
    from faket.formats.tiltmeta import write_tlt

    tmp = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="faket_realism_bench_"))
    tmp.mkdir(parents=True, exist_ok=True)
    ga, ra = np.linspace(-60, 60, tilts), np.linspace(-60, 60, real_tilts)
    write_mrc(tmp / "gen.mrc", _coloured_stack(tilts, (size, size), 1, -0.3), 10.0, image_stack=True)
    write_tlt(tmp / "gen.tlt", ga)
    write_mrc(tmp / "real.mrc", _coloured_stack(real_tilts, (size, size), 2, -0.5), 10.0, image_stack=True)
    write_tlt(tmp / "real.tlt", ra)
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [
        sys.executable,
        "-m",
        "faket",
        "realism",
        str(tmp / "gen.mrc"),
        "--real",
        str(tmp / "real.mrc"),
        "--holdout",
        "odd",
        "-o",
        str(tmp / "report"),
        "--threads",
        str(threads),
        "--quiet",
    ]
    print(
        f"faket realism: {tilts} x {size}^2 generated against {real_tilts} x {size}^2 real, --holdout odd, "
        f"{threads} threads; load {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    times = []
    for i in range(repeat):
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, env=env)
        dt = time.perf_counter() - t0
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
        times.append(dt)
        print(
            f"  run {i + 1}: wall {dt:.1f} s, CPU {cpu:.1f} s, peak RSS {r1.ru_maxrss / 1024:.0f} MB "
            f"(goal: wall < 120 s); load {os.getloadavg()[0]:.1f}",
            flush=True,
        )
    rep = json.loads((tmp / "report" / "realism.json").read_text())
    s = rep["modalities"]["gen.mrc"]["summary"]
    print(
        f"  C2ST (CNN) {s['c2st_cnn']:.3f}, patches per class {s['n_patches_per_class']}; "
        f"median wall {float(np.median(times)):.1f} s; files in {tmp}"
    )
    return times


# ---------------------------------------------------------------------------------------------------------
# --table: NOISY (today's white noise, fitted on half of the real tilts) against every shared real reference,
# scored by `faket realism` on the other half, as a user would run it


TABLE_REFS = {
    # name: (real file, angles file, extra options of noise and realism, tilts, layout box Z,Y,X)
    "cryocat": ("tiltseries/cryocat_tilt_stack_HIV-VLP_4tilts.mrc", None, ["--assume-same-sampling"], 4, "64,240,232"),
    "pytom": (
        "tiltseries/pytom_p1_subtilt_41x100x100.mrc",
        "tiltseries/pytom_p1_subtilt.tlt",
        ["--assume-same-sampling"],
        41,
        "64,128,128",
    ),
    "tomodrgn": (
        "tiltseries/tomodrgn_warptools_Unt/Unt_083/Unt_083_12.00A_000001.mrcs",
        "tiltseries/tomodrgn_warptools_Unt/warptools_test_4-tomos_10-ptcls_box-32_angpix-12_tomograms.star",
        [],
        37,
        "64,128,128",
    ),
}


def table(refs, work=None, seed=0, threads=2, physics=False, layouts=None):
    """Per reference: faket layout (config/layout.yaml, or ``layouts[name]``: a spec that models the reference's
    specimen; the reference's size) -> faket project at the reference's angles -> faket noise with the real file
    as reference, fitted on the even tilts (--exclude-tilts odd) -> faket realism --holdout odd. cryoCAT has no
    angles: -30, -10, 10, 30 are assumed."""
    import os
    import subprocess
    import tempfile

    from faket.formats.tiltmeta import read_tilt_metadata, write_tlt

    data = SHARED.parent
    work = Path(work) if work else Path(tempfile.mkdtemp(prefix="faket_realism_table_"))
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))

    def faket(*a):
        subprocess.run([sys.executable, "-m", "faket", *map(str, a), "--quiet"], check=True, env=env)

    rows = []
    for name in refs:
        real, ang_file, extra, n, box = TABLE_REFS[name]
        real = data / real
        d = work / name
        d.mkdir(exist_ok=True)
        tlt = d / "real.tlt"
        if ang_file is None:
            write_tlt(tlt, [-30.0, -10.0, 10.0, 30.0])
            ang_opt = ["--real-angles-file", tlt]
        else:
            write_tlt(tlt, read_tilt_metadata(data / ang_file, stack=real).angles)
            ang_opt = ["--real-angles-file", data / ang_file]
        odd = ",".join(str(i) for i in range(1, n + 1, 2))
        t0 = time.perf_counter()
        spec = Path((layouts or {}).get(name, ROOT / "config" / "layout.yaml"))
        faket("layout", "-o", d / "layout", "--spec", spec, "--box", box, "--seed", seed)
        faket("project", d / "layout" / "volume.mrc", "-o", d / "noiseless.mrc", "--angles-file", tlt)
        fit = [real, "--reference-angles-file", ang_opt[1], "--exclude-tilts", odd, "--max-angle-gap", 25]
        noise = [d / "noiseless.mrc", "--reference", *fit, "--seed", seed, *extra]
        faket("noise", *noise, "-o", d / "noisy.mrc", "--content-out", d / "content.mrc")
        # the same without the final radial spectrum match (faket noise --match-spectrum none): its measured gain
        faket("noise", *noise, "--match-spectrum", "none", "-o", d / "noisy_unmatched.mrc")
        gen, names = [d / "noisy.mrc", d / "noisy_unmatched.mrc"], ["--name", "NOISY", "--name", "NOISY-UNMATCHED"]
        if physics:
            # the physics reference of the same layout at the same angles (faket reference's defaults), and the
            # offline default style on top of NOISY (random weights, styled with the FIT tilts only)
            faket(
                "reference", d / "layout" / "volume.mrc", "-o", d / "physics.mrc", "--angles-file", tlt, "--seed", seed
            )
            faket(
                "style",
                d / "content.mrc",
                "--init",
                d / "noisy.mrc",
                "--style",
                real,
                "--style-angles-file",
                ang_opt[1],
                "--exclude-tilts",
                odd,
                "--max-angle-gap",
                25,
                "--weights",
                "random",
                "-o",
                d / "offline.mrc",
                "--seed",
                seed,
                *extra,
            )
            gen += [d / "offline.mrc", d / "physics.mrc"]
            names += ["--name", "OFFLINE", "--name", "PHYSICS"]
        t1 = time.perf_counter()
        patch = ["--patch", "16"] if name == "tomodrgn" else []
        faket(
            "realism",
            *gen,
            *names,
            "--real",
            real,
            *ang_opt,
            "--holdout",
            "odd",
            "-o",
            d / "report",
            "--seed",
            seed,
            "--threads",
            threads,
            *patch,
            *extra,
        )
        t2 = time.perf_counter()
        rep = json.loads((d / "report" / "realism.json").read_text())
        rows.append((f"{name} ({spec.stem})", rep, t1 - t0, t2 - t1))
        print(
            f"  [{name}, layout {spec.name}] generated in {t1 - t0:.1f} s, faket realism {t2 - t1:.1f} s: {d / 'report'}",
            flush=True,
        )
    print("\n| reference | data | C2ST (CNN) | C2ST (log-spectra) | RAPS | W1 | kurtosis (real) | tilts scored |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, rep, _, _ in rows:
        for label, s in [("real vs real (floor)", rep["floor"]["summary"])] + [
            (m, rep["modalities"][m]["summary"])
            for m in ("NOISY", "NOISY-UNMATCHED", "OFFLINE", "PHYSICS")
            if m in rep["modalities"]
        ]:
            print(
                f"| {name} | {label} | {s['c2st_cnn']:.2f} ± {s['c2st_cnn_std']:.2f} | "
                f"{s['c2st_logreg']:.2f} ± {s['c2st_logreg_std']:.2f} | {s['raps_distance']:.2f} | {s['w1']:.2f} | "
                f"{s['kurtosis']:.2f} ({s['real_kurtosis']:.2f}) | {s['n_tilts_scored']} |"
            )
    return rows


def parse_seeds(text: str) -> list[int]:
    """``0-7`` or ``0,3,5`` -> a list of seeds."""
    if "-" in text:
        a, b = text.split("-", 1)
        return list(range(int(a), int(b) + 1))
    return [int(x) for x in text.split(",") if x.strip()]


def print_seed_summary(per_seed, seeds):
    """Mean and standard deviation over seeds (layout, noise, style and realism all take the seed) of each
    modality's C2ST (CNN) and RAPS, per reference; how many seeds stay at or below 0.75."""
    print(f"\n| reference | data | C2ST (CNN), mean ± sd over {len(seeds)} seeds | min - max | seeds <= 0.75 | RAPS |")
    print("| --- | --- | --- | --- | --- | --- |")
    for i, (name, _, _, _) in enumerate(per_seed[0]):
        reps = [rows[i][1] for rows in per_seed]
        for label in ["floor", "NOISY", "NOISY-UNMATCHED", "OFFLINE", "PHYSICS"]:
            sums = [
                r["floor"]["summary"] if label == "floor" else r["modalities"].get(label, {}).get("summary")
                for r in reps
            ]
            if any(x is None for x in sums):
                continue
            c = np.array([x["c2st_cnn"] for x in sums])
            raps = np.array([x["raps_distance"] for x in sums])
            print(
                f"| {name} | {label} | {c.mean():.3f} ± {c.std(ddof=1):.3f} | {c.min():.2f} - {c.max():.2f} | "
                f"{int((c <= 0.75).sum())} of {c.size} | {raps.mean():.2f} |"
            )


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ref", choices=("pytom", "cryocat", "tomodrgn", "both", "all"), default="both")
    ap.add_argument(
        "--sampling",
        choices=("true", "own", "both"),
        default="true",
        help="true: references brought to --content-pixel when their pixel size is known (default); "
        "own: used at their own sampling (the old behaviour); both: one table each",
    )
    ap.add_argument("--content-pixel", type=float, default=10.0)
    ap.add_argument(
        "--ref-pixel",
        action="append",
        default=[],
        metavar="NAME=A",
        help="state a reference's pixel size (e.g. pytom=5)",
    )
    ap.add_argument("--configs", default=DEFAULT_CONFIGS, help="';'-separated configs (see the module doc)")
    ap.add_argument("--stride", type=int, default=4, help="use every N-th tilt of the pytom series (default 4)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--precision", default="fp32")
    ap.add_argument(
        "--speed",
        action="store_true",
        help="time faket realism: --speed-tilts x --speed-size^2 generated against a 41-tilt real-like "
        "series (issue 19: 61 x 512^2 under 2 min on 2 cores), nothing else",
    )
    ap.add_argument("--speed-tilts", type=int, default=61)
    ap.add_argument("--speed-size", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument(
        "--table",
        action="store_true",
        help="faket realism of NOISY (fitted on the even real tilts) on the odd tilts of every --ref "
        "(default for --table: all three), as a user would run it",
    )
    ap.add_argument(
        "--physics",
        action="store_true",
        help="--table: also the offline default style on top of NOISY (OFFLINE) and faket reference of the same "
        "layout (PHYSICS)",
    )
    ap.add_argument(
        "--layout",
        action="append",
        default=[],
        metavar="NAME=YAML",
        help="--table: the layout spec for reference NAME (default config/layout.yaml, the generic specimen), e.g. "
        "cryocat=config/cryocat-vlp-layout.yaml (the HIV VLPs of the cryoCAT tilts)",
    )
    ap.add_argument(
        "--seeds",
        metavar="A-B|A,B,..",
        help="--table: repeat for these seeds (layout, noise, style and realism all take the seed) and print the "
        "mean and spread over seeds (one seed's C2ST moves by ~0.05 with the layout drawn)",
    )
    ap.add_argument("--keep", metavar="DIR", help="--speed / --table: work in DIR (kept) instead of a temp folder")
    args = ap.parse_args(argv)
    if args.speed:
        speed(args.speed_tilts, 41, args.speed_size, repeat=args.repeat, threads=args.threads, keep=args.keep)
        return
    if args.table:
        if not SHARED.is_dir():
            raise SystemExit(f"real data not found at {SHARED}")
        refs = {"both": ["cryocat", "pytom", "tomodrgn"], "all": ["cryocat", "pytom", "tomodrgn"]}.get(
            args.ref, [args.ref]
        )
        layouts = {k: ROOT / v for k, v in (kv.split("=", 1) for kv in args.layout)}  # an absolute v stays as is
        seeds = [args.seed] if args.seeds is None else parse_seeds(args.seeds)
        per_seed = []
        for seed in seeds:
            work = None if args.keep is None else Path(args.keep) / f"seed{seed}"
            per_seed.append(
                table(refs, work=work, seed=seed, threads=args.threads, physics=args.physics, layouts=layouts)
            )
        if len(seeds) > 1:
            print_seed_summary(per_seed, seeds)
        return
    if not SHARED.is_dir():
        raise SystemExit(f"real data not found at {SHARED}")
    configs = [c for c in args.configs.split(";") if c.strip()]
    refs = {"both": ["pytom", "cryocat"], "all": ["pytom", "cryocat", "tomodrgn"]}.get(args.ref, [args.ref])
    stated = {k: float(v) for k, v in (kv.split("=") for kv in args.ref_pixel)}
    modes = ["true", "own"] if args.sampling == "both" else [args.sampling]
    results = [
        evaluate(
            r,
            configs,
            stride=args.stride,
            seed=args.seed,
            threads=args.threads,
            precision=args.precision,
            sampling=m,
            content_pixel=args.content_pixel,
            stated=stated,
        )
        for r in refs
        for m in modes
    ]
    for res in results:
        print_table(res)


if __name__ == "__main__":
    main()
