"""The picker benchmark's question: two domains, fine-tuning, paired comparisons (issue 21).

Real small computations: a picker continued with ``--init`` starts where the first run ended; the test
domain's settings reach the test tilt-series (their statistics and spectra differ from the training
domain's as the settings say); the bootstrap interval of identical inputs is [0, 0]; the benchmark's dry
run plans every modality, the fine-tune and the alone rows; the picker's defaults have one definition.
"""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from faket.formats.mrc import read_volume, write_mrc
from faket.formats.particles import write_particles_csv

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"

# (class_id, z, y, x): well-separated particles in a 16 x 48 x 48 box
PARTICLES = [(1, 8, 10, 10), (2, 8, 10, 36), (1, 7, 36, 12), (2, 9, 34, 34), (1, 8, 22, 24)]
NAMES = {1: "ball", 2: "cube"}
SHAPE = (16, 48, 48)


def synthetic(noise=0.3, seed=0):
    z, y, x = np.meshgrid(*(np.arange(n) for n in SHAPE), indexing="ij")
    cls = np.zeros(SHAPE, np.int64)
    vol = np.zeros(SHAPE, np.float32)
    for c, pz, py, px in PARTICLES:
        m = (
            ((z - pz) ** 2 + (y - py) ** 2 + (x - px) ** 2 <= 9)
            if c == 1
            else ((abs(z - pz) <= 2) & (abs(y - py) <= 2) & (abs(x - px) <= 2))
        )
        cls[m] = c
        vol[m] = 1.0 if c == 1 else -1.0
    vol += noise * np.random.default_rng(seed).normal(size=SHAPE).astype(np.float32)
    df = pd.DataFrame(
        {
            "particle_id": range(1, len(PARTICLES) + 1),
            "class_id": [p[0] for p in PARTICLES],
            "class_name": [NAMES[p[0]] for p in PARTICLES],
            "x": [float(p[3]) for p in PARTICLES],
            "y": [float(p[2]) for p in PARTICLES],
            "z": [float(p[1]) for p in PARTICLES],
            "rot": 0.0,
            "tilt": 0.0,
            "psi": 0.0,
        }
    )
    return vol, cls, df


# --------------------------------------------------------------------------------------------------
# one definition of the picker's defaults


def test_picker_defaults_have_one_definition():
    """train_picker, PatchSampler, segment, the CLI parser and the config schema all take faket.picker.DEFAULTS."""
    import argparse

    from faket.cli import picker as cli
    from faket.picker import DEFAULTS
    from faket.picker.benchmark import FINETUNE_DEFAULTS
    from faket.picker.segment import segment
    from faket.picker.train import PatchSampler, train_picker

    sig = inspect.signature(train_picker).parameters
    for k in ("steps", "batch", "patch", "lr", "shift", "p_rotate", "background_ratio", "loss", "precision"):
        assert sig[k].default == DEFAULTS[k], k
    fields = PatchSampler.__dataclass_fields__
    for k in ("patch", "shift", "p_rotate", "background_ratio"):
        assert fields[k].default == DEFAULTS[k], k
    seg = inspect.signature(segment).parameters
    assert (seg["patch"].default, seg["overlap"].default, seg["batch"].default) == (
        DEFAULTS["patch"],
        DEFAULTS["overlap"],
        DEFAULTS["batch"],
    )
    p = argparse.ArgumentParser()
    cli.add_arguments(p)
    train = p.parse_args(["train", "--tomogram", "t.mrc", "--class-mask", "c.mrc", "-o", "m.pt"])
    for k in ("steps", "batch", "patch", "lr", "shift", "p_rotate", "background_ratio", "loss", "precision"):
        assert getattr(train, k) == DEFAULTS[k], k
    loc = p.parse_args(["localize", "l.mrc", "-o", "p.csv"])
    assert (loc.bandwidth, loc.min_size_fraction) == (DEFAULTS["bandwidth"], DEFAULTS["min_size_fraction"])
    schema = yaml.safe_load(SCHEMA.read_text())["properties"]["benchmark"]["properties"]
    for k, v in DEFAULTS.items():
        assert schema["picker"]["properties"][k]["default"] == v, k
    for k, v in FINETUNE_DEFAULTS.items():
        assert schema["finetune"]["properties"][k]["default"] == v, k
    from faket.workflow.options import PHYSICS_FLAGS

    assert set(schema["test_domain"]["properties"]) == set(PHYSICS_FLAGS)  # every test-domain key has its flag


# --------------------------------------------------------------------------------------------------
# fine-tuning: faket picker train --init


def _write_set(folder, seed=0, swap_ids=False):
    folder.mkdir(parents=True, exist_ok=True)
    vol, cls, df = synthetic(seed=seed)
    if swap_ids:  # the same classes under other ids (a user's own annotation)
        cls = np.where(cls > 0, 3 - cls, 0)
        df = df.assign(class_id=3 - df["class_id"])
    write_mrc(folder / "tomo.mrc", vol, 10.0)
    write_mrc(folder / "class_mask.mrc", cls.astype(np.float32), 10.0)
    write_particles_csv(df, folder / "particles.csv")
    return folder


def _train(run_cli, folder, out, *extra):
    rc, _, err = run_cli(
        "picker",
        "train",
        "--tomogram",
        folder / "tomo.mrc",
        "--class-mask",
        folder / "class_mask.mrc",
        "--particles",
        folder / "particles.csv",
        "-o",
        out,
        "--patch",
        "8",
        "--batch",
        "4",
        "--lr",
        "1e-3",
        "--quiet",
        *extra,
    )
    assert rc == 0, err
    return pd.read_csv(out.with_name(out.stem + "_loss.csv"))["loss"].to_numpy()


def test_init_continues_training_where_the_first_run_ended(tmp_path, run_cli):
    data = _write_set(tmp_path / "a")
    first = _train(run_cli, data, tmp_path / "first.pt", "--steps", "60", "--seed", "0")
    fresh_start = first[:5].mean()
    end = first[-10:].mean()
    assert end < 0.8 * fresh_start  # the first run learned something
    cont = _train(run_cli, data, tmp_path / "cont.pt", "--steps", "10", "--seed", "1", "--init", tmp_path / "first.pt")
    # the continued run starts near the end of the first, far below a fresh start
    assert abs(cont[:5].mean() - end) < 0.35 * (fresh_start - end), (cont[:5], end, fresh_start)
    scratch = _train(run_cli, data, tmp_path / "scratch.pt", "--steps", "10", "--seed", "1")
    assert cont[:5].mean() < scratch[:5].mean() - 0.5 * (fresh_start - end)
    side = json.loads((tmp_path / "cont.json").read_text())
    assert side["training"]["init"] == str(tmp_path / "first.pt")
    import torch

    ck = torch.load(tmp_path / "cont.pt", weights_only=True)
    assert ck["params"]["init"]["optimizer"] == "fresh" and ck["params"]["init"]["steps_before"] == 60
    # a user's annotation with other class ids is mapped onto the model's classes by name
    user = _write_set(tmp_path / "u", seed=1, swap_ids=True)
    _train(run_cli, user, tmp_path / "ft.pt", "--steps", "2", "--init", tmp_path / "first.pt")
    ck = torch.load(tmp_path / "ft.pt", weights_only=True)
    assert ck["class_names"] == {1: "ball", 2: "cube"}
    side = json.loads((tmp_path / "ft.json").read_text())
    assert side["training"]["class_ids_mapped_onto_the_model"] == {str(user / "tomo.mrc"): {"1": 2, "2": 1}}


def test_training_set_maps_classes_by_name_and_refuses_unknown_ones():
    from faket.errors import InputError
    from faket.picker.data import TrainingItem, training_set

    vol, cls, df = synthetic()
    init = {"n_out": 4, "class_names": {1: "cube", 2: "ball", 3: "rod"}, "class_sizes": {3: 50.0}, "voxel_size_a": 10.0}
    ts = training_set([TrainingItem(vol, cls, 10.0, df)], patch=8, init=init)
    assert ts.n_out == 4
    assert np.array_equal(ts.masks[0], np.where(cls == 1, 2, np.where(cls == 2, 1, 0)))
    assert ts.class_names == {1: "cube", 2: "ball", 3: "rod"} and ts.class_sizes[3] == 50.0
    assert ts.class_sizes[2] == pytest.approx((cls == 1).sum() / 3)  # balls: 3 particles
    with pytest.raises(InputError, match="'ball' is not a class of the initial model"):
        training_set([TrainingItem(vol, cls, 10.0, df)], patch=8, init={**init, "class_names": {1: "cube"}})
    with pytest.raises(InputError, match="voxel size 20 A differs from the initial model's 10 A"):
        training_set([TrainingItem(vol, cls, 20.0, df)], patch=8, init=init)


def test_init_bad_model_is_one_line_exit_2(tmp_path, run_cli):
    data = _write_set(tmp_path / "a")
    (tmp_path / "bad.pt").write_text("not a model")
    rc, _, err = run_cli(
        "picker",
        "train",
        "--tomogram",
        data / "tomo.mrc",
        "--class-mask",
        data / "class_mask.mrc",
        "-o",
        tmp_path / "m.pt",
        "--init",
        tmp_path / "bad.pt",
        "--steps",
        "1",
        "--patch",
        "8",
    )
    assert rc == 2 and "bad.pt: not a faket picker model" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "m.pt").exists()


# --------------------------------------------------------------------------------------------------
# significance: paired bootstrap


def test_bootstrap_interval_of_identical_inputs_is_zero():
    from faket.picker.stats import paired_bootstrap

    x = np.random.default_rng(0).uniform(size=12)
    iv = paired_bootstrap(x, x)
    assert (iv.mean, iv.low, iv.high) == (0.0, 0.0, 0.0) and not iv.separated
    # a constant shift is exactly that shift, and separated
    iv = paired_bootstrap(x + 0.1, x)
    assert iv.low == pytest.approx(0.1) and iv.high == pytest.approx(0.1) and iv.separated
    # noise around a small shift: an interval around the mean; same seed, same interval
    y = x + np.random.default_rng(1).normal(0.0, 0.2, size=12)
    a, b = paired_bootstrap(y, x, seed=3), paired_bootstrap(y, x, seed=3)
    assert a == b and a.low < a.mean < a.high
    d = y - x
    half = 1.96 * d.std(ddof=1) / np.sqrt(d.size)  # the normal approximation it should be close to
    assert a.high - a.low == pytest.approx(2 * half, rel=0.3)
    assert paired_bootstrap([0.5], [0.1]).separated is False  # one unit is never separated


def test_cluster_bootstrap_respects_the_seeds():
    """Units scored by one picker seed share its networks: two seeds disagreeing in sign are not 'separated',
    however many tomograms each scored (the plain bootstrap over units would call it separated)."""
    from faket.picker.stats import paired_bootstrap

    b = np.random.default_rng(0).uniform(0.3, 0.5, size=12)
    seeds = [0] * 6 + [1] * 6
    d = np.array([0.08, 0.085, 0.075, 0.08, 0.082, 0.078, -0.01, -0.015, -0.005, -0.01, -0.012, -0.008])
    plain = paired_bootstrap(b + d, b, seed=1)
    cluster = paired_bootstrap(b + d, b, groups=seeds, seed=1)
    assert plain.separated and not cluster.separated
    assert cluster.low < -0.005 and cluster.high > 0.075  # spans both seeds' mean differences
    assert cluster.n == 12 and cluster.n_groups == 2
    # both seeds agree in sign: separated; units of one seed alone never are
    agree = paired_bootstrap(b + np.abs(d), b, groups=seeds, seed=1)
    assert agree.separated and agree.low > 0
    assert not paired_bootstrap(b[:6] + d[:6], b[:6], groups=seeds[:6], seed=1).separated
    assert paired_bootstrap(b + d, b, groups=seeds, seed=1) == cluster  # seeded


def test_compare_pairs_units_and_labels_separated(tmp_path, run_cli):
    from faket.picker.benchmark import comparisons, score_rows
    from faket.picker.stats import compare

    def met(f1):
        return {
            "localisation": {"precision": f1, "recall": f1, "f1": f1, "n_particles": 10, "n_picks": 10},
            "classification": {"macro_f1": f1 / 2, "per_class": {"ball": {"f1": f1}}},
        }

    rng = np.random.default_rng(0)
    runs, paths = [], []
    for s in range(3):
        for t in ("t1", "t2"):
            base = 0.5 + 0.1 * rng.normal()
            for mod, f1 in (
                ("noisy", base),
                ("faket", base + 0.05),
                ("benchmark", base),
                ("faket_ft1", base + 0.2),
                ("alone_k1", base + 0.2 + 0.1 * rng.normal()),
            ):
                runs.append((mod, s, t, met(f1)))
                p = tmp_path / f"{mod}_{s}_{t}.json"
                p.write_text(json.dumps(met(f1)))
                paths += ["--metrics", mod, str(s), t, str(p)]
    rows = score_rows(runs)
    assert list(dict.fromkeys(rows["modality"])) == ["benchmark", "faket", "noisy", "faket_ft1", "alone_k1"]
    pairs = comparisons(list(dict.fromkeys(rows["modality"])))
    assert ("faket", "noisy") in pairs and ("faket_ft1", "alone_k1") in pairs and ("faket_ft1", "faket") in pairs
    comp = compare(rows, pairs).set_index(["a", "b", "metric"])
    assert comp.loc[("faket", "noisy", "loc_f1"), "separated"]  # +0.05 on every unit
    assert comp.loc[("faket", "noisy", "loc_f1"), "n_units"] == 6
    assert not comp.loc[("noisy", "benchmark", "loc_f1"), "separated"]  # identical: [0, 0]
    rc, out, err = run_cli(
        "picker", "summarize", *paths, "-o", tmp_path / "scores.csv", "--shifted", "--bootstrap-samples", "2000"
    )
    assert rc == 0, err
    md = (tmp_path / "scores.md").read_text()
    line = next(x for x in md.splitlines() if x.startswith("| FAKET - NOISY |"))
    assert "**separated**" in line and "+0.050 [+0.050, +0.050]" in line
    line = next(x for x in md.splitlines() if x.startswith("| NOISY - BENCHMARK-MISMATCHED |"))
    assert "not separated" in line and "**separated**" not in line
    assert "| FAKET + FT k=1 |" in md and "| ALONE k=1 |" in md
    csv = pd.read_csv(tmp_path / "scores_comparisons.csv")
    assert set(csv.columns) >= {"a", "b", "metric", "diff", "low", "high", "separated"}
    assert (tmp_path / "scores_comparisons.png").read_bytes()[:4] == b"\x89PNG"


# --------------------------------------------------------------------------------------------------
# two domains


def _bench_config(**bm):
    cfg = yaml.safe_load((ROOT / "config" / "benchmark.yaml").read_text())
    cfg["manifest"] = str(ROOT / "data_manifest.csv")
    cfg["benchmark"]["layout_spec"] = str(ROOT / "config" / "benchmark-layout.yaml")
    cfg["layout"] = {"spec": str(ROOT / "config" / "layout.yaml")}  # the main workflow's own check
    cfg["benchmark"].update(bm)
    return cfg


def _validated(cfg):
    """The config with the schema's defaults filled in, as Snakemake's validate does."""
    import copy

    from snakemake.utils import validate

    cfg = copy.deepcopy(cfg)
    validate(cfg, str(SCHEMA))
    return cfg


def test_test_domain_settings_reach_the_test_tilt_series(tmp_path, run_cli):
    """The plan gives test-domain layouts (and PHYSICS-MATCHED) the test domain's settings, the training layouts
    the training domain's; simulated, the test tilt-series differ as those settings say: half the dose and
    thicker ice -> fewer electrons per pixel, no detector MTF -> relatively more high-frequency power."""
    from faket.picker.benchmark import Plan
    from faket.workflow import draw

    plan = Plan(_validated(_bench_config()))
    dom = plan.config["benchmark"]["test_domain"]
    assert {k for k, v in dom.items() if v is not None} >= {"defocus_um", "dose", "mtf", "ice_thickness_nm"}
    train, test = plan.physics_opts("train_000"), plan.physics_opts("test_000")
    assert train == "--defocus-um -3"
    assert test == "--defocus-um -5 --dose 60 --mtf none --ice-thickness-nm 250"
    assert plan.physics_opts("unlabelled_001") == test
    assert plan.physics_opts("train_001", domain="test") == test  # PHYSICS-MATCHED
    assert plan.partner_tilts("train_000").startswith(f"{plan.DIR}/unlabelled_000/")
    assert plan.partner_tilts("train_002").startswith(f"{plan.DIR}/unlabelled_000/")
    # a range is drawn per layout, as the main workflow draws (faket.workflow.draw, one definition)
    ranged = Plan(_validated(_bench_config(test_domain={"defocus_um": [-6.0, -4.0]})))
    v = draw(ranged.seed("test_001"), "benchmark.test_domain.defocus_um", [-6.0, -4.0])
    assert ranged.physics_settings("test_001")["defocus_um"] == v and -6 <= v <= -4
    # the older key still works, and a contradiction is refused
    old = Plan(_validated(_bench_config(test_domain={}, test_dose=80.0)))
    assert old.physics_opts("test_000") == "--defocus-um -3 --dose 80"
    from faket.errors import InputError

    with pytest.raises(InputError, match="test_dose"):
        Plan(_validated(_bench_config(test_dose=80.0)))

    # simulate one volume in both domains (the options of the plan, as the rules pass them)
    vol, _, _ = synthetic(noise=0.0)
    write_mrc(tmp_path / "vol.mrc", np.pad(np.abs(vol), ((0, 0), (8, 8), (8, 8))), 10.0)
    out = {}
    for dom_name, opts in (("train", train), ("test", test)):
        rc, _, err = run_cli(
            "reference",
            tmp_path / "vol.mrc",
            "-o",
            tmp_path / f"{dom_name}.mrc",
            "--angles",
            "-30:30:15",
            *opts.split(),
            "--seed",
            "0",
            "--device",
            "cpu",
            "--quiet",
        )
        assert rc == 0, err
        out[dom_name] = read_volume(tmp_path / f"{dom_name}.mrc").data.astype(np.float64)

    def hf_fraction(ts):
        f = np.abs(np.fft.rfft2(ts - ts.mean(axis=(1, 2), keepdims=True))) ** 2
        ny, nx = ts.shape[1:]
        fy = np.abs(np.fft.fftfreq(ny))[:, None]
        fx = np.fft.rfftfreq(nx)[None, :]
        r = np.sqrt(fy**2 + fx**2)
        return float(f[:, (r > 0.3) & (r <= 0.5)].sum() / f[:, (r > 0) & (r <= 0.5)].sum())

    ratio = out["test"].mean() / out["train"].mean()
    expect = 0.5 * np.exp(-100 / 350)  # dose 60/120, 100 nm more ice at an inelastic MFP of 350 nm
    assert ratio == pytest.approx(expect, rel=0.15), (ratio, expect)
    # shot noise dominates these tilts: without the counting MTF (sinc(f/2) per axis, f in Nyquist units) white
    # noise puts 0.636 of its power above 0.3 cycles/pixel, with it 0.533 (a factor 1.19); measured here 1.27
    assert hf_fraction(out["test"]) > 1.1 * hf_fraction(out["train"])


