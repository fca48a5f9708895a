"""Layouts: mask-exact non-overlap, labels at every centre, seeds, round trips, and the CLI."""

from __future__ import annotations

import json

import mrcfile
import numpy as np
import pandas as pd
import pytest

from faket import layout as L
from faket.formats.particles import read_particles, write_particles_csv
from faket.rotation import rotate_volume


def _blobs(n, pts_xyz, sigma=1.5):
    c = (n - 1) / 2
    z, y, x = np.meshgrid(*[np.arange(n) - c] * 3, indexing="ij")
    v = np.zeros((n,) * 3, np.float32)
    for px, py, pz in pts_xyz:
        v += np.exp(-((x - px) ** 2 + (y - py) ** 2 + (z - pz) ** 2) / (2 * sigma**2))
    return v


@pytest.fixture(scope="module")
def templates():
    return {
        "arm": _blobs(21, [(0, 0, 0), (3, 0, 0), (6, 0, 0), (6, 3, 0)]),  # elongated, asymmetric
        "pair": _blobs(15, [(0, 0, 0), (2, 2, 2)], sigma=1.8),
        "ring": np.clip(
            _blobs(19, [(5 * np.cos(a), 5 * np.sin(a), 0) for a in np.linspace(0, 2 * np.pi, 12, endpoint=False)]), 0, 1
        ),
    }


@pytest.fixture(scope="module")
def small_layout(templates):
    classes = [
        L.LayoutClass(1, "arm", templates["arm"], count=25),
        L.LayoutClass(2, "pair", templates["pair"], count=40),
        L.LayoutClass(3, "ring", templates["ring"], count=10),
        L.LayoutClass(4, "vesicle", L.vesicle_template(24, 10), count=1, isotropic=True),
        L.LayoutClass(5, "gold", L.fiducial_template(4, 10, value=5), count=4, isotropic=True),
    ]
    return classes, L.random_layout(classes, (40, 80, 80), seed=3, slab_z=(6, 34))


def _mask_of(row, cls, mask_threshold=0.1):
    """The particle's mask recomputed on its own: rotated template > threshold, plus the centre voxel."""
    cube, thr = L.prepare_template(cls.template, mask_threshold=mask_threshold)
    vol = cube if cls.isotropic else rotate_volume(cube, (row.rot, row.tilt, row.psi), order=1)
    m = vol > thr
    c = (m.shape[0] - 1) // 2
    m[c, c, c] = True
    return np.argwhere(m) - c + np.array([row.z, row.y, row.x], dtype=np.int64)


def test_random_layout_masks_centres_and_no_shared_voxels(small_layout):
    classes, lay = small_layout
    by_name = {c.name: c for c in classes}
    df = lay.particles
    assert lay.placed == {"arm": 25, "pair": 40, "ring": 10, "vesicle": 1, "gold": 4}
    assert list(df["particle_id"]) == list(range(1, len(df) + 1))
    assert lay.occupancy.dtype == np.int32 and lay.class_mask.dtype == np.uint8
    total = 0
    for row in df.itertuples(index=False):
        z, y, x = int(row.z), int(row.y), int(row.x)
        assert lay.occupancy[z, y, x] == row.particle_id
        assert lay.class_mask[z, y, x] == row.class_id
        vox = _mask_of(row, by_name[row.class_name])
        # inside the box and the slab
        assert vox[:, 0].min() >= 6 and vox[:, 0].max() < 34
        assert vox[:, 1:].min() >= 0 and vox[:, 1].max() < 80 and vox[:, 2].max() < 80
        got = lay.occupancy[vox[:, 0], vox[:, 1], vox[:, 2]]
        assert (got == row.particle_id).all()  # whole mask is this particle's
        total += len(vox)
    # the independently recomputed masks tile the occupancy exactly: no voxel belongs to two particles
    assert total == np.count_nonzero(lay.occupancy)
    ids = lay.occupancy[lay.occupancy > 0]
    cls_of = dict(zip(df["particle_id"], df["class_id"]))
    np.testing.assert_array_equal(lay.class_mask[lay.occupancy > 0], np.vectorize(cls_of.get)(ids))
    assert (lay.class_mask[lay.occupancy == 0] == 0).all()


