"""Particle tables: CSV / RELION 5 STAR / SHREC 2021 round trips, conventions and line-numbered errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import starfile

from faket.errors import InputError
from faket.formats.particles import (
    read_particles,
    relion_centre,
    write_deepfinder_xml,
    write_particles_csv,
    write_particles_star,
    write_shrec_locations,
)
from faket.formats.table import COLUMNS, check_particles
from faket.rotation import random_relion_angles, relion_to_matrix


@pytest.fixture
def table():
    rng = np.random.default_rng(0)
    n = 12
    ang = random_relion_angles(n, rng)
    return pd.DataFrame(
        {
            "particle_id": np.arange(1, n + 1),
            "class_id": [1, 2, 3] * 4,
            "class_name": ["ring", "rod", "vesicle"] * 4,
            "x": rng.uniform(0, 63, n),
            "y": rng.integers(0, 48, n).astype(float),
            "z": rng.uniform(0, 31, n),
            "rot": ang[:, 0],
            "tilt": ang[:, 1],
            "psi": ang[:, 2],
        }
    )


def test_csv_round_trip_is_exact(table, tmp_path):
    p = tmp_path / "p.csv"
    write_particles_csv(table, p)
    back = read_particles(p)
    assert tuple(back.columns) == COLUMNS
    pd.testing.assert_frame_equal(back, check_particles(table))
    assert p.read_text().splitlines()[0] == ",".join(COLUMNS)


def test_star_relion5_columns_and_round_trip(table, tmp_path):
    p = tmp_path / "p.star"
    box = (32, 48, 64)
    write_particles_star(table, p, voxel_size_a=7.5, box_zyx=box, tomo_name="TS_01")
    star = starfile.read(p)
    for c in (
        "rlnTomoName",
        "rlnCenteredCoordinateXAngst",
        "rlnCenteredCoordinateYAngst",
        "rlnCenteredCoordinateZAngst",
        "rlnAngleRot",
        "rlnAngleTilt",
        "rlnAnglePsi",
        "rlnClassNumber",
    ):
        assert c in star.columns
    # RELION 5: Angstrom from the tomogram centre N / 2
    np.testing.assert_allclose(star["rlnCenteredCoordinateXAngst"], (table["x"] - 32) * 7.5, atol=1e-6)
    np.testing.assert_allclose(star["rlnCenteredCoordinateZAngst"], (table["z"] - 16) * 7.5, atol=1e-6)
    assert (star["rlnTomoName"] == "TS_01").all()
    np.testing.assert_array_equal(relion_centre(box), [32, 24, 16])
    back = read_particles(p, voxel_size_a=7.5, box_zyx=box)
    pd.testing.assert_frame_equal(back, check_particles(table), check_exact=False, atol=1e-7, rtol=0)
    with pytest.raises(InputError, match="voxel size"):
        read_particles(p, box_zyx=box)
    with pytest.raises(InputError, match="volume size"):
        read_particles(p, voxel_size_a=7.5)


def test_star_pixel_coordinates_and_line_numbers(tmp_path):
    p = tmp_path / "old.star"
    p.write_text(
        "data_particles\n\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n_rlnCoordinateZ #3\n"
        "_rlnAngleRot #4\n_rlnAngleTilt #5\n_rlnAnglePsi #6\n"
        "10 20 30 1 2 3\n11 21 31 4 5 6\n"
    )
    df = read_particles(p)
    np.testing.assert_array_equal(df["x"], [10, 11])
    np.testing.assert_array_equal(df["psi"], [3, 6])
    assert list(df["particle_id"]) == [1, 2] and set(df["class_name"]) == {"particle"}
    p.write_text(p.read_text().replace("11 21 31", "11 zz 31"))
    with pytest.raises(InputError, match=r"old.star: line 11: rlnCoordinateY is not a number"):
        read_particles(p)


def test_shrec_convention_against_hand_rotations(tmp_path):
    p = tmp_path / "particle_locations.txt"
    # (Z1, X, Z2) = (30, 0, 0) is Rz(30); (0, 90, 0) is Rx(90): template +y -> volume +z
    p.write_text("4V94 10 20 30 30 0 0\n1BXN 11 21 31 0 90 0\nvesicle 5 6 7 NaN NaN NaN\n1BXN 1 2 3 10.5 20.25 -40\n")
    df = read_particles(p)
    c, s = np.cos(np.pi / 6), np.sin(np.pi / 6)
    np.testing.assert_allclose(
        relion_to_matrix(df.loc[0, ["rot", "tilt", "psi"]].to_numpy(float)),
        [[c, -s, 0], [s, c, 0], [0, 0, 1]],
        atol=1e-12,
    )
    np.testing.assert_allclose(
        relion_to_matrix(df.loc[1, ["rot", "tilt", "psi"]].to_numpy(float)) @ [0, 1, 0], [0, 0, 1], atol=1e-12
    )
    assert list(df["particle_id"]) == [1, 2, 3, 4]  # SHREC ids = line order
    assert list(df["class_id"]) == [1, 2, 3, 2]  # first appearance
    assert (df.loc[2, ["rot", "tilt", "psi"]] == 0).all()
    # written back, the angles are the same rotation (canonical ZXZ)
    out = tmp_path / "again.txt"
    write_shrec_locations(df, out)
    lines = out.read_text().splitlines()
    assert lines[0].split()[:4] == ["4V94", "10", "20", "30"]
    np.testing.assert_allclose([float(v) for v in lines[3].split()[4:]], [10.5, 20.25, -40], atol=1e-9)


def test_shrec_round_trip(table, tmp_path):
    p = tmp_path / "particle_locations.txt"
    write_shrec_locations(table, p)
    back = read_particles(p)
    # integer centres, as SHREC's evaluation script reads them (int(x)); exact ones are in the CSV / STAR
    np.testing.assert_array_equal(back[["x", "y", "z"]].to_numpy(), np.rint(table[["x", "y", "z"]].to_numpy()))
    np.testing.assert_allclose(
        relion_to_matrix(back[["rot", "tilt", "psi"]].to_numpy()),
        relion_to_matrix(table[["rot", "tilt", "psi"]].to_numpy()),
        atol=1e-12,
    )
    assert list(back["class_name"]) == list(table["class_name"])


@pytest.mark.parametrize(
    "body, match",
    [
        ("1,1,ring,1,2,3,0,0,0\n2,1,ring,1,2\n", r"line 3: 5 fields, header has 9"),
        ("1,1,ring,1,2,3,0,0,0\n2.5,1,ring,1,2,3,0,0,0\n", r"line 3: particle_id must be an integer"),
        ("1,1,ring,1,2,3,0,0,0\n2,1,ring,1,nan,3,0,0,0\n", r"line 3: y is not finite"),
        ("1,1,ring,1,2,3,0,0,0\n2,1,,1,2,3,0,0,0\n", r"line 3: empty class_name"),
        ("1,1,ring,1,2,3,0,0,0\n1,1,ring,4,5,6,0,0,0\n", r"particle_id 1 appears more than once"),
        ("1,1,ring,1,2,3,0,0,0\n2,1,rod,4,5,6,0,0,0\n", r"class_id 1 has several names: ring, rod"),
        ("1,0,ring,1,2,3,0,0,0\n", r"class_id must be >= 1"),
    ],
)
def test_csv_errors(tmp_path, body, match):
    p = tmp_path / "bad.csv"
    p.write_text(",".join(COLUMNS) + "\n" + body)
    with pytest.raises(InputError, match=match) as ei:
        read_particles(p)
    assert str(p) in str(ei.value)


def test_other_errors(tmp_path):
    p = tmp_path / "h.csv"
    p.write_text("particle_id,x,y,z\n1,2,3,4\n")
    with pytest.raises(InputError, match=r"h.csv: line 1: header lacks column\(s\) class_id, class_name"):
        read_particles(p)
    t = tmp_path / "particle_locations.txt"
    t.write_text("a 1 2 3 0 0 0\n\nb 1 2\n")
    with pytest.raises(InputError, match=r"line 3: expected 'class x y z"):
        read_particles(t)
    t.write_text("a 1 2 3 0 NaN 0\n")
    with pytest.raises(InputError, match=r"line 1: angles must be"):
        read_particles(t)
    with pytest.raises(InputError, match="not found"):
        read_particles(tmp_path / "nope.csv")
    q = tmp_path / "p.json"
    q.write_text("{}")
    with pytest.raises(InputError, match="unknown particle list format"):
        read_particles(q)
    df = pd.DataFrame({c: [] for c in COLUMNS})
    assert len(check_particles(df)) == 0
    bad = pd.DataFrame(
        {
            "particle_id": [1],
            "class_id": [1],
            "class_name": ["two words"],
            "x": [1.0],
            "y": [1.0],
            "z": [1.0],
            "rot": [0.0],
            "tilt": [0.0],
            "psi": [0.0],
        }
    )
    with pytest.raises(InputError, match="whitespace"):
        write_shrec_locations(bad, tmp_path / "x.txt")


def test_deepfinder_xml_round_trip_and_format(table, tmp_path):
    """DeepFinder object list: objlist/object with tomo_idx, obj_id, class_label, x, y, z (what
    deepfinder.utils.objl.read_xml reads); positions, ids and classes come back exactly, angles as 0."""
    import xml.etree.ElementTree as ET

    p = tmp_path / "p.xml"
    write_deepfinder_xml(table, p, tomo_idx=3)
    root = ET.parse(p).getroot()
    assert root.tag == "objlist" and len(root) == len(table)
    o = root[0]
    assert o.tag == "object" and o.get("tomo_idx") == "3" and o.get("obj_id") == "1"
    assert int(o.get("class_label")) == table.class_id[0] and float(o.get("x")) == table.x[0]
    back = read_particles(p)
    exp = check_particles(table).assign(rot=0.0, tilt=0.0, psi=0.0)
    pd.testing.assert_frame_equal(back, exp)
    # a DeepFinder list of its own (no obj_id, no class_name): ids by order, classes by label
    (tmp_path / "df.xml").write_text(
        '<objlist><object tomo_idx="0" class_label="2" x="1.5" y="2" z="3"/>'
        '<object class_label="1" x="4" y="5" z="6" cluster_size="40"/></objlist>'
    )
    d = read_particles(tmp_path / "df.xml")
    assert d.particle_id.tolist() == [1, 2] and d.class_id.tolist() == [2, 1]
    assert d.class_name.tolist() == ["class2", "class1"] and d.x.tolist() == [1.5, 4.0]


@pytest.mark.parametrize(
    "body,match",
    [
        ("<objlist><object class_label='1' x='1' y='2'/></objlist>", "object 1: missing attribute 'z'"),
        ("<objlist><object class_label='1' x='1' y='2' z='a'/></objlist>", "object 1: z is not a number"),
        (
            "<objlist><object class_label='1.5' x='1' y='2' z='3'/></objlist>",
            "object 1: class_label must be an integer",
        ),
        ("<objlist><object", "not a readable XML object list"),
    ],
)
def test_deepfinder_xml_errors(tmp_path, body, match):
    p = tmp_path / "bad.xml"
    p.write_text(body)
    with pytest.raises(InputError, match=match):
        read_particles(p)


def test_shrec_reader_takes_4_or_7_fields_for_tables_and_picks(tmp_path):
    """One SHREC reader: ``class x y z`` (4 fields, picks) and ``class x y z Z1 X Z2`` (7, SHREC's
    particle_locations.txt) read the same positions, through read_particles and read_picks alike."""
    from faket.formats.particles import read_picks

    p4, p7 = tmp_path / "four.txt", tmp_path / "seven.coords"
    p4.write_text("# picks\n1BXN 1.5 2 3\n\n3QM1 4 5 6.25  # a comment\n")
    p7.write_text("1BXN 1.5 2 3 0 0 0\n3QM1 4 5 6.25 NaN NaN NaN\n")
    df4 = read_particles(p4)
    df7 = read_particles(p7, fmt="shrec")
    for df in (df4, df7):
        assert list(df["particle_id"]) == [1, 2] and list(df["class_name"]) == ["1BXN", "3QM1"]
        np.testing.assert_array_equal(df[["x", "y", "z"]].to_numpy(), [[1.5, 2, 3], [4, 5, 6.25]])
        assert (df[["rot", "tilt", "psi"]].to_numpy() == 0).all()
    for p in (p4, p7):
        picks = read_picks(p)
        np.testing.assert_array_equal(picks.points_xyz, [[1.5, 2, 3], [4, 5, 6.25]])
        assert picks.class_names == ["1BXN", "3QM1"] and picks.class_ids is None


@pytest.mark.parametrize("line", ["1BXN 1 2", "1BXN 1 2 3 10", "1BXN 1 2 3 10 20", "1BXN 1 2 3 10 20 30 0.9"])
def test_shrec_reader_refuses_other_field_counts(tmp_path, line):
    from faket.formats.particles import read_picks

    p = tmp_path / "picks.txt"
    p.write_text(f"1BXN 1 2 3\n{line}\n")
    n = len(line.split())
    for read in (read_particles, read_picks):
        with pytest.raises(
            InputError,
            match=rf"picks.txt: line 2: expected 'class x y z' or 'class x y z Z1 X Z2' "
            rf"\(4 or 7 fields\), got {n}",
        ):
            read(p)


def test_read_picks_csv_aliases_and_formats(tmp_path):
    from faket.errors import MissingGeometry
    from faket.formats.particles import pick_format, read_picks

    c = tmp_path / "p.tsv"
    c.write_text("X_vox\tcoord_y\tz\tclass_id\n1\t2\t3\t4\n")
    picks = read_picks(c)
    np.testing.assert_array_equal(picks.points_xyz, [[1, 2, 3]])
    assert picks.class_ids == [4] and picks.class_names is None
    assert pick_format("a.dat") == "shrec" and pick_format("a.xml") == "deepfinder"
    assert pick_format("a.txt", "csv") == "csv"
    with pytest.raises(InputError, match="cannot tell the picks format"):
        pick_format("a.json")
    s = tmp_path / "c.star"
    s.write_text(
        "data_particles\n\nloop_\n_rlnCenteredCoordinateXAngst #1\n_rlnCenteredCoordinateYAngst #2\n"
        "_rlnCenteredCoordinateZAngst #3\n10 20 30\n"
    )
    with pytest.raises(MissingGeometry) as ei:
        read_picks(s, voxel_size_a=10.0)
    assert ei.value.needs == "box_zyx"
    with pytest.raises(MissingGeometry) as ei:
        read_picks(s, box_zyx=(8, 8, 8))
    assert ei.value.needs == "voxel_size_a"
    picks = read_picks(s, voxel_size_a=10.0, box_zyx=(8, 8, 8))
    np.testing.assert_allclose(picks.points_xyz, [[5, 6, 7]])  # centre N/2 = 4 (RELION 5) + 1, 2, 3
    assert picks.class_names is None and picks.class_ids is None
