"""Benchmark and validation of `faket noise`.

    .venv/bin/python bench/noise.py                  # timing: noise on 61x1024x1024 (goal < 10 s)
    .venv/bin/python bench/noise.py --validate       # blind-estimate error table on synthetic references
    .venv/bin/python bench/noise.py --real           # blind estimates on the real tilt-series in ../shared/data
    .venv/bin/python bench/noise.py --physics        # blind vs paired on a `faket reference` tilt-series
    .venv/bin/python bench/noise.py --spectrum       # extra cost of --noise-spectrum / --signal-transfer per tilt
    .venv/bin/python bench/noise.py --realism        # C2ST / RAPS / W1 / kurtosis of the noise options, held out

Timing: the whole command (`faket.cli.main`, in-process: read CLEAN and REF, blind fit, noise, write NOISY
+ CONTENT + sidecars), and the pure parts separately. The machine is shared: timings are noisy.
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
SHARED = ROOT.parent / "shared" / "data"


def _write(path, data, angles=None, voxel=10.0):
    import mrcfile

    with mrcfile.new(path, overwrite=True) as m:
        m.set_data(np.asarray(data, np.float32))
        m.voxel_size = voxel
    if angles is not None:
        Path(path).with_suffix(".tlt").write_text("".join(f"{a:g}\n" for a in angles))


def phantom(n=128, nblob=60, seed=0, blur=1.5):
    """Projected random balls (chord lengths), Gaussian-softened: a band-limited projection."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:n, :n].astype(np.float32)
    img = np.zeros((n, n), np.float32)
    for _ in range(nblob):
        cy, cx = rng.uniform(0, n, 2)
        rad = rng.uniform(3, 12) * n / 128
        d2 = rad * rad - ((yy - cy) ** 2 + (xx - cx) ** 2)
        img += 2 * np.sqrt(np.clip(d2, 0, None)) * rng.uniform(0.5, 1.5)
    img = gaussian_filter(img, blur) if blur > 0 else img
    return ((img - img.mean()) / img.std()).astype(np.float32)


def timing(args) -> None:
    from faket.cli import main
    from faket.imaging import noise as nz

    T, N = args.tilts, args.size
    rng = np.random.default_rng(0)
    angles = np.linspace(-60, 60, T)
    base = phantom(N, 200, seed=1, blur=2.0)
    clean = np.empty((T, N, N), np.float32)
    ref = np.empty((T, N, N), np.float32)
    for i in range(T):
        clean[i] = np.roll(base, 3 * i, axis=1)
        ref[i] = 0.3 * np.roll(base, -5 * i, axis=0) + rng.standard_normal((N, N), dtype=np.float32)
    with tempfile.TemporaryDirectory(dir=args.tmp) as d:
        d = Path(d)
        _write(d / "clean.mrc", clean, angles)
        _write(d / "ref.mrc", ref, angles + 0.2)
        times = []
        for rep in range(args.repeat):
            t0 = time.perf_counter()
            rc = main(
                [
                    "noise",
                    str(d / "clean.mrc"),
                    "--reference",
                    str(d / "ref.mrc"),
                    "-o",
                    str(d / "noisy.mrc"),
                    "--content-out",
                    str(d / "content.mrc"),
                    "--quiet",
                ]
            )
            times.append(time.perf_counter() - t0)
            assert rc == 0
        t0 = time.perf_counter()
        c = nz.blind_fit(ref)
        t_fit = time.perf_counter() - t0
        t0 = time.perf_counter()
        nz.add_noise(clean, nz.smooth_curves(c, 2), seed=0, content_noise=0.25)
        t_add = time.perf_counter() - t0
    print(
        f"faket noise {T}x{N}x{N} (blind fit, NOISY + CONTENT, with I/O): "
        f"best {min(times):.2f} s of {len(times)} (goal < 10 s)"
    )
    print(f"  blind_fit on the reference: {t_fit:.2f} s;  add_noise (NOISY + CONTENT): {t_add:.2f} s")


