"""The FakET paper's evaluation as a workflow: planning (which layouts, seeds, style partners), user test sets,
and the summary (scores table, Markdown, figure). Used by workflow/rules/benchmark.smk and faket picker.
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from faket.errors import InputError
from faket.formats.names import tomogram_file

# ball radius (voxels) of a user's pick without occupancy mask or copick object radius
DEFAULT_RADIUS = 5.0

MODALITIES = ("benchmark", "faket", "noisy", "baseline", "noiseless")

# the paper's numbers (DeepFinder, SHREC 2021 model 9, means of 6 seeds): (localisation F1, classification F1)
PAPER = {"benchmark": (0.815, 0.581), "faket": (0.800, 0.533), "noisy": (0.809, 0.459),
         "baseline": (0.813, 0.441), "faket (random VGG)": (0.783, 0.434)}


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
        raise ValueError("the benchmark needs at least 2 training layouts (FAKET i is styled with another's "
                         "physics tilt-series)")
    return names[(names.index(name) + 1) % len(names)]


def picker_seeds(spec) -> list[int]:
    """``benchmark.seeds``: a count n (seeds 0..n-1) or an explicit list."""
    if isinstance(spec, int):
        return list(range(spec))
    return [int(s) for s in spec]


def layout_box(spec_path: str | None, shape_override=None) -> tuple[int, int, int]:
    """Box (Z, Y, X) that ``faket layout`` makes from the spec (or the override): :func:`faket.workflow.layout_box`."""
    from faket.workflow import layout_box as _box

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
        from faket.picker.copick import config_path, run_names

        project = str(spec["copick"])
        have = run_names(project)
        runs = list(spec.get("runs") or have)
        missing = [r for r in runs if r not in have]
        if missing:
            raise InputError(f"benchmark.test.runs: {missing[0]!r} is not a run of {project} (runs: "
                             f"{', '.join(have[:10]) or 'none'})")
        if not runs:
            raise InputError(f"benchmark.test.copick: {project} has no runs")
        return [{"kind": "copick", "name": r, "copick": project, "config": str(config_path(project)), "run": r,
                 **{k: spec.get(k) for k in ("tomo_type", "voxel_spacing", "user", "session", "radius")}}
                for r in runs]
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
            ball = dz ** 2 + dy ** 2 + dx ** 2 <= r * r
            balls[r] = np.stack([dz[ball], dy[ball], dx[ball]], axis=1)
        v = np.round(p).astype(np.int64) + balls[r]
        ok = np.all((v >= 0) & (v < np.asarray(shape)), axis=1)
        v = v[ok]
        free = occ[tuple(v.T)] == 0
        occ[tuple(v[free].T)] = k + 1
    return occ


# --------------------------------------------------------------------------------------------------
# summary


def score_rows(runs: Sequence[tuple[str, Any, str, Mapping[str, Any]]]) -> pd.DataFrame:
    """One row per (modality, seed, test) from faket evaluate metrics dicts."""
    rows = []
    for mod, seed, test, m in runs:
        loc = m.get("localisation") or {}
        cls = m.get("classification") or {}
        r = {"modality": mod, "seed": int(seed), "test": test,
             "loc_precision": loc.get("precision"), "loc_recall": loc.get("recall"), "loc_f1": loc.get("f1"),
             "n_particles": loc.get("n_particles"), "n_picks": loc.get("n_picks"),
             "cls_macro_precision": cls.get("macro_precision"), "cls_macro_recall": cls.get("macro_recall"),
             "cls_macro_f1": cls.get("macro_f1")}
        for c, v in sorted((cls.get("per_class") or {}).items()):
            r[f"f1_{c}"] = v.get("f1")
        rows.append(r)
    if not rows:
        raise InputError("no metrics given")
    df = pd.DataFrame(rows)
    order = {m: i for i, m in enumerate(MODALITIES)}
    df["_o"] = [order.get(m, len(order)) for m in df["modality"]]
    return df.sort_values(["_o", "modality", "seed", "test"]).drop(columns="_o").reset_index(drop=True)


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


def paper_values(modality: str, faket_weights: str = "imagenet"):
    """The paper's (loc F1, cls F1) for a modality; FAKET styled with random VGG weights -> its ablation row."""
    if modality == "faket" and faket_weights != "imagenet":
        return PAPER["faket (random VGG)"]
    return PAPER.get(modality)


