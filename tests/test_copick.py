"""faket export copick: training sets as copick projects, read back through copick's own API.

A tiny results folder (one 24x64x64 tomogram at bins 1 and 2, two modalities, 9 particles of four classes
plus a vesicle) is built with faket's own steps (layout, labels, dataset); every test reads the exported
project with copick 1.31 (tomogram data, picks, segmentations), checks the conventions (location origin and
unit, transform direction, names), the workflow key, bad inputs and reading copick picks back into
faket evaluate / layout. The octopi test runs where an ``octopi`` command is found.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

copick = pytest.importorskip("copick", reason="copick not installed (pip install faket[copick])")

from faket.cli import main  # noqa: E402
from faket.formats import copick as cn  # noqa: E402
from faket.formats import copick_export as ce
from faket.formats.mrc import read_mrc, write_mrc  # noqa: E402
from faket.formats.particles import read_particles  # noqa: E402
from faket.rotation import relion_to_matrix, xyz_to_zyx_matrix  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

SPEC = {
    "box": [32, 64, 64],
    "voxel_size": 10.0,
    "slab_thickness": 24,
    "classes": [
        {"template": "ribosome_like", "count": 2},
        {"template": "ring", "count": 3},
        {"template": "lshape", "count": 3},
    ],
    "vesicles": {"count": 1, "diameter_nm": 20},
    "fiducials": {"count": 1, "diameter_nm": 6},
}
Z_RANGE = (4, 28)
SEED = 5


def _make_results(root: Path) -> Path:
    """results/t0: layout (seed 5), labels at bins 1 and 2 (Z slab 4:28), two modalities, dataset.csv."""
    res = root / "results"
    (root / "spec.yaml").write_text(yaml.safe_dump(SPEC))
    assert (
        main(
            [
                "layout",
                "--spec",
                str(root / "spec.yaml"),
                "-o",
                str(res / "t0" / "layout"),
                "--seed",
                str(SEED),
                "--quiet",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "labels",
                str(res / "t0" / "layout"),
                "-o",
                str(res / "t0"),
                "--bin",
                "1,2",
                "--z-range",
                f"{Z_RANGE[0]}:{Z_RANGE[1]}",
                "--quiet",
            ]
        )
        == 0
    )
    vol = read_mrc(res / "t0" / "layout" / "volume.mrc").data[Z_RANGE[0] : Z_RANGE[1]]
    rng = np.random.default_rng(0)
    for b in (1, 2):
        nz, ny, nx = (s // b for s in vol.shape)
        vb = vol[: nz * b, : ny * b, : nx * b].reshape(nz, b, ny, b, nx, b).mean(axis=(1, 3, 5)).astype(np.float32)
        write_mrc(res / "t0" / f"tomogram_bin{b}.mrc", vb, 10.0 * b)
        write_mrc(
            res / "t0" / f"tomogram_noisy_bin{b}.mrc", vb + rng.normal(size=vb.shape).astype(np.float32), 10.0 * b
        )
    assert main(["dataset", str(res), "-o", str(res / "dataset.csv"), "--quiet"]) == 0
    return res


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("copick")
    res = _make_results(tmp)
    proj = tmp / "proj"
    assert main(["export", "copick", str(res), "-o", str(proj), "--quiet"]) == 0
    return {"tmp": tmp, "res": res, "proj": proj}


def _root(proj):
    return copick.from_file(str(Path(proj) / "copick_config.json"))


def _bad(capsys, *argv):
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err
    return rc, err


# --------------------------------------------------------------------------------------------------
# pure conversions


def test_names_map_reversibly_onto_names_copick_accepts():
    from copick.models import PickableObject
    from copick.util.escape import sanitize_name

    names = ["ribosome_like", "4V94", "_lead", "trail_", "a-b", "a~b", "a b/c:d", "x__y", "ünï_côdé", "-", "~5f"]
    mapped = [cn.copick_name(n) for n in names]
    assert cn.copick_name("ribosome_like") == "ribosome-like" and cn.copick_name("4V94") == "4V94"
    assert len(set(mapped)) == len(names)
    for n, m in zip(names, mapped):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # copick warns when it has to change a name
            assert sanitize_name(m) == m
        PickableObject(name=m, is_particle=True, label=1)
        assert cn.faket_name(m) == n
    with pytest.raises(ce.InputError):
        cn.copick_name("")


def test_object_ids_and_kinds_from_template_sources():
    assert cn.template_ids("data/templates/1S3X.pdb.gz", "a") == ("1S3X", None)
    assert cn.template_ids("maps/emd_12345.map", "b") == (None, "EMD-12345")
    assert cn.template_ids("builtin:ring", "ring") == (None, None)
    assert cn.template_ids("", "4V94", name_is_id=True) == ("4V94", None)  # SHREC names classes by PDB id
    assert cn.template_ids("", "vesicle", name_is_id=True) == (None, None)
    assert cn.is_non_particle("vesicle") and cn.is_non_particle("x", "vesicle: bilayer 4 nm")
    assert cn.is_non_particle("Membrane_patch") and not cn.is_non_particle("fiducial", "gold bead")
    assert [cn.tomo_type_for(m) for m in ("faket", "noisy", "baseline", "noiseless", "my_mod")] == [
        "wbp",
        "wbp-noisy",
        "wbp-baseline",
        "wbp-noiseless",
        "wbp-my-mod",
    ]


def test_picks_conversion_matches_copicks_own_relion_reader():
    """Positions and transforms equal what copick computes from faket's RELION 5 STAR of the same particles."""
    from copick.util.formats import relion_coordinates_to_angstrom
    from copick.util.relion import relion_rows_to_poses

    from faket.formats.particles import write_particles_star

    rng = np.random.default_rng(3)
    n, box, vs = 12, (24, 32, 40), 13.5
    df = pd.DataFrame(
        {
            "particle_id": np.arange(1, n + 1),
            "class_id": 1,
            "class_name": "a",
            "x": rng.uniform(0, 39, n),
            "y": rng.uniform(0, 31, n),
            "z": rng.uniform(0, 23, n),
            "rot": rng.uniform(-180, 180, n),
            "tilt": rng.uniform(0, 180, n),
            "psi": rng.uniform(-180, 180, n),
        }
    )
    pos, tr = cn.particles_to_picks(df, vs)
    assert tr.shape == (n, 4, 4) and np.allclose(tr[:, 3], [0, 0, 0, 1]) and np.allclose(tr[:, :3, 3], 0)
    np.testing.assert_allclose(pos, df[["x", "y", "z"]].to_numpy() * vs)
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        star = Path(d) / "p.star"
        write_particles_star(df, star, voxel_size_a=vs, box_zyx=box)
        import starfile

        sdf = starfile.read(star)
    centre = tuple(np.array(box[::-1]) / 2 * vs)  # copick: tomogram shape / 2 * voxel size
    np.testing.assert_allclose(relion_coordinates_to_angstrom(sdf, tomogram_center=centre), pos, atol=1e-6)
    rot, _ = relion_rows_to_poses(sdf)
    np.testing.assert_allclose(rot, tr[:, :3, :3], atol=1e-9)
    back = cn.picks_to_particles(pos, tr, vs, class_name="a", class_id=1, instance_ids=df["particle_id"])
    np.testing.assert_allclose(back[["x", "y", "z"]].to_numpy(), df[["x", "y", "z"]].to_numpy(), atol=1e-9)
    np.testing.assert_allclose(relion_to_matrix(back[["rot", "tilt", "psi"]].to_numpy()), tr[:, :3, :3], atol=1e-9)