def validate(args) -> None:
    """Blind sigma error vs SNR on synthetic references (phantom signal + white / detector-coloured noise)."""
    import scipy.fft as sfft

    from faket.imaging import noise as nz
    from faket.imaging import physics as ph

    snrs = [0.01, 0.03, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0]
    n, reps = 128, 8
    balls = np.stack([phantom(n, 60, seed=s) for s in range(reps)])

    def ctf_signal(px):
        """The raw ball projections imaged through the CTF (-3 um, envelopes): signal up to Nyquist."""
        raw = np.stack([phantom(n, 60, seed=s, blur=0.0) for s in range(reps)]) + 5
        p = ph.PhysicsParams(dose_total=None, ice_phase_std=0.0, mtf="none")
        img = ph.simulate_tiltseries(raw, np.zeros(reps), px, p)
        return (img - img.mean(axis=(1, 2), keepdims=True)) / img.std(axis=(1, 2), keepdims=True)

    signals = {"balls": balls, "balls x CTF, 10 A/px": ctf_signal(10.0), "balls x CTF, 4 A/px": ctf_signal(4.0)}
    cases = [
        ("balls", "white", "measured"),
        ("balls", "white", "none"),
        ("balls", "counting-MTF", "measured"),
        ("balls", "counting-MTF", "none"),
        ("balls", "counting-MTF", "counting"),
        ("balls x CTF, 10 A/px", "white", "measured"),
        ("balls x CTF, 10 A/px", "counting-MTF", "measured"),
        ("balls x CTF, 4 A/px", "white", "measured"),
        ("balls x CTF, 4 A/px", "counting-MTF", "measured"),
    ]
    print("| signal | noise | --noise-mtf | " + " | ".join(f"SNR {s:g}" for s in snrs) + " |")
    print("|---|---|---|" + "---|" * len(snrs))
    shape = nz.noise_psd_shape((n, n), "counting")
    for sig_name, colour, mtf in cases:
        sig = signals[sig_name]
        row = []
        for snr in snrs:
            rng = np.random.default_rng(int(snr * 1e4))
            e = rng.standard_normal(sig.shape)
            if colour != "white":
                e = sfft.irfft2(sfft.rfft2(e) * np.sqrt(shape), s=(n, n))
            e /= e.std(axis=(1, 2), keepdims=True)
            ref = np.sqrt(snr) * sig + e
            truth = np.sqrt(1 / (1 + snr))
            err = nz.blind_fit(ref, noise_mtf=mtf).sigma / truth - 1
            row.append(f"{100 * err.mean():+.1f}% ({100 * np.abs(err).max():.1f})")
        print(f"| {sig_name} | {colour} | {mtf} | " + " | ".join(row) + " |")
    print(
        f"\n{reps} references of {n}x{n} per cell; error = blind sigma / true sigma - 1 "
        "(mean over references, max |error| in brackets)."
    )


def _read(path):
    import mrcfile

    with mrcfile.open(path, permissive=True) as m:
        return np.array(m.data, dtype=np.float32)