def markdown_table(summ: pd.DataFrame, *, title: str = "", note: str = "", faket_weights: str = "imagenet") -> str:
    lines = [f"### {title}", ""] if title else []
    lines += ["| modality | seeds | localisation P | localisation R | localisation F1 | classification F1 (macro) "
              "| paper loc F1 / cls F1 |", "|---|---|---|---|---|---|---|"]
    for _, r in summ.iterrows():
        p = paper_values(r["modality"], faket_weights)
        lines.append(f"| {r['modality'].upper()} | {int(r['n_seeds'])} | "
                     f"{_pm(r['loc_precision_mean'], r['loc_precision_std'])} | "
                     f"{_pm(r['loc_recall_mean'], r['loc_recall_std'])} | "
                     f"{_pm(r['loc_f1_mean'], r['loc_f1_std'])} | "
                     f"{_pm(r['cls_macro_f1_mean'], r['cls_macro_f1_std'])} | "
                     + (f"{p[0]:.3f} / {p[1]:.3f} |" if p else "- |"))
    lines += ["", "Mean ± standard deviation over picker seeds (each seed: mean over the test tomograms). Paper: "
              "DeepFinder on SHREC 2021, means of 6 seeds"
              + ("; FAKET row: the paper's random-VGG-weights ablation (the weights used here)."
                 if faket_weights != "imagenet" else ".")]
    pcs = sorted(c[3:-5] for c in summ.columns if c.startswith("f1_") and c.endswith("_mean"))
    if pcs:
        lines += ["", "Per-class F1 (mean over seeds):", "",
                  "| modality | " + " | ".join(pcs) + " |", "|---|" + "---|" * len(pcs)]
        for _, r in summ.iterrows():
            lines.append(f"| {r['modality'].upper()} | "
                         + " | ".join("-" if pd.isna(r[f'f1_{c}_mean']) else f"{r[f'f1_{c}_mean']:.2f}" for c in pcs)
                         + " |")
    if note:
        lines += ["", note]
    return "\n".join(lines) + "\n"