# --------------------------------------------------------------------------------------------------
# the exported project, read through copick


def test_project_layout_objects_and_tomograms(exported):
    res, proj = exported["res"], exported["proj"]
    root = _root(proj)
    cfg = json.loads((proj / "copick_config.json").read_text())
    assert cfg["overlay_root"] == "local://" + str(proj.resolve())
    assert not [p for p in proj.parent.iterdir() if p.name.startswith(".proj.")]  # no staging left
    objs = {o.name: o for o in root.pickable_objects}
    classes = json.loads((res / "t0" / "layout" / "classes.json").read_text())
    assert set(objs) == {cn.copick_name(v["name"]) for v in classes.values()}
    for cid, v in classes.items():
        o = objs[cn.copick_name(v["name"])]
        assert o.label == int(cid) and o.radius == pytest.approx(v["diameter_nm"] * 5, abs=1e-3)
        assert o.is_particle == (v["name"] != "vesicle")
        assert o.metadata["faket"]["class_name"] == v["name"]
    assert len({tuple(o.color) for o in objs.values()}) == len(objs)
    assert [r.name for r in root.runs] == ["t0"]
    run = root.get_run("t0")
    assert sorted(v.voxel_size for v in run.voxel_spacings) == [10.0, 20.0]
    for b in (1, 2):
        vs = run.get_voxel_spacing(10.0 * b)
        assert sorted(t.tomo_type for t in vs.tomograms) == ["wbp", "wbp-noisy"]
        for tt, name in (("wbp", f"tomogram_bin{b}.mrc"), ("wbp-noisy", f"tomogram_noisy_bin{b}.mrc")):
            np.testing.assert_array_equal(vs.get_tomograms(tt)[0].numpy(), read_mrc(res / "t0" / name).data)


