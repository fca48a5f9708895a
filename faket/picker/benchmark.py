"""The picker benchmark as a workflow: planning (layouts, domains, seeds, style partners, fine-tuning), user
test sets, and the summary (scores table, paired comparisons, Markdown, figures). Used by
workflow/rules/benchmark.smk and faket picker.

Two domains: the *training domain* is the physics simulator (``faket reference``) at the workflow's settings
(``reference.physics``, else faket reference's defaults); the *test domain* ("the user's microscope") is the
same simulator with other acquisition and specimen settings (``benchmark.test_domain``). The test domain gives
annotated test tomograms (``test_NNN``) and unlabelled tilt-series of other layouts (``unlabelled_NNN``), which
NOISY, BASELINE, FAKET and OFFLINE are fitted / styled to. Rows of the results: one per training modality;
per modality and k, that picker fine-tuned on the first k annotated test tomograms (``MOD_ftK``); per k, a
picker trained on those k alone (``alone_kK``); all scored on the remaining annotated test tomograms.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from faket.errors import InputError
from faket.formats.names import tomogram_file
from faket.workflow import draw
from faket.workflow import layout_box as _box
from faket.workflow.options import PHYSICS_FLAGS, layout_opts, noise_opts, physics_opts, style_opts

# ball radius (voxels) of a user's pick without occupancy mask or copick object radius
DEFAULT_RADIUS = 5.0

# training modalities, in table order: benchmark = physics at the training domain's settings (BENCHMARK-MISMATCHED
# when the test domain differs), matched = physics at the test domain's settings (PHYSICS-MATCHED, an oracle),
# offline = faket noise + faket style --weights random at their own defaults (the offline realism default)
MODALITIES = ("benchmark", "matched", "faket", "noisy", "baseline", "noiseless", "offline")

# fine-tuning defaults (benchmark.finetune.*): k annotated test tomograms, optimiser steps of the fine-tune
FINETUNE_DEFAULTS = {"k": [1, 2], "steps": 100}

# test-domain settings a config may set (benchmark.test_domain.*): faket reference options
TEST_DOMAIN_KEYS = tuple(PHYSICS_FLAGS)


def finetune_row(modality: str, k: int) -> str:
    return f"{modality}_ft{k}"


def alone_row(k: int) -> str:
    return f"alone_k{k}"


def row_label(row: str, shifted: bool = True) -> str:
    """Display name of a result row: BENCHMARK-MISMATCHED, PHYSICS-MATCHED, FAKET + FT k=1, ALONE k=1, ..."""
    if row.startswith("alone_k"):
        return f"ALONE k={row[7:]}"
    base, _, k = row.partition("_ft")
    name = {
        "benchmark": "BENCHMARK-MISMATCHED" if shifted else "BENCHMARK",
        "matched": "PHYSICS-MATCHED",
        "offline": "OFFLINE-DEFAULT",
    }.get(base, base.upper())
    return f"{name} + FT k={k}" if k else name


def row_order(row: str) -> tuple:
    base, _, k = row.partition("_ft")
    order = {m: i for i, m in enumerate(MODALITIES)}
    if row.startswith("alone_k"):
        return (2, int(row[7:]), 0, row)
    if k:
        return (1, int(k), order.get(base, len(order)), row)
    return (0, 0, order.get(base, len(order)), row)


def comparisons(rows: Sequence[str]) -> list[tuple[str, str]]:
    """The paired comparisons ``(a, b)`` (a - b) reported for these result rows (those present only).

    Zero-shot: every modality against BENCHMARK(-MISMATCHED) (does fitting to the user's data beat the
    untuned simulator?), FAKET / NOISY / BASELINE / OFFLINE among each other, PHYSICS-MATCHED (the oracle)
    against FAKET and OFFLINE. Fine-tuning, per k: each pretrained + fine-tuned row against the picker trained
    on the k tomograms alone, and against its own zero-shot row.
    """
    have = set(rows)
    pairs = [(m, "benchmark") for m in MODALITIES if m != "benchmark"]
    pairs += [
        ("faket", "noisy"),
        ("faket", "baseline"),
        ("noisy", "baseline"),
        ("offline", "noisy"),
        ("offline", "faket"),
        ("matched", "faket"),
        ("matched", "offline"),
    ]
    ks = sorted({int(r.partition("_ft")[2]) for r in rows if "_ft" in r})
    for k in ks:
        for m in MODALITIES:
            pairs.append((finetune_row(m, k), alone_row(k)))
        for m in MODALITIES:
            pairs.append((finetune_row(m, k), m))
    return [(a, b) for a, b in pairs if a in have and b in have]


# the paper's numbers (DeepFinder, SHREC 2021 model 9, means of 6 seeds): (localisation F1, classification F1)
PAPER = {
    "benchmark": (0.815, 0.581),
    "faket": (0.800, 0.533),
    "noisy": (0.809, 0.459),
    "baseline": (0.813, 0.441),
    "faket (random VGG)": (0.783, 0.434),
    "faket + fine-tune": (0.820, 0.565),
}  # the archived best: FakET pretraining + 3 benchmark tomograms


# --------------------------------------------------------------------------------------------------
# planning


def train_names(n: int) -> list[str]:
    return [f"train_{i:03d}" for i in range(n)]


def test_names(n: int) -> list[str]:
    return [f"test_{i:03d}" for i in range(n)]


def style_partner(name: str, names: Sequence[str]) -> str:
    """The training layout whose physics tilt-series styles (and fits the noise of) ``name``: the next one.

    As in the paper, FAKET tomogram i never takes its own physics simulation as style reference.
    """
    names = list(names)
    if len(names) < 2:
        raise ValueError(
            "the benchmark needs at least 2 training layouts (FAKET i is styled with another's physics tilt-series)"
        )
    return names[(names.index(name) + 1) % len(names)]


def picker_seeds(spec) -> list[int]:
    """``benchmark.seeds``: a count n (seeds 0..n-1) or an explicit list."""
    if isinstance(spec, int):
        return list(range(spec))
    return [int(s) for s in spec]


def layout_box(spec_path: str | None, shape_override=None) -> tuple[int, int, int]:
    """Box (Z, Y, X) that ``faket layout`` makes from the spec (or the override): :func:`faket.workflow.layout_box`."""
    return _box(spec_path or None, shape_override or None)


def user_test_sets(spec) -> list[dict[str, Any]]:
    """``benchmark.test``: a list of folders of annotated tomograms, or a copick project.

    Folder entries: {name, folder, tomogram, picks, occupancy_mask (optional), radius (voxels, for picks
    without an occupancy mask)}; the files are relative to the folder. A copick project: {copick, runs
    (default: all), tomo_type, voxel_spacing, user, session, radius (default: each object's radius)}; each
    run is one test tomogram (``faket picker truth --copick``). Returns checked entries (``kind`` folder or
    copick) with paths.
    """
    if spec is None:
        return []
    if isinstance(spec, Mapping) and "copick" in spec:
        # lazy: pandas
        from faket.picker.copick import config_path, run_names

        project = str(spec["copick"])
        have = run_names(project)
        runs = list(spec.get("runs") or have)
        missing = [r for r in runs if r not in have]
        if missing:
            raise InputError(
                f"benchmark.test.runs: {missing[0]!r} is not a run of {project} (runs: "
                f"{', '.join(have[:10]) or 'none'})"
            )
        if not runs:
            raise InputError(f"benchmark.test.copick: {project} has no runs")
        return [
            {
                "kind": "copick",
                "name": r,
                "copick": project,
                "config": str(config_path(project)),
                "run": r,
                **{k: spec.get(k) for k in ("tomo_type", "voxel_spacing", "user", "session", "radius")},
            }
            for r in runs
        ]
    out, seen = [], set()
    for i, e in enumerate(spec):
        key = f"benchmark.test[{i}]"
        folder = e["folder"]
        if not os.path.isdir(folder):
            raise InputError(f"{key}.folder: {folder} is not a folder")
        name = e.get("name") or os.path.basename(os.path.normpath(folder))
        if name in seen:
            raise InputError(f"{key}.name: {name!r} is used twice")
        seen.add(name)
        d = {"kind": "folder", "name": name, "radius": float(e.get("radius", DEFAULT_RADIUS))}
        for k in ("tomogram", "picks", "occupancy_mask"):
            v = e.get(k)
            if v is None:
                if k != "occupancy_mask":
                    raise InputError(f"{key}.{k}: missing")
                d[k] = None
                continue
            p = os.path.join(folder, v)
            if not os.path.isfile(p):
                raise InputError(f"{key}.{k}: {p} not found")
            d[k] = p
        out.append(d)
    return out


def occupancy_from_picks(shape, points_zyx, radius) -> np.ndarray:
    """Occupancy mask (int32): particle k+1 = a ball of ``radius`` voxels (one number, or one per point)
    around point k (later points do not overwrite earlier ones)."""
    occ = np.zeros(shape, np.int32)
    pts = np.asarray(points_zyx, dtype=np.float64).reshape(-1, 3)
    radii = np.broadcast_to(np.asarray(radius, dtype=np.float64), (len(pts),))
    balls = {}
    for k, (p, r) in enumerate(zip(pts, radii)):
        if r not in balls:
            R = int(np.ceil(r))
            g = np.arange(-R, R + 1)
            dz, dy, dx = np.meshgrid(g, g, g, indexing="ij")
            ball = dz**2 + dy**2 + dx**2 <= r * r
            balls[r] = np.stack([dz[ball], dy[ball], dx[ball]], axis=1)
        v = np.round(p).astype(np.int64) + balls[r]
        ok = np.all((v >= 0) & (v < np.asarray(shape)), axis=1)
        v = v[ok]
        free = occ[tuple(v.T)] == 0
        occ[tuple(v[free].T)] = k + 1
    return occ


def class_mask_from_occupancy(occupancy, particle_ids, class_ids) -> np.ndarray:
    """Class mask (int32): every voxel of particle ``particle_ids[i]`` in the occupancy mask gets
    ``class_ids[i]``; background and ids not in the table stay 0."""
    occ = np.asarray(occupancy).astype(np.int64)
    pid = np.asarray(particle_ids, dtype=np.int64)
    lut = np.zeros(max(int(occ.max()), int(pid.max(initial=0))) + 1, np.int32)
    lut[pid] = np.asarray(class_ids, dtype=np.int32)
    return lut[occ]


# --------------------------------------------------------------------------------------------------
# summary


def score_rows(runs: Sequence[tuple[str, Any, str, Mapping[str, Any]]]) -> pd.DataFrame:
    """One row per (modality, seed, test) from faket evaluate metrics dicts."""
    rows = []
    for mod, seed, test, m in runs:
        loc = m.get("localisation") or {}
        cls = m.get("classification") or {}
        r = {
            "modality": mod,
            "seed": int(seed),
            "test": test,
            "loc_precision": loc.get("precision"),
            "loc_recall": loc.get("recall"),
            "loc_f1": loc.get("f1"),
            "n_particles": loc.get("n_particles"),
            "n_picks": loc.get("n_picks"),
            "cls_macro_precision": cls.get("macro_precision"),
            "cls_macro_recall": cls.get("macro_recall"),
            "cls_macro_f1": cls.get("macro_f1"),
        }
        for c, v in sorted((cls.get("per_class") or {}).items()):
            r[f"f1_{c}"] = v.get("f1")
        rows.append(r)
    if not rows:
        raise InputError("no metrics given")
    df = pd.DataFrame(rows)
    keys = sorted(set(df["modality"]), key=row_order)
    df["_o"] = [keys.index(m) for m in df["modality"]]
    return df.sort_values(["_o", "seed", "test"]).drop(columns="_o").reset_index(drop=True)


def summary(rows: pd.DataFrame) -> pd.DataFrame:
    """Per modality: mean and std over seeds of the per-seed means over test tomograms."""
    cols = [c for c in rows.columns if c.startswith(("loc_", "cls_", "f1_"))]
    per_seed = rows.groupby(["modality", "seed"], sort=False)[cols].mean().reset_index()
    g = per_seed.groupby("modality", sort=False)[cols]
    out = g.mean().add_suffix("_mean").join(g.std(ddof=1).add_suffix("_std"))
    out.insert(0, "n_seeds", per_seed.groupby("modality", sort=False).size())
    return out.reset_index()


def _pm(m, s) -> str:
    if m is None or not np.isfinite(m):
        return "-"
    return f"{m:.3f}" if s is None or not np.isfinite(s) else f"{m:.3f} ± {s:.3f}"


def paper_values(modality: str, faket_weights: str = "imagenet", shifted: bool = False):
    """The paper's (loc F1, cls F1) for a result row. The paper trained BENCHMARK on the test tomogram's own
    simulator: under a domain shift that is PHYSICS-MATCHED's row. FAKET styled with random VGG weights
    (``faket_weights`` "random"; imagenet or a weights file are the paper's method) -> its ablation row;
    fine-tuned FAKET -> the archived FakET + fine-tuning row (k = 3 there)."""
    base, _, k = modality.partition("_ft")
    if k:
        return PAPER["faket + fine-tune"] if base == "faket" and faket_weights != "random" else None
    if modality == "faket" and faket_weights == "random":
        return PAPER["faket (random VGG)"]
    if shifted and modality == "benchmark":
        return None
    if modality == "matched":
        return PAPER["benchmark"] if shifted else None
    return PAPER.get(modality)


def markdown_table(
    summ: pd.DataFrame,
    *,
    title: str = "",
    note: str = "",
    faket_weights: str = "imagenet",
    shifted: bool = False,
    comparisons: pd.DataFrame | None = None,
) -> str:
    lines = [f"### {title}", ""] if title else []
    lines += [
        "| row | seeds | localisation P | localisation R | localisation F1 | classification F1 (macro) "
        "| paper loc F1 / cls F1 |",
        "|---|---|---|---|---|---|---|",
    ]
    for _, r in summ.iterrows():
        p = paper_values(r["modality"], faket_weights, shifted)
        lines.append(
            f"| {row_label(r['modality'], shifted)} | {int(r['n_seeds'])} | "
            f"{_pm(r['loc_precision_mean'], r['loc_precision_std'])} | "
            f"{_pm(r['loc_recall_mean'], r['loc_recall_std'])} | "
            f"{_pm(r['loc_f1_mean'], r['loc_f1_std'])} | "
            f"{_pm(r['cls_macro_f1_mean'], r['cls_macro_f1_std'])} | " + (f"{p[0]:.3f} / {p[1]:.3f} |" if p else "- |")
        )
    lines += [
        "",
        "Mean ± standard deviation over picker seeds (each seed: mean over the scored test tomograms). "
        "Paper: DeepFinder on SHREC 2021, means of 6 seeds"
        + (
            "; FAKET row: the paper's random-VGG-weights ablation (the weights used here)"
            if faket_weights == "random"
            else ""
        )
        + (
            "; the paper's BENCHMARK was trained on the test tomogram's own simulator: PHYSICS-MATCHED here"
            if shifted
            else ""
        )
        + ".",
    ]
    pcs = sorted(c[3:-5] for c in summ.columns if c.startswith("f1_") and c.endswith("_mean"))
    if pcs:
        lines += [
            "",
            "Per-class F1 (mean over seeds):",
            "",
            "| row | " + " | ".join(pcs) + " |",
            "|---|" + "---|" * len(pcs),
        ]
        for _, r in summ.iterrows():
            lines.append(
                f"| {row_label(r['modality'], shifted)} | "
                + " | ".join("-" if pd.isna(r[f"f1_{c}_mean"]) else f"{r[f'f1_{c}_mean']:.2f}" for c in pcs)
                + " |"
            )
    if comparisons is not None and len(comparisons):
        lines += ["", comparison_table(comparisons, shifted=shifted).rstrip("\n")]
    if note:
        lines += ["", note]
    return "\n".join(lines) + "\n"


def comparison_table(comp: pd.DataFrame, *, shifted: bool = False) -> str:
    """Markdown: one line per comparison a - b, with both metrics' paired differences and intervals."""
    if not len(comp):
        return ""
    level = float(comp["level"].iloc[0])
    lines = [
        f"Paired differences a - b over (seed, scored test tomogram), mean and {level:.0%} interval of a "
        "two-stage bootstrap (picker seeds, then test tomograms within each seed: the tomograms one seed scored "
        "are not independent); *separated* only where the interval excludes 0 (with 2 seeds: both seeds agree "
        "in sign):",
        "",
        "| a - b | units | localisation F1 difference | | classification F1 difference | |",
        "|---|---|---|---|---|---|",
    ]
    for (a, b), g in comp.groupby(["a", "b"], sort=False):
        cells = []
        for metric in ("loc_f1", "cls_macro_f1"):
            r = g[g["metric"] == metric]
            if not len(r):
                cells += ["-", "-"]
                continue
            r = r.iloc[0]
            cells += [
                f"{r['diff']:+.3f} [{r['low']:+.3f}, {r['high']:+.3f}]",
                "**separated**" if r["separated"] else "not separated",
            ]
        n = int(g["n_units"].max())
        lines.append(
            f"| {row_label(a, shifted)} - {row_label(b, shifted)} | {n} ({int(g['n_seeds'].max())} seeds) | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join(lines) + "\n"


def comparison_figure(comp: pd.DataFrame, path, *, title: str = "", shifted: bool = False) -> None:
    """Forest plot: each comparison's mean paired difference with its bootstrap interval, per metric; the
    separated ones drawn filled, the others open."""
    # lazy: matplotlib
    import matplotlib

    matplotlib.use("Agg")
    # lazy: matplotlib
    import matplotlib.pyplot as plt

    pairs = list(dict.fromkeys(zip(comp["a"], comp["b"])))
    fig, axes = plt.subplots(1, 2, figsize=(10, 1.2 + 0.32 * max(len(pairs), 1)), dpi=120, sharey=True)
    ys = np.arange(len(pairs))[::-1]
    for ax, metric, lab in zip(axes, ("loc_f1", "cls_macro_f1"), ("localisation F1", "classification F1 (macro)")):
        for y, (a, b) in zip(ys, pairs):
            r = comp[(comp["a"] == a) & (comp["b"] == b) & (comp["metric"] == metric)]
            if not len(r):
                continue
            r = r.iloc[0]
            col = "#c44e52" if r["separated"] else "#777777"
            ax.plot([r["low"], r["high"]], [y, y], color=col, lw=2)
            ax.plot([r["diff"]], [y], "o", color=col, mfc=col if r["separated"] else "white")
        ax.axvline(0, color="k", lw=0.8)
        ax.set_xlabel(f"difference in {lab}")
    axes[0].set_yticks(ys, [f"{row_label(a, shifted)} - {row_label(b, shifted)}" for a, b in pairs], fontsize=7)
    level = float(comp["level"].iloc[0]) if len(comp) else 0.95
    fig.suptitle(
        (title + "\n" if title else "") + f"paired differences, bootstrap {level:.0%} intervals; filled red ="
        " separated (interval excludes 0)",
        fontsize=8,
    )
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def figure(
    summ: pd.DataFrame, path, *, title: str = "", faket_weights: str = "imagenet", shifted: bool = False
) -> None:
    """F1 per modality (localisation and classification) with error bars (std over seeds), PNG."""
    # lazy: matplotlib
    import matplotlib

    matplotlib.use("Agg")
    # lazy: matplotlib
    import matplotlib.pyplot as plt

    x = np.arange(len(summ))
    fig, ax = plt.subplots(figsize=(1.6 + 0.9 * len(summ), 4.2), dpi=120)
    w = 0.38
    for off, key, lab, col in (
        (-w / 2, "loc_f1", "localisation F1", "#4c72b0"),
        (w / 2, "cls_macro_f1", "classification F1 (macro)", "#dd8452"),
    ):
        m = summ[f"{key}_mean"].to_numpy(dtype=float)
        s = np.nan_to_num(summ[f"{key}_std"].to_numpy(dtype=float))
        ax.bar(x + off, m, w, yerr=s, capsize=3, label=lab, color=col)
    for i, mod in enumerate(summ["modality"]):
        p = paper_values(mod, faket_weights, shifted)
        if p:
            ax.plot([i - w, i], [p[0]] * 2, "k--", lw=1)
            ax.plot([i, i + w], [p[1]] * 2, "k:", lw=1)
    ax.set_xticks(
        x, [row_label(m, shifted).replace(" + ", "\n+ ") for m in summ["modality"]], fontsize=7, rotation=30, ha="right"
    )
    ax.set_ylim(0, 1)
    ax.set_ylabel("F1 on the test tomograms")
    ax.set_title(title + "\nbars: mean ± std over seeds; lines: paper (dashed loc, dotted cls)", fontsize=8)
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def unlabelled_names(n: int) -> list[str]:
    return [f"unlabelled_{i:03d}" for i in range(n)]


class Plan:
    """The benchmark's plan from a (validated) workflow config: names, domains, seeds, file names and options.

    Used by workflow/rules/benchmark.smk, so the rules hold no logic; every value comes from the config keys
    of the main workflow (angles, layout, reference.physics, noise, style, reconstruct) and ``benchmark``.
    Option strings come from :mod:`faket.workflow.options` (the main workflow's own builders), seeded draws from
    :func:`faket.workflow.draw`.
    """

    DIR = "results/benchmark"

    def __init__(self, config: Mapping[str, Any]):
        self.config = config
        bm = self.bm = config["benchmark"]
        self.spec = bm["layout_spec"] or config["layout"]["spec"]
        self.train = train_names(bm["train_tomograms"])
        self.user = user_test_sets(bm["test"])
        ref = bm.get("style_reference")
        if ref and not (os.path.isfile(ref) and os.path.isfile(os.path.splitext(ref)[0] + ".tlt")):
            raise InputError(f"benchmark.style_reference: {ref} (with its .tlt beside it) not found")
        self.user_by = {u["name"]: u for u in self.user}
        self.generated_test = [] if self.user else test_names(bm["test_tomograms"])
        self.unlabelled = [] if ref else unlabelled_names(bm["unlabelled_tomograms"])
        if not ref and not self.unlabelled:
            raise InputError(
                "benchmark.unlabelled_tomograms: at least 1 (the test domain's unlabelled tilt-series "
                "that NOISY, BASELINE and FAKET are fitted to), or set benchmark.style_reference"
            )
        self.annotated = [u["name"] for u in self.user] or self.generated_test
        ft = {**FINETUNE_DEFAULTS, **(bm.get("finetune") or {})}
        self.ks = sorted({int(k) for k in ft["k"]})
        self.finetune_steps = int(ft["steps"])
        kmax = max(self.ks, default=0)
        if kmax >= len(self.annotated):
            src = "benchmark.test" if self.user else "benchmark.test_tomograms"
            raise InputError(
                f"benchmark.finetune.k: fine-tuning on {kmax} annotated test tomograms needs at least "
                f"{kmax + 1} ({src} gives {len(self.annotated)}): the others are scored"
            )
        self.pool = self.annotated[:kmax]  # fine-tuning tomograms (the first k of them for each k)
        self.test = self.annotated[kmax:]  # scored test tomograms (every row is scored on these)
        self.seeds = picker_seeds(bm["seeds"])
        self.modalities = list(bm["modalities"])
        self.bin = int(bm["bin"])
        self.picker = bm["picker"]
        nz = layout_box(self.spec, config["layout"]["shape_zyx"])[0]
        zr = config["reconstruct"]["z_range"] or [0, nz]
        self.z_labels = f"--z-range {zr[0]}:{zr[1]}"
        self.z_reconstruct = f"{self.z_labels} --volume-z {nz}"
        self._seed = {n: bm["train_seed"] + i for i, n in enumerate(self.train)}
        self._seed.update({n: bm["test_seed"] + i for i, n in enumerate(self.generated_test)})
        self._seed.update({n: bm["unlabelled_seed"] + i for i, n in enumerate(self.unlabelled)})
        self.domain = self._test_domain()
        self.shifted = bool(self.domain) or bool(self.user) or bool(ref)

    def _test_domain(self) -> dict[str, Any]:
        """The test domain's settings that differ from the training domain's (key -> value or range)."""
        td = {k: v for k, v in (self.bm.get("test_domain") or {}).items() if v is not None}
        for old, key in (("test_defocus_um", "defocus_um"), ("test_dose", "dose")):
            v = self.bm.get(old)
            if v is not None:
                if key in td and td[key] != v:
                    raise InputError(
                        f"benchmark.{old}: {v} differs from benchmark.test_domain.{key}: {td[key]} (give one)"
                    )
                td[key] = v
        return td

    @staticmethod
    def pattern(names) -> str:
        """Wildcard constraint matching exactly these names (never matches when there are none)."""
        return "|".join(re.escape(n) for n in names) if names else "(?!)"

    # names and files
    def seed(self, name: str) -> int:
        return self._seed[name]

    def layouts(self) -> list[str]:
        """Every generated layout: training, annotated test, unlabelled test-domain."""
        return self.train + self.generated_test + self.unlabelled

    def in_test_domain(self, name: str) -> bool:
        return not name.startswith("train_")

    def partner_tilts(self, name: str) -> str:
        """Style and noise reference of training layout ``name``: ``benchmark.style_reference`` when set (a
        tilt-series of the user's microscope), else an unlabelled test-domain tilt-series (layout i uses
        unlabelled layout i mod n)."""
        ref = self.bm.get("style_reference")
        if ref:
            return ref
        u = self.unlabelled[self.train.index(name) % len(self.unlabelled)]
        return f"{self.DIR}/{u}/tiltseries/benchmark.mrc"

    def train_tomograms(self, modality: str) -> list[str]:
        return [f"{self.DIR}/{n}/{tomogram_file(modality, self.bin, name_faket=True)}" for n in self.train]

    def train_labels(self, what: str) -> list[str]:
        stem = {"class_mask": "class_mask", "particles": "particles"}[what]
        ext = "csv" if what == "particles" else "mrc"
        return [f"{self.DIR}/{n}/{stem}_bin{self.bin}.{ext}" for n in self.train]

    def user_tests(self, kind: str) -> list[str]:
        """Names of the user's test tomograms of one kind (folder, copick)."""
        return [u["name"] for u in self.user if u["kind"] == kind]

    def test_inputs(self, test: str) -> dict[str, str]:
        """tomogram, truth (particle table), occupancy and class mask of an annotated test tomogram."""
        if test in self.user_by:
            u = self.user_by[test]
            tomo = u["tomogram"] if u["kind"] == "folder" else f"{self.DIR}/user/{test}/tomogram.mrc"
            return {
                "tomogram": tomo,
                "truth": f"{self.DIR}/user/{test}/particles.csv",
                "occupancy": f"{self.DIR}/user/{test}/occupancy_mask.mrc",
                "class_mask": f"{self.DIR}/user/{test}/class_mask.mrc",
            }
        return {
            "tomogram": f"{self.DIR}/{test}/{tomogram_file('benchmark', self.bin, name_faket=True)}",
            "truth": f"{self.DIR}/{test}/particles_bin{self.bin}.csv",
            "occupancy": f"{self.DIR}/{test}/occupancy_mask_bin{self.bin}.mrc",
            "class_mask": f"{self.DIR}/{test}/class_mask_bin{self.bin}.mrc",
        }

    def finetune_inputs(self, k: int) -> dict[str, list[str]]:
        """The first k annotated test tomograms: tomograms, class masks, particle tables."""
        ins = [self.test_inputs(t) for t in self.pool[:k]]
        return {
            "tomograms": [i["tomogram"] for i in ins],
            "masks": [i["class_mask"] for i in ins],
            "particles": [i["truth"] for i in ins],
        }

    def rows(self) -> list[str]:
        """Result rows: the modalities, then per k the fine-tuned modalities, then per k 'alone'."""
        out = list(self.modalities)
        for k in self.ks:
            out += [finetune_row(m, k) for m in self.modalities]
        out += [alone_row(k) for k in self.ks]
        return out

    def model(self, row: str, seed) -> str:
        """The model file of a result row and seed."""
        if row.startswith("alone_k"):
            return f"{self.DIR}/models/alone/seed{seed}/k{row[7:]}/model.pt"
        base, _, k = row.partition("_ft")
        if k:
            return f"{self.DIR}/models/{base}/seed{seed}/finetune_k{k}/model.pt"
        return f"{self.DIR}/models/{row}/seed{seed}/model.pt"

    def runs(self) -> list[tuple[str, int, str]]:
        return [(r, s, t) for r in self.rows() for s in self.seeds for t in self.test]

    def metrics(self) -> list[str]:
        return [f"{self.DIR}/runs/{r}/seed{s}/{t}/metrics.json" for r, s, t in self.runs()]

    # options of the steps
    def layout_opts(self) -> str:
        return layout_opts(self.config["layout"], spec=self.spec or "")

    def physics_settings(self, name: str, domain: str | None = None) -> dict[str, Any]:
        """faket reference settings of a layout's physics tilt-series: the training domain's
        (``reference.physics``) or, for test-domain layouts (or ``domain='test'``), those overridden by
        ``benchmark.test_domain``; ranges drawn per layout seed (:func:`faket.workflow.draw`)."""
        phys = self.config["reference"]["physics"]
        settings = {k: (f"reference.physics.{k}", phys[k]) for k in ("defocus_um", "dose")}
        if domain == "test" or (domain is None and self.in_test_domain(name)):
            settings.update({k: (f"benchmark.test_domain.{k}", v) for k, v in self.domain.items()})
        return {k: draw(self.seed(name), key, v) for k, (key, v) in settings.items()}

    def physics_opts(self, name: str, domain: str | None = None) -> str:
        return physics_opts(self.physics_settings(name, domain))

    def noise_opts(self, name: str) -> str:
        n = self.config["noise"]
        return noise_opts(n, draw(self.seed(name), "noise.snr", n["snr"]))

    def style_opts(self) -> str:
        return style_opts(self.config["style"])

    def train_opts(self) -> str:
        keys = ("steps", "batch", "patch", "lr", "shift", "p_rotate", "background_ratio", "loss", "precision")
        return " ".join(f"--{k.replace('_', '-')} {self.picker[k]}" for k in keys)

    def finetune_opts(self) -> str:
        """faket picker train options of a fine-tune: the picker's, with benchmark.finetune.steps."""
        keys = ("batch", "patch", "lr", "shift", "p_rotate", "background_ratio", "loss", "precision")
        return f"--steps {self.finetune_steps} " + " ".join(f"--{k.replace('_', '-')} {self.picker[k]}" for k in keys)

    @staticmethod
    def train_pairs(tomograms, masks, particles) -> str:
        return " ".join(
            f"--tomogram {t} --class-mask {m} --particles {p}" for t, m, p in zip(tomograms, masks, particles)
        )

    def precision_note(self) -> str:
        """The training precision as configured and, for ``auto``, what it is on this machine."""
        p = self.picker["precision"]
        if p != "auto":
            return f"precision {p}"
        # lazy: torch
        from faket.picker.train import resolve_precision

        return f"precision auto ({resolve_precision(p, self.bm['device'])} on this machine)"

    def localize_opts(self) -> str:
        p = self.picker
        o = (
            f"--bandwidth {p['bandwidth']:g} " if p["bandwidth"] is not None else ""
        ) + f"--min-size-fraction {p['min_size_fraction']:g}"
        return o + (" --per-class" if p["per_class"] else "")

    def truth_opts(self, test: str) -> str:
        u = self.user_by[test]
        if u["kind"] == "copick":
            opts = [f"--copick {u['copick']} --run {u['run']}"]
            for k, flag in (
                ("tomo_type", "--tomo-type"),
                ("voxel_spacing", "--voxel-spacing"),
                ("user", "--user"),
                ("session", "--session"),
                ("radius", "--radius"),
            ):
                if u.get(k) is not None:
                    opts.append(f"{flag} {u[k]}")
            return " ".join(opts)
        return f"--occupancy {u['occupancy_mask']}" if u["occupancy_mask"] else f"--radius {u['radius']:g}"

    def summary_args(self, metric_files) -> str:
        return " ".join(f"--metrics {m} {s} {t} {p}" for (m, s, t), p in zip(self.runs(), metric_files))

    def summary_opts(self) -> str:
        return (
            ("--shifted" if self.shifted else "")
            + f" --bootstrap-seed {self.bm['bootstrap']['seed']}"
            + f" --bootstrap-samples {self.bm['bootstrap']['samples']}"
        )

    def domain_note(self) -> str:
        if self.user:
            return "test domain: the user's annotated tomograms"
        if not self.domain:
            return "test domain = training domain (no benchmark.test_domain settings)"
        return (
            "test domain: "
            + ", ".join(f"{k} {v}" for k, v in self.domain.items())
            + " (training domain: reference.physics, faket reference defaults)"
        )

    def note(self) -> str:
        p = self.picker
        test = (
            f"{len(self.annotated)} user-annotated tomogram(s)"
            if self.user
            else f"{len(self.annotated)} annotated test-domain layout(s)"
        )
        ft = (
            f"; fine-tuning on the first k = {', '.join(map(str, self.ks))} of them ({self.finetune_steps} steps), "
            f"{len(self.test)} scored"
            if self.ks
            else ", all scored"
        )
        ref = self.bm.get("style_reference")
        fit = f"style/noise reference {ref}" if ref else f"{len(self.unlabelled)} unlabelled test-domain tilt-series"
        return (
            f"Configuration: {len(self.train)} training layouts ({self.spec or 'faket layout default'}); "
            f"{self.domain_note()}; {fit}; {test}{ft}; bin {self.bin}, angles {self.config['angles']}, "
            f"style weights {self.config['style']['weights']}; picker: {p['steps']} steps x {p['batch']} "
            f"patches of {p['patch']}^3, lr {p['lr']:g}, loss {p['loss']}, {self.precision_note()}; "
            f"seeds {self.seeds}; excluded classes: {', '.join(self.bm['exclude_classes']) or 'none'}."
        )
