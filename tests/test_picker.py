"""The DeepFinder-style picker (faket picker) and the benchmark's planning.

Small, real computations: a perfect class map scores F1 = 1 through localize + evaluate and a shifted one 0;
a few training steps lower the Tversky loss; sliding-window segmentation equals the network run on the
windows and stitched; two CPU runs give identical weights and picks; bad inputs fail in one line (exit 2);
the benchmark's summary table. The benchmark's plan and DAG: tests/test_benchmark.py.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from faket.formats.mrc import write_mrc
from faket.formats.particles import write_particles_csv

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

# (class_id, z, y, x): well-separated particles in a 16 x 48 x 48 box
PARTICLES = [(1, 8, 10, 10), (2, 8, 10, 36), (1, 7, 36, 12), (2, 9, 34, 34), (1, 8, 22, 24)]
NAMES = {1: "ball", 2: "cube"}
SHAPE = (16, 48, 48)


def synthetic(radius=3, noise=0.0, seed=0):
    """(volume, class mask, occupancy mask, particle table): bright balls (class 1) and bright cubes (class 2)."""
    z, y, x = np.meshgrid(*(np.arange(n) for n in SHAPE), indexing="ij")
    cls = np.zeros(SHAPE, np.int64)
    occ = np.zeros(SHAPE, np.int64)
    vol = np.zeros(SHAPE, np.float32)
    for pid, (c, pz, py, px) in enumerate(PARTICLES, 1):
        if c == 1:
            m = (z - pz) ** 2 + (y - py) ** 2 + (x - px) ** 2 <= radius**2
        else:
            m = (abs(z - pz) <= radius - 1) & (abs(y - py) <= radius - 1) & (abs(x - px) <= radius - 1)
        cls[m], occ[m] = c, pid
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
    return vol, cls, occ, df


def _write_truth(tmp_path):
    vol, cls, occ, df = synthetic()
    write_mrc(tmp_path / "tomo.mrc", vol, 10.0)
    write_mrc(tmp_path / "class_mask.mrc", cls.astype(np.float32), 10.0)
    write_mrc(tmp_path / "occ.mrc", occ.astype(np.float32), 10.0)
    write_particles_csv(df, tmp_path / "particles.csv")
    return vol, cls, occ, df


def _score(run_cli, tmp_path, labels, name, rules="faket"):
    """faket evaluate of the picks localised from ``labels`` (faket's rules: those of faket picker score)."""
    write_mrc(tmp_path / f"{name}.mrc", labels.astype(np.float32), 10.0)
    rc, _, err = run_cli(
        "picker",
        "localize",
        tmp_path / f"{name}.mrc",
        "--classes",
        tmp_path / "particles.csv",
        "-o",
        tmp_path / f"{name}_picks.csv",
        "--min-size",
        "5",
        "--quiet",
    )
    assert rc == 0, err
    rc, _, err = run_cli(
        "evaluate",
        "--truth",
        tmp_path / "particles.csv",
        "--occupancy",
        tmp_path / "occ.mrc",
        "--pred",
        tmp_path / f"{name}_picks.csv",
        "-o",
        tmp_path / f"{name}.json",
        "--rules",
        rules,
        "--quiet",
    )
    assert rc == 0, err
    return json.loads((tmp_path / f"{name}.json").read_text())


def test_perfect_class_map_scores_one_and_shifted_map_zero(tmp_path, run_cli):
    _, cls, _, _ = _write_truth(tmp_path)
    m = _score(run_cli, tmp_path, cls, "perfect")
    assert m["localisation"]["f1"] == 1.0
    assert m["localisation"]["n_picks"] == len(PARTICLES)
    assert m["classification"]["macro_f1"] == 1.0
    picks = pd.read_csv(tmp_path / "perfect_picks.csv")
    assert sorted(picks["class_name"]) == sorted(NAMES[p[0]] for p in PARTICLES)
    # the same map moved by 5 voxels in x and y (more than a particle radius + the evaluator's 1-voxel dilation)
    shifted = np.roll(cls, (5, 5), axis=(1, 2))
    m = _score(run_cli, tmp_path, shifted, "shifted")
    assert m["localisation"]["n_picks"] == len(PARTICLES)
    assert m["localisation"]["f1"] == 0.0
    assert m["classification"]["macro_f1"] == 0.0


def test_localize_majority_label_and_min_sizes():
    from faket.picker.localize import localize

    _, cls, _, _ = synthetic()
    lab = cls.copy()
    z, y, x = PARTICLES[0][1:]
    lab[z, y, x - 1] = 2  # one stray voxel of the other class inside a ball
    df = localize(lab, bandwidth=5, min_size=5, class_names=NAMES)
    assert len(df) == len(PARTICLES)
    first = df.loc[(df["x"] - x).abs().lt(1.5) & (df["y"] - y).abs().lt(1.5)]
    assert list(first["class_name"]) == ["ball"]  # majority label
    cube_size = int((cls == 2).sum() // 2)
    df = localize(lab, bandwidth=5, min_size={2: cube_size + 1}, class_names=NAMES)
    assert set(df["class_name"]) == {"ball"}  # cubes dropped by their class's minimum size
    assert len(localize(np.zeros(SHAPE, np.int64))) == 0


@pytest.mark.parametrize("loss", ["tversky", "tversky+ce"])
def test_a_few_training_steps_lower_the_tversky_loss(loss):
    from faket.picker.train import train_picker, tversky_loss

    torch.set_num_threads(1)
    vol, cls, _, _ = synthetic(noise=0.3)
    res = train_picker([vol], [cls], 3, steps=24, batch=4, patch=16, lr=1e-3, shift=2, seed=0, loss=loss)
    first, last = np.mean(res.losses[:4]), np.mean(res.losses[-4:])
    assert last < first - 0.05, res.losses
    # the Tversky part itself falls too (the whole volume as one batch)
    x = torch.from_numpy((vol - vol.mean()) / vol.std())[None, None]
    y = torch.from_numpy(cls)[None, None]
    from faket.picker.net import build_model

    tv = tversky_loss()
    with torch.no_grad():
        assert float(tv(res.model(x), y)) < float(tv(build_model(3, seed=0)(x), y)) - 0.05


def test_bf16_training_learns_is_deterministic_and_is_not_fp32():
    """--precision bf16: the forward pass under bf16 autocast (other losses than fp32's), the weights stay
    fp32, the loss falls, and two runs with one seed agree bit for bit on the CPU."""
    from faket.picker.train import train_picker

    torch.set_num_threads(1)
    vol, cls, _, _ = synthetic(noise=0.3)
    kw = dict(steps=24, batch=4, patch=16, lr=1e-3, shift=2, seed=0)
    a = train_picker([vol], [cls], 3, precision="bf16", **kw)
    b = train_picker([vol], [cls], 3, precision="bf16", **kw)
    f = train_picker([vol], [cls], 3, precision="fp32", **kw)
    assert (a.precision, f.precision) == ("bf16", "fp32")
    assert a.losses == b.losses
    for k, v in a.model.state_dict().items():
        assert v.dtype == torch.float32 and torch.equal(v, b.model.state_dict()[k]), k
    assert a.losses != f.losses  # autocast took effect
    assert abs(a.losses[0] - f.losses[0]) < 0.02  # same network, same patches: bf16 rounding only
    assert np.mean(a.losses[-4:]) < np.mean(a.losses[:4]) - 0.05, a.losses


def test_auto_precision_is_bf16_only_on_a_cpu_with_amx(monkeypatch):
    from faket.picker import train

    monkeypatch.setattr(train, "cpu_has_amx", lambda: True)
    assert train.resolve_precision("auto", "cpu") == "bf16"
    assert train.resolve_precision("auto", "cuda") == "fp32"
    assert train.resolve_precision("fp32", "cpu") == "fp32"
    monkeypatch.setattr(train, "cpu_has_amx", lambda: False)
    assert train.resolve_precision("auto", "cpu") == "fp32"
    assert train.resolve_precision("bf16", "cpu") == "bf16"
    with pytest.raises(ValueError, match="precision 'fp16'"):
        train.resolve_precision("fp16")


def test_tversky_plus_ce_keeps_logits_bounded_where_tversky_alone_saturates():
    """The measured failure at laptop scale (docs/picker.md), on an easy set: Tversky alone drives the logits
    of the unnormalised U-Net far apart (softmax saturated), the cross-entropy term keeps them bounded."""
    from faket.picker.train import train_picker

    torch.set_num_threads(1)
    vol, cls, _, _ = synthetic(noise=1.0)
    x = torch.from_numpy((vol - vol.mean()) / vol.std())[None, None]
    spread = {}
    for loss in ("tversky", "tversky+ce"):
        res = train_picker([vol], [cls], 3, steps=30, batch=4, patch=16, lr=1e-3, shift=2, seed=0, loss=loss)
        with torch.no_grad():
            spread[loss] = float(res.model(x).std())
    assert spread["tversky+ce"] < 1000 < spread["tversky"], spread  # measured: 7-19 vs 3e7-2e8


def test_model_starts_as_keras_initialises_deepfinder():
    from faket.picker.net import build_model

    net = build_model(3, seed=0)
    conv = net.enc2[0][0]  # 32 -> 48 channels, 3^3 kernels
    fan_in, fan_out = 32 * 27, 48 * 27
    assert float(conv.bias.abs().max()) == 0.0
    assert abs(float(conv.weight.var()) / (2 / (fan_in + fan_out)) - 1) < 0.05  # Glorot uniform
    assert torch.equal(build_model(3, seed=0).head.weight, net.head.weight)
    assert not torch.equal(build_model(3, seed=1).head.weight, net.head.weight)


def test_segment_equals_network_on_windows_stitched():
    from faket.picker.net import build_model
    from faket.picker.segment import patch_scores, segment

    torch.set_num_threads(1)
    model = build_model(3, seed=1).eval()
    vol = np.random.default_rng(2).normal(size=(16, 32, 32)).astype(np.float32) * 3 + 5
    labels, scores = segment(model, vol, patch=16, overlap=0.5, batch=3)
    acc = np.zeros((3,) + vol.shape, np.float64)
    cnt = np.zeros(vol.shape, np.float64)
    with torch.no_grad():
        for yy in (0, 8, 16):
            for xx in (0, 8, 16):
                p = torch.from_numpy(np.ascontiguousarray(vol[:, yy : yy + 16, xx : xx + 16]))[None, None]
                acc[:, :, yy : yy + 16, xx : xx + 16] += patch_scores(model, p)[0].numpy()
                cnt[:, yy : yy + 16, xx : xx + 16] += 1
    stitched = acc / cnt
    np.testing.assert_allclose(scores, stitched, atol=2e-5)
    np.testing.assert_allclose(scores.sum(0), 1.0, atol=1e-5)
    assert (labels == np.argmax(scores, 0)).all()


def test_two_cpu_runs_give_identical_picks():
    from faket.picker.localize import localize
    from faket.picker.segment import segment
    from faket.picker.train import train_picker

    torch.set_num_threads(1)
    vol, cls, _, _ = synthetic(noise=0.3)
    out = []
    for _ in range(2):
        res = train_picker([vol], [cls], 3, steps=3, batch=2, patch=16, lr=1e-3, seed=5)
        lab, sc = segment(res.model, vol, patch=16, overlap=0.25)
        out.append((res, lab, sc, localize(lab, min_size=1, class_names=NAMES, scores=sc)))
    (r1, l1, s1, p1), (r2, l2, s2, p2) = out
    assert r1.losses == r2.losses
    for k, v in r1.model.state_dict().items():
        assert torch.equal(v, r2.model.state_dict()[k]), k
    np.testing.assert_array_equal(s1, s2)
    np.testing.assert_array_equal(l1, l2)
    pd.testing.assert_frame_equal(p1, p2)
    # another seed gives another network
    r3 = train_picker([vol], [cls], 3, steps=3, batch=2, patch=16, lr=1e-3, seed=6)
    assert r3.losses != r1.losses


def test_cli_train_segment_localize_round_trip(tmp_path, run_cli):
    _write_truth(tmp_path)
    model = tmp_path / "m" / "model.pt"
    rc, _, err = run_cli(
        "picker",
        "train",
        "--tomogram",
        tmp_path / "tomo.mrc",
        "--class-mask",
        tmp_path / "class_mask.mrc",
        "--particles",
        tmp_path / "particles.csv",
        "-o",
        model,
        "--steps",
        2,
        "--batch",
        2,
        "--patch",
        16,
        "--threads",
        1,
        "--precision",
        "auto",
        "--quiet",
    )
    assert rc == 0, err
    side = json.loads(model.with_suffix(".json").read_text())
    assert side["faket_step"] == "picker train" and side["output"]["class_names"] == {"1": "ball", "2": "cube"}
    from faket.picker.train import resolve_precision

    ran = resolve_precision("auto", "cpu")  # what auto is on this machine, recorded
    assert (side["training"]["precision_asked"], side["training"]["precision"]) == ("auto", ran)
    assert side["parameters"]["precision"] == "auto"
    assert len((tmp_path / "m" / "model_loss.csv").read_text().splitlines()) == 3
    rc, _, err = run_cli(
        "picker",
        "segment",
        tmp_path / "tomo.mrc",
        "--model",
        model,
        "-o",
        tmp_path / "lab.mrc",
        "--scores",
        tmp_path / "scores.npy",
        "--quiet",
    )
    assert rc == 0, err
    assert np.load(tmp_path / "scores.npy").shape == (3,) + SHAPE
    rc, _, err = run_cli(
        "picker",
        "localize",
        tmp_path / "lab.mrc",
        "--model",
        model,
        "--scores",
        tmp_path / "scores.npy",
        "-o",
        tmp_path / "picks.csv",
        "--quiet",
    )
    assert rc == 0, err
    assert {"x", "y", "z", "class_name", "size", "score"} <= set(pd.read_csv(tmp_path / "picks.csv").columns)
    # without --model, the class names and sizes come with the class map (segment's sidecar)
    rc, _, err = run_cli("picker", "localize", tmp_path / "lab.mrc", "-o", tmp_path / "picks2.csv", "--quiet")
    assert rc == 0, err
    side = json.loads((tmp_path / "picks2.json").read_text())["output"]
    assert side["classes_from"].endswith("lab.json") and set(side["bandwidth_voxels"]) == {"1", "2"}
    assert set(pd.read_csv(tmp_path / "picks2.csv")["class_name"]) <= {"ball", "cube"}


def test_cli_bad_inputs_one_line_exit_2(tmp_path, run_cli):
    _write_truth(tmp_path)
    write_mrc(tmp_path / "small.mrc", np.zeros((8, 8, 8), np.float32), 10.0)
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    t, c = tmp_path / "tomo.mrc", tmp_path / "class_mask.mrc"
    cases = [
        (
            ("picker", "train", "--tomogram", tmp_path / "nope.mrc", "--class-mask", c, "-o", tmp_path / "o.pt"),
            "nope.mrc: tomogram not found",
        ),
        (("picker", "train", "--tomogram", t, "-o", tmp_path / "o.pt"), "give one class mask per tomogram"),
        (
            ("picker", "train", "--tomogram", t, "--class-mask", tmp_path / "small.mrc", "-o", tmp_path / "o.pt"),
            "differs from its tomogram",
        ),
        (
            ("picker", "train", "--tomogram", t, "--class-mask", c, "-o", tmp_path / "o.pt", "--patch", 18),
            "multiple of 4",
        ),
        (
            ("picker", "segment", t, "--model", tmp_path / "junk.pt", "-o", tmp_path / "l.mrc"),
            "junk.pt: not a faket picker model",
        ),
        (
            (
                "picker",
                "localize",
                c,
                "-o",
                tmp_path / "p.csv",
                "--min-size",
                "x=3",
                "--classes",
                tmp_path / "particles.csv",
            ),
            "unknown class 'x'",
        ),
        (("picker", "localize", c, "-o", tmp_path / "p.txt"), "expected a .csv"),
        (("picker",), "a command is needed"),
    ]
    for argv, msg in cases:
        rc, _, err = run_cli(*argv)
        assert rc == 2, (argv, err)
        assert msg in err and len(err.strip().splitlines()) == 1, (argv, err)
    assert not any(p.name.startswith(("o.", "l.", "p.")) for p in tmp_path.iterdir())
    assert not any(".tmp-" in p.name for p in tmp_path.iterdir())


def test_truth_from_user_picks_builds_occupancy_balls(tmp_path, run_cli):
    vol, _, _, df = _write_truth(tmp_path)
    rc, _, err = run_cli(
        "picker",
        "truth",
        "--tomogram",
        tmp_path / "tomo.mrc",
        "--picks",
        tmp_path / "particles.csv",
        "--radius",
        2,
        "-o",
        tmp_path / "truth",
        "--quiet",
    )
    assert rc == 0, err
    from faket.formats.mrc import read_mrc

    occ = read_mrc(tmp_path / "truth" / "occupancy_mask.mrc").data
    assert set(np.unique(occ)) == set(range(len(PARTICLES) + 1))
    assert (occ > 0).sum() == len(PARTICLES) * 33  # balls of radius 2: 33 voxels
    assert occ[PARTICLES[1][1], PARTICLES[1][2], PARTICLES[1][3]] == 2


def test_summary_table_and_figure(tmp_path):
    from faket.picker.benchmark import figure, markdown_table, score_rows, summary

    def met(f1, cf1):
        return {
            "localisation": {"precision": f1, "recall": f1, "f1": f1, "n_particles": 10, "n_picks": 10},
            "classification": {"macro_f1": cf1, "per_class": {"ball": {"f1": cf1}}},
        }

    rows = score_rows(
        [("faket", 0, "t", met(0.5, 0.2)), ("faket", 1, "t", met(0.7, 0.4)), ("benchmark", 0, "t", met(0.9, 0.6))]
    )
    assert list(rows["modality"]) == ["benchmark", "faket", "faket"]
    s = summary(rows).set_index("modality")
    assert s.loc["faket", "loc_f1_mean"] == pytest.approx(0.6)
    assert s.loc["faket", "loc_f1_std"] == pytest.approx(np.std([0.5, 0.7], ddof=1))
    md = markdown_table(summary(rows), title="x")
    assert "| FAKET | 2 |" in md and "0.600 ± 0.141" in md and "0.815 / 0.581" in md
    figure(summary(rows), tmp_path / "f.png")
    assert (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG"


def test_score_gives_zero_for_no_picks_and_evaluate_otherwise(tmp_path, run_cli):
    _, cls, _, _ = _write_truth(tmp_path)
    empty = tmp_path / "empty.csv"
    empty.write_text("particle_id,class_id,class_name,x,y,z,rot,tilt,psi\n")
    rc, _, err = run_cli(
        "picker",
        "score",
        "--truth",
        tmp_path / "particles.csv",
        "--occupancy",
        tmp_path / "occ.mrc",
        "--pred",
        empty,
        "-o",
        tmp_path / "zero.json",
        "--quiet",
    )
    assert rc == 0, err
    m = json.loads((tmp_path / "zero.json").read_text())
    assert m["localisation"]["f1"] == 0.0 and m["localisation"]["n_picks"] == 0
    assert m["localisation"]["n_particles"] == len(PARTICLES) and m["classification"]["macro_f1"] == 0.0
    perfect = _score(run_cli, tmp_path, cls, "perfect")
    rc, _, err = run_cli(
        "picker",
        "score",
        "--truth",
        tmp_path / "particles.csv",
        "--occupancy",
        tmp_path / "occ.mrc",
        "--pred",
        tmp_path / "perfect_picks.csv",
        "-o",
        tmp_path / "p2.json",
        "--quiet",
    )
    assert rc == 0, err
    assert json.loads((tmp_path / "p2.json").read_text())["localisation"] == perfect["localisation"]


# --------------------------------------------------------------------------------------------------
# copick: a user's annotated project as test set, picks written into a project


def _copick_project(folder, runs=("cellA",), user="annotator"):
    """A copick project holding the synthetic tomogram and its picks (Angstrom, 10 A voxels) in each run."""
    import copick
    from copick.models import PickableObject

    vol, _, _, df = synthetic()
    folder.mkdir(parents=True, exist_ok=True)
    objs = [
        PickableObject(name="ball", is_particle=True, label=1, radius=30.0),
        PickableObject(name="cube", is_particle=True, label=2, radius=20.0),
        PickableObject(name="membrane", is_particle=False, label=3),
    ]
    root = copick.new_config(
        str(folder / "copick_config.json"), overlay_root=str(folder.resolve()), pickable_objects=objs
    )
    for name in runs:
        run = root.new_run(name)
        run.new_voxel_spacing(10.0).new_tomogram("denoised").from_numpy(vol)
        for cname, rows in df.groupby("class_name"):
            pk = run.new_picks(cname, "1", user_id=user)
            pk.from_numpy(rows[["x", "y", "z"]].to_numpy() * 10.0)
    return folder


def test_truth_from_a_copick_run_and_picks_back_into_copick(tmp_path, run_cli):
    from faket.formats.mrc import read_mrc
    from faket.formats.particles import read_particles

    vol, cls, _, df = synthetic()
    proj = _copick_project(tmp_path / "proj")
    rc, _, err = run_cli("picker", "truth", "--copick", proj, "--run", "cellA", "-o", tmp_path / "truth", "--quiet")
    assert rc == 0, err
    t = read_mrc(tmp_path / "truth" / "tomogram.mrc")
    assert np.array_equal(t.data, vol) and t.voxel_size_a == pytest.approx(10.0)
    truth = read_particles(tmp_path / "truth" / "particles.csv")
    assert sorted(zip(truth["class_name"], truth["x"].round(3), truth["y"].round(3))) == sorted(
        zip(df["class_name"], df["x"], df["y"])
    )
    occ = read_mrc(tmp_path / "truth" / "occupancy_mask.mrc").data
    # balls of each object's radius (30 A / 10 A = 3 voxels for ball, 2 for cube)
    sizes = {n: int((occ == pid).sum()) for pid, n in zip(truth["particle_id"], truth["class_name"])}
    assert sizes["ball"] == sum(
        1 for dz in range(-3, 4) for dy in range(-3, 4) for dx in range(-3, 4) if dz * dz + dy * dy + dx * dx <= 9
    )
    # the perfect class map's picks, written into the project as user faket-picker, score F1 = 1 from there
    write_mrc(tmp_path / "labels.mrc", cls.astype(np.float32), 10.0)
    write_particles_csv(df, tmp_path / "classes.csv")
    rc, _, err = run_cli(
        "picker",
        "localize",
        tmp_path / "labels.mrc",
        "--classes",
        tmp_path / "classes.csv",
        "-o",
        tmp_path / "picks.csv",
        "--min-size",
        "5",
        "--copick",
        proj,
        "--run",
        "cellA",
        "--quiet",
    )
    assert rc == 0, err
    rc, _, err = run_cli(
        "evaluate",
        "--truth",
        tmp_path / "truth" / "particles.csv",
        "--occupancy",
        tmp_path / "truth" / "occupancy_mask.mrc",
        "--pred",
        f"copick://{proj}/cellA/*?user=faket-picker",
        "-o",
        tmp_path / "m.json",
        "--quiet",
    )
    assert rc == 0, err
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["localisation"]["f1"] == 1.0 and m["classification"]["macro_f1"] == 1.0
    # two users now have picks: truth must be told which
    rc, _, err = run_cli("picker", "truth", "--copick", proj, "--run", "cellA", "-o", tmp_path / "t2", "--quiet")
    assert rc == 2 and "several users/sessions" in err and not (tmp_path / "t2").exists()
    rc, _, err = run_cli(
        "picker", "truth", "--copick", proj, "--run", "cellA", "--user", "annotator", "-o", tmp_path / "t2", "--quiet"
    )
    assert rc == 0, err


def test_copick_bad_inputs_exit_2_and_write_nothing(tmp_path, run_cli):
    _, cls, _, df = synthetic()
    proj = _copick_project(tmp_path / "proj")
    for argv, msg in (
        (["--run", "nope"], "no run 'nope'"),
        (["--run", "cellA", "--tomo-type", "wbp"], "no tomogram 'wbp'"),
        (["--run", "cellA", "--voxel-spacing", "7"], "no voxel spacing 7"),
        ([], "--run is needed"),
    ):
        rc, _, err = run_cli("picker", "truth", "--copick", proj, *argv, "-o", tmp_path / "t", "--quiet")
        assert rc == 2 and msg in err and err.count("\n") == 1, err
        assert not (tmp_path / "t").exists()
    df2 = df.assign(class_name=df["class_name"].replace({"cube": "sphere"}))
    write_mrc(tmp_path / "labels.mrc", cls.astype(np.float32), 10.0)
    write_particles_csv(df2, tmp_path / "classes.csv")
    rc, _, err = run_cli(
        "picker",
        "localize",
        tmp_path / "labels.mrc",
        "--classes",
        tmp_path / "classes.csv",
        "-o",
        tmp_path / "picks.csv",
        "--copick",
        proj,
        "--quiet",
    )
    assert rc == 2 and "'sphere' is not a pickable object" in err
    assert not (tmp_path / "picks.csv").exists()


def test_segment_refuses_a_tomogram_of_another_voxel_size(tmp_path, run_cli):
    vol, cls, _, df = _write_truth(tmp_path)
    rc, _, err = run_cli(
        "picker",
        "train",
        "--tomogram",
        tmp_path / "tomo.mrc",
        "--class-mask",
        tmp_path / "class_mask.mrc",
        "--particles",
        tmp_path / "particles.csv",
        "-o",
        tmp_path / "m.pt",
        "--steps",
        1,
        "--batch",
        1,
        "--quiet",
    )
    assert rc == 0, err
    write_mrc(tmp_path / "fine.mrc", vol, 5.0)
    rc, _, err = run_cli(
        "picker", "segment", tmp_path / "fine.mrc", "--model", tmp_path / "m.pt", "-o", tmp_path / "lab.mrc", "--quiet"
    )
    assert rc == 2 and "voxel size 5 A, but the picker was trained at 10 A" in err
    assert not (tmp_path / "lab.mrc").exists()
    rc, _, err = run_cli(
        "picker",
        "segment",
        tmp_path / "fine.mrc",
        "--model",
        tmp_path / "m.pt",
        "-o",
        tmp_path / "lab.mrc",
        "--any-voxel-size",
        "--quiet",
    )
    assert rc == 0 and (tmp_path / "lab.mrc").exists()


# --------------------------------------------------------------------------------------------------
# localisation of a perfect class map at any sampling (issue 20, point 6)

SMALL_SPEC = """box: [40, 96, 96]
voxel_size: 10.0
slab_thickness: 32
classes:
  - {template: ribosome_like, count: 2}
  - {template: barrel, count: 2}
  - {template: rod, count: 2}
  - {template: dumbbell, count: 3}
  - {template: lshape, count: 3}
  - {template: blob3, count: 6}
vesicles: {count: 1, diameter_nm: 30}
fiducials: {count: 2, diameter_nm: 8}
"""
CELL_SPEC = """box: [64, 128, 128]
voxel_size: 10.0
slab_thickness: 48
classes:
  - {template: ribosome_like, count: 4}
  - {template: blob3, count: 8}
  - {template: barrel, name: channel, membrane: ves, count: 6, axis: [0, 0, 1], insertion_nm: 0, leaflet: outer}
membranes:
  - {shape: sphere, name: ves, size_nm: 40}
filaments:
  - {type: actin, count: 2, length_nm: 100}
"""


@pytest.fixture(scope="module")
def perfect_maps(tmp_path_factory):
    """Layouts (built-in classes, seed 1: two L-shaped particles interlocked 9.9 voxels apart; cellular)
    and their labels at bin 2, as faket layout / faket labels write them."""
    from faket.cli import main

    d = tmp_path_factory.mktemp("perfect")
    out = {}
    for kind, spec, z in (("builtin", SMALL_SPEC, "4:36"), ("cellular", CELL_SPEC, "8:56")):
        (d / f"{kind}.yaml").write_text(spec)
        lay, lab = d / kind / "layout", d / kind / "labels"
        assert main(["layout", "-o", str(lay), "--spec", str(d / f"{kind}.yaml"), "--seed", "1", "-q"]) == 0
        assert main(["labels", str(lay), "-o", str(lab), "--bin", "2", "--z-range", z, "-q"]) == 0
        out[kind] = (lay, lab)
    return out


def _perfect_scores(run_cli, folder, suffix, tmp_path, *extra):
    """Localise folder/class_mask<suffix>.mrc with the defaults (no --model, no --classes) and score the picks
    against the same folder's occupancy mask and particle list (no dilation: with a membrane next to a
    membrane protein, SHREC's max-dilation gives the membrane's id)."""
    from faket.evaluation.evaluate import evaluate_picks
    from faket.formats.mrc import read_volume
    from faket.formats.particles import read_particles

    picks = tmp_path / f"picks{suffix}.csv"
    rc, _, err = run_cli("picker", "localize", folder / f"class_mask{suffix}.mrc", "-o", picks, "-q", *extra)
    assert rc == 0, err
    p = pd.read_csv(picks)
    truth = read_particles(folder / f"particles{suffix}.csv")
    occ = read_volume(folder / f"occupancy_mask{suffix}.mrc").data
    ev = evaluate_picks(
        occ,
        truth["particle_id"],
        p[["z", "y", "x"]].to_numpy(),
        truth_classes=truth["class_name"],
        pick_classes=p["class_name"],
        dilate=False,
    )
    return ev, p


@pytest.mark.parametrize("kind", ["builtin", "cellular"])
def test_perfect_class_map_localises_at_full_and_binned_sampling(perfect_maps, run_cli, tmp_path, kind):
    lay, lab = perfect_maps[kind]
    for folder, suffix in ((lay, ""), (lab, "_bin2")):  # 10 A and bin 2 (20 A)
        ev, picks = _perfect_scores(run_cli, folder, suffix, tmp_path)
        loc = ev.localisation
        assert loc["f1"] >= 0.95, (folder, suffix, loc)
        assert ev.classification["macro_f1"] == 1.0, (folder, suffix, ev.classification)
        # class names travel with the map (classes.json beside it): the truth's names, not class<id>
        assert set(picks["class_name"]) == set(read_truth_names(folder, suffix))
        side = json.loads((tmp_path / f"picks{suffix}.json").read_text())["output"]
        assert side["bandwidth_voxels"] and side["classes_from"].endswith("classes.json")


def read_truth_names(folder, suffix):
    from faket.formats.particles import read_particles

    return set(read_particles(folder / f"particles{suffix}.csv")["class_name"])


def test_fixed_voxel_bandwidth_is_right_at_one_sampling_only(perfect_maps, run_cli, tmp_path):
    """DeepFinder's fixed 5 voxels (--bandwidth 5) breaks 10 A particles into several picks; the same
    bandwidth in Angstrom (--bandwidth-a 100, 5 voxels at 20 A) does too at 10 A: 10 voxels. The default
    (each class's own bandwidth) does not."""
    lay, _ = perfect_maps["builtin"]
    ev, _ = _perfect_scores(run_cli, lay, "", tmp_path, "--bandwidth", "5")
    assert ev.localisation["n_duplicates"] > ev.localisation["n_particles"]
    assert ev.localisation["f1"] < 0.7


def test_class_names_travel_in_the_sidecar(perfect_maps, run_cli, tmp_path):
    """A class map moved away from its classes.json keeps its class table in its JSON sidecar."""
    lay, _ = perfect_maps["builtin"]
    shutil.copy(lay / "class_mask.mrc", tmp_path / "map.mrc")
    shutil.copy(lay / "class_mask.json", tmp_path / "map.json")
    rc, _, err = run_cli("picker", "localize", tmp_path / "map.mrc", "-o", tmp_path / "p.csv", "-q")
    assert rc == 0, err
    names = set(pd.read_csv(tmp_path / "p.csv")["class_name"])
    assert names == read_truth_names(lay, "")
    side = json.loads((tmp_path / "p.json").read_text())["output"]
    assert side["classes_from"].endswith("map.json")


def test_bench_picker_script_times_both_precisions():
    """bench/picker.py (the speed benchmark behind docs/picker.md#training-precision) runs: one row per patch
    size and precision, ratios against the first row."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    r = subprocess.run(
        [sys.executable, str(root / "bench" / "picker.py"), "--sizes", "16", "--precisions", "fp32,bf16"]
        + ["--steps", "1", "--batch", "2"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=root,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    rows = [line.split() for line in r.stdout.splitlines() if line.strip().startswith("16 ")]
    assert [row[1] for row in rows] == ["fp32", "bf16"] and rows[0][4] == "1.00", r.stdout
    assert all(float(row[2]) > 0 for row in rows)