def real(args) -> None:
    from faket.imaging import noise as nz

    ts = SHARED / "tiltseries"
    if not ts.exists():
        print(f"skipped: {ts} not found")
        return
    rows = []
    d = _read(ts / "pytom_p1_subtilt_41x100x100.mrc")
    for mtf in ("measured", "none", "counting"):
        c = nz.blind_fit(d, noise_mtf=mtf)
        rows.append(("PyTom sub-tilt-series 41x100x100", mtf, c))
    d = _read(ts / "cryocat_tilt_stack_HIV-VLP_4tilts.mrc")
    for mtf in ("measured", "none", "counting"):
        c = nz.blind_fit(d, noise_mtf=mtf)
        rows.append(("cryoCAT 4 full-field tilts 240x232", mtf, c))
    stacks = sorted((ts / "tomodrgn_warptools_Unt").glob("*/*.mrcs"))
    sig = []
    skipped = 0
    for f in stacks:
        d = _read(f)
        sd = d.std(axis=(1, 2))
        keep = sd > 1e-3 * np.median(sd)
        skipped += int((~keep).sum())
        sig.append(nz.blind_fit(d[keep]).sigma)
    allsig = np.concatenate(sig)
    print("| data | --noise-mtf | sigma median (min..max) | SNR median (min..max) |")
    print("|---|---|---|---|")
    for name, mtf, c in rows:
        s = c.snr
        print(
            f"| {name} | {mtf} | {np.median(c.sigma):.3f} ({c.sigma.min():.3f}..{c.sigma.max():.3f}) | "
            f"{np.median(s):.3f} ({s.min():.3f}..{s.max():.3f}) |"
        )
    snr = allsig**-2 - 1
    print(
        f"| tomoDRGN {len(stacks)} sub-tilt-series 37x32x32 float16 ({skipped} blank tilts skipped) | "
        f"measured | {np.median(allsig):.3f} ({allsig.min():.3f}..{allsig.max():.3f}) | "
        f"{np.median(snr):.3f} ({snr.min():.3f}..{snr.max():.3f}) |"
    )
    # PyTom per-tilt curve (every 4th tilt)
    d = _read(ts / "pytom_p1_subtilt_41x100x100.mrc")
    ang = np.loadtxt(ts / "pytom_p1_subtilt.tlt")
    c = nz.blind_fit(d)
    print("\nPyTom per tilt (angle: SNR): " + ", ".join(f"{a:.0f}: {s:.3f}" for a, s in zip(ang[::4], c.snr[::4])))


def physics(args) -> None:
    """Blind vs paired on a physics-based reference (where the clean twin gives the truth)."""
    from scipy.ndimage import gaussian_filter

    from faket.imaging import noise as nz
    from faket.imaging import physics as ph
    from faket.imaging.projection import project

    rng = np.random.default_rng(0)
    v = np.zeros((64, 128, 128), np.float32)
    idx = rng.integers(8, 120, size=(120, 3))
    idx[:, 0] = rng.integers(16, 48, size=120)
    v[idx[:, 0], idx[:, 1], idx[:, 2]] = 1.0
    v = gaussian_filter(v, 2.5)
    angles = np.arange(-60, 61, 6.0)
    proj = project(v, angles, contrast="bright")
    print(
        "| dose (e-/A^2) | pixel (A) | paired SNR median | blind SNR median (measured) | blind sigma / paired sigma |"
    )
    print("|---|---|---|---|---|")
    for dose, px in ((120, 10.0), (1200, 10.0), (12000, 10.0), (120, 4.0)):
        p = ph.PhysicsParams(dose_total=float(dose), potential_scale_v=3.0 / float(v.max()))
        noisy = ph.simulate_tiltseries(proj, angles, px, p, seed=1)
        clean = ph.simulate_tiltseries(proj, angles, px, p, seed=1, noise=False)
        pa = nz.paired_fit(noisy, clean)
        bl = nz.blind_fit(noisy)
        print(
            f"| {dose} | {px:g} | {np.median(pa.snr):.4f} | {np.median(bl.snr):.4f} | "
            f"{np.median(bl.sigma / pa.sigma):.3f} |"
        )