def test_picks_round_trip(exported):
    res, proj = exported["res"], exported["proj"]
    run = _root(proj).get_run("t0")
    truth = read_particles(res / "t0" / "particles_bin1.csv")
    truth = truth[truth.class_name != "vesicle"]  # a segmentation object: no picks
    picks = run.get_picks(user_id="faket")
    assert {p.session_id for p in picks} == {"0"}  # copick's session of a tool's picks
    rec = json.loads((proj / "faket_export.json").read_text())
    assert rec["copick"]["runs"][0]["layout_seed"] == SEED  # the seed is in the provenance
    assert sorted(p.pickable_object_name for p in picks) == sorted(cn.copick_name(n) for n in truth.class_name.unique())
    n = 0
    for p in picks:
        rows = truth[truth.class_name == cn.faket_name(p.pickable_object_name)].sort_values("particle_id")
        pos, tr = p.numpy()
        order = np.argsort(p.instance_ids())
        pos, tr = pos[order], tr[order]
        assert len(pos) == len(rows) and p.meta.voxel_spacing == 10.0 and p.meta.unit == "angstrom"
        np.testing.assert_array_equal(p.instance_ids()[order], rows.particle_id.to_numpy())
        np.testing.assert_allclose(pos, rows[["x", "y", "z"]].to_numpy() * 10.0, atol=1e-3)
        np.testing.assert_allclose(tr[:, :3, :3], relion_to_matrix(rows[["rot", "tilt", "psi"]].to_numpy()), atol=1e-9)
        np.testing.assert_allclose(p.full_positions()[order], pos, atol=1e-9)  # no extra shift
        n += len(pos)
    assert n == len(truth) == 9


def test_picks_are_the_tool_picks_copick_torch_loads(exported):
    """copick-torch's datasets (MinimalCopickDataset, SimpleCopickDataset, copick 1.2.1 sources) keep, per run, the
    tomogram at the asked voxel spacing and the picks with ``picks.from_tool`` (session "0"), of pickable objects
    that are not filaments; their centres are ``location + transform shift``. Read that way through copick's API,
    every particle is there (faket's picks default to session "0"), and by user and session alike."""
    res, proj = exported["res"], exported["proj"]
    root = _root(proj)
    filaments = {o.name for o in root.pickable_objects if getattr(o, "is_filament", False)}
    truth = read_particles(res / "t0" / "particles_bin1.csv")
    truth = truth[truth.class_name != "vesicle"]
    for run in root.runs:
        for vs in (10.0, 20.0):
            assert run.get_voxel_spacing(vs).tomograms  # what the dataset loads first
        tool = [p for p in run.get_picks() if p.from_tool and p.pickable_object_name not in filaments]
        assert sorted(p.pickable_object_name for p in tool) == sorted(
            p.pickable_object_name for p in run.get_picks(user_id="faket", session_id="0")
        )
        assert len(run.tool_picks()) == len(tool) and run.user_picks() == []
        got = []
        for p in tool:
            pos, tr = p.numpy()
            centres = pos + tr[:, :3, 3]  # copick_torch.pick_utils.pick_centres
            got += [(cn.faket_name(p.pickable_object_name), *c) for c in np.round(centres, 3).tolist()]
        want = [(r.class_name, *np.round(np.array([r.x, r.y, r.z]) * 10.0, 3).tolist()) for r in truth.itertuples()]
        assert sorted(got) == sorted(want)


