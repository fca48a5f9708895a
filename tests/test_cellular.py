"""Cellular layouts (issue 15): membranes, membrane proteins, filaments - geometry, labels, spec, CLI."""

from __future__ import annotations

import json

import mrcfile
import numpy as np
import pandas as pd
import pytest

from faket import layout as L
from faket.errors import InputError
from faket.layout.filaments import FILAMENT_TYPES, random_path
from faket.layout.membranes import Membrane, render_membrane
from faket.rotation import relion_to_matrix, rotate_volume


def _make(spec: dict, seed: int = 0, **kw):
    return L.make_layout(L.validate_spec(spec, "test"), seed=seed, **kw)


def _axis_frame(pts_xyz: np.ndarray):
    """Unit axis and two perpendicular unit vectors of a straight polyline."""
    a = pts_xyz[-1] - pts_xyz[0]
    a /= np.linalg.norm(a)
    e1 = np.cross(a, [0.0, 0.0, 1.0] if abs(a[2]) < 0.9 else [1.0, 0.0, 0.0])
    e1 /= np.linalg.norm(e1)
    return a, e1, np.cross(a, e1)


def _cylindrical(vol: np.ndarray, p0, a, e1, e2):
    z, y, x = np.nonzero(vol > 0)
    q = np.stack([x, y, z], 1).astype(float) - p0
    h = q @ a
    u, v = q @ e1, q @ e2
    return h, np.hypot(u, v), np.arctan2(v, u), vol[z, y, x]


# --------------------------------------------------------------------------------------------------
# filaments


@pytest.fixture(scope="module")
def microtubule():
    # 5 A voxels: the 13 protofilaments (5 nm apart on the wall) are well resolved
    res = _make(
        {
            "box": [72, 128, 160],
            "voxel_size": 5.0,
            "filaments": [{"type": "microtubule", "length_nm": 40, "persistence_length_nm": 1e12}],
        },
        seed=3,
    )
    return res


def test_microtubule_radial_profile_peaks_at_the_wall_and_has_13_fold_symmetry(microtubule):
    lay = microtubule.layout
    pts = lay.filaments[["x", "y", "z"]].to_numpy()
    a, e1, e2 = _axis_frame(pts)
    h, rho, phi, w = _cylindrical(lay.density, pts[0], a, e1, e2)
    vs_nm = 0.5
    inner = (h > 6 / vs_nm) & (h < (40 - 6) / vs_nm)  # away from the ends
    bins = np.arange(0, 16 / vs_nm + 1)
    prof = np.bincount(np.digitize(rho[inner], bins), weights=w[inner], minlength=len(bins) + 1)[1 : len(bins)]
    area = np.bincount(np.digitize(rho[inner], bins), minlength=len(bins) + 1)[1 : len(bins)] + 1e-9
    mean = prof / np.maximum(area, 1)
    r_peak_nm = (np.argmax(mean) + 0.5) * vs_nm
    assert 9.5 <= r_peak_nm <= 11.5  # protofilament wall at 10.5 nm
    assert mean[: int(5 / vs_nm)].max() < 0.05 * mean.max()  # hollow lumen
    # outer diameter ~25 nm: density falls to < 10 % of the wall's by 13.5 nm
    assert mean[int(13.5 / vs_nm)] < 0.1 * mean.max()
    # cross-section at the wall radius: the angular profile's strongest harmonic is 13
    ring = inner & (np.abs(rho - 10.5 / vs_nm) < 1.5)
    ang = np.bincount(((phi[ring] + np.pi) / (2 * np.pi) * 104).astype(int) % 104, weights=w[ring], minlength=104)
    spec = np.abs(np.fft.rfft(ang - ang.mean()))
    assert int(np.argmax(spec[1:])) + 1 == 13
    assert spec[13] > 5 * np.median(spec[1:30])


def test_microtubule_subunits_are_dimers_on_13_protofilaments(microtubule):
    su = microtubule.layout.subunits
    assert sorted(su["strand"].unique()) == list(range(13))
    # along one protofilament, consecutive dimers are 8 nm apart
    for pf in (0, 7):
        p = su[su["strand"] == pf][["x", "y", "z"]].to_numpy()
        d = np.linalg.norm(np.diff(p, axis=0), axis=1) * 0.5
        assert np.allclose(d, 8.0, atol=0.05)
    # each dimer's local z (filament axis) is the tangent; local x points away from the axis
    pts = microtubule.layout.filaments[["x", "y", "z"]].to_numpy()
    a, _, _ = _axis_frame(pts)
    R = relion_to_matrix(su[["rot", "tilt", "psi"]].to_numpy())
    assert np.all(np.abs(R[:, :, 2] @ a) > 0.999)
    q = su[["x", "y", "z"]].to_numpy() - pts[0]
    radial = q - (q @ a)[:, None] * a
    assert np.allclose(np.linalg.norm(radial, axis=1) * 0.5, 10.5, atol=0.05)
    assert np.all(np.einsum("ij,ij->i", R[:, :, 0], radial / np.linalg.norm(radial, axis=1)[:, None]) > 0.999)


