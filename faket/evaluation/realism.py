"""How far generated tilt-series are from real ones: classifier two-sample tests, spectra, intensities.

Pure functions (arrays in, numbers / dicts out), used by ``faket realism`` (:mod:`faket.cli.realism`) and by
anyone choosing settings by realism. Definitions (also in ``docs/realism.md``):

Patches (:func:`tilt_patches`, :func:`sample_patches`)
    Each tilt is standardised on its own (mean 0, std 1 over the tilt), then cut into non-overlapping
    ``patch x patch`` squares on a grid centred in the tilt; patches are drawn from that grid with a seeded
    generator, the same number from each class (balanced).

C2ST (:func:`c2st_cnn`, :func:`c2st_logreg`)
    Classifier two-sample test (Lopez-Paz & Oquab, ICLR 2017): a classifier learns to tell real patches from
    generated ones; its accuracy on patches it was not trained on, over stratified k folds (every patch is
    tested once), is the score. 0.5 = indistinguishable, 1.0 = always told apart. Two classifiers: a small
    CNN on the standardised pixels (3 convolutions, CPU, a few epochs), and a logistic regression on the
    patches' 2-D log power spectra (scikit-learn). The spread is the standard deviation over folds.

RAPS distance (:func:`raps`, :func:`raps_distance`)
    The radially averaged power spectrum of a tilt (:func:`faket.evaluation.metrics.radial_power_spectrum`)
    and the RMS difference of two mean-removed log10 spectra in decades
    (:func:`faket.evaluation.metrics.log_spectrum_distance`): spectral *shape*, gain does not count.

Intensities (:func:`intensity_stats`, :func:`w1_standardised`)
    Skewness and excess kurtosis of each tilt, and the Wasserstein-1 distance between the standardised
    intensity distributions of two tilts (in units of the tilt's std).

Report (:func:`realism_report`)
    Per modality and per generated tilt, against the real tilt nearest in angle among the *scoring* real
    tilts (all real tilts, or the held-out ones), and the real-vs-real floor measured the same way between
    two disjoint halves of the real tilts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from faket.errors import InputError
from faket.evaluation import metrics as M

__all__ = [
    "FOLDS",
    "PATCH",
    "c2st_cnn",
    "c2st_logreg",
    "holdout_rows",
    "intensity_stats",
    "pair_tilts",
    "raps",
    "raps_distance",
    "realism_report",
    "report_markdown",
    "sample_patches",
    "standardise_tilts",
    "tilt_patches",
    "w1_standardised",
]

PATCH = 24  # patch side in pixels
FOLDS = 5  # cross-validation folds of the C2ST
MAX_PATCHES = 2000  # per class and comparison: bounds the CNN's cost (61 x 512^2 series: < 2 min)
CNN_EPOCHS = 6
CNN_MIN_STEPS = 150  # small sets train for more epochs: at least this many optimiser steps
MAX_ANGLE_GAP = 5.0  # generated tilts further than this outside the scored real angle range are not scored


# ---------------------------------------------------------------------------------------------------------
# patches


def standardise_tilts(stack) -> np.ndarray:
    """``(T, Y, X)`` (or one 2-D image) -> float32 with every tilt at mean 0, std 1 (std 0: mean removed)."""
    a = np.asarray(stack, dtype=np.float64)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise InputError(f"expected a (tilt, Y, X) stack, got shape {a.shape}")
    m = a.mean(axis=(1, 2), keepdims=True)
    s = a.std(axis=(1, 2), keepdims=True)
    return ((a - m) / np.where(s > 0, s, 1.0)).astype(np.float32)


def _grid(shape, patch: int) -> tuple[int, int, int, int]:
    ny, nx = shape[0] // patch, shape[1] // patch
    return ny, nx, (shape[0] - ny * patch) // 2, (shape[1] - nx * patch) // 2


def tilt_patches(tilt, patch: int = PATCH) -> np.ndarray:
    """Every non-overlapping ``patch x patch`` square of one 2-D image on a grid centred in it: ``(n, p, p)``
    in row-major grid order (``n = (Y // p) * (X // p)``)."""
    t = np.asarray(tilt)
    ny, nx, oy, ox = _grid(t.shape, patch)
    if ny == 0 or nx == 0:
        return np.zeros((0, patch, patch), np.float32)
    c = t[oy : oy + ny * patch, ox : ox + nx * patch]
    return c.reshape(ny, patch, nx, patch).swapaxes(1, 2).reshape(ny * nx, patch, patch).astype(np.float32)


def sample_patches(
    tilts: np.ndarray, rows: Sequence[int], n: int, rng: np.random.Generator, *, patch: int = PATCH, grid_mask=None
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` distinct patches drawn from the tilts ``rows`` of a standardised stack, spread as evenly as the
    tilts allow (each tilt gives ``n // len(rows)`` or one more, shortfalls taken from the others).

    ``grid_mask(n_grid) -> bool array`` restricts the grid positions (e.g. a checkerboard half).
    Returns ``(patches (n, p, p), tilt row of each patch (n,))``; fewer than ``n`` if not enough exist.
    """
    rows = [int(r) for r in rows]
    pools = []
    for r in rows:
        ps = tilt_patches(tilts[r], patch)
        keep = np.arange(len(ps)) if grid_mask is None else np.flatnonzero(grid_mask(len(ps), tilts[r].shape))
        pools.append(ps[rng.permutation(keep)])
    avail = np.array([len(p) for p in pools])
    take = np.zeros(len(rows), dtype=np.int64)
    left = min(int(n), int(avail.sum()))
    # water-filling: equal shares, capped by what each tilt has
    while left > 0:
        open_ = np.flatnonzero(take < avail)
        share = max(1, left // len(open_))
        for i in open_:
            k = min(share, avail[i] - take[i], left)
            take[i] += k
            left -= k
            if left == 0:
                break
    out = [p[:k] for p, k in zip(pools, take)]
    src = np.concatenate([np.full(k, r, np.int64) for r, k in zip(rows, take)]) if rows else np.zeros(0, np.int64)
    return (np.concatenate(out) if out else np.zeros((0, patch, patch), np.float32)), src


def checkerboard(half: int):
    """Grid mask selecting the patches with ``(row + col) % 2 == half`` (two disjoint halves of one image)."""

    def mask(n, shape, _half=half):
        ny, nx, _, _ = _grid(shape, PATCH)
        g = np.add.outer(np.arange(ny), np.arange(nx)) % 2 == _half
        return g.ravel()[:n]

    return mask


# ---------------------------------------------------------------------------------------------------------
# classifier two-sample tests


def _folds(n_real: int, n_gen: int, folds: int, seed: int):
    # lazy: sklearn
    from sklearn.model_selection import StratifiedKFold

    y = np.r_[np.ones(n_real, np.int64), np.zeros(n_gen, np.int64)]
    k = int(min(folds, n_real, n_gen))
    if k < 2:
        raise InputError(f"C2ST needs at least 2 patches of each class (got {n_real} real, {n_gen} generated)")
    skf = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return y, list(skf.split(np.zeros(y.size), y))


def _summary(correct: np.ndarray, splits) -> dict:
    accs = np.array([correct[te].mean() for _, te in splits])
    return {
        "accuracy": float(correct.mean()),
        "std": float(accs.std()),
        "fold_accuracies": accs.tolist(),
        "n_per_class": int(correct.size // 2),
        "folds": len(splits),
        "correct": correct,
    }


class _TorchState:
    """Seeded, deterministic, ``threads`` torch threads for the duration; previous state restored."""

    def __init__(self, seed: int, threads: int | None):
        self.seed, self.threads = seed, threads

    def __enter__(self):
        # lazy: torch
        import torch

        self.prev = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled())
        if self.threads:
            torch.set_num_threads(int(self.threads))
        torch.use_deterministic_algorithms(True)
        torch.manual_seed(self.seed)
        return self

    def __exit__(self, *exc):
        # lazy: torch
        import torch

        torch.set_num_threads(self.prev[0])
        torch.use_deterministic_algorithms(self.prev[1])
        return False


def _cnn(patch: int):
    # lazy: torch
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(1, 16, 5, stride=2, padding=2),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 1),
    )


def c2st_cnn(
    real_patches,
    gen_patches,
    seed: int = 0,
    folds: int = FOLDS,
    *,
    epochs: int = CNN_EPOCHS,
    batch: int = 128,
    lr: float = 3e-3,
    threads: int | None = 1,
) -> dict:
    """C2ST with a small CNN: accuracy on held-out folds of telling ``real_patches`` from ``gen_patches``
    (``(n, p, p)`` each, standardised per tilt). Per fold a fresh CNN (3 convolutions, seeded) is trained with
    Adam for ``epochs`` epochs of ``batch`` patches, or more epochs on small sets (at least
    ``CNN_MIN_STEPS`` steps), on ``threads`` torch threads (1 by default: deterministic and fast for a net
    this small). Returns ``{"accuracy", "std" (over folds),
    "fold_accuracies", "n_per_class", "folds", "correct" (per patch, real first then generated)}``."""
    # lazy: torch
    import torch

    xr = np.asarray(real_patches, np.float32)
    xg = np.asarray(gen_patches, np.float32)
    y, splits = _folds(len(xr), len(xg), folds, seed)
    x = torch.from_numpy(np.concatenate([xr, xg])[:, None].copy())
    yt = torch.from_numpy(y.astype(np.float32))
    correct = np.zeros(y.size, bool)
    with _TorchState(seed, threads), torch.inference_mode(False):
        for f, (tr, te) in enumerate(splits):
            torch.manual_seed(seed * 1000 + f)
            net = _cnn(x.shape[-1])
            opt = torch.optim.Adam(net.parameters(), lr=lr)
            g = torch.Generator().manual_seed(seed * 1000 + f)
            tr_t = torch.from_numpy(tr)
            net.train()
            per_epoch = -(-tr.size // batch)
            for _ in range(max(int(epochs), -(-CNN_MIN_STEPS // per_epoch))):
                perm = tr_t[torch.randperm(tr_t.numel(), generator=g)]
                for b in range(0, perm.numel(), batch):
                    idx = perm[b : b + batch]
                    opt.zero_grad(set_to_none=True)
                    loss = torch.nn.functional.binary_cross_entropy_with_logits(net(x[idx])[:, 0], yt[idx])
                    loss.backward()
                    opt.step()
            net.eval()
            with torch.no_grad():
                te_t = torch.from_numpy(te)
                pred = (net(x[te_t])[:, 0] > 0).numpy()
            correct[te] = pred == (y[te] == 1)
    return _summary(correct, splits)


def patch_log_spectra(patches) -> np.ndarray:
    """Features of the logistic C2ST: ``log10`` of the 2-D power spectrum (``rfft2``) of each mean-removed
    patch, without the DC term: ``(n, p * (p // 2 + 1) - 1)``."""
    p = np.asarray(patches, np.float64)
    p = p - p.mean(axis=(1, 2), keepdims=True)
    f = np.abs(np.fft.rfft2(p)) ** 2 / (p.shape[1] * p.shape[2])
    f = f.reshape(len(p), -1)[:, 1:]
    return np.log10(f + 1e-6)


def c2st_logreg(real_patches, gen_patches, seed: int = 0, folds: int = FOLDS, *, C: float = 0.1) -> dict:
    """C2ST with a logistic regression on the patches' 2-D log power spectra (:func:`patch_log_spectra`,
    standardised per feature on the training folds). Same return as :func:`c2st_cnn`."""
    # lazy: sklearn
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    xr, xg = np.asarray(real_patches), np.asarray(gen_patches)
    y, splits = _folds(len(xr), len(xg), folds, seed)
    x = patch_log_spectra(np.concatenate([xr, xg]))
    correct = np.zeros(y.size, bool)
    for tr, te in splits:
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000))
        clf.fit(x[tr], y[tr])
        correct[te] = clf.predict(x[te]) == y[te]
    return _summary(correct, splits)


# ---------------------------------------------------------------------------------------------------------
# spectra and intensities


def raps(stack) -> tuple[np.ndarray, np.ndarray]:
    """Radially averaged power spectrum of every tilt: ``(freq (K,) cycles/pixel, power (T, K))``."""
    return M.radial_power_spectra(np.asarray(stack))


def raps_distance(a, b) -> float:
    """RAPS log-distance (decades) of two 2-D images, or of the mean spectra of two stacks (``(T, Y, X)``):
    RMS of the difference of the mean-removed log10 spectra (:func:`faket.evaluation.metrics.log_spectrum_distance`);
    images of different sizes are compared in cycles/pixel."""
    fa, pa = raps(a)
    fb, pb = raps(b)
    return M.log_spectrum_distance(fa, _logmean(pa), fb, _logmean(pb))


def _logmean(p: np.ndarray) -> np.ndarray:
    """Geometric mean over tilts of ``(T, K)`` spectra (the mean of the log spectra)."""
    return 10.0 ** np.log10(np.maximum(p, np.finfo(np.float64).tiny)).mean(axis=0)


def intensity_stats(stack) -> dict[str, np.ndarray]:
    """Per tilt: ``skewness`` and excess ``kurtosis`` (Fisher, 0 for a Gaussian; biased moment estimates, as
    ``scipy.stats.skew`` / ``kurtosis`` with their defaults) of the intensities."""
    s = np.asarray(stack)
    if s.ndim == 2:
        s = s[None]
    sk, ku = np.full(s.shape[0], np.nan), np.full(s.shape[0], np.nan)
    for i, t in enumerate(s):
        x = t.astype(np.float64).ravel()
        x -= x.mean()
        m2 = float(np.dot(x, x)) / x.size
        if m2 > 0:
            x2 = x * x
            sk[i] = float(np.dot(x2, x)) / x.size / m2**1.5
            ku[i] = float(np.dot(x2, x2)) / x.size / m2**2 - 3.0
    return {"skewness": sk, "kurtosis": ku}


_NQ = 2048


def _quantiles(img) -> np.ndarray:
    """Quantile function of a standardised image at ``_NQ`` mid-points (for W1)."""
    z = M.standardise(np.asarray(img)).ravel()
    return np.quantile(z, (np.arange(_NQ) + 0.5) / _NQ)


def w1_standardised(a, b) -> float:
    """Wasserstein-1 distance between the intensity distributions of two standardised images (std units):
    the mean absolute difference of their quantile functions (at 2048 mid-point quantiles)."""
    return float(np.abs(_quantiles(a) - _quantiles(b)).mean())


# ---------------------------------------------------------------------------------------------------------
# holdout and pairing


def holdout_rows(holdout, n_real: int) -> np.ndarray:
    """Rows of the real stack that are scored: ``None`` / ``"none"`` -> all; ``"odd"`` / ``"even"`` -> rows
    1, 3, 5, ... / 2, 4, 6, ... counted from 1 (rows 0, 2, ... / 1, 3, ... 0-based); a sequence -> those rows."""
    if holdout is None or (isinstance(holdout, str) and holdout == "none"):
        return np.arange(n_real)
    if isinstance(holdout, str):
        if holdout not in ("odd", "even"):
            raise InputError(f"holdout {holdout!r}: expected none, odd, even or a list of tilts")
        rows = np.arange(0 if holdout == "odd" else 1, n_real, 2)
    else:
        rows = np.unique(np.asarray(holdout, dtype=np.int64))
        if rows.size and (rows.min() < 0 or rows.max() >= n_real):
            raise InputError(f"holdout rows {rows.tolist()}: outside 0..{n_real - 1}")
    if rows.size == 0:
        raise InputError(f"holdout {holdout!r}: no real tilt left to score ({n_real} real tilt(s))")
    if rows.size == n_real and n_real > 1 and not (holdout is None or holdout == "none"):
        raise InputError(f"holdout {holdout!r}: every real tilt is held out, none left to fit on")
    return rows


def pair_tilts(
    gen_angles, n_gen: int, real_angles, real_rows: Sequence[int], *, max_gap: float = MAX_ANGLE_GAP
) -> tuple[np.ndarray, np.ndarray, str]:
    """For each generated tilt, the real row (among ``real_rows``) it is scored against.

    With angles on both sides: the nearest in angle; tilts more than ``max_gap`` degrees outside the angle
    range of ``real_rows`` get ``-1`` (not scored); inside it, a generated tilt fitted to a real tilt that is
    not scored is scored against its angle neighbour. Without angles: by index when the counts agree, else by relative position in the stack
    (first to first, last to last). Returns ``(row (n_gen,), gap_deg (n_gen,) or NaN, how)``.
    """
    rows = np.asarray(real_rows, dtype=np.int64)
    if rows.size == 1:
        return np.full(n_gen, rows[0]), np.full(n_gen, np.nan), "one real image"
    if gen_angles is not None and real_angles is not None:
        ra = np.asarray(real_angles, np.float64)[rows]
        ga = np.asarray(gen_angles, np.float64)
        d = np.abs(ga[:, None] - ra[None, :])
        j = np.argmin(d, axis=1)
        gap = d[np.arange(n_gen), j]
        out = rows[j].copy()
        out[(ga < ra.min() - max_gap) | (ga > ra.max() + max_gap)] = -1
        return out, gap, "nearest angle"
    if n_gen == rows.size:
        return rows.copy(), np.full(n_gen, np.nan), "by index"
    pos = np.rint(np.arange(n_gen) * (rows.size - 1) / max(n_gen - 1, 1)).astype(np.int64)
    return rows[pos], np.full(n_gen, np.nan), "by relative position"


# ---------------------------------------------------------------------------------------------------------
# the report


def _fin(x) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None


def _nanmean(a) -> float | None:
    a = np.asarray(a, np.float64)
    return _fin(np.nanmean(a)) if np.isfinite(a).any() else None


def compare(
    real_std: np.ndarray,
    gen_std: np.ndarray,
    pair: np.ndarray,
    *,
    seed: int,
    folds: int,
    max_patches: int,
    patch: int,
    threads: int | None,
    epochs: int,
    real_mask=None,
    gen_mask=None,
    real_q=None,
) -> dict:
    """One comparison: generated tilts (``gen_std``, standardised) against the real tilts they are paired
    with (``pair[t]`` = real row or -1). Patches: for every scored real tilt, as many generated patches
    (from the generated tilts paired with it) as real ones."""
    rng = np.random.default_rng([seed, 7])
    scored = np.flatnonzero(pair >= 0)
    groups = {int(j): scored[pair[scored] == j] for j in np.unique(pair[scored])}
    quota = max(1, int(np.ceil(max_patches / max(len(groups), 1))))
    xr, xg, src_r, src_g = [], [], [], []
    for j, ts in groups.items():
        pr, sr = sample_patches(real_std, [j], quota, rng, patch=patch, grid_mask=real_mask)
        pg, sg = sample_patches(gen_std, ts, len(pr), rng, patch=patch, grid_mask=gen_mask)
        k = len(pg)  # <= len(pr); the real ones are in random order
        xr.append(pr[:k])
        src_r.append(sr[:k])
        xg.append(pg[:k])
        src_g.append(sg[:k])
    xr, xg = np.concatenate(xr), np.concatenate(xg)
    src_r, src_g = np.concatenate(src_r), np.concatenate(src_g)
    if len(xr) > max_patches:  # more groups than the budget: a seeded subset, still balanced
        keep = np.sort(rng.choice(len(xr), max_patches, replace=False))
        xr, xg, src_r, src_g = xr[keep], xg[keep], src_r[keep], src_g[keep]
    cnn = c2st_cnn(xr, xg, seed=seed, folds=folds, epochs=epochs, threads=threads)
    lr = c2st_logreg(xr, xg, seed=seed, folds=folds)

    # per generated tilt
    f_g, p_g = raps(gen_std)
    f_r, p_r = raps(real_std)
    ist_g = intensity_stats(gen_std)
    q_r = real_q if real_q is not None else {}
    per = []
    n = len(xr)
    for t in range(len(gen_std)):
        j = int(pair[t])
        row = {
            "tilt": t,
            "real_row": j if j >= 0 else None,
            "skewness": _fin(ist_g["skewness"][t]),
            "kurtosis": _fin(ist_g["kurtosis"][t]),
        }
        if j >= 0:
            if j not in q_r:
                q_r[j] = _quantiles(real_std[j])
            row["raps_distance"] = M.log_spectrum_distance(f_g, p_g[t], f_r, p_r[j])
            row["w1"] = float(np.abs(_quantiles(gen_std[t]) - q_r[j]).mean())
            mg, mr = src_g == t, src_r == j
            for key, res in (("c2st_cnn", cnn), ("c2st_logreg", lr)):
                c = res["correct"]
                row[key] = _fin(0.5 * (c[n:][mg].mean() + c[:n][mr].mean())) if mg.any() and mr.any() else None
            row["n_patches"] = int(mg.sum())
        per.append(row)
    rows_used = sorted(groups)
    ist_r = intensity_stats(real_std[rows_used])
    sc = [r for r in per if r["real_row"] is not None]
    summary = {
        "c2st_cnn": cnn["accuracy"],
        "c2st_cnn_std": cnn["std"],
        "c2st_cnn_folds": cnn["fold_accuracies"],
        "c2st_logreg": lr["accuracy"],
        "c2st_logreg_std": lr["std"],
        "c2st_logreg_folds": lr["fold_accuracies"],
        "n_patches_per_class": int(n),
        "raps_distance": float(np.mean([r["raps_distance"] for r in sc])),
        "raps_distance_mean_spectra": M.log_spectrum_distance(
            f_g, _logmean(p_g[scored]), f_r, _logmean(p_r[rows_used])
        ),
        "w1": float(np.mean([r["w1"] for r in sc])),
        "skewness": _nanmean(ist_g["skewness"][scored]),
        "kurtosis": _nanmean(ist_g["kurtosis"][scored]),
        "real_skewness": _nanmean(ist_r["skewness"]),
        "real_kurtosis": _nanmean(ist_r["kurtosis"]),
        "n_tilts_scored": int(scored.size),
        "n_tilts_unscored": int(len(gen_std) - scored.size),
        "real_tilts_scored": [int(j) for j in rows_used],
    }
    return {
        "summary": summary,
        "per_tilt": per,
        "spectrum": {"freq": f_g.tolist(), "log10_power": np.log10(_logmean(p_g[scored])).tolist()},
    }


def realism_report(
    real_stack,
    real_angles,
    generated: Mapping[str, tuple],
    *,
    holdout=None,
    seed: int = 0,
    folds: int = FOLDS,
    max_patches: int = MAX_PATCHES,
    patch: int = PATCH,
    max_angle_gap: float = MAX_ANGLE_GAP,
    epochs: int = CNN_EPOCHS,
    threads: int | None = 1,
    real_ids: Sequence | None = None,
    progress: Callable | None = None,
) -> dict:
    """Realism of every generated stack against a real one, and the real-vs-real floor.

    Parameters
    ----------
    real_stack : (R, Y, X) real tilts (or one 2-D image), at the generated data's pixel size.
    real_angles : (R,) angles in degrees, or None.
    generated : name -> (stack (T, Y', X'), angles (T,) or None).
    holdout : which real tilts are scored (:func:`holdout_rows`): None = all; ``"odd"`` / ``"even"`` / rows.
        A modality fitted to the real data must have been fitted on the *other* rows only.
    seed : every random choice (patches, folds, CNN weights and batches).
    real_ids : labels of the real rows in the output (default: the row numbers).

    Returns a JSON-ready dict: ``settings``, ``real`` (rows scored and fitted, floor halves),
    ``floor`` and ``modalities[name]``, each with ``summary`` (C2ST CNN / logistic accuracy and spread over
    folds, RAPS distance, W1, skewness, kurtosis) and ``per_tilt`` rows.
    """
    real = standardise_tilts(real_stack)
    R = real.shape[0]
    ra = None if real_angles is None else np.asarray(real_angles, np.float64).ravel()
    if ra is not None and ra.size != R:
        raise InputError(f"{ra.size} real angles for {R} real tilts")
    ids = list(range(R)) if real_ids is None else list(real_ids)
    if len(ids) != R:
        raise InputError(f"{len(ids)} real ids for {R} real tilts")
    if R == 1 and holdout not in (None, "none"):
        raise InputError("a single real image has no tilts to hold out: use holdout none")
    if min(real.shape[1:]) < patch or R == 0:
        raise InputError(f"real tilts of {real.shape[1]}x{real.shape[2]} are smaller than a {patch}x{patch} patch")
    score = holdout_rows(holdout, R)
    fit = np.setdiff1d(np.arange(R), score)
    kw = {
        "seed": seed,
        "folds": folds,
        "max_patches": max_patches,
        "patch": patch,
        "threads": threads,
        "epochs": epochs,
    }
    # angle order of the real rows (halves of the floor alternate in angle)
    order = np.arange(R) if ra is None else np.argsort(ra, kind="stable")
    out = {
        "settings": {
            "patch": patch,
            "folds": folds,
            "max_patches_per_class": max_patches,
            "seed": seed,
            "cnn_epochs": epochs,
            "max_angle_gap_deg": max_angle_gap,
            "holdout": holdout if holdout is None or isinstance(holdout, str) else "list",
        },
        "real": {
            "n_tilts": R,
            "shape": list(real.shape[1:]),
            "ids": ids,
            "angles_deg": None if ra is None else ra.tolist(),
            "scored": [ids[i] for i in score],
            "fit": [ids[i] for i in fit],
        },
        "modalities": {},
    }
    jobs = list(generated.items())
    steps = len(jobs) + 1
    real_q: dict = {}

    # the floor: two disjoint halves of the real tilts, measured like a modality
    floor_real, floor_q = real, real_q
    if R == 1 and real.shape[2] >= 2 * patch:
        # one image: its left half (as generated) against its right half (halves across the tilt axis, Y)
        h = real.shape[2] // 2
        a_rows = b_rows = np.array([0])
        floor_real, floor_q = standardise_tilts(real[:, :, h:]), {}
        floor_gen = standardise_tilts(real[:, :, :h])
        masks = {}
        how = "one real image: its left half (as generated) against its right half (as real)"
    elif R == 1:
        a_rows = b_rows = np.array([0])
        masks = {"real_mask": checkerboard(0), "gen_mask": checkerboard(1)}
        how = "one real image (too narrow to halve): two checkerboard halves of its patch grid"
    elif fit.size:
        a_rows, b_rows = fit, score
        masks = {}
        how = "fit tilts (as generated) against held-out tilts (as real)"
    else:
        a_rows, b_rows = np.sort(order[1::2]), np.sort(order[0::2])
        masks = {}
        how = "alternate tilts in angle order: even positions (as generated) against odd positions (as real)"
    pair_f, _, how_f = pair_tilts(None if ra is None else ra[a_rows], a_rows.size, ra, b_rows, max_gap=np.inf)
    fl = compare(
        floor_real, floor_gen if floor_real is not real else real[a_rows], pair_f, real_q=floor_q, **masks, **kw
    )
    for r in fl["per_tilt"]:
        r["tilt"] = ids[int(a_rows[r["tilt"]])]
        r["real_tilt"] = None if r["real_row"] is None else ids[r.pop("real_row")]
        r.pop("real_row", None)
    fl["summary"]["real_tilts_scored"] = [ids[j] for j in fl["summary"]["real_tilts_scored"]]
    fl["halves"] = {
        "as_generated": [ids[i] for i in a_rows],
        "as_real": [ids[i] for i in b_rows],
        "how": how,
        "pairing": how_f,
    }
    out["floor"] = fl
    if progress:
        progress(1, steps, "floor")
    f_r, p_r = raps(real[score])
    out["real"]["spectrum"] = {"freq": f_r.tolist(), "log10_power": np.log10(_logmean(p_r)).tolist()}

    for k, (name, (stack, angles)) in enumerate(jobs):
        g = standardise_tilts(stack)
        if min(g.shape[1:]) < patch:
            raise InputError(f"{name}: tilts of {g.shape[1]}x{g.shape[2]} are smaller than a {patch}x{patch} patch")
        ga = None if angles is None else np.asarray(angles, np.float64).ravel()
        if ga is not None and ga.size != g.shape[0]:
            raise InputError(f"{name}: {ga.size} angles for {g.shape[0]} tilts")
        pair, _, how = pair_tilts(ga, g.shape[0], ra, score, max_gap=max_angle_gap)
        if not (pair >= 0).any():
            raise InputError(f"{name}: no generated tilt within {max_angle_gap:g} deg of a scored real tilt")
        res = compare(real, g, pair, real_q=real_q, **kw)
        for r in res["per_tilt"]:
            t = r["tilt"]
            r["angle_deg"] = None if ga is None else float(ga[t])
            r["real_angle_deg"] = None if (ra is None or r["real_row"] is None) else float(ra[r["real_row"]])
            r["real_tilt"] = None if r["real_row"] is None else ids[r.pop("real_row")]
            r.pop("real_row", None)
        res["summary"]["real_tilts_scored"] = [ids[j] for j in res["summary"]["real_tilts_scored"]]
        res["pairing"] = how
        res["shape"] = list(g.shape)
        out["modalities"][name] = res
        if progress:
            progress(k + 2, steps, name)
    return out


# ---------------------------------------------------------------------------------------------------------
# the Markdown table


def _pm(x, s=None, nd=2) -> str:
    if x is None:
        return "-"
    return f"{x:.{nd}f}" if s is None else f"{x:.{nd}f} ± {s:.{nd}f}"


def report_markdown(report: dict, *, title: str | None = None, per_tilt: bool = True) -> str:
    """The report as Markdown: one summary row per modality and the floor, then per-tilt tables."""

    def row(name, s):
        return (
            f"| {name} | {_pm(s['c2st_cnn'], s['c2st_cnn_std'])} | {_pm(s['c2st_logreg'], s['c2st_logreg_std'])} "
            f"| {_pm(s['raps_distance'])} | {_pm(s['w1'])} | {_pm(s['skewness'])} | {_pm(s['kurtosis'])} "
            f"| {s['n_tilts_scored']} | {s['n_patches_per_class']} |"
        )

    real = report["real"]
    lines = [f"## {title}" if title else "## Realism", ""]
    scored = ", ".join(str(i) for i in sorted(real["scored"]))
    lines.append(
        f"Real: {real.get('path', 'real stack')}, {real['n_tilts']} usable tilts of "
        f"{real['shape'][0]}x{real['shape'][1]}; scored on tilt(s) {scored}"
        + (f" (fit on the others: `{real['fit_recipe']}`)" if real.get("fit_recipe") else "")
        + f". C2ST: mean accuracy ± sd over {report['settings']['folds']} folds, "
        "0.5 = indistinguishable; RAPS: log10 decades; W1: standardised intensities."
    )
    lines += [
        "",
        (
            "| data | C2ST (CNN) | C2ST (log-spectra) | RAPS log-distance | W1 (std.) | skewness | "
            "kurtosis | tilts scored | patches per class |"
        ),
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    fl = report["floor"]["summary"]
    lines.append(row("real vs real (floor)", fl))
    for name, m in report["modalities"].items():
        lines.append(row(name, m["summary"]))
    any_s = next(iter(report["modalities"].values()))["summary"] if report["modalities"] else fl
    lines.append(
        f"| real (scored tilts) | | | | | {_pm(any_s['real_skewness'])} | {_pm(any_s['real_kurtosis'])} "
        f"| {len(real['scored'])} | |"
    )
    lines.append("")
    lines.append(f"Floor: {report['floor']['halves']['how']}.")
    if per_tilt:
        for name, m in report["modalities"].items():
            lines += [
                "",
                f"### {name}: per tilt ({m['pairing']})",
                "",
                (
                    "| tilt | angle | real tilt | real angle | C2ST (CNN) | C2ST (log-spectra) | RAPS | W1 | "
                    "kurtosis | patches |"
                ),
                "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
            ]
            for r in m["per_tilt"]:
                ang = "-" if r.get("angle_deg") is None else f"{r['angle_deg']:+.1f}"
                if r["real_tilt"] is None:
                    lines.append(f"| {r['tilt'] + 1} | {ang} | not scored | | | | | | {_pm(r['kurtosis'])} | |")
                    continue
                ra = "-" if r.get("real_angle_deg") is None else f"{r['real_angle_deg']:+.1f}"
                lines.append(
                    f"| {r['tilt'] + 1} | {ang} | {r['real_tilt']} | {ra} | {_pm(r['c2st_cnn'])} | "
                    f"{_pm(r['c2st_logreg'])} | {_pm(r['raps_distance'])} | {_pm(r['w1'])} | "
                    f"{_pm(r['kurtosis'])} | {r['n_patches']} |"
                )
    return "\n".join(lines) + "\n"