def figure(summ: pd.DataFrame, path, *, title: str = "", faket_weights: str = "imagenet") -> None:
    """F1 per modality (localisation and classification) with error bars (std over seeds), PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.arange(len(summ))
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(summ), 3.6), dpi=120)
    w = 0.38
    for off, key, lab, col in ((-w / 2, "loc_f1", "localisation F1", "#4c72b0"),
                               (w / 2, "cls_macro_f1", "classification F1 (macro)", "#dd8452")):
        m = summ[f"{key}_mean"].to_numpy(dtype=float)
        s = np.nan_to_num(summ[f"{key}_std"].to_numpy(dtype=float))
        ax.bar(x + off, m, w, yerr=s, capsize=3, label=lab, color=col)
    for i, mod in enumerate(summ["modality"]):
        p = paper_values(mod, faket_weights)
        if p:
            ax.plot([i - w, i], [p[0]] * 2, "k--", lw=1)
            ax.plot([i, i + w], [p[1]] * 2, "k:", lw=1)
    ax.set_xticks(x, [m.upper() for m in summ["modality"]])
    ax.set_ylim(0, 1)
    ax.set_ylabel("F1 on the test tomograms")
    ax.set_title(title + "\nbars: mean ± std over seeds; lines: paper (dashed loc, dotted cls)", fontsize=8)
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def drawn(seed: int, key: str, spec):
    """A fixed value, or one drawn from [low, high] for this seed and key (as the workflow draws per tomogram)."""
    import random

    if not isinstance(spec, list):
        return spec
    rng = random.Random(f"faket:{seed}:{key}")
    lo, hi = float(spec[0]), float(spec[1])
    return float(f"{lo + (hi - lo) * rng.random():.4g}")


class Plan:
    """The benchmark's plan from a (validated) workflow config: names, seeds, file names and step options.

    Used by workflow/rules/benchmark.smk, so the rules hold no logic; every value comes from the config keys
    of the main workflow (angles, layout, reference.physics, noise, style, reconstruct) and ``benchmark``.
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
        self.generated_test = test_names(bm["test_tomograms"])
        self.test = [u["name"] for u in self.user] or self.generated_test
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

    # names and files
    def seed(self, name: str) -> int:
        return self._seed[name]

    def partner_tilts(self, name: str) -> str:
        """Style and noise reference of training layout ``name``: ``benchmark.style_reference`` when set (a
        tilt-series of the user's microscope), else the physics tilt-series of the next training layout."""
        ref = self.bm.get("style_reference")
        if ref:
            return ref
        return f"{self.DIR}/{style_partner(name, self.train)}/tiltseries/benchmark.mrc"

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
        if test in self.user_by:
            u = self.user_by[test]
            tomo = u["tomogram"] if u["kind"] == "folder" else f"{self.DIR}/user/{test}/tomogram.mrc"
            return {"tomogram": tomo, "truth": f"{self.DIR}/user/{test}/particles.csv",
                    "occupancy": f"{self.DIR}/user/{test}/occupancy_mask.mrc"}
        return {"tomogram": f"{self.DIR}/{test}/{tomogram_file('benchmark', self.bin, name_faket=True)}",
                "truth": f"{self.DIR}/{test}/particles_bin{self.bin}.csv",
                "occupancy": f"{self.DIR}/{test}/occupancy_mask_bin{self.bin}.mrc"}

    def runs(self) -> list[tuple[str, int, str]]:
        return [(m, s, t) for m in self.modalities for s in self.seeds for t in self.test]

    def metrics(self) -> list[str]:
        return [f"{self.DIR}/runs/{m}/seed{s}/{t}/metrics.json" for m, s, t in self.runs()]

    # options of the steps
    def layout_opts(self) -> str:
        lay = self.config["layout"]
        opts = [f"--spec {self.spec}"] if self.spec else []
        if lay["shape_zyx"]:
            opts.append("--shape " + ",".join(str(v) for v in lay["shape_zyx"]))
        if lay["voxel_size_a"]:
            opts.append(f"--voxel-size {lay['voxel_size_a']:g}")
        return " ".join(opts)

    def physics_opts(self, name: str) -> str:
        phys = self.config["reference"]["physics"]
        test = not name.startswith("train_")
        dfc = self.bm["test_defocus_um"] if test and self.bm["test_defocus_um"] is not None else phys["defocus_um"]
        dose = self.bm["test_dose"] if test and self.bm["test_dose"] is not None else phys["dose"]
        opts = [f"--defocus-um {drawn(self.seed(name), 'reference.physics.defocus_um', dfc):g}"]
        if dose is not None:
            opts.append(f"--dose {dose:g}")
        return " ".join(opts)

    def noise_opts(self, name: str) -> str:
        n = self.config["noise"]
        opts = f"--estimate {n['estimate']} --content-noise {n['content_noise']:g}"
        snr = drawn(self.seed(name), "noise.snr", n["snr"])
        return opts + ("" if snr is None else f" --snr {snr:g}")

    def style_opts(self) -> str:
        st = self.config["style"]
        opts = f"--weights {st['weights']} --precision {st['precision']}"
        return opts + ("" if st["iterations"] is None else f" --iterations {st['iterations']}")

    def train_opts(self) -> str:
        keys = ("steps", "batch", "patch", "lr", "shift", "p_rotate", "background_ratio", "loss")
        return " ".join(f"--{k.replace('_', '-')} {self.picker[k]}" for k in keys)

    @staticmethod
    def train_pairs(tomograms, masks, particles) -> str:
        return " ".join(f"--tomogram {t} --class-mask {m} --particles {p}"
                        for t, m, p in zip(tomograms, masks, particles))

    def localize_opts(self) -> str:
        p = self.picker
        o = f"--bandwidth {p['bandwidth']:g} --min-size-fraction {p['min_size_fraction']:g}"
        return o + (" --per-class" if p["per_class"] else "")

    def truth_opts(self, test: str) -> str:
        u = self.user_by[test]
        if u["kind"] == "copick":
            opts = [f"--copick {u['copick']} --run {u['run']}"]
            for k, flag in (("tomo_type", "--tomo-type"), ("voxel_spacing", "--voxel-spacing"), ("user", "--user"),
                            ("session", "--session"), ("radius", "--radius")):
                if u.get(k) is not None:
                    opts.append(f"{flag} {u[k]}")
            return " ".join(opts)
        return f"--occupancy {u['occupancy_mask']}" if u["occupancy_mask"] else f"--radius {u['radius']:g}"

    def summary_args(self, metric_files) -> str:
        return " ".join(f"--metrics {m} {s} {t} {p}" for (m, s, t), p in zip(self.runs(), metric_files))

    def note(self) -> str:
        p = self.picker
        test = "user test set" if self.user else f"{len(self.test)} held-out physics-simulated layout(s)"
        return (f"Configuration: {len(self.train)} training layouts ({self.spec or 'faket layout default'}), "
                f"{test}, bin {self.bin}, angles {self.config['angles']}, style weights "
                f"{self.config['style']['weights']}; picker: {p['steps']} steps x {p['batch']} patches of "
                f"{p['patch']}^3, lr {p['lr']:g}, loss {p['loss']}; seeds {self.seeds}; excluded classes: "
                f"{', '.join(self.bm['exclude_classes']) or 'none'}.")