def test_actin_repeats_with_its_helical_rise_and_twist():
    res = _make(
        {
            "box": [48, 128, 128],
            "voxel_size": 5.0,
            "filaments": [{"type": "actin", "length_nm": 60, "persistence_length_nm": 1e12}],
        },
        seed=5,
    )
    lay = res.layout
    su = lay.subunits.sort_values("subunit")
    pts = lay.filaments[["x", "y", "z"]].to_numpy()
    a, e1, e2 = _axis_frame(pts)
    q = (su[["x", "y", "z"]].to_numpy() - pts[0]) * 0.5  # nm
    h = q @ a
    phi = np.degrees(np.arctan2(q @ e2, q @ e1))
    assert np.allclose(np.diff(h), 2.75, atol=0.02)
    dphi = (np.diff(phi) + 180) % 360 - 180
    assert np.allclose(dphi, -166.7, atol=0.2)
    assert list(su["strand"][:4]) == [0, 1, 0, 1]
    # the density repeats under the screw (rise 2.75 nm, twist -166.7 deg), not under the other hand
    from scipy.ndimage import map_coordinates

    z, y, x = np.nonzero(lay.density > 0.2 * lay.density.max())
    p = np.stack([x, y, z], 1).astype(float)
    hh = (p - pts[0]) @ a * 0.5
    p = p[(hh > 10) & (hh < 45)]

    def screw(twist_deg):
        t = np.radians(twist_deg)
        rel = p - pts[0]
        ax = (rel @ a)[:, None] * a
        perp = rel - ax
        rot = perp * np.cos(t) + np.cross(a, perp) * np.sin(t) + a * (a @ perp.T)[:, None] * (1 - np.cos(t))
        moved = pts[0] + ax + rot + a * 2.75 / 0.5
        return map_coordinates(lay.density, moved[:, ::-1].T, order=1)

    here = map_coordinates(lay.density, p[:, ::-1].T, order=1)
    good = np.corrcoef(here, screw(-166.7))[0, 1]
    wrong = np.corrcoef(here, screw(166.7))[0, 1]
    assert good > 0.95 and wrong < good - 0.3


def test_random_path_has_the_persistence_length():
    rng = np.random.default_rng(0)
    lp, n = 40.0, 120
    dots = []
    for _ in range(400):
        pts = random_path(rng, n, lp, (-1e6,) * 3, (1e6,) * 3, start=(0, 0, 0))
        t = np.diff(pts, axis=0)
        t /= np.linalg.norm(t, axis=1)[:, None]
        dots.append(t @ t[0])
    c = np.mean(dots, axis=0)
    for s in (10, 40, 80):
        assert c[s] == pytest.approx(np.exp(-s / lp), abs=0.04)


def test_filaments_stay_in_the_slab_and_out_of_other_structures():
    res = _make(
        {
            "box": [48, 128, 128],
            "slab_thickness": 40,
            "membranes": [{"shape": "sphere", "size_nm": 26, "count": 2}],
            "filaments": [
                {"type": "actin", "count": 4, "length_nm": 80, "persistence_length_nm": 200},
                {"type": "microtubule", "count": 1, "length_nm": 60},
            ],
        },
        seed=2,
    )
    lay = res.layout
    assert res.slab_z == (4, 44)
    fil = lay.instances[lay.instances["kind"] == "filament"]
    assert len(fil) == 5
    for r in fil.itertuples():
        z, y, x = np.nonzero(lay.occupancy == r.instance_id)
        assert len(z) > 0 and z.min() >= 4 and z.max() < 44
        pts = lay.filaments[lay.filaments["filament_id"] == r.item_id][["x", "y", "z"]].to_numpy()
        # every voxel of a filament is near its own polyline (nothing else was painted with its id)
        dense = np.concatenate([np.linspace(pts[i], pts[i + 1], 9) for i in range(len(pts) - 1)])
        vox = np.stack([x, y, z], 1)
        d = np.sqrt(((vox[:, None, :] - dense[None, :, :]) ** 2).sum(-1)).min(1)
        outer = FILAMENT_TYPES[r.class_name].outer_radius_nm()
        assert d.max() <= outer + 1.5


# --------------------------------------------------------------------------------------------------
# membranes and membrane proteins


def test_bilayer_has_two_dense_leaflets_and_a_lighter_core():
    m = Membrane("plane", np.array([20.0, 20.0, 20.0]), np.eye(3), np.zeros(3), thickness=9.0)
    flat, vals, mask = render_membrane(m, (40, 40, 40), (0, 40), contrast=1.0)
    vol = np.zeros(40**3, np.float32)
    vol[flat] = vals
    prof = vol.reshape(40, 40, 40)[:, 20, 20]
    peaks = [z for z in range(1, 39) if prof[z] >= prof[z - 1] and prof[z] >= prof[z + 1] and prof[z] > 0.5]
    assert peaks == [17, 23]  # heads at +-0.35 * 9 = +-3.15 voxels
    assert prof[20] < 0.6 * prof[17] and prof[20] > 0.2  # lighter (not empty) core
    assert prof.max() == pytest.approx(1.0, abs=0.02)
    m_vol = np.zeros(40**3, bool)
    m_vol[flat[mask]] = True
    assert np.flatnonzero(m_vol.reshape(40, 40, 40)[:, 20, 20]).tolist() == list(range(16, 25))


@pytest.fixture(scope="module")
def cell():
    spec = {
        "box": [64, 128, 128],
        "slab_thickness": 60,
        "classes": [
            {"template": "globule", "count": 30},
            {
                "template": "barrel",
                "name": "channel",
                "membrane": "ves",
                "count": 5,
                "leaflet": "outer",
                "insertion_nm": 2.0,
            },
            {
                "template": "rod",
                "name": "inside",
                "membrane": "ves",
                "count": 3,
                "leaflet": "inner",
                "axis": [1, 0, 0],
                "insertion_nm": 6.0,
            },
            {
                "template": "tripod",
                "name": "onplane",
                "membrane": "pm",
                "count": 4,
                "leaflet": "both",
                "insertion_nm": 7.0,
            },
        ],
        "membranes": [
            {"shape": "sphere", "name": "ves", "size_nm": 50},
            {"shape": "plane", "name": "pm", "normal": [0.2, 0.0, 1.0]},
            {"shape": "ellipsoid", "size_nm": [22, 16, 12]},
            {"shape": "tube", "size_nm": 18, "length_nm": 50},
        ],
        "filaments": [{"type": "actin", "count": 2, "length_nm": 60}],
    }
    return spec, _make(spec, seed=7)


