"""Quality control of one simulated tomogram: metrics and figures (arrays in, dict / matplotlib figures out).

Stages are the tilt-series of the pipeline: ``noiseless`` (plain projections), ``content`` (noisy at a
quarter of the noise), ``noisy``, ``styled`` (FakET), and the ``reference`` (the real / benchmark tilt-series
whose style is copied). Each is a ``(T, Y, X)`` stack with its tilt angles in degrees. Tilts of different
stages are paired by nearest angle (:func:`faket.imaging.tilts.match_by_angle`).

Figures are ``matplotlib.figure.Figure`` objects built without pyplot (no global state; the caller saves
them). Every image shown is contrast-stretched on its own: its 1st..99th percentile maps to black..white.
Metric definitions are in :mod:`faket.evaluation.metrics` and ``docs/qc-evaluate.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from faket.errors import InputError
from faket.evaluation import metrics as M
from faket.imaging.tilts import match_by_angle

__all__ = [
    "STAGES",
    "STAGE_COLOURS",
    "TiltSeries",
    "nearest_tilts",
    "percentile_stretch",
    "compute_metrics",
    "montage_figure",
    "spectra_figure",
    "tilt_stats_figure",
    "slices_figure",
    "central_slices",
]

STAGES = ("noiseless", "content", "noisy", "styled", "reference")
STAGE_COLOURS = {
    "noiseless": "0.6",
    "content": "tab:green",
    "noisy": "tab:orange",
    "styled": "tab:blue",
    "reference": "black",
}
DEFAULT_MONTAGE_ANGLES = (-60.0, -30.0, 0.0, 30.0, 60.0)


@dataclass
class TiltSeries:
    """A ``(T, Y, X)`` stack and its angles in degrees (``(T,)``)."""

    data: np.ndarray
    angles_deg: np.ndarray

    def __post_init__(self) -> None:
        self.data = np.asarray(self.data)
        if self.data.ndim == 2:
            self.data = self.data[None]
        self.angles_deg = np.asarray(self.angles_deg, dtype=np.float64).ravel()
        if self.data.ndim != 3 or self.angles_deg.size != self.data.shape[0]:
            raise ValueError(f"stack {self.data.shape} and {self.angles_deg.size} angles do not match")


def _ordered(stages: Mapping[str, TiltSeries]) -> list[str]:
    return [s for s in STAGES if s in stages] + [s for s in stages if s not in STAGES]


def nearest_tilts(angles_deg, targets_deg: Sequence[float] = DEFAULT_MONTAGE_ANGLES) -> list[int]:
    """Index of the tilt nearest each target angle, duplicates removed, in target order."""
    idx, _ = match_by_angle(np.asarray(targets_deg, dtype=np.float64), angles_deg)
    out: list[int] = []
    for i in idx:
        if int(i) not in out:
            out.append(int(i))
    return out


def percentile_stretch(image, lo: float = 1.0, hi: float = 99.0) -> np.ndarray:
    """Map the ``lo``..``hi`` percentiles of ``image`` to 0..1 (clipped); a flat image gives 0.5."""
    a = np.asarray(image, dtype=np.float64)
    p0, p1 = np.percentile(a, [lo, hi])
    if p1 <= p0:
        return np.full(a.shape, 0.5)
    return np.clip((a - p0) / (p1 - p0), 0.0, 1.0)


def _summary(values) -> dict:
    v = np.asarray(values, dtype=np.float64)
    fin = v[np.isfinite(v)]
    return {
        "mean": float(fin.mean()) if fin.size else None,
        "median": float(np.median(fin)) if fin.size else None,
        "per_tilt": [float(x) if np.isfinite(x) else None for x in v],
    }


def compute_metrics(
    stages: Mapping[str, TiltSeries],
    *,
    gram_features: Callable[[np.ndarray], Sequence] | None = None,
    gram_weights: Sequence[float] | None = None,
    gram_targets_deg: Sequence[float] = DEFAULT_MONTAGE_ANGLES,
    gram_crop: int | None = 256,
    gram_note: str | None = None,
    content_max_gap_deg: float = 0.5,
) -> dict:
    """Metrics of the stages (keys of ``stages`` from :data:`STAGES`); see ``docs/qc-evaluate.md``.

    - ``tilt_statistics[stage]``: angles, per-tilt mean and std.
    - ``spectral_distance_to_reference[stage]``: per-tilt :func:`faket.evaluation.metrics.log_spectrum_distance`
      to the reference tilt nearest in angle, with mean / median (needs ``reference``).
    - ``gram_distance_to_reference[stage]``: :func:`faket.evaluation.metrics.gram_distance` on the tilts nearest
      ``gram_targets_deg``, central ``gram_crop`` px square (needs ``reference`` and ``gram_features``).
    - ``ssim_to_content[stage]`` / ``psnr_to_content_db[stage]``: per tilt against the content tilt of the
      same angle (needs ``content``; tilts further than ``content_max_gap_deg`` raise InputError).
    """
    names = _ordered(stages)
    out: dict = {"stages": names, "tilt_statistics": {}}
    for s in names:
        ts = stages[s]
        st = M.tilt_statistics(ts.data)
        out["tilt_statistics"][s] = {
            "angles_deg": ts.angles_deg.tolist(),
            "shape": list(ts.data.shape),
            "mean": st["mean"].tolist(),
            "std": st["std"].tolist(),
        }

    ref = stages.get("reference")
    if ref is not None:
        freq_r, pow_r = M.radial_power_spectra(ref.data)
        spec = {}
        for s in names:
            if s == "reference":
                continue
            ts = stages[s]
            idx, gap = match_by_angle(ts.angles_deg, ref.angles_deg)
            f, p = M.radial_power_spectra(ts.data)
            d = [M.log_spectrum_distance(f, p[i], freq_r, pow_r[j]) for i, j in enumerate(idx)]
            spec[s] = {**_summary(d), "max_angle_gap_deg": float(gap.max())}
        out["spectral_distance_to_reference"] = spec
        if "styled" in spec and "noisy" in spec:
            out["styled_spectrum_closer_than_noisy"] = bool(spec["styled"]["mean"] < spec["noisy"]["mean"])

        if gram_features is not None:
            gram = {}
            for s in names:
                if s == "reference" or s == "noiseless":
                    continue
                ts = stages[s]
                tilts = nearest_tilts(ts.angles_deg, gram_targets_deg)
                ridx, _ = match_by_angle(ts.angles_deg[tilts], ref.angles_deg)
                d = [
                    M.gram_distance(
                        _crop(ts.data[i], gram_crop), _crop(ref.data[j], gram_crop), gram_features, gram_weights
                    )
                    for i, j in zip(tilts, ridx)
                ]
                gram[s] = {**_summary(d), "angles_deg": ts.angles_deg[tilts].tolist()}
            out["gram_distance_to_reference"] = gram
            if "styled" in gram and "noisy" in gram:
                out["styled_gram_closer_than_noisy"] = bool(gram["styled"]["mean"] < gram["noisy"]["mean"])
        else:
            out["gram_distance_to_reference"] = None
        if gram_note:
            out["gram_note"] = gram_note

    content = stages.get("content")
    if content is not None:
        ssim, psnr = {}, {}
        for s in names:
            if s in ("content", "reference"):
                continue
            ts = stages[s]
            if ts.data.shape[1:] != content.data.shape[1:]:
                raise InputError(
                    f"{s} tilts are {ts.data.shape[2]}x{ts.data.shape[1]} but content tilts are "
                    f"{content.data.shape[2]}x{content.data.shape[1]}; cannot compare to content"
                )
            idx, _ = match_by_angle(
                ts.angles_deg, content.angles_deg, max_gap_deg=content_max_gap_deg, source="content"
            )
            vals = [M.ssim_psnr(ts.data[i], content.data[j]) for i, j in enumerate(idx)]
            ssim[s] = _summary([v[0] for v in vals])
            psnr[s] = _summary([v[1] for v in vals])
        out["ssim_to_content"] = ssim
        out["psnr_to_content_db"] = psnr
    return out


def _crop(img: np.ndarray, size: int | None) -> np.ndarray:
    if size is None:
        return img
    h, w = img.shape
    sh, sw = min(size, h), min(size, w)
    y0, x0 = (h - sh) // 2, (w - sw) // 2
    return img[y0 : y0 + sh, x0 : x0 + sw]


# ---------------------------------------------------------------------------------------------------
# figures


def _figure(w_in: float, h_in: float):
    # lazy: matplotlib
    from matplotlib.figure import Figure

    return Figure(figsize=(w_in, h_in), dpi=100, layout="constrained")


def montage_figure(
    stages: Mapping[str, TiltSeries], targets_deg: Sequence[float] = DEFAULT_MONTAGE_ANGLES, *, title: str | None = None
):
    """Rows: tilts nearest ``targets_deg`` (angles of the first stage); columns: stages, each at its tilt
    nearest that angle. Each image is 1-99 percentile stretched on its own; y points up (origin lower)."""
    names = _ordered(stages)
    if not names:
        raise ValueError("no stages to show")
    first = stages[names[0]]
    rows = [float(first.angles_deg[i]) for i in nearest_tilts(first.angles_deg, targets_deg)]
    ncol, nrow = len(names), len(rows)
    fig = _figure(2.3 * ncol + 0.4, 2.3 * nrow + (0.4 if title else 0.1))
    axes = fig.subplots(nrow, ncol, squeeze=False)
    for c, s in enumerate(names):
        ts = stages[s]
        idx, _ = match_by_angle(np.asarray(rows), ts.angles_deg)
        for r, i in enumerate(idx):
            ax = axes[r, c]
            ax.imshow(
                percentile_stretch(ts.data[i]), cmap="gray", vmin=0, vmax=1, origin="lower", interpolation="antialiased"
            )
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{s} {ts.angles_deg[i]:+.0f}\N{DEGREE SIGN}", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def _stage_style(s: str, **extra) -> dict:
    """Line style of a stage: its colour, label, and dashed for the reference."""
    return dict(color=STAGE_COLOURS.get(s), label=s, ls="--" if s == "reference" else "-", **extra)


def _two_panels(
    stages: Mapping[str, TiltSeries],
    title: str | None,
    plot,
    panel_titles,
    xlabel: str,
    *,
    xlim=None,
    ylabel0: str | None = None,
):
    """A 1 x 2 figure: ``plot(name, ts, ax0, ax1)`` per stage, then titles, labels, grid and legend."""
    fig = _figure(10, 4 + (0.3 if title else 0))
    ax0, ax1 = fig.subplots(1, 2)
    for s in _ordered(stages):
        plot(s, stages[s], ax0, ax1)
    for ax, t in zip((ax0, ax1), panel_titles):
        ax.set_title(t, fontsize=10)
        ax.set_xlabel(xlabel)
        if xlim is not None:
            ax.set_xlim(*xlim)
        ax.grid(alpha=0.3)
    if ylabel0:
        ax0.set_ylabel(ylabel0)
    ax1.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def spectra_figure(stages: Mapping[str, TiltSeries], *, title: str | None = None):
    """Radially averaged power spectra (log10, mean over tilts): raw and mean-removed (the compared shape)."""

    def plot(s, ts, ax0, ax1):
        f, p = M.radial_power_spectra(ts.data)
        lg = np.log10(np.maximum(p[:, 1:], np.finfo(np.float64).tiny)).mean(axis=0)
        style = _stage_style(s, lw=1.6 if s in ("styled", "noisy", "reference") else 1.0)
        ax0.plot(f[1:], lg, **style)
        ax1.plot(f[1:], lg - lg.mean(), **style)

    return _two_panels(
        stages,
        title,
        plot,
        ("log10 power (mean over tilts)", "log10 power, mean removed (spectral shape)"),
        "spatial frequency (cycles/pixel)",
        xlim=(0, 0.5),
        ylabel0="log10 P",
    )


def tilt_stats_figure(stages: Mapping[str, TiltSeries], *, title: str | None = None):
    """Per-tilt mean and std of every stage against the tilt angle."""

    def plot(s, ts, ax0, ax1):
        st = M.tilt_statistics(ts.data)
        order = np.argsort(ts.angles_deg)
        style = _stage_style(s, marker=".", ms=4)
        ax0.plot(ts.angles_deg[order], st["mean"][order], **style)
        ax1.plot(ts.angles_deg[order], st["std"][order], **style)

    return _two_panels(stages, title, plot, ("per-tilt mean", "per-tilt standard deviation"), "tilt angle (degrees)")


def central_slices(volume) -> tuple[np.ndarray, np.ndarray]:
    """Central XY slice ``v[Z//2]`` (Y, X) and central XZ slice ``v[:, Y//2]`` (Z, X) of a (Z, Y, X) volume."""
    v = np.asarray(volume)
    return v[v.shape[0] // 2], v[:, v.shape[1] // 2]


def slices_figure(tomogram, class_mask=None, *, class_names: Mapping[int, str] | None = None, title: str | None = None):
    """Central XY and XZ slices of the tomogram (1-99 percentile stretch) with class-mask contours."""
    # lazy: matplotlib
    from matplotlib.lines import Line2D

    tomo = np.asarray(tomogram)
    if tomo.ndim != 3:
        raise ValueError(f"tomogram must be 3-D, got {tomo.shape}")
    if class_mask is not None:
        cm = np.rint(np.asarray(class_mask)).astype(np.int64)
        if cm.shape != tomo.shape:
            raise InputError(f"class mask shape {cm.shape} differs from tomogram shape {tomo.shape} (Z, Y, X)")
    nz, ny, nx = tomo.shape
    xy, xz = central_slices(tomo)
    wr = 8.0
    h_xy, h_xz = wr * ny / nx, wr * nz / nx
    fig = _figure(wr + 2.2, h_xy + h_xz + 1.0 + (0.3 if title else 0))
    axes = fig.subplots(2, 1, height_ratios=[ny, max(nz, 1)])
    # lazy: matplotlib
    import matplotlib

    # bright, distinct colours that stand out on grey (tab10 without its grey)
    palette = [c for i, c in enumerate(matplotlib.colormaps["tab10"].colors) if i != 7]
    palette += ["yellow", "cyan", "magenta", "lime"]
    classes: list[int] = []
    if class_mask is not None:
        cxy, cxz = central_slices(cm)
        classes = sorted(int(c) for c in np.union1d(np.unique(cxy), np.unique(cxz)) if c != 0)
    colour = {c: palette[k % len(palette)] for k, c in enumerate(classes)}
    for ax, img, lab, mask in (
        (axes[0], xy, f"XY slice z={nz // 2}", None if class_mask is None else cxy),
        (axes[1], xz, f"XZ slice y={ny // 2}", None if class_mask is None else cxz),
    ):
        ax.imshow(percentile_stretch(img), cmap="gray", vmin=0, vmax=1, origin="lower", interpolation="antialiased")
        if mask is not None:
            for c in classes:
                m = (mask == c).astype(np.float32)
                if m.any() and m.shape[0] > 1 and m.shape[1] > 1:
                    ax.contour(m, levels=[0.5], colors=[colour[c]], linewidths=1.2)
        ax.set_title(lab, fontsize=9)
        ax.set_xlabel("x (voxels)")
        ax.set_ylabel("y (voxels)" if ax is axes[0] else "z (voxels)")
    if classes:
        handles = [
            Line2D([0], [0], color=colour[c], lw=2, label=(class_names or {}).get(c, f"class {c}")) for c in classes
        ]
        fig.legend(handles=handles, loc="outside right upper", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig
