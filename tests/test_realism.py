"""faket realism: classifier two-sample tests, spectra, intensities, held-out scoring, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import write_mrc

from faket.evaluation import realism as R


def white(n, shape, seed):
    return np.random.default_rng(seed).standard_normal((n, *shape)).astype(np.float32)


def coloured(n, shape, seed, slope=-1.0):
    """Gaussian noise with amplitude ~ f**slope (power ~ f**(2 slope)): 1/f^2 power for slope -1."""
    w = white(n, shape, seed)
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.rfftfreq(shape[1])[None]
    f = np.hypot(fx, fy)
    f[0, 0] = 1.0
    return np.fft.irfft2(np.fft.rfft2(w) * f**slope, s=shape).astype(np.float32)


def patches(stack):
    return np.concatenate([R.tilt_patches(t) for t in R.standardise_tilts(stack)])


def test_tilt_patches_grid_is_centred_and_disjoint():
    img = np.arange(50 * 53, dtype=np.float32).reshape(50, 53)
    p = R.tilt_patches(img, 24)
    assert p.shape == (4, 24, 24)
    # grid offset (1, 2): the first patch starts at row 1, column 2; patches do not overlap
    assert p[0, 0, 0] == img[1, 2] and p[1, 0, 0] == img[1, 26] and p[2, 0, 0] == img[25, 2]
    assert len(np.unique(p)) == p.size


def test_c2st_of_a_set_against_itself_is_chance():
    a, b = patches(white(4, (96, 96), 1)), patches(white(4, (96, 96), 2))
    cnn = R.c2st_cnn(a, b, seed=0, folds=5)
    lr = R.c2st_logreg(a, b, seed=0, folds=5)
    assert 0.35 <= cnn["accuracy"] <= 0.65, cnn["accuracy"]
    assert 0.35 <= lr["accuracy"] <= 0.65, lr["accuracy"]
    assert len(cnn["fold_accuracies"]) == 5 and cnn["std"] >= 0
    assert cnn["n_per_class"] == len(a) == 64


def test_c2st_white_against_coloured_noise_is_near_one():
    a, b = patches(white(4, (96, 96), 1)), patches(coloured(4, (96, 96), 3))
    assert R.c2st_cnn(a, b, seed=0)["accuracy"] > 0.9
    assert R.c2st_logreg(a, b, seed=0)["accuracy"] > 0.9


def test_raps_distance_and_intensities():
    w1_, w2_ = white(2, (64, 64), 1), white(2, (64, 64), 2)
    c = coloured(2, (64, 64), 3)
    assert R.raps_distance(w1_, w2_) < 0.1
    assert R.raps_distance(w1_, c) > 0.5
    # 1/f^2 power against white: log10 power falls by 2 decades per decade of frequency
    f, p = R.raps(c)
    k = (f > 0.05) & (f < 0.45)
    slope = np.polyfit(np.log10(f[k]), np.log10(p.mean(0)[k]), 1)[0]
    assert -2.3 < slope < -1.7
    st = R.intensity_stats(np.stack([w1_[0], np.exp(w1_[1])]))
    assert abs(st["skewness"][0]) < 0.1 and abs(st["kurtosis"][0]) < 0.2
    assert st["skewness"][1] > 2 and st["kurtosis"][1] > 5  # log-normal: heavy right tail
    assert R.w1_standardised(w1_[0], 3 * w2_[0] + 5) < 0.05  # standardised: gain and offset do not count
    assert R.w1_standardised(w1_[0], np.exp(w1_[1])) > 0.2


def test_holdout_rows_and_pairing():
    assert R.holdout_rows(None, 5).tolist() == [0, 1, 2, 3, 4]
    assert R.holdout_rows("odd", 5).tolist() == [0, 2, 4]
    assert R.holdout_rows("even", 5).tolist() == [1, 3]
    assert R.holdout_rows([3, 1, 1], 5).tolist() == [1, 3]
    for bad in ([5], [], "half"):
        with pytest.raises(ValueError):
            R.holdout_rows(bad, 5)
    with pytest.raises(ValueError, match="none left to fit"):
        R.holdout_rows([0, 1, 2], 3)
    real_angles = np.array([-40.0, -20, 0, 20, 40])
    gen = np.array([-60.0, -44, -21, -9, 9, 30, 45])
    row, _, how = R.pair_tilts(gen, gen.size, real_angles, [1, 3], max_gap=5.0)
    # scored rows 1, 3 (-20, 20): outside -25..25 not scored; -9 -> row 1, 9 -> row 3
    assert how == "nearest angle" and row.tolist() == [-1, -1, 1, 1, 3, -1, -1]
    row, _, how = R.pair_tilts(None, 9, None, [0, 1, 2])
    assert how == "by relative position" and row.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    row, _, how = R.pair_tilts(None, 3, np.array([-10.0, 0, 10]), [0, 1, 2])
    assert how == "by index" and row.tolist() == [0, 1, 2]


def test_held_out_scoring_never_sees_fitted_tilts():
    """The fitted real tilts are copies of the generated tilts, the held-out ones differ: scored on the
    held-out tilts only, the generated data are told apart; scored on all, they would partly not be."""
    ang = np.arange(-30.0, 31.0, 10.0)  # 7 tilts
    gen = white(7, (72, 72), 5)
    real = coloured(7, (72, 72), 6)
    score = [0, 2, 4, 6]
    fit = [1, 3, 5]
    real[fit] = gen[fit]
    rep = R.realism_report(real, ang, {"gen": (gen, ang)}, holdout=score, seed=0, folds=3)
    m = rep["modalities"]["gen"]
    used = {r["real_tilt"] for r in m["per_tilt"] if r["real_tilt"] is not None}
    assert used == set(score) and used.isdisjoint(fit)
    assert m["summary"]["real_tilts_scored"] == score
    assert rep["real"]["scored"] == score and rep["real"]["fit"] == fit
    # every generated tilt is scored: fitted ones against their angle neighbour among the held-out tilts
    assert m["summary"]["n_tilts_scored"] == 7
    assert m["summary"]["c2st_cnn"] > 0.9 and m["summary"]["raps_distance"] > 0.3
    # the floor compares the two halves: fit tilts (as generated) against held-out ones
    fl = rep["floor"]
    assert fl["halves"]["as_real"] == score and fl["halves"]["as_generated"] == fit
    assert fl["summary"]["c2st_cnn"] > 0.9
    all_ = R.realism_report(real, ang, {"gen": (gen, ang)}, holdout=None, seed=0, folds=3)
    assert all_["modalities"]["gen"]["summary"]["c2st_cnn"] < m["summary"]["c2st_cnn"] - 0.1


def test_report_is_seeded_and_deterministic():
    ang = np.linspace(-30, 30, 5)
    real = coloured(5, (64, 64), 1, slope=-0.5)
    gen = {"a": (white(7, (64, 64), 2), np.linspace(-30, 30, 7)), "b": (coloured(5, (64, 64), 3, -0.5), ang)}
    r1 = R.realism_report(real, ang, gen, holdout="odd", seed=3, folds=3)
    r2 = R.realism_report(real, ang, gen, holdout="odd", seed=3, folds=3)
    assert json.dumps(r1) == json.dumps(r2)
    r3 = R.realism_report(real, ang, gen, holdout="odd", seed=4, folds=3)
    assert json.dumps(r3) != json.dumps(r1)
    s = r1["modalities"]
    assert s["a"]["summary"]["c2st_cnn"] > 0.85
    assert 0.25 <= s["b"]["summary"]["c2st_cnn"] <= 0.75
    assert s["b"]["summary"]["raps_distance"] < s["a"]["summary"]["raps_distance"]


def test_single_micrograph_floor_uses_two_halves_of_the_image():
    real = coloured(1, (120, 120), 1, slope=-0.5)
    gen = white(3, (96, 96), 2)
    rep = R.realism_report(real, None, {"g": (gen, None)}, seed=0, folds=3)
    assert "left half" in rep["floor"]["halves"]["how"]
    assert rep["modalities"]["g"]["pairing"] == "one real image"
    assert 0.3 <= rep["floor"]["summary"]["c2st_cnn"] <= 0.7
    narrow = R.realism_report(real[:, :, :40], None, {"g": (gen, None)}, seed=0, folds=3)
    assert "checkerboard" in narrow["floor"]["halves"]["how"]
    with pytest.raises(ValueError, match="single real image"):
        R.realism_report(real, None, {"g": (gen, None)}, holdout="odd")


# ---------------------------------------------------------------------------------------------------------
# the command line


CRYOCAT = "tiltseries/cryocat_tilt_stack_HIV-VLP_4tilts.mrc"
ROOT = Path(__file__).resolve().parents[1]


def _generated(tmp_path, name="gen.mrc", n=4, size=96, seed=1):
    from faket.formats.tiltmeta import write_tlt

    p = write_mrc(tmp_path / name, white(n, (size, size), seed), voxel_size=None)
    write_tlt(p.with_suffix(".tlt"), np.linspace(-30, 30, n))
    return p


def test_cli_end_to_end_on_real_tilts(tmp_path, shared_data, run_cli):
    """cryoCAT's 4 real tilts (no angles in the file: -30, -10, 10, 30 given) against white noise: JSON, Markdown
    and figure written; the held-out tilts 1 and 3 are the ones scored; the floor is near chance."""
    from faket.formats.tiltmeta import write_tlt

    gen = _generated(tmp_path)
    tlt = tmp_path / "real.tlt"
    write_tlt(tlt, [-30, -10, 10, 30])
    out = tmp_path / "report"
    rc, _, err = run_cli(
        "realism",
        gen,
        "--name",
        "WHITE",
        "--real",
        shared_data / CRYOCAT,
        "--real-angles-file",
        tlt,
        "--assume-same-sampling",
        "--holdout",
        "odd",
        "--folds",
        "3",
        "--max-patches",
        "200",
        "-o",
        out,
        "--quiet",
    )
    assert rc == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["realism.json", "realism.md", "realism.png"]
    rep = json.loads((out / "realism.json").read_text())
    assert rep["real"]["scored"] == [1, 3] and rep["real"]["fit"] == [2, 4]
    assert rep["real"]["fit_recipe"] == "--exclude-tilts 1,3"
    m = rep["modalities"]["WHITE"]
    assert {r["real_tilt"] for r in m["per_tilt"] if r["real_tilt"] is not None} == {1, 3}
    assert m["summary"]["c2st_cnn"] > 0.8 and m["summary"]["c2st_logreg"] > 0.8
    assert m["summary"]["real_kurtosis"] > 1  # the real tilts' dark tail (gold beads), white noise has none
    assert abs(m["summary"]["kurtosis"]) < 0.3
    assert rep["floor"]["summary"]["c2st_cnn"] < 0.7
    assert rep["provenance"]["seed"] == 0
    md = (out / "realism.md").read_text()
    assert "| real vs real (floor) |" in md and "| WHITE |" in md
    import matplotlib.image as mpimg

    img = mpimg.imread(out / "realism.png")
    assert img.ndim == 3 and img.shape[0] > 300 and img[..., :3].std() > 0.05


@pytest.mark.parametrize(
    "extra, msg",
    [
        (["--holdout", "1-4"], "none is left to fit on"),
        (["--holdout", "7"], "outside 1..4"),
        (["--name", "a", "--name", "b"], "--name given 2 times"),
        (["--folds", "1"], "--folds 1: must be >= 2"),
        (["--patch", "200"], "smaller than a 200x200 patch"),
    ],
)
def test_cli_bad_input_exits_2_with_one_line(tmp_path, shared_data, run_cli, extra, msg):
    gen = _generated(tmp_path)
    out = tmp_path / "report"
    rc, _, err = run_cli("realism", gen, "--real", shared_data / CRYOCAT, "--assume-same-sampling", "-o", out, *extra)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("faket realism: error:"), err
    assert msg in lines[0], lines[0]
    assert not out.exists()


def test_cli_refuses_a_missing_real_file(tmp_path, run_cli):
    gen = _generated(tmp_path)
    rc, _, err = run_cli(
        "realism", gen, "--real", tmp_path / "nope.mrc", "--assume-same-sampling", "-o", tmp_path / "r"
    )
    assert rc == 2 and err.count("\n") == 1 and "nope.mrc" in err and "not found" in err
    assert not (tmp_path / "r").exists()


# ---------------------------------------------------------------------------------------------------------
# the workflow (qc.realism)


def test_qc_settings_and_realism_series():
    from faket.workflow import qc_settings, realism_series

    assert qc_settings(True) == {"enabled": True, "realism": None}
    assert qc_settings(False) == {"enabled": False, "realism": None}
    assert qc_settings({"realism": True}) == {"enabled": True, "realism": True}
    with pytest.raises(ValueError):
        qc_settings({"realsim": True})
    assert realism_series(["faket", "noisy"], "tiltseries") == [("NOISY", "noisy"), ("FAKET", "faket")]
    assert realism_series(["faket", "baseline"], "micrograph") == [
        ("NOISY", "noisy"),
        ("BASELINE", "baseline"),
        ("FAKET", "faket"),
    ]
    assert realism_series(["faket", "noisy"], "physics") == []
    assert realism_series(["faket", "noisy"], "tomogram") == []


@pytest.mark.slow
def test_workflow_runs_realism_per_tomogram_with_a_real_reference(tmp_path, shared_data):
    """qc.realism: a tomogram styled by a real tilt-series gets results/<tomo>/qc/realism/ (NOISY against the
    staged reference), one styled by the physics reference does not; qc: true / false still plans."""
    from test_workflow import ROOT, snakemake, tiny_config

    man = tmp_path / "manifest.csv"
    man.write_text((ROOT / "data_manifest.csv").read_text().replace("../shared/", str(ROOT.parent / "shared") + "/"))
    cfg = tiny_config(
        tmp_path,
        manifest=str(man),
        seed=1,
        angles="-60:60:6",
        modalities=["noisy"],
        tomograms={"count": 1, "prefix": "tiny", "given": []},
        reference={"names": ["pytom_p1_subtilt"]},
        qc={"enabled": False, "realism": True},
    )
    work = tmp_path / "run"
    r = snakemake(work, cfg, "-n")
    assert "rule realism:" in r.stdout + r.stderr and "rule qc:" not in r.stdout + r.stderr
    snakemake(work, cfg, "results/tiny_000/qc/realism/realism.json")
    out = work / "results/tiny_000/qc/realism"
    assert sorted(p.name for p in out.iterdir()) == ["realism.json", "realism.md", "realism.png"]
    rep = json.loads((out / "realism.json").read_text())
    assert list(rep["modalities"]) == ["NOISY"] and rep["real"]["n_tilts"] == 41
    assert rep["settings"]["holdout"] == "none" and rep["real"]["fit_recipe"] is None
    assert "| NOISY |" in (out / "realism.md").read_text()
    phys = tiny_config(tmp_path, reference={"names": ["physics_default"]}, qc={"realism": True})
    r = snakemake(tmp_path / "run2", phys, "-n")
    assert "rule realism:" not in r.stdout + r.stderr and "rule qc:" in r.stdout + r.stderr


def test_cli_warns_when_a_generated_file_was_fitted_on_scored_tilts(tmp_path, run_cli):
    """The provenance of a generated file (faket noise's kept_tilts_1based) against the scored real tilts."""
    from faket.formats.tiltmeta import write_tlt

    real = write_mrc(tmp_path / "real.mrc", coloured(4, (72, 72), 2, -0.5))
    write_tlt(tmp_path / "real.tlt", np.linspace(-30, 30, 4))
    gens = []
    for name, kept in (("all.mrc", [1, 2, 3, 4]), ("even.mrc", [2, 4])):
        g = write_mrc(tmp_path / name, white(4, (72, 72), 1))
        write_tlt(g.with_suffix(".tlt"), np.linspace(-30, 30, 4))
        g.with_suffix(".json").write_text(
            json.dumps({"noise_model": {"references": [{"path": str(real), "kept_tilts_1based": kept}]}})
        )
        gens.append(g)
    rc, _, err = run_cli("realism", *gens, "--real", real, "--holdout", "odd", "--folds", "2", "-o", tmp_path / "r")
    assert rc == 0
    assert "all.mrc: fitted on real tilt(s) 1,3 that are scored" in err and "even.mrc: fitted" not in err
    rep = json.loads((tmp_path / "r" / "realism.json").read_text())
    assert rep["modalities"]["all.mrc"]["fitted_on_scored_tilts"] == [1, 3]
    assert rep["modalities"]["even.mrc"]["fitted_on_real_tilts"] == [2, 4]
    assert rep["modalities"]["even.mrc"]["fitted_on_scored_tilts"] == []


@pytest.mark.slow
def test_a_layout_of_the_specimen_brings_noisy_closer_to_the_real_cryocat_tilts(tmp_path, shared_data, run_cli):
    """config/cryocat-vlp-layout.yaml (the HIV VLPs of the cryoCAT tilts) against the generic config/layout.yaml,
    the same recipe otherwise (project at -30..30, faket noise fitted on real tilts 2 and 4): on the held-out
    real tilts 1 and 3, NOISY of the specimen layout has the closer intensity distribution and the local spectra
    that are harder to tell from real (docs/realism.md#your-specimen: C2ST (CNN) 0.72-0.73 against 0.79-0.80)."""
    from faket.formats.mrc import read_volume
    from faket.formats.tiltmeta import write_tlt
    from faket.layout import load_spec

    spec = load_spec(str(ROOT / "config" / "cryocat-vlp-layout.yaml"))
    assert spec["vesicles"]["count"] == 6 and spec["vesicles"]["name"] == "vlp"
    tlt = tmp_path / "real.tlt"
    write_tlt(tlt, [-30, -10, 10, 30])
    real = read_volume(shared_data / CRYOCAT).data.astype(np.float32)
    scored = [0, 2]  # tilts 1 and 3 (0-based): held out from the fit
    res = {}
    for name in ("layout", "cryocat-vlp-layout"):
        d = tmp_path / name
        for argv in (
            (
                "layout",
                "-o",
                d / "layout",
                "--spec",
                ROOT / "config" / f"{name}.yaml",
                "--box",
                "64,240,232",
                "--seed",
                "0",
            ),
            ("project", d / "layout" / "volume.mrc", "-o", d / "clean.mrc", "--angles-file", tlt),
            (
                "noise",
                d / "clean.mrc",
                "--reference",
                shared_data / CRYOCAT,
                "--reference-angles-file",
                tlt,
                "--exclude-tilts",
                "1,3",
                "--max-angle-gap",
                "25",
                "--assume-same-sampling",
                "--seed",
                "0",
                "-o",
                d / "noisy.mrc",
            ),
        ):
            rc, _, err = run_cli(*argv, "--quiet")
            assert rc == 0, err
        gen = read_volume(d / "noisy.mrc").data.astype(np.float32)
        w1 = np.mean([R.w1_standardised(gen[i], real[i]) for i in scored])
        c2 = R.c2st_logreg(patches(real[scored]), patches(gen[scored]), seed=0)["accuracy"]
        res[name] = (w1, c2)
    (w1_gen, c2_gen), (w1_vlp, c2_vlp) = res["layout"], res["cryocat-vlp-layout"]
    assert w1_vlp < 0.85 * w1_gen, res
    assert c2_vlp < c2_gen - 0.05, res