def test_membrane_proteins_point_along_the_local_normal(cell):
    spec, res = cell
    lay = res.layout
    df = lay.particles
    mem = lay.membranes.set_index("class_name")
    ves = mem.loc["ves"]
    c = ves[["x", "y", "z"]].to_numpy(float)
    r_mid = ves["radius_x_nm"] - ves["thickness_nm"] / 2  # nm = voxels at 10 A
    for name, axis, side, ins in (("channel", [0, 0, 1], 1, 2.0), ("inside", [1, 0, 0], -1, 6.0)):
        rows = df[df["class_name"] == name]
        assert len(rows) == {"channel": 5, "inside": 3}[name]
        p = rows[["x", "y", "z"]].to_numpy() - c
        n = p / np.linalg.norm(p, axis=1)[:, None]
        # centre at the requested depth on the requested side of the mid-surface
        assert np.allclose(np.linalg.norm(p, axis=1), r_mid + side * ins, atol=1e-6)
        ax = relion_to_matrix(rows[["rot", "tilt", "psi"]].to_numpy()) @ np.asarray(axis, float)
        ang = np.degrees(np.arccos(np.clip(np.einsum("ij,ij->i", ax, side * n), -1, 1)))
        assert ang.max() < 2.0
    # plane: axis along +-normal ("both" leaflets), spins differ
    rows = df[df["class_name"] == "onplane"]
    nrm = np.array([0.2, 0.0, 1.0]) / np.linalg.norm([0.2, 0.0, 1.0])
    ax = relion_to_matrix(rows[["rot", "tilt", "psi"]].to_numpy())[:, :, 2]
    assert np.all(np.degrees(np.arccos(np.clip(np.abs(ax @ nrm), 0, 1))) < 2.0)
    x_axes = relion_to_matrix(rows[["rot", "tilt", "psi"]].to_numpy())[:, :, 0]
    assert np.abs(x_axes @ x_axes.T - np.eye(len(rows))).max() > 0.1


def test_no_two_structures_share_a_voxel_and_labels_agree(cell):
    spec, res = cell
    lay = res.layout
    inst = lay.instances.set_index("instance_id")
    occ = lay.occupancy
    ids = np.unique(occ[occ > 0])
    assert set(ids) == set(inst.index)  # every structure is in the mask, once
    assert list(inst.index) == list(range(1, len(inst) + 1))
    # the class mask is the class of the voxel's instance
    lut = np.zeros(len(inst) + 1, np.int64)
    lut[inst.index] = inst["class_id"]
    np.testing.assert_array_equal(lay.class_mask.astype(np.int64), lut[occ])
    kinds = {v["name"]: v["kind"] for v in res.classes.values()}
    assert kinds["ves"] == "membrane" and kinds["actin"] == "filament" and kinds["channel"] == "membrane_protein"
    assert kinds["globule"] == "particle"
    # a soluble particle's own mask (recomputed alone) is all its own: nobody else took a voxel of it
    tmpl = {c["name"]: c for c in L.class_table(L.validate_spec(spec), 10.0)}
    shape = np.asarray(occ.shape)
    for r in lay.particles.itertuples(index=False):
        t = tmpl[r.class_name]
        cube, thr = L.prepare_template(t["density"])
        czyx = np.array([r.z, r.y, r.x])
        c0 = np.floor(czyx + 0.5).astype(int)
        vol = rotate_volume(cube, (r.rot, r.tilt, r.psi), order=1, shift_zyx=czyx - c0)
        m = vol > thr
        k = (m.shape[0] - 1) // 2
        m[k, k, k] = True
        vox = np.argwhere(m) - k + c0
        vox = vox[np.all((vox >= 0) & (vox < shape), axis=1)]
        assert np.all(occ[tuple(vox.T)] == r.particle_id), r
    # a membrane's own mask (recomputed alone) belongs to it, or to a protein sitting in it
    for r in lay.membranes.itertuples(index=False):
        own = occ.reshape(-1)
        rows = inst[(inst["kind"] == "membrane_protein")]
        allowed = {r.instance_id} | set(rows.index)
        n_own = int((occ == r.instance_id).sum())
        assert n_own > 0 and n_own <= r.n_voxels
        mm = lay.membrane_mask.reshape(-1)
        assert set(np.unique(own[mm == 1])) <= allowed | set(lay.membranes["instance_id"])
    # membrane_mask = the membranes' bilayer voxels: every membrane voxel of the occupancy is in it
    mem_ids = lay.membranes["instance_id"].to_numpy()
    assert np.all(lay.membrane_mask[np.isin(occ, mem_ids)] == 1)
    # everything lies inside the slab (2..62)
    z = np.nonzero(occ)[0]
    assert z.min() >= 2 and z.max() < 62