def test_copick_torch_loads_every_pick(exported):
    """The docs' copick-torch recipe, run with copick-torch itself where it is installed (its own venv:
    FAKET_COPICK_TORCH_PYTHON=/path/to/venv/bin/python): MinimalCopickDataset loads one sample per particle."""
    python = os.environ.get("FAKET_COPICK_TORCH_PYTHON")
    if not python or not Path(python).exists():
        pytest.skip("copick-torch not found: set FAKET_COPICK_TORCH_PYTHON to a Python with copick-torch installed")
    res, proj = exported["res"], exported["proj"]
    code = (
        "import copick, sys\n"
        "from copick_torch.minimal_dataset import MinimalCopickDataset\n"
        "ds = MinimalCopickDataset(proj=copick.from_file(sys.argv[1]), boxsize=(16, 16, 16), voxel_spacing=20.0, "
        "preload=False)\n"
        "x, y = ds[0]\n"
        "print('LOADED', len(ds), tuple(x.shape))\n"
    )
    r = subprocess.run(
        [python, "-c", code, str(proj / "copick_config.json")], check=False, capture_output=True, text=True, timeout=600
    )
    assert r.returncode == 0, r.stderr[-2000:]
    n = sum(read_particles(res / "t0" / "particles_bin1.csv").class_name != "vesicle")
    assert f"LOADED {n} (1, 16, 16, 16)" in r.stdout


def test_export_removes_staging_folders_of_killed_exports(exported, tmp_path):
    """An export killed outright (SIGKILL) leaves its hidden staging folder .PROJECT.tmp-PID; the next export
    removes those whose process is gone, and leaves a live one (an export running now) and other projects' alone."""
    res = exported["res"]
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        stale = [tmp_path / f".proj.tmp-{dead.pid}", tmp_path / f".proj.old-{dead.pid}"]
        keep = [tmp_path / f".proj.tmp-{live.pid}", tmp_path / f".other.tmp-{dead.pid}"]
        for d in stale + keep:
            (d / "ExperimentRuns" / "t0").mkdir(parents=True)
            (d / "copick_config.json").write_text("{}")
        assert main(["export", "copick", str(res), "-o", str(tmp_path / "proj"), "--quiet"]) == 0
        assert not any(d.exists() for d in stale)
        assert all(d.exists() for d in keep)
        assert [r.name for r in _root(tmp_path / "proj").runs] == ["t0"]
        assert sorted(q.name for q in tmp_path.iterdir() if q.name.startswith(".proj.")) == [keep[0].name]
    finally:
        live.kill()
        live.wait()


def test_segmentations_equal_the_masks_on_the_tomogram_grid(exported):
    res, proj = exported["res"], exported["proj"]
    run = _root(proj).get_run("t0")
    for b in (1, 2):
        vsz = 10.0 * b
        shape = run.get_voxel_spacing(vsz).get_tomograms("wbp")[0].numpy().shape
        cm = read_mrc(res / "t0" / f"class_mask_bin{b}.mrc")
        occ = read_mrc(res / "t0" / f"occupancy_mask_bin{b}.mrc").data
        assert cm.voxel_size_a == pytest.approx(vsz)
        (ml,) = run.get_segmentations(is_multilabel=True, voxel_size=vsz, user_id="faket")
        assert ml.name == "classes" and ml.voxel_size == vsz
        data = ml.numpy()
        assert data.shape == shape == cm.data.shape
        np.testing.assert_array_equal(data, cm.data)
        inst = run.get_segmentations(voxel_size=vsz, is_instance=True)
        total = np.zeros(shape, np.int64)
        for s in inst:
            v = s.numpy().astype(np.int64)
            assert v.shape == shape and not (total[v > 0]).any()  # disjoint
            label = _root(proj).get_object(s.name).label
            assert (cm.data[v > 0] == label).all()
            total += v
        np.testing.assert_array_equal(total, occ)
        (ves,) = run.get_segmentations(name="vesicle", voxel_size=vsz, is_multilabel=False)  # binary
        np.testing.assert_array_equal(ves.numpy() > 0, cm.data == 4)