def test_density_is_sum_of_rotated_templates(small_layout):
    classes, lay = small_layout
    by_name = {c.name: c for c in classes}
    want = np.zeros_like(lay.density)
    for row in lay.particles.itertuples(index=False):
        cls = by_name[row.class_name]
        cube, _ = L.prepare_template(cls.template)
        vol = cube if cls.isotropic else rotate_volume(cube, (row.rot, row.tilt, row.psi))
        c = (vol.shape[0] - 1) // 2
        sl_dst, sl_src = [], []
        for ax, ctr in enumerate((int(row.z), int(row.y), int(row.x))):
            a, b = ctr - c, ctr - c + vol.shape[ax]
            a2, b2 = max(a, 0), min(b, lay.density.shape[ax])
            sl_dst.append(slice(a2, b2))
            sl_src.append(slice(a2 - a, b2 - a))
        want[tuple(sl_dst)] += vol[tuple(sl_src)]
    np.testing.assert_allclose(lay.density, want, atol=1e-5)
    assert lay.density.dtype == np.float32


def test_orientations_vary_and_seed_reproduces(templates, small_layout):
    classes, lay = small_layout
    again = L.random_layout(classes, (40, 80, 80), seed=3, slab_z=(6, 34))
    np.testing.assert_array_equal(again.occupancy, lay.occupancy)
    np.testing.assert_array_equal(again.density, lay.density)
    pd.testing.assert_frame_equal(again.particles, lay.particles)
    other = L.random_layout(classes, (40, 80, 80), seed=4, slab_z=(6, 34))
    assert not np.array_equal(other.occupancy, lay.occupancy)
    arm = lay.particles[lay.particles["class_name"] == "arm"]
    assert arm["tilt"].std() > 20 and arm["rot"].nunique() == len(arm)
    iso = lay.particles[lay.particles["class_name"].isin(["vesicle", "gold"])]
    assert (iso[["rot", "tilt", "psi"]].to_numpy() == 0).all()


def test_round_trip_list_layout_list(small_layout, tmp_path, templates):
    classes, lay = small_layout
    p = tmp_path / "particles.csv"
    write_particles_csv(lay.particles, p)
    df = read_particles(p)
    pd.testing.assert_frame_equal(df, lay.particles)  # exact: ids, classes, positions, angles
    tmpl = {c.name: c.template for c in classes}
    again = L.place_particles(tmpl, df, (40, 80, 80), isotropic=["vesicle", "gold"])
    pd.testing.assert_frame_equal(again.particles, lay.particles)
    np.testing.assert_array_equal(again.occupancy, lay.occupancy)
    np.testing.assert_array_equal(again.class_mask, lay.class_mask)
    np.testing.assert_allclose(again.density, lay.density, atol=1e-6)
    assert again.overlap_voxels == 0 and again.centres_taken == []


def test_not_enough_room_says_how_many(templates):
    classes = [L.LayoutClass(1, "arm", templates["arm"], count=200)]
    with pytest.raises(L.NotEnoughRoom, match=r"only (\d+) of 200 requested particles fit \(arm \1/200\)") as ei:
        L.random_layout(classes, (24, 40, 40), seed=0, max_tries=200)
    n = ei.value.layout.placed["arm"]
    assert 0 < n < 200
    lay = L.random_layout(classes, (24, 40, 40), seed=0, max_tries=200, allow_fewer=True)
    assert lay.placed["arm"] == n == len(lay.particles)


