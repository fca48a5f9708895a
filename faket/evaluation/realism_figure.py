"""The figure of a realism report: patch mosaics side by side, spectra, intensity histograms.

Arrays and a :func:`faket.evaluation.realism.realism_report` dict in, a ``matplotlib.figure.Figure`` out
(built without pyplot; the caller saves it).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from faket.evaluation.realism import PATCH, sample_patches, standardise_tilts

__all__ = ["mosaic", "realism_figure"]

_GRID = 6  # a mosaic is _GRID x _GRID patches
_RANGE = 3.0  # standardised intensities shown from -3 to 3 (black to white)


def mosaic(patches: np.ndarray, grid: int = _GRID, gap: int = 2) -> np.ndarray:
    """``grid x grid`` patches in one image with ``gap``-pixel NaN seams (fewer patches leave NaN cells)."""
    p = patches.shape[-1]
    out = np.full((grid * (p + gap) - gap, grid * (p + gap) - gap), np.nan, np.float32)
    for k, img in enumerate(patches[: grid * grid]):
        r, c = divmod(k, grid)
        out[r * (p + gap) : r * (p + gap) + p, c * (p + gap) : c * (p + gap) + p] = img
    return out


def realism_figure(real_stack, generated: Mapping[str, tuple], report: dict, *, seed: int = 0):
    """One column per data set (real scored tilts, then each modality): a mosaic of random patches (the
    classifiers' input, standardised per tilt, -3..3 std black..white); below, the mean log10 radial spectra
    and the histograms of standardised intensities (log density) of all of them."""
    # lazy: matplotlib
    from matplotlib.figure import Figure

    patch = int(report["settings"].get("patch", PATCH))
    real = standardise_tilts(real_stack)
    rows_scored = [i for i, rid in enumerate(_ids(report)) if rid in set(report["real"]["scored"])]
    names = list(generated)
    ncol = len(names) + 1
    fig = Figure(figsize=(max(8.0, 2.4 * ncol), 2.6 + 3.2), dpi=100, layout="constrained")
    gs = fig.add_gridspec(2, ncol, height_ratios=[2.6, 3.2])
    rng = np.random.default_rng([seed, 11])
    sets = [("real (scored tilts)", real, rows_scored)]
    for n in names:
        g = standardise_tilts(generated[n][0])
        scored = [r["tilt"] for r in report["modalities"][n]["per_tilt"] if r.get("real_tilt") is not None]
        sets.append((n, g, scored or list(range(g.shape[0]))))
    for c, (label, stack, rows) in enumerate(sets):
        ax = fig.add_subplot(gs[0, c])
        pat, _ = sample_patches(stack, rows, _GRID * _GRID, rng, patch=patch)
        ax.imshow(mosaic(pat), cmap="gray", vmin=-_RANGE, vmax=_RANGE, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        title = label
        if c > 0:
            s = report["modalities"][label]["summary"]
            title += f"\nC2ST {s['c2st_cnn']:.2f} (logreg {s['c2st_logreg']:.2f})"
        else:
            s = report["floor"]["summary"]
            title += f"\nfloor C2ST {s['c2st_cnn']:.2f} ({s['c2st_logreg']:.2f})"
        ax.set_title(title, fontsize=8)
    sub = gs[1, :].subgridspec(1, 2)
    ax_s = fig.add_subplot(sub[0, 0])
    ax_h = fig.add_subplot(sub[0, 1])
    colours = ["black"] + [f"C{i}" for i in range(len(names))]
    spectra = [report["real"]["spectrum"]] + [report["modalities"][n]["spectrum"] for n in names]
    bins = np.linspace(-10, 10, 101)
    for (label, stack, rows), spec, col in zip(sets, spectra, colours):
        f = np.asarray(spec["freq"])[1:]
        lg = np.asarray(spec["log10_power"])[1:]
        ls = "--" if col == "black" else "-"
        ax_s.plot(f, lg - lg.mean(), color=col, ls=ls, lw=1.4, label=label)
        vals = stack[rows].ravel()
        if vals.size > 2_000_000:
            vals = vals[rng.choice(vals.size, 2_000_000, replace=False)]
        h, e = np.histogram(vals, bins=bins)
        h = h / (vals.size * np.diff(e))  # density over all values (those outside +-10 included)
        ax_h.semilogy(0.5 * (e[1:] + e[:-1]), np.where(h > 0, h, np.nan), color=col, ls=ls, lw=1.4, label=label)
    ax_s.set_title("radially averaged power spectrum, mean removed", fontsize=9)
    ax_s.set_xlabel("spatial frequency (cycles/pixel)")
    ax_s.set_ylabel("log10 power (shape)")
    ax_s.set_xlim(0, 0.5)
    ax_h.set_title("standardised intensities (per tilt), all scored tilts", fontsize=9)
    ax_h.set_xlabel("intensity (std units)")
    ax_h.set_ylabel("density")
    for ax in (ax_s, ax_h):
        ax.grid(alpha=0.3)
    ax_h.legend(fontsize=7)
    return fig


def _ids(report: dict) -> list:
    """The labels of the real rows, in row order (as ``realism_report`` recorded them)."""
    ids = report["real"].get("ids")
    return list(range(report["real"]["n_tilts"])) if ids is None else list(ids)