def _render(mask_zyx, t_xyz, centre_xyz, shape):
    """Draw a template mask with an object -> tomogram transform (copick's documented direction)."""
    from scipy.ndimage import affine_transform

    m = xyz_to_zyx_matrix(t_xyz)
    c_in = (np.asarray(mask_zyx.shape) - 1) / 2
    c_out = np.asarray(centre_xyz)[::-1]
    inv = m.T  # input = c_in + M^T (o - c_out)
    out = affine_transform(mask_zyx.astype(np.float32), inv, offset=c_in - inv @ c_out, output_shape=shape, order=1)
    return out > 0.5


def test_orientation_rerendered_with_exported_transform_overlaps_the_mask(exported):
    """Asymmetric templates (lshape, ribosome_like) re-drawn from the exported picks with the copick transform
    overlap their occupancy regions far better than with the inverse (transposed) rotation."""
    from faket.layout.canvas import prepare_template
    from faket.layout.templates import load_template

    proj, res = exported["proj"], exported["res"]
    root = _root(proj)
    run = root.get_run("t0")
    occ = read_mrc(res / "t0" / "occupancy_mask_bin1.mrc").data.astype(np.int64)
    dice = {"T": [], "inverse": []}
    for name in ("lshape", "ribosome_like"):
        cube, thr = prepare_template(load_template(name, 10.0).density)
        mask = cube > thr
        (p,) = run.get_picks(object_name=cn.copick_name(name), user_id="faket")
        pos, tr = p.numpy()
        for loc, t, pid in zip(pos, tr, p.instance_ids()):
            truth = occ == pid
            for key, rot in (("T", t[:3, :3]), ("inverse", t[:3, :3].T)):
                drawn = _render(mask, rot, loc / 10.0, occ.shape)
                dice[key].append(2 * (drawn & truth).sum() / (drawn.sum() + truth.sum()))
    assert len(dice["T"]) == 5
    print({k: np.round(v, 3).tolist() for k, v in dice.items()})
    assert min(dice["T"]) > 0.8, dice
    assert np.mean(dice["T"]) > np.mean(dice["inverse"]) + 0.25, dice


# --------------------------------------------------------------------------------------------------
# reading copick picks back: faket evaluate and faket layout


