"""Offline style (random weights) against real tilt-series, scored on HELD-OUT tilts (issue 19, section 4).

    .venv/bin/python bench/style_offline.py                                  # every variant, both references
    .venv/bin/python bench/style_offline.py --ref cryocat --variants "noisy;offline;offline+ln"

Data flow per real reference (../shared/data/tiltseries):
  split the real tilts into FIT tilts and HELD-OUT tilts (cryocat: 4 full-field tilts 240x232, no angles,
  -30/-10/10/30 assumed, fit on 0 and 2, held out 1 and 3; pytom: 41 sub-tilts 100x100, fit on the even
  indices, held out every 4th odd index (10 tilts, for time));
  phantom of random dense balls (bench/realism.py's) projected at the HELD-OUT angles (`faket.imaging.projection`);
  blind noise fit on the FIT tilts (`blind_fit`, white floor, degree <= 2 smoothing), angle-matched (nearest fit
  tilt) -> NOISY and CONTENT (0.25 sigma); with ``--noise 2d-scratch`` the noise is coloured by the matched fit
  tilt's 2-D power spectrum (the issue's scratch model, until `faket noise --noise-spectrum 2d` is merged);
  style transfer of every variant (content = CONTENT, init = NOISY, style = the FIT tilts, angle-matched,
  random VGG-19 weights seed 0) -> every tilt rescaled to the matched fit tilt's mean/std;
  score against the HELD-OUT real tilts: C2ST (small CNN on 24x24 patches, 5-fold, accuracy; 0.5 = not
  separable), RAPS distance (RMS of the mean-removed log10 radially averaged power spectra, decades) and W1 of
  the standardised intensities (`faket.evaluation.realism` when present, else the local copies below, which
  standardise each tilt first).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data" / "tiltseries"

# the variants measured (names used in docs/style.md); each is the offline preset plus the listed settings
VARIANTS = {
    "paper": dict(preset="paper"),     # the paper's setting with random weights
    "offline": dict(),
    "offline-10": dict(iterations=10, initial_iterations=10),
    "layer-norm-10": dict(iterations=10, initial_iterations=10, layer_norm=True),
    "softmax-10": dict(iterations=10, initial_iterations=10, feature_transform="softmax"),
    "multiscale-10": dict(iterations=10, initial_iterations=10, network="multiscale"),
    "multiscale-3": dict(network="multiscale"),
}


def load_reference(name):
    import mrcfile

    if name == "pytom":
        with mrcfile.open(SHARED / "pytom_p1_subtilt_41x100x100.mrc", permissive=True) as m:
            ref = np.asarray(m.data, np.float32)
        ang = np.loadtxt(SHARED / "pytom_p1_subtilt.tlt")
        return ref, ang, np.arange(0, 41, 2), np.arange(1, 41, 4)
    if name == "cryocat":
        with mrcfile.open(SHARED / "cryocat_tilt_stack_HIV-VLP_4tilts.mrc", permissive=True) as m:
            ref = np.asarray(m.data, np.float32)
        return ref, np.array([-30.0, -10.0, 10.0, 30.0]), np.array([0, 2]), np.array([1, 3])
    raise SystemExit(f"unknown reference {name}")


def phantom_volume(shape_zyx, seed=0, fill=0.12):
    """Random dense balls (radii 2..9 voxels) in a slab (bench/realism.py's phantom)."""
    rng = np.random.default_rng(seed)
    nz, ny, nx = shape_zyx
    vol = np.zeros(shape_zyx, np.float32)
    target, filled = fill * vol.size, 0.0
    while filled < target:
        r = rng.uniform(2, 9)
        c = np.array([rng.uniform(nz * 0.3, nz * 0.7), rng.uniform(0, ny), rng.uniform(0, nx)])
        lo = np.maximum(np.floor(c - r - 1).astype(int), 0)
        hi = np.minimum(np.ceil(c + r + 2).astype(int), shape_zyx)
        zz, yy, xx = np.ogrid[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
        d = np.sqrt((zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2)
        vol[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] += (np.clip(r + 0.5 - d, 0, 1) * rng.uniform(0.5, 1.5)).astype(np.float32)
        filled += 4.19 * r ** 3
    return vol


def nearest(src, dst):
    return np.array([int(np.argmin(np.abs(np.asarray(src) - a))) for a in dst])


def make_case(name, seed=0, noise="white"):
    from faket.imaging import noise as nz
    from faket.imaging.projection import project

    ref, ang, fit_i, held_i = load_reference(name)
    fit, held = ref[fit_i], ref[held_i]
    T, H, W = held.shape
    clean = project(phantom_volume((max(H, W), H, W), seed=seed), ang[held_i])
    m = nearest(ang[fit_i], ang[held_i])
    if noise == "white":
        c = nz.smooth_curves(nz.blind_fit(fit, noise_mtf="none"), min(2, len(fit_i) - 1))
        cur = nz.NoiseCurves(r=c.r[m], sigma=c.sigma[m], mean=c.mean[m], std=c.std[m])
        noisy, content = nz.add_noise(clean, cur, seed=seed, content_noise=0.25)
    else:
        noisy, content = noise2d(clean, fit, ang[fit_i], ang[held_i], seed)
    return dict(fit=fit, held=held, match=m, noisy=noisy, content=content)


def noise2d(clean, fit, fit_angles, angles, seed):
    """NOISY / CONTENT whose noise is coloured by the 2-D power spectrum (Gaussian-smoothed periodogram, sigma 2
    frequency bins) of the angle-matched FIT tilt: the issue's scratch model (``--noise 2d-scratch``), standing in
    for ``faket noise --noise-spectrum 2d`` (branch noise2d) until that is merged. r, sigma, mean, std from the
    same blind fit as the white model."""
    from scipy.ndimage import gaussian_filter

    from faket.imaging import noise as nz

    T, H, W = clean.shape
    m = nearest(fit_angles, angles)
    c = nz.smooth_curves(nz.blind_fit(fit, noise_mtf="none"), min(2, len(fit) - 1))
    rng = np.random.default_rng(seed)
    cs = _std(clean)
    noisy, content = np.empty_like(cs), np.empty_like(cs)
    for i in range(T):
        a = fit[m[i]].astype(np.float64)
        P = np.fft.ifftshift(gaussian_filter(np.fft.fftshift(np.abs(np.fft.fft2(a - a.mean())) ** 2), 2.0,
                                             mode="wrap"))[:, : W // 2 + 1]
        e = np.fft.irfft2(np.fft.rfft2(rng.standard_normal((H, W))) * np.sqrt(P), s=(H, W))
        e = (e - e.mean()) / e.std()
        for out, k in ((noisy, 1.0), (content, 0.25)):
            y = c.r[m[i]] * cs[i] + k * c.sigma[m[i]] * e
            out[i] = (y - y.mean()) / y.std() * c.std[m[i]] + c.mean[m[i]]
    return noisy, content


def build(variant, seed=0):
    from faket.style.settings import PRESETS
    from faket.style.vgg import build_model

    v = dict(VARIANTS[variant])
    preset = v.pop("preset", "offline")
    s = replace(PRESETS[preset], **v).validate()
    model, info = build_model("random", s, seed=seed)
    return s, model


def stylise(case, variant, seed=0):
    from faket.style import Reference, StyleTransfer, stylize_series

    s, model = build(variant, seed)
    eng = StyleTransfer(model, s)
    ref = Reference(case["fit"], index=case["match"], name="fit")
    tb = 4 if case["content"].shape[1] <= 128 else 1
    out, rec = stylize_series(eng, case["content"], case["noisy"], [ref], tilt_batch=tb)
    return out, rec


# ---- scores (faket.evaluation.realism when present) -------------------------------------------------

def _std(a):
    a = np.asarray(a, np.float64)
    return ((a - a.mean((1, 2), keepdims=True)) / a.std((1, 2), keepdims=True)).astype(np.float32)


def _patches(stack, p=24, stride=12):
    return np.stack([t[y:y + p, x:x + p] for t in stack for y in range(0, t.shape[0] - p + 1, stride)
                     for x in range(0, t.shape[1] - p + 1, stride)])


def local_c2st(gen, real, seed=0, folds=5, epochs=12):
    import torch
    from torch import nn

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    A, B = _patches(_std(gen)), _patches(_std(real))
    n = min(len(A), len(B))
    A, B = A[rng.permutation(len(A))[:n]], B[rng.permutation(len(B))[:n]]
    X = torch.tensor(np.concatenate([A, B])[:, None])
    y = torch.tensor(np.r_[np.zeros(n), np.ones(n)].astype(np.float32))
    perm = torch.tensor(rng.permutation(2 * n))
    X, y = X[perm], y[perm]
    accs = []
    for k in range(folds):
        te = torch.arange(2 * n) % folds == k
        net = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 16, 3), nn.ReLU(),
                            nn.MaxPool2d(2), nn.Flatten(), nn.Linear(256, 1))
        opt = torch.optim.Adam(net.parameters(), 3e-3)
        Xtr, ytr = X[~te], y[~te]
        for _ in range(epochs):
            idx = torch.randperm(len(Xtr))
            for s in range(0, len(Xtr), 64):
                b = idx[s:s + 64]
                loss = nn.functional.binary_cross_entropy_with_logits(net(Xtr[b])[:, 0], ytr[b])
                opt.zero_grad()
                loss.backward()
                opt.step()
        with torch.no_grad():
            accs.append(float(((net(X[te])[:, 0] > 0).float() == y[te]).float().mean()))
    return float(np.mean(accs)), float(np.std(accs))


def _raps(img, nb=24):
    a = img - img.mean()
    P = np.abs(np.fft.fftshift(np.fft.fft2(a))) ** 2
    H, W = a.shape
    yy, xx = np.indices((H, W))
    r = np.hypot((yy - H // 2) / H, (xx - W // 2) / W)
    idx = np.digitize(r, np.linspace(0.02, 0.5, nb + 1))
    return np.array([P[idx == k].mean() for k in range(1, nb + 1)])


def local_raps(gen, real):
    g = np.mean([np.log10(_raps(t)) for t in _std(gen)], 0)
    r = np.mean([np.log10(_raps(t)) for t in _std(real)], 0)
    d = (g - g.mean()) - (r - r.mean())
    return float(np.sqrt(np.mean(d ** 2)))


def local_w1(gen, real):
    from scipy.stats import wasserstein_distance

    return float(wasserstein_distance(_std(gen).ravel(), _std(real).ravel()))


def scores(gen, real, seed=0):
    try:
        from faket.evaluation import realism  # noqa: F401
    except ImportError:
        realism = None
    if realism is not None and hasattr(realism, "c2st_cnn"):
        c, sd = _unpack(realism.c2st_cnn(gen, real, seed=seed))
        return dict(c2st=c, c2st_sd=sd, raps=float(realism.raps_distance(gen, real)), w1=local_w1(gen, real),
                    scorer="faket.evaluation.realism")
    c, sd = local_c2st(gen, real, seed)
    return dict(c2st=c, c2st_sd=sd, raps=local_raps(gen, real), w1=local_w1(gen, real), scorer="local")


def _unpack(r):
    if isinstance(r, dict):
        return float(r.get("accuracy", r.get("mean"))), float(r.get("std", r.get("sd", float("nan"))))
    if isinstance(r, tuple):
        return float(r[0]), float(r[1])
    return float(getattr(r, "accuracy", getattr(r, "mean", r))), float(getattr(r, "std", float("nan")))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ref", default="cryocat,pytom")
    ap.add_argument("--variants", default="noisy;" + ";".join(VARIANTS))
    ap.add_argument("--noise", default="white", choices=("white", "2d-scratch"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", help="append JSON lines here")
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    for name in a.ref.split(","):
        case = make_case(name, a.seed, a.noise)
        floor = scores(case["fit"][: len(case["held"])], case["held"], a.seed)
        print(f"{name}: real FIT vs HELD-OUT floor {json.dumps(floor)}", flush=True)
        for v in a.variants.split(";"):
            t0 = time.perf_counter()
            if v == "noisy":
                out = case["noisy"]
            else:
                out, _ = stylise(case, v, a.seed)
            sc = scores(out, case["held"], a.seed)
            row = {"ref": name, "noise": a.noise, "variant": v, **{k: (round(x, 3) if isinstance(x, float) else x)
                                                                  for k, x in sc.items()},
                   "seconds": round(time.perf_counter() - t0, 1)}
            print(json.dumps(row), flush=True)
            if a.json:
                with open(a.json, "a") as f:
                    f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