def spectrum_cost(args) -> None:
    """Extra time per content tilt of the coloured noise (2d / radial) and of the signal transfer over white noise:
    add_noise alone, plus the spectra of the clean tilts (the reference side is paid once per reference tilt)."""
    import os

    from faket.imaging import noise as nz

    T, N = max(2, min(args.tilts, 8)), args.size
    rng = np.random.default_rng(0)
    clean = np.stack([np.roll(phantom(N, 200, seed=1, blur=2.0), 7 * i, axis=1) for i in range(T)])
    ref = clean[:, : int(N * 0.6), : int(N * 0.6)] * 0.5 + rng.standard_normal(
        (T, int(N * 0.6), int(N * 0.6)), dtype=np.float32
    )
    fit = nz.blind_fit(ref)
    n = nz.spectrum_grid(clean.shape, ref.shape)
    ring_n = min(ref.shape[1:])
    Pr, Rr = nz.tilt_spectra(ref, n, ring_n=ring_n)

    def best(fn):
        """CPU seconds per tilt (process time, all threads: less sensitive to a shared machine than wall time)."""
        ts = []
        for _ in range(args.repeat):
            t0 = time.process_time()
            fn()
            ts.append(time.process_time() - t0)
        return min(ts) / T

    def coloured(kind, transfer):
        Pc, Rc = nz.tilt_spectra(clean, n, ring_n=ring_n)
        H = nz.signal_transfer(Rr, Rc, nz.ring_frequencies(ring_n), fit.r, fit.sigma) if transfer else None
        if H is not None:
            Pc = nz.transferred_psd(Pc, H)
        S = None if kind == "white" else nz.noise_spectra(Pr, fit.r, kind, clean_psd=Pc)
        nz.add_noise(clean, fit, seed=0, spectra=S, transfer=H)

    white = best(lambda: nz.add_noise(clean, fit, seed=0))
    load = os.getloadavg()[0]
    print(
        f"add_noise per {N}x{N} tilt, CPU time (best of {args.repeat}, {T} tilts, load {load:.1f} on "
        f"{os.cpu_count()} cores): white {white:.3f} s"
    )
    for kind, tr in (("2d", False), ("radial", False), ("white", True), ("2d", True)):
        t = best(lambda: coloured(kind, tr))
        print(
            f"  --noise-spectrum {kind:6s} --signal-transfer {'measured' if tr else 'none':8s}: {t:.3f} s "
            f"(+{t - white:.3f} s per tilt)"
        )


def _layout_content(box_yx, angles, seed, tmp):
    """A faket layout (config/layout.yaml, its counts scaled to the area) projected at ``angles``."""
    import yaml

    from faket.cli import main

    spec = yaml.safe_load((ROOT / "config" / "layout.yaml").read_text())
    scale = box_yx[0] * box_yx[1] / (spec["box"][1] * spec["box"][2])
    spec["box"] = [spec["box"][0], int(box_yx[0]), int(box_yx[1])]
    for c in spec["classes"]:
        c["count"] = max(1, int(round(c["count"] * scale)))
    for k in ("vesicles", "fiducials"):
        if k in spec:
            spec[k]["count"] = max(1, int(round(spec[k]["count"] * scale)))
    (tmp / "spec.yaml").write_text(yaml.safe_dump(spec))
    assert (
        main(["layout", "-o", str(tmp / "lay"), "--spec", str(tmp / "spec.yaml"), "--seed", str(seed), "--quiet"]) == 0
    )
    np.savetxt(tmp / "ang.tlt", angles, fmt="%.3f")
    assert (
        main(
            [
                "project",
                str(tmp / "lay" / "volume.mrc"),
                "-o",
                str(tmp / "clean.mrc"),
                "--angles-file",
                str(tmp / "ang.tlt"),
                "--quiet",
            ]
        )
        == 0
    )
    return tmp / "clean.mrc"


NO_SM = ["--match-spectrum", "none"]
REALISM_VARIANTS = {
    "white, no transfer (the paper's)": ["--noise-spectrum", "white", "--signal-transfer", "none", *NO_SM],
    "radial, no transfer": ["--noise-spectrum", "radial", "--signal-transfer", "none", *NO_SM],
    "2d, no transfer": ["--noise-spectrum", "2d", "--signal-transfer", "none", *NO_SM],
    "white + transfer": ["--noise-spectrum", "white", *NO_SM],
    "radial + transfer": ["--noise-spectrum", "radial", *NO_SM],
    "2d + transfer": NO_SM,
    "2d + transfer + --match distribution": ["--match", "distribution", *NO_SM],
    "white, no transfer + --match distribution": [
        "--noise-spectrum",
        "white",
        "--signal-transfer",
        "none",
        "--match",
        "distribution",
        *NO_SM,
    ],
    "white, no transfer + spectrum match": ["--noise-spectrum", "white", "--signal-transfer", "none"],
    "2d + transfer + spectrum match (default)": [],
    "2d + transfer + spectrum match + --match distribution": ["--match", "distribution"],
}