def test_copick_picks_score_directly_in_faket_evaluate(exported, tmp_path):
    res, proj = exported["res"], exported["proj"]
    occ = res / "t0" / "occupancy_mask_bin1.mrc"
    out = tmp_path / "m.json"
    for pred in (f"copick://{proj}/t0/*", f"copick://{proj}/t0/*?user=faket&session=0"):
        assert (
            main(
                [
                    "evaluate",
                    "--truth",
                    str(res / "t0" / "particles_bin1.csv"),
                    "--occupancy",
                    str(occ),
                    "--pred",
                    pred,
                    "--exclude-class",
                    "vesicle",
                    "--rules",
                    "faket",
                    "-o",
                    str(out),
                    "--quiet",
                ]
            )
            == 0
        )
        m = json.loads(out.read_text())
        assert m["localisation"]["f1"] == 1.0 and m["classification"]["macro_f1"] == 1.0
    # one object's picks file as a JSON path; and the truth from copick, the picks at bin 2 (20 A)
    ring = proj / "ExperimentRuns" / "t0" / "Picks" / "faket_0_ring.json"
    assert (
        main(
            [
                "evaluate",
                "--truth",
                f"copick://{proj}/t0/*",
                "--occupancy",
                str(occ),
                "--pred",
                str(ring),
                "-o",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    m = json.loads(out.read_text())
    assert m["localisation"]["true_positives"] == 3 and m["localisation"]["precision"] == 1.0
    df = read_particles(f"copick://{proj}/t0/ribosome_like")  # faket name or copick name
    assert list(df.class_name) == ["ribosome_like"] * 2
    rel = os.path.relpath(proj)
    assert len(read_particles(f"copick://{rel}/copick_config.json/t0/ring")) == 3


def test_layout_from_copick_picks_reproduces_the_particles(exported, tmp_path):
    proj = exported["proj"]
    spec = dict(SPEC, box=[24, 64, 64], slab_thickness=24, vesicles={"count": 0})
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(spec))
    assert (
        main(
            [
                "layout",
                "--spec",
                str(tmp_path / "s.yaml"),
                "--particles",
                f"copick://{proj}/t0/*",
                "-o",
                str(tmp_path / "lay"),
                "--quiet",
            ]
        )
        == 0
    )
    got = read_particles(tmp_path / "lay" / "particles.csv")
    want = read_particles(f"copick://{proj}/t0/*")
    np.testing.assert_allclose(
        got[["x", "y", "z", "rot", "tilt", "psi"]].to_numpy(),
        want[["x", "y", "z", "rot", "tilt", "psi"]].to_numpy(),
        atol=1e-9,
    )
    occ = read_mrc(tmp_path / "lay" / "occupancy_mask.mrc").data
    assert set(np.unique(occ[occ > 0]).astype(int)) == set(want.particle_id)


def test_bad_copick_sources(exported, capsys):
    proj = exported["proj"]
    for src, msg in (
        (f"copick://{proj}/nope/ring", "no run 'nope'"),
        (f"copick://{proj}/t0/nope", "no object"),
        ("copick://t0/ring", "expected copick://PROJECT/RUN/OBJECT"),
        (f"copick://{proj}/t0", "no copick project"),  # PROJECT/RUN/OBJECT read from the right
        (f"copick://{proj}/t0/ring?colour=1", "unknown query key"),
        (f"copick://{proj}/t0/ring?user=other", "no picks"),
        ("copick:///nonexistent/t0/ring", "no copick project"),
        (str(exported["tmp"] / "missing.json"), "not found"),
    ):
        with pytest.raises(ce.InputError, match=msg):
            read_particles(src)


# --------------------------------------------------------------------------------------------------
# bad inputs: one line, exit 2, nothing written


def _copy(exported, tmp_path):
    res = tmp_path / "results"
    shutil.copytree(exported["res"], res)
    return res


def _assert_nothing(out):
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]


def test_bad_inputs_exit_2_with_one_line_and_write_nothing(exported, tmp_path, capsys):
    out = tmp_path / "proj"
    res = _copy(exported, tmp_path)
    cases = []
    # missing dataset.csv (an interrupted run writes it last)
    (res / "dataset.csv").rename(res / "d.bak")
    cases.append(((res,), "no dataset.csv"))
    rc, err = _bad(capsys, "export", "copick", res, "-o", out)
    assert rc == 2 and "no dataset.csv" in err and len(err.strip().splitlines()) == 1, err
    _assert_nothing(out)
    (res / "d.bak").rename(res / "dataset.csv")
    text = (res / "dataset.csv").read_text()
    # inconsistent dataset.csv: a wrong particle count, a wrong shape, a missing column
    for bad, msg in (
        (
            text.replace(",24,64,64,10,10,", ",24,64,64,10,11,", 1).replace(
                ",24,64,64,10,10\n", ",24,64,64,10,11\n", 1
            ),
            "says 11",
        ),
        (text.replace(",24,64,64,10,", ",24,64,60,10,", 1), "differs from"),
        (text.replace("n_particles", "count"), "missing column"),
    ):
        (res / "dataset.csv").write_text(bad)
        rc, err = _bad(capsys, "export", "copick", res, "-o", out)
        assert rc == 2 and msg in err and len(err.strip().splitlines()) == 1, err
        _assert_nothing(out)
    (res / "dataset.csv").write_text(text)
    # an interrupted run: a listed file missing, a tomogram truncated
    t = res / "t0" / "tomogram_noisy_bin2.mrc"
    data = t.read_bytes()
    t.unlink()
    rc, err = _bad(capsys, "export", "copick", res, "-o", out)
    assert rc == 2 and "missing" in err and "tomogram_noisy_bin2.mrc" in err, err
    t.write_bytes(data[:-100])
    rc, err = _bad(capsys, "export", "copick", res, "-o", out)
    assert rc == 2 and "truncated" in err, err
    _assert_nothing(out)
    t.write_bytes(data)
    # names copick refuses
    for opt, msg in (
        (["--user-id", "my_user"], "--user-id 'my_user': copick refuses it"),
        (["--session-id", "a b"], "--session-id 'a b'"),
        (["--tomo-type", "faket=wbp_x"], "copick refuses it"),
        (["--tomo-type", "shiny=x"], "no such modality"),
    ):
        rc, err = _bad(capsys, "export", "copick", res, "-o", out, *opt)
        assert rc == 2 and msg in err and len(err.strip().splitlines()) == 1, err
        _assert_nothing(out)
    # zero particles of a class
    cj = res / "t0" / "layout" / "classes.json"
    classes = json.loads(cj.read_text())
    classes["9"] = {"name": "ghost_class", "source": "builtin:ring", "diameter_nm": 10.0}
    cj.write_text(json.dumps(classes))
    rc, err = _bad(capsys, "export", "copick", res, "-o", out)
    assert rc == 2 and "class ghost_class has no particle in t0" in err, err
    _assert_nothing(out)
    assert main(["export", "copick", str(res), "-o", str(out), "--allow-empty", "--quiet"]) == 0
    assert _root(out).get_object("ghost-class") is not None and not _root(out).get_run("t0").get_picks("ghost-class")
    # an existing non-empty project: refused, then replaced with --overwrite (nothing twice)
    rc, err = _bad(capsys, "export", "copick", exported["res"], "-o", out)
    assert rc == 2 and "--overwrite" in err
    assert _root(out).get_object("ghost-class") is not None  # untouched
    assert main(["export", "copick", str(exported["res"]), "-o", str(out), "--overwrite", "--quiet"]) == 0
    assert main(["export", "copick", str(exported["res"]), "-o", str(out), "--overwrite", "--quiet"]) == 0
    root = _root(out)
    assert root.get_object("ghost-class") is None
    picks = root.get_run("t0").get_picks()
    assert len(picks) == 4 and sum(len(p.points) for p in picks) == 9
    assert len(root.get_run("t0").get_segmentations(is_instance=None, is_panoptic=None)) == 2 * (1 + 5 + 1)
    _assert_nothing(tmp_path / "no")  # and no staging folders beside
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_export_help_and_missing_format(capsys):
    assert main(["export"]) == 2
    assert "faket export copick" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------------
# the workflow key


def test_workflow_key_adds_the_export_job(tmp_path):
    sys.path.insert(0, str(ROOT / "tests"))
    from test_workflow import snakemake, tiny_config

    r = snakemake(tmp_path / "off", tiny_config(tmp_path), "-n", timeout=300)
    assert "export_copick" not in r.stdout
    (tmp_path / "on").mkdir()
    r = snakemake(tmp_path / "on", tiny_config(tmp_path / "on", export={"copick": True}), "-n", timeout=300)
    assert "export_copick" in r.stdout and "results/copick/copick_config.json" in r.stdout


@pytest.mark.slow
def test_workflow_writes_the_copick_project_once(tmp_path):
    """A real tiny run with export.copick: true writes results/copick/; re-running adds nothing."""
    sys.path.insert(0, str(ROOT / "tests"))
    from test_workflow import snakemake, tiny_config

    cfg = tiny_config(
        tmp_path,
        export={"copick": True},
        modalities=["faket", "noisy"],
        qc=False,
        tomograms={"count": 1, "prefix": "tiny", "given": []},
        style={"tilts_per_job": 0, "iterations": 5},
    )
    work = tmp_path / "run"
    snakemake(work, cfg)
    proj = work / "results" / "copick"
    root = _root(proj)
    run = root.get_run("tiny_000")
    truth = read_particles(work / "results" / "tiny_000" / "particles_bin2.csv")
    picks = run.get_picks(user_id="faket", session_id="0")  # copick's session of a tool's picks
    assert sum(len(p.points) for p in picks) == len(truth)  # no vesicles in the tiny layout
    assert sorted(t.tomo_type for t in run.get_voxel_spacing(20.0).tomograms) == ["wbp", "wbp-noisy"]
    r = snakemake(work, cfg)
    assert "Nothing to be done" in r.stdout + r.stderr
    snakemake(work, cfg, "-R", "export_copick")
    picks = _root(proj).get_run("tiny_000").get_picks()
    assert sum(len(p.points) for p in picks) == len(truth)


# --------------------------------------------------------------------------------------------------
# a real consumer: octopi (create-targets + one short train)


def _octopi():
    exe = (
        os.environ.get("FAKET_OCTOPI")
        or shutil.which("octopi")
        or (str(Path(sys.executable).parent / "octopi") if (Path(sys.executable).parent / "octopi").exists() else None)
    )
    return exe


@pytest.mark.slow
def test_octopi_targets_cover_our_particle_centres(exported, tmp_path):
    exe = _octopi()
    if exe is None:
        pytest.skip("octopi not installed (pip install octopi==1.7.0 in its own venv; set FAKET_OCTOPI=.../octopi)")
    res = _copy(exported, tmp_path)  # two runs (octopi splits runs into training and validation)
    shutil.copytree(res / "t0", res / "t1")
    assert main(["dataset", str(res), "-o", str(res / "dataset.csv"), "--quiet"]) == 0
    proj = tmp_path / "proj"
    assert main(["export", "copick", str(res), "-o", str(proj), "--quiet"]) == 0
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # octopi runs in its own venv
    env.update(OMP_NUM_THREADS="1", MLFLOW_TRACKING_URI=f"file://{tmp_path}/mlruns")
    r = subprocess.run(
        [
            exe,
            "create-targets",
            "-c",
            str(proj / "copick_config.json"),
            "--picks-user-id",
            "faket",
            "--tomo-uri",
            "wbp@10.0",
            "-rs",
            "0.7",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    run = _root(proj).get_run("t0")
    (tgt,) = run.get_segmentations(name="targets", user_id="octopi", voxel_size=10.0)
    target = tgt.numpy()
    assert target.shape == run.get_voxel_spacing(10.0).get_tomograms("wbp")[0].numpy().shape
    truth = read_particles(exported["res"] / "t0" / "particles_bin1.csv")
    truth = truth[truth.class_name != "vesicle"]
    idx = np.rint(truth[["z", "y", "x"]].to_numpy()).astype(int)
    labels = target[idx[:, 0], idx[:, 1], idx[:, 2]]
    assert (labels > 0).all(), labels  # every particle centre is in a target ball
    own = labels == truth.class_id.to_numpy()  # overlapping balls: octopi keeps the larger label
    assert own.mean() >= 0.8, (labels, truth.class_id.to_numpy())
    r = subprocess.run(
        [
            exe,
            "train",
            "-c",
            str(proj / "copick_config.json"),
            "--target-uri",
            "targets:octopi/1",
            "--tomo-uri",
            "wbp@10.0",
            "-dim",
            "16",
            "-bs",
            "2",
            "-nepochs",
            "2",
            "--val-interval",
            "1",
            "-o",
            str(tmp_path / "model"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=900,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert (tmp_path / "model" / "best_model.pth").is_file()
    hist = pd.read_csv(tmp_path / "model" / "results.csv")
    assert len(hist) == 2 and np.isfinite(hist["loss"]).all()