def test_place_particles_subvoxel_and_overlap(templates):
    ball = L.fiducial_template(3, 10)
    df = pd.DataFrame(
        {
            "particle_id": [7, 9],
            "class_id": [2, 2],
            "class_name": ["b", "b"],
            "x": [10.3, 12.0],
            "y": [15.0, 15.0],
            "z": [8.0, 8.0],
            "rot": [0.0, 0.0],
            "tilt": [0.0, 0.0],
            "psi": [0.0, 0.0],
        }
    )
    lay = L.place_particles({"b": ball}, df.iloc[:1], (16, 30, 30))
    d = lay.density
    xs = np.arange(d.shape[2])
    assert abs((d.sum(axis=(0, 1)) * xs).sum() / d.sum() - 10.3) < 0.02
    assert lay.occupancy[8, 15, 10] == 7 and lay.class_mask[8, 15, 10] == 2
    both = L.place_particles({"b": ball}, df, (16, 30, 30))
    assert both.overlap_voxels > 0  # 1.7 voxels apart with radius 1.5: masks overlap
    assert both.occupancy[8, 15, 12] == 9 and both.occupancy[8, 15, 10] == 7  # centres still labelled
    assert both.centres_taken == []
    same = L.place_particles({"b": ball}, df.assign(x=[12.0, 12.2]), (16, 30, 30))
    assert same.centres_taken == [9]
    with pytest.raises(L.InputError, match="particle 9 .* outside the box"):
        L.place_particles({"b": ball}, df.assign(x=[10.0, 30.0]), (16, 30, 30))
    with pytest.raises(L.InputError, match="unknown class 'b'"):
        L.place_particles({"a": ball}, df, (16, 30, 30))


def test_vesicle_and_fiducial_templates():
    v = L.vesicle_template(40, 10, membrane_thickness_nm=4)
    n = v.shape[0]
    c = (n - 1) // 2
    assert v[c, c, c] < 1e-3  # hollow
    prof = v[c, c, c:]
    r_peaks = [i for i in range(1, len(prof) - 1) if prof[i] >= prof[i - 1] and prof[i] > prof[i + 1]]
    assert all(16 <= r <= 20 for r in r_peaks) and v.max() == pytest.approx(1.0, abs=1e-6)
    g = L.fiducial_template(10, 10, value=3.0)
    assert g.sum() == pytest.approx(3.0 * 4 / 3 * np.pi * 5**3, rel=0.03)
    assert g.max() == pytest.approx(3.0)


def test_counts_from_fractions():
    assert L.counts_from_fractions({"a": 0.1}, {"a": 50}, 10000) == {"a": 20}


# --------------------------------------------------------------------------------------------------
# spec schema (faket.layout.validate_spec; the CLI re-exports it)


def test_validate_spec_defaults_and_errors():
    from faket.cli import layout as cli_layout
    from faket.errors import InputError
    from faket.layout.templates import BUILTIN_NAMES

    assert cli_layout.validate_spec is L.validate_spec and cli_layout.default_spec is L.default_spec
    for empty in (None, {}):
        s = L.validate_spec(empty)
        assert s["box"] == [128, 256, 256] and s["voxel_size"] == 10.0 and s["classes"] == []
        assert s["vesicles"]["count"] == 0 and s["fiducials"]["count"] == 0
    s = L.validate_spec({"classes": [{"template": "ring"}], "vesicles": None}, "x.yaml")
    assert s["box"] == list(L.DEFAULT_BOX)  # no box -> faket layout's default
    assert s["classes"] == [{"template": "ring", "count": L.DEFAULT_COUNT_PER_CLASS}]
    assert s["vesicles"] == L.DEFAULT_VESICLES  # empty section = its defaults
    d = L.default_spec()
    assert [c["template"] for c in d["classes"]] == list(BUILTIN_NAMES)
    assert d["slab_thickness"] == L.DEFAULT_SLAB and d["fiducials"]["count"] == 5
    for bad, msg in (
        ({"box": [8, 8]}, "x.yaml.box: expected three"),
        ({"bx": 1}, "unknown key 'bx'"),
        ({"voxel_size": "big"}, "voxel_size: expected a number"),
        ({"classes": [{"count": 3}]}, "missing key 'template'"),
        ([1], "mapping"),
    ):
        with pytest.raises(InputError, match=msg.replace("[", r"\[")):
            L.validate_spec(bad, "x.yaml")


def test_class_table_built_once_for_random_and_listed_layouts():
    spec = L.validate_spec(
        {
            "box": [24, 48, 48],
            "slab_thickness": 20,
            "classes": [{"template": "globule", "name": "g", "count": 3}],
            "vesicles": {"diameter_nm": 16, "membrane_thickness_nm": 3, "contrast": 0.5},
            "fiducials": {"count": 2, "diameter_nm": 4},
        }
    )
    rand = {e["name"]: e for e in L.class_table(spec, 10.0)}
    assert list(rand) == ["g", "vesicle", "fiducial"]
    listed = {e["name"]: e for e in L.class_table(spec, 10.0, names=["fiducial", "vesicle", "g", "ring"])}
    for n in rand:  # a listed class is the same class as in a random layout (spec parameters kept)
        np.testing.assert_array_equal(listed[n]["density"], rand[n]["density"])
        assert listed[n]["isotropic"] == rand[n]["isotropic"]
    assert rand["vesicle"]["density"].max() == pytest.approx(0.5)
    from faket.errors import InputError

    with pytest.raises(InputError, match="l.csv: unknown class 'martian'"):
        L.class_table(spec, 10.0, names=["martian"], source="l.csv")
    res = L.make_layout(spec, seed=4)
    assert res.layout.placed == {"g": 3, "vesicle": 1, "fiducial": 2} and res.slab_z == (2, 22)
    assert {k: v["name"] for k, v in res.classes.items()} == {"1": "g", "2": "vesicle", "3": "fiducial"}
    again = L.make_layout(spec, particles=res.layout.particles)
    np.testing.assert_array_equal(again.layout.occupancy, res.layout.occupancy)
    np.testing.assert_allclose(again.layout.density, res.layout.density, atol=1e-5)


# --------------------------------------------------------------------------------------------------
# CLI


SMALL_SPEC = """
box: [32, 64, 64]
voxel_size: 10
slab_thickness: 24
classes:
  - template: globule
    count: 8
  - template: blob3
    name: three
    count: 6
vesicles:
  count: 1
  diameter_nm: 20
fiducials:
  count: 2
  diameter_nm: 5
"""