def realism(args) -> None:
    """Held-out realism (faket.evaluation.realism) of `faket noise` variants on the shared real tilt-series: the
    noise is fitted on the real tilts in even rows (0-based odd), NOISY is made at the angles of the other rows
    and scored against them (holdout "odd")."""
    import json

    from faket.cli import main
    from faket.evaluation.realism import realism_report

    refs = {
        "cryocat": (
            SHARED / "tiltseries" / "cryocat_tilt_stack_HIV-VLP_4tilts.mrc",
            np.array([-30.0, -10.0, 10.0, 30.0]),
        ),
        "pytom": (
            SHARED / "tiltseries" / "pytom_p1_subtilt_41x100x100.mrc",
            np.loadtxt(SHARED / "tiltseries" / "pytom_p1_subtilt.tlt"),
        ),
    }
    names = [v for v in REALISM_VARIANTS if not args.variants or any(w in v for w in args.variants.split(";"))]
    results = {}
    for ref_name in (args.refs or "cryocat,pytom").split(","):
        path, ang = refs[ref_name]
        real = _read(path)
        R = real.shape[0]
        fit_rows = np.arange(1, R, 2)
        score_rows = np.arange(0, R, 2)
        with tempfile.TemporaryDirectory(dir=args.tmp) as d:
            d = Path(d)
            _write(d / "fit.mrc", real[fit_rows], ang[fit_rows])
            clean = _layout_content(real.shape[1:], ang[score_rows], 1, d)
            gen = {}
            for v in names:
                out = d / "noisy.mrc"
                rc = main(
                    [
                        "noise",
                        str(clean),
                        "--reference",
                        str(d / "fit.mrc"),
                        "--assume-same-sampling",
                        "--max-angle-gap",
                        "30",
                        "-o",
                        str(out),
                        "--seed",
                        "1",
                        "--quiet",
                        *REALISM_VARIANTS[v],
                    ]
                )
                assert rc == 0
                gen[v] = (_read(out), ang[score_rows])
            t0 = time.perf_counter()
            rep = realism_report(real, ang, gen, holdout="odd", seed=0)
            dt = time.perf_counter() - t0
        results[ref_name] = {v: rep["modalities"][v]["summary"] for v in names}
        results[ref_name]["floor"] = rep["floor"]["summary"]
        print(
            f"\n{ref_name}: {R} real tilts, fitted on rows {fit_rows.tolist()}, scored on {score_rows.tolist()} "
            f"({dt:.0f} s)"
        )
        print("| modality | C2ST CNN | C2ST logreg | RAPS | W1 | kurtosis (real) |")
        print("|---|---|---|---|---|---|")
        for v, sm in [(v, rep["modalities"][v]["summary"]) for v in names] + [
            ("real vs real (floor)", rep["floor"]["summary"])
        ]:
            print(
                f"| {v} | {sm['c2st_cnn']:.2f} +- {sm['c2st_cnn_std']:.2f} | {sm['c2st_logreg']:.2f} | "
                f"{sm['raps_distance']:.3f} | {sm['w1']:.3f} | {sm['kurtosis']:.1f} ({sm['real_kurtosis']:.1f}) |"
            )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=float))


def parse():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tilts", type=int, default=61)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--tmp", default=None, help="folder for the temporary MRC files")
    ap.add_argument("--validate", action="store_true")
    ap.add_argument("--real", action="store_true")
    ap.add_argument("--physics", action="store_true")
    ap.add_argument("--spectrum", action="store_true")
    ap.add_argument("--realism", action="store_true")
    ap.add_argument("--refs", default=None, help="--realism: comma list of cryocat, pytom")
    ap.add_argument("--variants", default=None, help="--realism: ';'-separated substrings of the variant names")
    ap.add_argument("--json", default=None, help="--realism: also write the summaries here")
    return ap.parse_args()


if __name__ == "__main__":
    a = parse()
    if a.spectrum:
        spectrum_cost(a)
    elif a.realism:
        realism(a)
    elif a.validate or a.real or a.physics:
        if a.validate:
            validate(a)
        if a.real:
            real(a)
        if a.physics:
            physics(a)
    else:
        timing(a)