@pytest.mark.slow
def test_benchmark_dry_run_plans_every_modality_and_the_finetune_rows(tmp_path):
    """snakemake -n ... benchmark (and faket benchmark -n) on config/benchmark.yaml: a picker per modality and
    seed, a fine-tune per modality, seed and k, a picker on the k alone per seed and k, every row scored on
    every scored test tomogram; the test domain's options reach the test layouts' faket reference."""
    cfg = _bench_config()
    bm = cfg["benchmark"]
    p = tmp_path / "bench.yaml"
    p.write_text(yaml.safe_dump(cfg))
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    cmd = [
        str(BIN / "snakemake"),
        "-s",
        str(ROOT / "Snakefile"),
        "-d",
        str(tmp_path / "run"),
        "-n",
        "-p",
        "--cores",
        "2",
        "--nocolor",
        f"--configfile={p}",
        "benchmark",
    ]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = r.stdout + r.stderr
    counts = {
        x.split()[0]: int(x.split()[1])
        for x in out.splitlines()
        if len(x.split()) == 2 and x.split()[0].startswith("benchmark_") and x.split()[1].isdigit()
    }
    mods, seeds, ks = bm["modalities"], bm["seeds"], bm["finetune"]["k"]
    assert len(mods) == 7 and ks == [1, 2]
    n_scored = bm["test_tomograms"] - max(ks)
    assert counts["benchmark_train"] == len(mods) * seeds
    assert counts["benchmark_finetune"] == len(mods) * seeds * len(ks)
    assert counts["benchmark_alone"] == seeds * len(ks)
    assert counts["benchmark_score"] == (len(mods) * (1 + len(ks)) + len(ks)) * seeds * n_scored
    assert (
        counts["benchmark_matched"]
        == counts["benchmark_style"]
        == counts["benchmark_offline_style"]
        == bm["train_tomograms"]
    )
    assert counts["benchmark_physics"] == bm["train_tomograms"] + bm["test_tomograms"] + bm["unlabelled_tomograms"]
    for mod in mods:
        assert f"results/benchmark/runs/{mod}/seed0/test_002/metrics.json" in out
        for k in ks:
            assert f"results/benchmark/models/{mod}/seed1/finetune_k{k}/model.pt" in out
            assert f"results/benchmark/runs/{mod}_ft{k}/seed1/test_002/metrics.json" in out
    assert "/test_000/metrics.json" not in out and "/test_001/metrics.json" not in out  # fine-tune tomograms
    ref_lines = [x for x in out.splitlines() if "Shell command: faket reference " in x]
    test_refs = [x for x in ref_lines if "/test_" in x or "/unlabelled_" in x or "matched.mrc" in x]
    train_refs = [x for x in ref_lines if x not in test_refs]
    domain = ("--defocus-um -5 ", "--dose 60 ", "--mtf none ", "--ice-thickness-nm 250 ")
    assert len(test_refs) == 3 + 3 + 2 and all(all(f in x for f in domain) for x in test_refs)
    assert len(train_refs) == 3 and all(
        "--defocus-um -3 " in x and "--mtf" not in x and "--ice" not in x and "--dose" not in x for x in train_refs
    )
    assert any("faket picker train --init" in x for x in out.splitlines())
    assert not (tmp_path / "run" / "results").exists()
    # faket benchmark runs the same plan
    r2 = subprocess.run(
        [
            str(BIN / "faket"),
            "benchmark",
            "--configfile",
            str(p),
            "--snakefile",
            str(ROOT / "Snakefile"),
            "-n",
            "--",
            "-d",
            str(tmp_path / "run2"),
            "--nocolor",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r2.returncode == 0, r2.stdout[-3000:] + r2.stderr[-3000:]
    assert f"benchmark_finetune {len(mods) * seeds * len(ks)}" in " ".join((r2.stdout + r2.stderr).split())
    # too few annotated tomograms for the fine-tune is refused before any job, naming the key
    bm["test_tomograms"] = 2
    p.write_text(yaml.safe_dump(cfg))
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "benchmark.finetune.k" in r.stdout + r.stderr


@pytest.mark.slow
def test_benchmark_dry_run_with_a_copick_project_as_test_set(tmp_path):
    """A copick project replaces the generated test set: one truth job per run (writing the class mask the
    fine-tunes train on), the first run fine-tunes, the others are scored; an unknown run stops the plan."""
    from test_picker import _copick_project

    cfg = _bench_config(finetune={"k": [1]}, seeds=2)
    proj = _copick_project(tmp_path / "proj", runs=("cellA", "cellB", "cellC"))
    cfg["benchmark"]["test"] = {"copick": str(proj), "user": "annotator"}
    p = tmp_path / "bench.yaml"
    p.write_text(yaml.safe_dump(cfg))
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    cmd = [
        str(BIN / "snakemake"),
        "-s",
        str(ROOT / "Snakefile"),
        "-d",
        str(tmp_path / "run"),
        "-n",
        "--cores",
        "2",
        "--nocolor",
        f"--configfile={p}",
        "benchmark",
    ]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = r.stdout + r.stderr
    lines = [x.split()[:2] for x in out.splitlines()]
    n_rows = 7 * 2 + 1  # modalities, their fine-tunes (k = 1), alone k = 1
    assert ["benchmark_copick_truth", "3"] in lines
    assert ["benchmark_score", str(n_rows * 2 * 2)] in lines
    assert "results/benchmark/user/cellA/class_mask.mrc" in out
    assert "runs/faket_ft1/seed0/cellB/metrics.json" in out and "runs/faket/seed0/cellA/" not in out
    assert not any("test_000" in x for x in out.splitlines())
    cfg["benchmark"]["test"] = {"copick": str(proj), "runs": ["cellD"]}
    p.write_text(yaml.safe_dump(cfg))
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "'cellD' is not a run of" in r.stdout + r.stderr


def test_benchmark_jobs_find_this_installations_faket_without_an_activated_venv():
    """`.venv/bin/faket benchmark` without `source .venv/bin/activate`: the rules' `faket` commands must resolve
    to this interpreter's installation (they failed with "faket: command not found" before)."""
    import shutil
    import sys
    from pathlib import Path

    from faket.cli.benchmark import job_environment

    env = job_environment({"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"})
    found = shutil.which("faket", path=env["PATH"])
    assert found is not None and Path(found).parent == Path(sys.executable).parent
    assert env["PATH"].split(":")[1:] == ["/usr/bin", "/bin"] and env["HOME"] == "/nonexistent"
    # idempotent: the folder is not added twice
    assert job_environment(env)["PATH"] == env["PATH"]