def _spec(tmp_path, text=SMALL_SPEC, name="spec.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_cli_layout_writes_everything(tmp_path, run_cli):
    out = tmp_path / "out"
    rc, _, err = run_cli("layout", "--spec", _spec(tmp_path), "-o", out, "--seed", 5)
    assert rc == 0, err
    for name in ("volume", "class_mask", "occupancy_mask"):
        assert (out / f"{name}.mrc").exists() and (out / f"{name}.json").exists()
    with mrcfile.open(out / "volume.mrc") as m:
        assert m.data.shape == (32, 64, 64) and float(m.voxel_size.x) == pytest.approx(10)
        vol = m.data.copy()
    occ = mrcfile.read(out / "occupancy_mask.mrc").astype(np.int64)
    cls = mrcfile.read(out / "class_mask.mrc").astype(np.int64)
    classes = json.loads((out / "classes.json").read_text())
    assert {k: v["name"] for k, v in classes.items()} == {"1": "globule", "2": "three", "3": "vesicle", "4": "fiducial"}
    df = read_particles(out / "particles.csv")
    assert df["class_name"].value_counts().to_dict() == {"globule": 8, "three": 6, "vesicle": 1, "fiducial": 2}
    for r in df.itertuples(index=False):
        assert occ[int(r.z), int(r.y), int(r.x)] == r.particle_id
        assert cls[int(r.z), int(r.y), int(r.x)] == r.class_id
        assert classes[str(r.class_id)]["name"] == r.class_name
    # slab 4..28: masks inside, only thin sub-threshold tails of the density outside
    assert (occ[:4] == 0).all() and (occ[28:] == 0).all() and (cls[:4] == 0).all()
    assert vol[4:28].sum() > 0.99 * vol.sum() and vol.max() > 1
    star = read_particles(out / "particles.star", voxel_size_a=10, box_zyx=(32, 64, 64))
    pd.testing.assert_frame_equal(star, df, check_exact=False, atol=1e-6)
    shrec = read_particles(out / "particle_locations.txt")
    np.testing.assert_array_equal(shrec[["x", "y", "z"]].to_numpy(), df[["x", "y", "z"]].to_numpy())
    sc = json.loads((out / "volume.json").read_text())
    assert sc["seed"] == 5 and sc["faket_step"] == "layout"
    assert sc["layout"]["placed"] == {"globule": 8, "three": 6, "vesicle": 1, "fiducial": 2}
    assert sc["layout"]["slab_z"] == [4, 28]
    # same seed -> same volume
    out2 = tmp_path / "out2"
    assert run_cli("layout", "--spec", _spec(tmp_path), "-o", out2, "--seed", 5)[0] == 0
    np.testing.assert_array_equal(mrcfile.read(out2 / "volume.mrc"), vol)


def test_cli_particles_round_trip(tmp_path, run_cli):
    out = tmp_path / "a"
    assert run_cli("layout", "--spec", _spec(tmp_path), "-o", out, "--seed", 2)[0] == 0
    for lst in ("particles.csv", "particle_locations.txt", "particles.star"):
        out2 = tmp_path / ("b_" + lst)
        rc, _, err = run_cli("layout", "--spec", _spec(tmp_path), "--particles", out / lst, "-o", out2)
        assert rc == 0, err
        np.testing.assert_array_equal(
            mrcfile.read(out2 / "occupancy_mask.mrc"), mrcfile.read(out / "occupancy_mask.mrc")
        )
        np.testing.assert_allclose(mrcfile.read(out2 / "volume.mrc"), mrcfile.read(out / "volume.mrc"), atol=1e-4)
    a = (out / "particles.csv").read_text()
    assert (tmp_path / "b_particles.csv" / "particles.csv").read_text() == a  # list -> layout -> list exact


def _fails(run_cli, tmp_path, *argv, match):
    out = tmp_path / "bad_out"
    rc, _, err = run_cli("layout", "-o", out, *argv)
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("faket layout: error:"), err
    assert match in lines[0], lines[0]
    assert not out.exists() or not any(out.iterdir())


def test_cli_bad_spec(tmp_path, run_cli):
    _fails(run_cli, tmp_path, "--spec", _spec(tmp_path, "box: [8, 8]\n"), match="box: expected three")
    _fails(run_cli, tmp_path, "--spec", _spec(tmp_path, "bx: [8, 8, 8]\n"), match="unknown key 'bx'")
    _fails(
        run_cli,
        tmp_path,
        "--spec",
        _spec(tmp_path, "classes:\n  - template: ring\n    cont: 3\n"),
        match="classes[0]: unknown key 'cont'",
    )
    _fails(
        run_cli,
        tmp_path,
        "--spec",
        _spec(tmp_path, "classes:\n  - template: ring\n    count: many\n"),
        match="classes[0].count: expected an integer",
    )
    _fails(run_cli, tmp_path, "--spec", _spec(tmp_path, "classes:\n  - template: nosuchclass\n"), match="nosuchclass")
    _fails(run_cli, tmp_path, "--spec", _spec(tmp_path, "box: [8, 8\n"), match="not valid YAML")
    _fails(
        run_cli,
        tmp_path,
        "--spec",
        _spec(tmp_path, "vesicles:\n  diameter_nm: -3\n"),
        match="vesicles.diameter_nm: must be positive",
    )
    _fails(
        run_cli,
        tmp_path,
        "--spec",
        _spec(tmp_path, "box: [8, 8, 8]\nslab_thickness: 9\n"),
        match="slab_thickness 9 is larger than the box Z size 8",
    )


def test_cli_bad_templates(tmp_path, run_cli):
    bad_mrc = tmp_path / "broken.mrc"
    bad_mrc.write_bytes(b"not an mrc file at all" * 10)
    _fails(run_cli, tmp_path, "--spec", _spec(tmp_path, f"classes:\n  - template: {bad_mrc}\n"), match="broken.mrc")
    _fails(
        run_cli,
        tmp_path,
        "--spec",
        _spec(tmp_path, f"classes:\n  - template: {tmp_path}/missing.mrc\n"),
        match="missing.mrc",
    )
    pdb = tmp_path / "empty.pdb"
    pdb.write_text("HEADER    EMPTY\nEND\n")
    _fails(run_cli, tmp_path, "--spec", _spec(tmp_path, f"classes:\n  - template: {pdb}\n"), match="empty.pdb")


def test_cli_cannot_fit_and_allow_fewer(tmp_path, run_cli):
    spec = _spec(tmp_path, "box: [24, 40, 40]\nmax_tries: 100\nclasses:\n  - template: ribosome_like\n    count: 50\n")
    _fails(run_cli, tmp_path, "--spec", spec, match="of 50 requested particles fit (ribosome_like ")
    out = tmp_path / "fewer"
    rc, _, err = run_cli("layout", "--spec", spec, "-o", out, "--allow-fewer")
    assert rc == 0 and "warning: only" in err
    n = len(read_particles(out / "particles.csv"))
    assert 0 < n < 50


def test_cli_bad_particle_lists(tmp_path, run_cli):
    spec = _spec(tmp_path)
    good = "particle_id,class_id,class_name,x,y,z,rot,tilt,psi\n1,1,globule,10,10,10,0,0,0\n"
    p = tmp_path / "l.csv"
    p.write_text(good + "2,1,globule,12,abc,10,0,0,0\n")
    _fails(run_cli, tmp_path, "--spec", spec, "--particles", p, match="l.csv: line 3: y is not a number")
    p.write_text(good + "2,1,globule,12,10\n")
    _fails(run_cli, tmp_path, "--spec", spec, "--particles", p, match="l.csv: line 3:")
    p.write_text(good + "2,1,globule,100,10,10,0,0,0\n")
    _fails(run_cli, tmp_path, "--spec", spec, "--particles", p, match="particle 2 at x=100")
    p.write_text(good + "2,2,martian,12,10,10,0,0,0\n")
    _fails(run_cli, tmp_path, "--spec", spec, "--particles", p, match="unknown class 'martian'")
    t = tmp_path / "particle_locations.txt"
    t.write_text("globule 10 10 10 0 0 0\nglobule 10 x 10 0 0 0\n")
    _fails(run_cli, tmp_path, "--spec", spec, "--particles", t, match="particle_locations.txt: line 2: y")


def test_cli_real_templates_and_fraction(shared_data, tmp_path, run_cli):
    pdb = shared_data / "pdb" / "1bxn.pdb"
    mrc = shared_data / "maps" / "polnet_templates_10A" / "4v94.mrc"
    spec = _spec(
        tmp_path,
        f"box: [40, 96, 96]\nslab_thickness: 36\nclasses:\n  - template: {pdb}\n    count: 4\n"
        f"  - template: {mrc}\n    name: 4V94\n    fraction: 0.04\n",
    )
    out = tmp_path / "real"
    rc, _, err = run_cli("layout", "--spec", spec, "-o", out, "--cache-dir", tmp_path / "cache", "--shape", "48,96,96")
    assert rc == 0, err
    classes = json.loads((out / "classes.json").read_text())
    assert classes["1"]["name"] == "1bxn" and classes["1"]["source"] == str(pdb)
    assert classes["2"]["name"] == "4V94" and 25 < classes["2"]["diameter_nm"] < 45
    cls = mrcfile.read(out / "class_mask.mrc")
    # the requested volume fraction of the slab (36 x 96 x 96) is met by the rotated masks
    assert (cls == 2).sum() / (36 * 96 * 96) == pytest.approx(0.04, rel=0.35)
    df = read_particles(out / "particles.csv")
    assert (df["class_name"] == "1bxn").sum() == 4
    occ = mrcfile.read(out / "occupancy_mask.mrc")
    assert all(occ[int(r.z), int(r.y), int(r.x)] == r.particle_id for r in df.itertuples())
    assert 6 <= df["z"].min() and df["z"].max() < 42  # slab 6..42 of the 48-voxel --box