def test_membrane_mask_matches_the_geometry(cell):
    _, res = cell
    lay = res.layout
    r = lay.membranes.set_index("class_name").loc["ves"]
    c = r[["x", "y", "z"]].to_numpy(float)
    r_mid = r["radius_x_nm"] - r["thickness_nm"] / 2
    half = r["thickness_nm"] / 2  # nm = voxels at 10 A
    z, y, x = np.nonzero(lay.occupancy == r["instance_id"])
    d = np.sqrt((x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2)
    assert np.all(np.abs(d - r_mid) <= half + 1e-6)  # the membrane's voxels are its bilayer
    zz, yy, xx = np.indices(lay.membrane_mask.shape)
    dd = np.sqrt((xx - c[0]) ** 2 + (yy - c[1]) ** 2 + (zz - c[2]) ** 2)
    shell = np.abs(dd - r_mid) <= half
    assert np.all(lay.membrane_mask[shell] == 1)  # the whole bilayer, proteins or not
    assert shell.sum() == pytest.approx(4 * np.pi * r_mid**2 * 2 * half, rel=0.05)


def test_cellular_layout_is_seeded():
    spec = {
        "box": [40, 80, 80],
        "classes": [{"template": "globule", "count": 10}, {"template": "blob3", "membrane": "m", "count": 3}],
        "membranes": [{"shape": "sphere", "name": "m", "size_nm": 30}],
        "filaments": [{"type": "actin", "length_nm": 40}],
    }
    a, b, c = _make(spec, seed=1), _make(spec, seed=1), _make(spec, seed=2)
    np.testing.assert_array_equal(a.layout.density, b.layout.density)
    np.testing.assert_array_equal(a.layout.occupancy, b.layout.occupancy)
    pd.testing.assert_frame_equal(a.layout.subunits, b.layout.subunits)
    assert not np.array_equal(a.layout.occupancy, c.layout.occupancy)


def test_impossible_structures_error_or_allow_fewer():
    spec = {
        "box": [30, 64, 64],
        "membranes": [{"shape": "sphere", "size_nm": 40}],
        "filaments": [{"type": "actin", "count": 2, "length_nm": 40}],
    }
    with pytest.raises(L.NotEnoughRoom, match=r"sphere_membrane 0/1"):
        _make(spec)
    res = _make(spec, allow_fewer=True)
    assert res.layout.placed == {"sphere_membrane": 0, "actin": 2}
    assert "only 2 of 3 requested structures fit" in res.warnings[0]


def test_spec_errors_name_the_key():
    bad = [
        ({"membranes": [{"shape": "torus"}]}, "membranes[0].shape: expected one of"),
        ({"membranes": [{"shape": "sphere", "radius": 3}]}, "membranes[0]: unknown key 'radius'"),
        ({"membranes": [{"shape": "sphere", "size_nm": "big"}]}, "size_nm: expected a number"),
        ({"membranes": [{"shape": "ellipsoid", "size_nm": 30}]}, "three outer semi-axes"),
        ({"membranes": [{"shape": "plane", "size_nm": 30}]}, "does not apply to a plane"),
        ({"membranes": [{"shape": "plane", "normal": [0, 0]}]}, "normal: expected three numbers"),
        ({"membranes": [{"count": 2}]}, "missing key 'shape'"),
        ({"filaments": [{"type": "spaghetti"}]}, "filaments[0].type: expected one of"),
        ({"filaments": [{"type": "actin", "twist_deg": 3}]}, "applies to custom filaments only"),
        ({"filaments": [{"type": "custom", "template": "ring"}]}, "needs rise_nm"),
        ({"filaments": [{"type": "actin", "length_nm": -4}]}, "length_nm: must be positive"),
        ({"classes": [{"template": "ring", "membrane": "nope"}]}, "no membrane named 'nope'"),
        ({"classes": [{"template": "ring", "insertion_nm": 2}]}, "needs membrane"),
        (
            {
                "membranes": [{"shape": "sphere", "name": "m"}],
                "classes": [{"template": "ring", "membrane": "m", "leaflet": "middle"}],
            },
            "leaflet: expected one of",
        ),
    ]
    for raw, msg in bad:
        with pytest.raises(InputError) as e:
            L.validate_spec(raw, "s.yaml")
        assert msg in str(e.value), (raw, str(e.value))


def test_custom_filament_from_a_template():
    res = _make(
        {
            "box": [40, 80, 80],
            "filaments": [
                {
                    "type": "custom",
                    "template": "blob3",
                    "rise_nm": 6.0,
                    "twist_deg": 90,
                    "radius_nm": 1.0,
                    "length_nm": 50,
                    "persistence_length_nm": 1e9,
                }
            ],
        },
        seed=4,
    )
    su = res.layout.subunits
    assert len(su) == 9  # 0, 6, ..., 48 nm
    p = su[["x", "y", "z"]].to_numpy()
    assert np.allclose(np.linalg.norm(np.diff(p, axis=0), axis=1), np.hypot(6.0, np.sqrt(2)), atol=0.05)
    R = relion_to_matrix(su[["rot", "tilt", "psi"]].to_numpy())
    cosang = np.einsum("ij,ij->i", R[:-1, :, 0], R[1:, :, 0])
    assert np.allclose(cosang, 0.0, atol=1e-3)  # 90 degrees of twist per subunit
    assert res.layout.occupancy.max() == 1 and res.classes["1"]["kind"] == "filament"


# --------------------------------------------------------------------------------------------------
# CLI


def test_cli_writes_the_cellular_files(tmp_path, run_cli):
    import starfile

    spec = tmp_path / "cell.yaml"
    spec.write_text("""
box: [48, 96, 96]
classes:
  - {template: globule, count: 10}
  - {template: barrel, name: channel, membrane: ves, count: 3}
membranes:
  - {shape: sphere, name: ves, size_nm: 36}
filaments:
  - {type: actin, count: 2, length_nm: 50}
""")
    out = tmp_path / "out"
    rc, _, err = run_cli("layout", "--spec", spec, "-o", out, "--seed", 3)
    assert rc == 0, err
    for f in (
        "membrane_mask.mrc",
        "membrane_mask.json",
        "instances.csv",
        "membranes.csv",
        "filaments.csv",
        "filaments.star",
        "filament_subunits.csv",
        "filament_subunits.star",
    ):
        assert (out / f).exists(), f
    classes = json.loads((out / "classes.json").read_text())
    assert [v["kind"] for v in classes.values()] == ["particle", "membrane_protein", "membrane", "filament"]
    occ = mrcfile.read(out / "occupancy_mask.mrc")
    inst = pd.read_csv(out / "instances.csv")
    assert set(np.unique(occ[occ > 0])) == set(inst["instance_id"])
    parts = pd.read_csv(out / "particles.csv")
    assert (parts["class_name"] == "channel").sum() == 3 and len(parts) == 13
    star = starfile.read(out / "filaments.star")
    fil = pd.read_csv(out / "filaments.csv")
    assert sorted(star["rlnHelicalTubeID"].unique()) == [1, 2] == sorted(fil["filament_id"].unique())
    np.testing.assert_allclose(star["rlnCenteredCoordinateXAngst"], (fil["x"] - 48) * 10.0)
    sub = starfile.read(out / "filament_subunits.star")
    assert len(sub) == len(pd.read_csv(out / "filament_subunits.csv")) and "rlnAngleRot" in sub
    mm = mrcfile.read(out / "membrane_mask.mrc")
    assert set(np.unique(mm)) == {0.0, 1.0}  # float32 like the other masks
    # faket evaluate on a cellular layout: picks on a membrane or a filament are false positives (instances.csv
    # beside the occupancy mask says which ids are not particles), not "id not in the truth table"
    picks = parts[["x", "y", "z", "class_name"]].copy()
    extra = []
    for kind in ("membrane", "filament"):
        iid = int(inst.loc[inst["kind"] == kind, "instance_id"].iloc[0])
        z, y, x = np.argwhere(occ == iid)[0]
        extra.append({"x": x, "y": y, "z": z, "class_name": "globule"})
    pd.concat([picks, pd.DataFrame(extra)]).to_csv(tmp_path / "picks.csv", index=False)
    for rules in ("shrec", "faket"):
        rc, _, err = run_cli(
            "evaluate",
            "--truth",
            out / "particles.csv",
            "--occupancy",
            out / "occupancy_mask.mrc",
            "--pred",
            tmp_path / "picks.csv",
            "--rules",
            rules,
            "-o",
            tmp_path / f"{rules}.json",
        )
        assert rc == 0, err
        loc = json.loads((tmp_path / f"{rules}.json").read_text())["localisation"]
        assert loc["recall"] == 1.0 and loc["precision"] == pytest.approx(13 / 15), rules
    # bad membrane spec: one line, exit 2
    spec.write_text("membranes:\n  - {shape: sphere, size_nm: [1, 2, 3]}\n")
    rc, _, err = run_cli("layout", "--spec", spec, "-o", tmp_path / "bad")
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "one outer diameter" in err


def test_help_documents_every_spec_key():
    from faket.cli import layout as cli

    for keys in (L._TOP_KEYS, L._CLASS_KEYS, L._VESICLE_KEYS, L._FIDUCIAL_KEYS, L._MEMBRANE_KEYS, L._FILAMENT_KEYS):
        for k in keys:
            assert f" {k}: " in cli.DESCRIPTION or f"- {k}: " in cli.DESCRIPTION, k
    import yaml

    # the documented spec block is a valid spec (after taking one of each alternative)
    block = cli.DESCRIPTION.split("::\n\n", 2)[2].split("\n\nClass ids")[0]
    raw = yaml.safe_load(block)
    raw["classes"][0].pop("fraction")
    raw["membranes"][0] = {
        k: v
        for k, v in raw["membranes"][0].items()
        if k in ("shape", "name", "count", "size_nm", "thickness_nm", "contrast")
    }
    raw["filaments"][0] = {
        k: v for k, v in raw["filaments"][0].items() if k not in ("template", "rise_nm", "twist_deg", "radius_nm")
    }
    spec = L.validate_spec(raw, "help")
    assert spec["filaments"][0]["persistence_length_nm"] == 5.0e6 and spec["classes"][0]["membrane"] == "pm"


def test_curved_plane_follows_its_sphere_and_normal():
    for k in (4.0, -4.0):  # 1/um: radius 250 nm = 250 voxels at 10 A
        res = _make(
            {
                "box": [60, 96, 96],
                "membranes": [{"shape": "plane", "name": "pm", "curvature": k}],
                "classes": [{"template": "globule", "membrane": "pm", "count": 4, "insertion_nm": 1}],
            },
            seed=1,
        )
        lay = res.layout
        r = lay.membranes.iloc[0]
        R = relion_to_matrix([r.rot, r.tilt, r.psi])
        nrm = R[:, 2]
        centre = np.array([r.x, r.y, r.z]) + nrm * 1000.0 / k  # centre of curvature
        z, y, x = np.nonzero(lay.occupancy == r.instance_id)
        d = np.linalg.norm(np.stack([x, y, z], 1) - centre, axis=1)
        assert np.all(np.abs(d - 250.0) <= 4.5 / 2 + 1e-6)  # the bilayer lies on the sphere
        p = lay.particles[["x", "y", "z"]].to_numpy()
        ax = relion_to_matrix(lay.particles[["rot", "tilt", "psi"]].to_numpy())[:, :, 2]
        radial = (centre - p) * np.sign(k)  # normal of the curved sheet (+normal side)
        radial /= np.linalg.norm(radial, axis=1)[:, None]
        assert np.degrees(np.arccos(np.clip(np.einsum("ij,ij->i", ax, radial), -1, 1))).max() < 2.0
        assert np.allclose(np.linalg.norm(p - centre, axis=1), 250.0 - np.sign(k) * 1.0, atol=1e-6)


def test_binned_labels_keep_every_structure(cell, tmp_path, run_cli):
    """`faket labels` on the masks and particle list of a cellular layout only (no cellular files): every
    membrane and filament keeps voxels in the binned occupancy mask (as unlisted ids, through the sidecar's
    id map)."""
    from faket.formats.mrc import write_mrc

    _, res = cell
    lay = res.layout
    d = tmp_path / "lay"
    d.mkdir()
    write_mrc(d / "class_mask.mrc", lay.class_mask.astype(np.float32), 10.0)
    write_mrc(d / "occupancy_mask.mrc", lay.occupancy.astype(np.float32), 10.0)
    from faket.formats.particles import write_particles_csv

    write_particles_csv(lay.particles, d / "particles.csv")
    rc, _, err = run_cli("labels", d, "-o", tmp_path / "lab", "--bin", "2,4", "--no-full-lists")
    assert rc == 0, err
    for b in (2, 4):
        occ_b = mrcfile.read(tmp_path / "lab" / f"occupancy_mask_bin{b}.mrc").astype(np.int64)
        cls_b = mrcfile.read(tmp_path / "lab" / f"class_mask_bin{b}.mrc").astype(np.int64)
        side = json.loads((tmp_path / "lab" / f"occupancy_mask_bin{b}.json").read_text())
        idmap = {int(k): v for k, v in side["particle_id_map"].items()}
        for r in lay.instances[lay.instances["kind"].isin(["membrane", "filament"])].itertuples():
            vox = occ_b == idmap[r.instance_id]
            assert vox.sum() >= 0.5 * (lay.occupancy == r.instance_id).sum() / b**3, (b, r)
            assert np.all(cls_b[vox] == r.class_id)


def _write_cellular_layout(res, d):
    """A faket layout folder of a cellular layout made in-process (the files faket layout writes)."""
    from faket.formats.mrc import write_mrc
    from faket.formats.particles import write_particles_csv
    from faket.labels import CELLULAR_LAYOUT_FILES, LAYOUT_FILES

    lay = res.layout
    d.mkdir()
    write_mrc(d / LAYOUT_FILES["class_mask"], lay.class_mask.astype(np.float32), 10.0)
    write_mrc(d / LAYOUT_FILES["occupancy_mask"], lay.occupancy.astype(np.float32), 10.0)
    write_mrc(d / CELLULAR_LAYOUT_FILES["membrane_mask"], lay.membrane_mask.astype(np.float32), 10.0)
    write_particles_csv(lay.particles, d / LAYOUT_FILES["particles"])
    for k, t in (
        ("instances", lay.instances),
        ("membranes", lay.membranes),
        ("filaments", lay.filaments),
        ("filament_subunits", lay.subunits),
    ):
        t.to_csv(d / CELLULAR_LAYOUT_FILES[k], index=False)
    (d / CELLULAR_LAYOUT_FILES["classes"]).write_text(json.dumps(res.classes))


def test_cellular_layout_files_are_what_faket_layout_writes():
    """The names faket labels and the workflow read (faket.labels) are files faket layout writes."""
    from faket.cli.layout import CELLULAR_FILES as WRITTEN
    from faket.cli.layout import OUTPUT_FILES
    from faket.labels import CELLULAR_LAYOUT_FILES, LAYOUT_FILES

    assert set(CELLULAR_LAYOUT_FILES.values()) <= set(OUTPUT_FILES + WRITTEN)
    assert set(LAYOUT_FILES.values()) <= set(OUTPUT_FILES)


def _near(occ_b, pts_zyx, iid, r=1):
    """Per point: does the binned occupancy hold instance iid within r voxels of the point's voxel?"""
    c = np.rint(pts_zyx).astype(int)
    hit = np.zeros(len(c), bool)
    for dz in range(-r, r + 1):
        for dy in range(-r, r + 1):
            for dx in range(-r, r + 1):
                q = np.clip(c + [dz, dy, dx], 0, np.array(occ_b.shape) - 1)
                hit |= occ_b[tuple(q.T)] == iid
    return hit


def test_faket_labels_bins_every_cellular_label(cell, tmp_path, run_cli):
    """`faket labels` on a cellular layout folder: instances, membranes, filaments and subunits follow the
    binned occupancy mask (every structure kept, points where their filament is), the membrane mask is
    max-pooled (a closed shell for the vesicle, covering every membrane block of the class mask)."""
    import starfile
    from scipy import ndimage

    from faket.labels import CELLULAR_FILES, label_files

    _, res = cell
    lay = res.layout
    _write_cellular_layout(res, tmp_path / "lay")
    out = tmp_path / "lab"
    rc, _, err = run_cli("labels", tmp_path / "lay", "-o", out, "--bin", "2,4", "--z-range", "2:62", "--quiet")
    assert rc == 0, err
    assert json.loads((out / CELLULAR_FILES["classes"]).read_text()) == json.loads(json.dumps(res.classes))
    kinds = {int(k): v["kind"] for k, v in res.classes.items()}
    for b in (2, 4):
        f = {k: out / n for k, n in label_files(b, cellular=True).items()}
        assert all(p.is_file() for p in f.values()), b
        occ_b = mrcfile.read(f["occupancy_mask"]).astype(np.int64)
        cls_b = mrcfile.read(f["class_mask"]).astype(np.int64)
        mm_b = mrcfile.read(f["membrane_mask"])
        assert mm_b.shape == occ_b.shape == (60 // b, 128 // b, 128 // b)
        inst = pd.read_csv(f["instances"])
        # every structure of the layout is an instance of the binned mask, with its kind and class
        assert set(inst["instance_id"]) == set(np.unique(occ_b[occ_b > 0]))
        assert set(inst["layout_instance_id"]) == set(lay.instances["instance_id"])
        old = lay.instances.set_index("instance_id")
        for r in inst.itertuples():
            o = old.loc[r.layout_instance_id]
            assert (r.kind, r.class_id) == (o.kind, o.class_id)
            assert np.all(cls_b[occ_b == r.instance_id] == r.class_id)
        parts = pd.read_csv(f["particles_csv"])
        p_inst = inst[inst["kind"].isin(["particle", "membrane_protein"])].dropna(subset=["item_id"])
        assert sorted(p_inst["item_id"].astype(int)) == sorted(parts["particle_id"])
        # membranes: all four kept, centres moved like particle centres, voxels counted in the binned mask
        mem = pd.read_csv(f["membranes"])
        assert mem["membrane_id"].tolist() == [1, 2, 3, 4]
        np.testing.assert_allclose(mem["x"], (lay.membranes["x"] - (b - 1) / 2) / b)
        np.testing.assert_allclose(mem["z"], (lay.membranes["z"] - 2 - (b - 1) / 2) / b)
        for r in mem.itertuples():
            assert r.n_voxels == (occ_b == r.instance_id).sum() > 0
        # the membrane mask covers every block the class mask gives to a membrane
        mem_classes = [c for c, k in kinds.items() if k == "membrane"]
        assert np.all(mm_b[np.isin(cls_b, mem_classes)] == 1)
        # ... and the vesicle is a closed shell in it: its lumen is not connected to the outside
        ves = mem.set_index("class_name").loc["ves"]
        bg, _ = ndimage.label(mm_b == 0)
        centre = tuple(np.rint([ves.z, ves.y, ves.x]).astype(int))
        assert bg[centre] != 0 and bg[centre] != bg[0, 0, 0]
        ves_comp = ndimage.label(mm_b > 0)[0][occ_b == ves.instance_id]
        assert len(np.unique(ves_comp)) == 1
        # filaments: every filament, points where the binned occupancy mask has it
        for k in ("filaments", "filament_subunits"):
            t = pd.read_csv(f[k])
            src = lay.filaments if k == "filaments" else lay.subunits
            assert sorted(t["filament_id"].unique()) == sorted(src["filament_id"].unique())
            for fid, g in t.groupby("filament_id"):
                iid = inst[(inst["kind"] == "filament") & (inst["item_id"] == fid)]["instance_id"].item()
                assert (g["instance_id"] == iid).all()
                hit = _near(occ_b, g[["z", "y", "x"]].to_numpy(), iid)
                assert hit.mean() >= 0.95, (b, k, fid, hit.mean())
            star = starfile.read(f[f"{k}_star"])
            assert star["rlnHelicalTubeID"].tolist() == t["filament_id"].tolist()
            # RELION 5: Angstrom from the bin-1 slab's centre (binned voxel i at bin-1 pixel i b + (b - 1) / 2)
            np.testing.assert_allclose(star["rlnCenteredCoordinateXAngst"], (t["x"] * b + (b - 1) / 2 - 128 / 2) * 10.0)
            np.testing.assert_allclose(star["rlnCenteredCoordinateZAngst"], (t["z"] * b + (b - 1) / 2 - 60 / 2) * 10.0)
        sub = pd.read_csv(f["filament_subunits"])
        m = sub.merge(lay.subunits, on=["filament_id", "subunit"], suffixes=("", "_0"))
        assert len(m) == len(sub)
        np.testing.assert_allclose(m["y"], (m["y_0"] - (b - 1) / 2) / b)
        np.testing.assert_allclose(m[["rot", "tilt", "psi"]].to_numpy(), m[["rot_0", "tilt_0", "psi_0"]].to_numpy())


def test_faket_labels_refuses_bad_cellular_files(cell, tmp_path, run_cli):
    """A cellular table without a needed column, or a membrane mask of another shape: one line naming the
    file, exit 2, nothing written."""
    from faket.formats.mrc import write_mrc

    _, res = cell
    lay = tmp_path / "lay"
    _write_cellular_layout(res, lay)
    res.layout.filaments.drop(columns=["x"]).to_csv(lay / "filaments.csv", index=False)
    rc, _, err = run_cli("labels", lay, "-o", tmp_path / "a", "--bin", "2", "--quiet")
    assert rc == 2 and "filaments.csv: missing column(s) x" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "a").exists()
    res.layout.filaments.to_csv(lay / "filaments.csv", index=False)
    write_mrc(lay / "membrane_mask.mrc", np.zeros((8, 8, 8), np.float32), 10.0)
    rc, _, err = run_cli("labels", lay, "-o", tmp_path / "b", "--bin", "2", "--quiet")
    assert rc == 2 and "membrane_mask.mrc: shape" in err and not (tmp_path / "b").exists()


def test_dataset_lists_the_cellular_label_files(cell, tmp_path, run_cli):
    """dataset.csv gains the cellular columns (named by faket.labels), filled for a cellular tomogram and
    empty for a plain one; the old columns keep their order."""
    import shutil

    from faket.formats.mrc import write_mrc
    from faket.labels import CELLULAR_FILES, cellular_label_files, label_files

    _, res = cell
    _write_cellular_layout(res, tmp_path / "lay")
    cellf, plain = tmp_path / "results" / "cellt", tmp_path / "results" / "plain"
    rc, _, err = run_cli("labels", tmp_path / "lay", "-o", cellf, "--bin", "4", "--quiet")
    assert rc == 0, err
    plain.mkdir()
    for n in label_files(4).values():
        shutil.copy(cellf / n, plain / n)
    for d in (cellf, plain):
        write_mrc(d / "tomogram_bin4.mrc", np.zeros((16, 32, 32), np.float32), 40.0)
    out = tmp_path / "results" / "dataset.csv"
    rc, _, err = run_cli("dataset", tmp_path / "results", "-o", out, "--quiet")
    assert rc == 0, err
    df = pd.read_csv(out, keep_default_na=False)
    new = [*cellular_label_files(4), *CELLULAR_FILES]
    assert list(df.columns) == [
        "tomogram",
        "modality",
        "bin",
        "tomogram_path",
        *label_files(4),
        "shape_z",
        "shape_y",
        "shape_x",
        "voxel_size_a",
        "n_particles",
        *new,
    ]
    c, p = df.set_index("tomogram").loc["cellt"], df.set_index("tomogram").loc["plain"]
    assert [c[k] for k in new] == [f"cellt/{n}" for n in cellular_label_files(4).values()] + ["cellt/classes.json"]
    assert all(p[k] == "" for k in new) and p["class_mask"] == "plain/class_mask_bin4.mrc"
    # a membrane mask that does not fit its tomogram is refused like the other masks
    write_mrc(cellf / "membrane_mask_bin4.mrc", np.zeros((15, 32, 32), np.float32), 40.0)
    rc, _, err = run_cli("dataset", tmp_path / "results", "-o", tmp_path / "d2.csv", "--quiet")
    assert rc == 2 and "membrane_mask_bin4.mrc" in err and not (tmp_path / "d2.csv").exists()


# --------------------------------------------------------------------------------------------------
# workflow (Snakemake subprocesses; helpers of tests/test_workflow.py)

CELL_LAYOUT = {
    "box": [40, 64, 64],
    "voxel_size": 10.0,
    "slab_thickness": 36,
    "classes": [
        {"template": "blob3", "count": 4},
        {"template": "barrel", "name": "channel", "membrane": "ves", "count": 2},
    ],
    "vesicles": {"count": 0},
    "fiducials": {"count": 0},
    "membranes": [{"shape": "sphere", "name": "ves", "size_nm": 28}],
    "filaments": [{"type": "actin", "count": 2, "length_nm": 30}],
}


def _cell_config(tmp, given=(), **over):
    import yaml
    from test_workflow import tiny_config

    spec = tmp / "cell_layout.yaml"
    spec.write_text(yaml.safe_dump(CELL_LAYOUT))
    return tiny_config(
        tmp,
        layout={"spec": str(spec)},
        modalities=["noiseless"],
        qc=False,
        tomograms={"count": 1, "prefix": "cell", "given": list(given)},
        reconstruct={"binnings": [2], "z_range": [2, 38]},
        **over,
    )


@pytest.mark.slow
def test_workflow_plans_the_cellular_label_files(tmp_path):
    """A layout spec with membranes/filaments: the random layout's labels job (labels_cellular) lists the
    cellular outputs in results/<tomo>/; a given plain folder keeps the plain labels rule."""
    from test_workflow import snakemake

    from faket.cli import main
    from faket.labels import CELLULAR_FILES, cellular_label_files, label_files

    plain = tmp_path / "plain_layout.yaml"
    plain.write_text(
        "box: [40, 64, 64]\nclasses:\n  - {template: blob3, count: 3}\nvesicles: {count: 0}\nfiducials: {count: 0}\n"
    )
    folder = tmp_path / "model_0"
    assert main(["layout", "--spec", str(plain), "-o", str(folder), "--seed", "5", "--quiet"]) == 0
    cfg = _cell_config(tmp_path, given=[{"name": "model_0", "folder": str(folder), "volume": "volume.mrc"}])
    r = snakemake(tmp_path / "run", cfg, "-n", "-p", timeout=180)
    out = r.stdout + r.stderr
    jobs = {
        ln.split()[0]: int(ln.split()[1])
        for ln in out.splitlines()
        if ln.split() and ln.split()[0] in ("labels", "labels_cellular") and len(ln.split()) == 2
    }
    assert jobs == {"labels": 1, "labels_cellular": 1}, out[-2000:]
    cmds = [ln for ln in out.splitlines() if "faket labels" in ln]
    cell_cmd = next(c for c in cmds if "results/cell_000/layout" in c)
    for opt, n in (
        ("--membrane-mask", "membrane_mask.mrc"),
        ("--instances", "instances.csv"),
        ("--filaments", "filaments.csv"),
        ("--filament-subunits", "filament_subunits.csv"),
        ("--membranes", "membranes.csv"),
        ("--classes", "classes.json"),
    ):
        assert f"{opt} results/cell_000/layout/{n}" in cell_cmd, cell_cmd
    given_cmd = next(c for c in cmds if str(folder) in c)
    assert "--membrane-mask" not in given_cmd and "--classes" not in given_cmd
    # each labels job's outputs: the cellular files in results/cell_000/ only; dataset.csv needs them
    blocks = {
        blk.split(":", 1)[0].strip(): blk for blk in out.split("\nrule ")[1:] if blk.startswith(("labels", "dataset"))
    }
    outputs = {
        k: [ln for ln in blocks[k].splitlines() if ln.strip().startswith("output:")][0]
        for k in ("labels", "labels_cellular")
    }
    dataset_inputs = [ln for ln in blocks["dataset"].splitlines() if ln.strip().startswith("input:")][0]
    for n in [*label_files(2, cellular=True).values(), *CELLULAR_FILES.values()]:
        assert f"results/cell_000/{n}" in outputs["labels_cellular"] and f"results/cell_000/{n}" in dataset_inputs
    assert all(f"results/model_0/{n}" in outputs["labels"] for n in label_files(2).values())
    assert not any(n in outputs["labels"] for n in cellular_label_files(2).values())
    assert "classes.json" not in outputs["labels"]
    assert not (tmp_path / "run" / "results").exists()


@pytest.mark.slow
def test_workflow_runs_a_cellular_layout_into_results_and_dataset(tmp_path):
    """A tiny real run (noiseless modality): the cellular label files land in results/<tomo>/, fit the
    tomogram and are listed in dataset.csv."""
    from test_workflow import snakemake

    from faket.formats.mrc import read_mrc
    from faket.labels import CELLULAR_FILES, cellular_label_files

    work = tmp_path / "run"
    snakemake(work, _cell_config(tmp_path))
    d = work / "results" / "cell_000"
    tomo = read_mrc(d / "tomogram_noiseless_bin2.mrc").data
    mm = read_mrc(d / "membrane_mask_bin2.mrc").data
    occ = read_mrc(d / "occupancy_mask_bin2.mrc").data.astype(np.int64)
    assert tomo.shape == mm.shape == occ.shape == (18, 32, 32)
    inst = pd.read_csv(d / "instances_bin2.csv")
    assert set(inst["instance_id"]) == set(np.unique(occ[occ > 0]))
    assert (inst["kind"] == "membrane").sum() == 1 and (inst["kind"] == "filament").sum() == 2
    ves = inst[inst["kind"] == "membrane"]["instance_id"].item()
    assert np.all(mm[occ == ves] == 1)
    assert sorted(pd.read_csv(d / "filaments_bin2.csv")["filament_id"].unique()) == [1, 2]
    df = pd.read_csv(work / "results" / "dataset.csv", keep_default_na=False)
    row = df.iloc[0]
    for k, n in {**cellular_label_files(2), **CELLULAR_FILES}.items():
        assert row[k] == f"cell_000/{n}" and (work / "results" / row[k]).is_file()
