"""Labels: masks cropped and binned like the tomogram, particle coordinates in the tomogram's grid."""

from __future__ import annotations

import numpy as np
import pytest

from faket.errors import InputError
from faket.labels import BinInfo, bin_label_mask, bin_masks, crop_z, inside_binned, to_binned_coordinates


def _block_mean(vol, b):
    nz, ny, nx = (n // b for n in vol.shape)
    v = vol[: nz * b, : ny * b, : nx * b].astype(np.float64)
    return v.reshape(nz, b, ny, b, nx, b).mean(axis=(1, 3, 5))


def test_vote_on_hand_made_blocks():
    m = np.zeros((2, 4, 6), dtype=np.int32)
    m[:, 0:2, 0:2] = 5  # a full block of 5
    m[0, 0:2, 2:4] = 7  # half a block: tie with background -> 7
    m[0, 0, 4] = 3  # 1/8 of a block: background wins, then rescued
    m[:, 2:4, 0:2] = 1
    m[0, 2, 0] = 2  # 7 x 1, 1 x 2 in one block
    m[1, 3, 3] = 9  # 1 voxel of 9 in an empty block
    m[1, 2, 2] = 9  # ... twice: still minority, rescued
    info = BinInfo()
    out = bin_label_mask(m, 2, info=info)
    assert out.shape == (1, 2, 3)
    assert out.tolist() == [[[5, 7, 3], [1, 9, 0]]]
    assert info.rescued == {9: 4, 3: 2}
    plain = bin_label_mask(m, 2, keep_all=False)
    assert plain.tolist() == [[[5, 7, 0], [1, 0, 0]]]


def test_binary_vote_equals_thresholded_block_mean():
    """For a 0/1 mask the vote is the tomogram's block mean thresholded at 1/2 (ties to the label)."""
    rng = np.random.default_rng(3)
    m = (rng.random((17, 22, 19)) < 0.5).astype(np.int16)
    for b in (2, 3):
        got = bin_label_mask(m, b, keep_all=False)
        want = (_block_mean(m, b) >= 0.5).astype(np.int16)
        np.testing.assert_array_equal(got, want)


def _cubes_layout(shape, size, n, rng):
    """Non-overlapping cubes of edge ``size`` at random (unaligned) positions; ids 1..n."""
    occ = np.zeros(shape, dtype=np.int32)
    cls = np.zeros(shape, dtype=np.int16)
    centres = []
    pid = 0
    tries = 0
    while pid < n and tries < 10000:
        tries += 1
        z, y, x = (rng.integers(0, s - size + 1) for s in shape)
        sl = (slice(z, z + size), slice(y, y + size), slice(x, x + size))
        if occ[sl].any():
            continue
        pid += 1
        occ[sl] = pid
        cls[sl] = 1 + pid % 3
        centres.append((z + (size - 1) / 2, y + (size - 1) / 2, x + (size - 1) / 2))
    return cls, occ, np.array(centres)


@pytest.mark.parametrize("b", [2, 3, 4])
def test_every_particle_as_big_as_a_block_survives(b):
    rng = np.random.default_rng(b)
    cls, occ, _ = _cubes_layout((40, 44, 48), b, 60, rng)
    plain = bin_label_mask(occ, b, keep_all=False)
    n_ids = occ.max()
    lost_by_vote = set(range(1, n_ids + 1)) - set(np.unique(plain).tolist())
    assert lost_by_vote, "the layout should contain particles a plain vote loses (else the test is void)"
    cls_b, occ_b, info = bin_masks(cls, occ, b)
    present = set(np.unique(occ_b).tolist()) - {0}
    # every particle with voxels in the kept blocks survives
    kept = set(np.unique(occ[: 40 // b * b, : 44 // b * b, : 48 // b * b]).tolist()) - {0}
    assert present == kept
    assert set(info.rescued) == lost_by_vote & kept
    assert not info.lost
    # class mask agrees with occupancy voxel by voxel
    lut = {p: 1 + p % 3 for p in kept}
    sel = occ_b > 0
    np.testing.assert_array_equal(cls_b[sel], [lut[p] for p in occ_b[sel]])
    assert (cls_b[~sel] == 0).all()


def test_rescued_block_holds_the_particle_centre_neighbourhood():
    """A single-voxel particle lands in the block that its binned coordinate rounds to."""
    rng = np.random.default_rng(7)
    shape = (30, 26, 34)
    occ = np.zeros(shape, dtype=np.int32)
    pts = []
    for pid in range(1, 40):
        p = tuple(int(rng.integers(0, s)) for s in shape)
        if occ[p]:
            continue
        occ[p] = pid
        pts.append((pid, p))
    a, b_ = 4, 28
    for b in (2, 3):
        cropped = crop_z(occ, (a, b_))
        occ_b = bin_label_mask(cropped, b)
        for pid, (z, y, x) in pts:
            pb = to_binned_coordinates(np.array([[z, y, x]]), b, z_offset=a)[0]
            inside = inside_binned(pb[None], occ_b.shape)[0]
            idx = np.round(pb).astype(int)
            if inside:
                assert occ_b[tuple(idx)] == pid
            else:
                assert pid not in occ_b


def test_coordinate_map_matches_block_centres():
    # original voxels [4, 6) in a bin-2 grid form block 2, whose centre 4.5 maps to 2.0
    pb = to_binned_coordinates(np.array([[10 + 4.5, 4.5, 4.5]]), 2, z_offset=10)
    np.testing.assert_allclose(pb, [[2.0, 2.0, 2.0]])
    pb = to_binned_coordinates(np.array([[0.0, 0.0, 0.0]]), 3)
    np.testing.assert_allclose(pb, [[-1 / 3, -1 / 3, -1 / 3]])
    # inside: [-0.5, n - 0.5)
    shape = (5, 5, 5)
    assert inside_binned(np.array([[-0.5, 0, 4.49]]), shape)[0]
    assert not inside_binned(np.array([[-0.51, 0, 0]]), shape)[0]
    assert not inside_binned(np.array([[0, 0, 4.5]]), shape)[0]


def test_trailing_samples_dropped_and_bad_input():
    m = np.ones((5, 7, 9), dtype=np.int8)
    assert bin_label_mask(m, 2).shape == (2, 3, 4)
    with pytest.raises(InputError, match="z-range"):
        crop_z(m, (3, 9))
    with pytest.raises(InputError, match="--bin"):
        bin_label_mask(m, 6)
    with pytest.raises(InputError, match="non-integer"):
        bin_label_mask(m * 0.5, 2)
    with pytest.raises(InputError, match="differs"):
        bin_masks(m, m[:4], 2)


def _write_layout(folder, cls, occ, centres, voxel=10.0):
    import pandas as pd

    from faket.formats.mrc import write_mrc
    from faket.formats.particles import write_particles_csv

    folder.mkdir(parents=True, exist_ok=True)
    write_mrc(folder / "class_mask.mrc", cls.astype(np.float32), voxel)
    write_mrc(folder / "occupancy_mask.mrc", occ.astype(np.float32), voxel)
    ids = np.arange(1, len(centres) + 1)
    cids = 1 + ids % 3
    df = pd.DataFrame(
        {
            "particle_id": ids,
            "class_id": cids,
            "class_name": [f"c{c}" for c in cids],
            "x": centres[:, 2],
            "y": centres[:, 1],
            "z": centres[:, 0],
            "rot": 10.0,
            "tilt": 20.0,
            "psi": 30.0,
        }
    )
    write_particles_csv(df, folder / "particles.csv")
    return df


def test_cli_writes_consistent_masks_and_lists(tmp_path):
    import json

    from faket.cli import main
    from faket.formats.mrc import read_mrc
    from faket.formats.particles import read_particles

    rng = np.random.default_rng(11)
    shape = (36, 40, 44)
    cls, occ, centres = _cubes_layout(shape, 3, 50, rng)
    df = _write_layout(tmp_path / "layout", cls, occ, centres)
    out = tmp_path / "out"
    a, b_ = 5, 30
    assert (
        main(["labels", str(tmp_path / "layout"), "-o", str(out), "--bin", "2,3", "--z-range", f"{a}:{b_}", "--quiet"])
        == 0
    )
    for b in (2, 3):
        cm = read_mrc(out / f"class_mask_bin{b}.mrc")
        om = read_mrc(out / f"occupancy_mask_bin{b}.mrc")
        assert cm.data.shape == om.data.shape == ((b_ - a) // b, 40 // b, 44 // b)
        assert cm.voxel_size_a == pytest.approx(10.0 * b)
        lst = read_particles(out / f"particles_bin{b}.csv")
        side = json.loads((out / f"particles_bin{b}.json").read_text())
        id_map = {int(k): v for k, v in side["particle_id_map"].items()}
        # listed particles are renumbered 1..N; each sits in its own voxel of the binned occupancy mask
        assert lst["particle_id"].tolist() == list(range(1, len(lst) + 1))
        occ_b = om.data.astype(int)
        for _, r in lst.iterrows():
            idx = tuple(int(v) for v in np.round([r.z, r.y, r.x]))
            assert occ_b[idx] == r.particle_id
        # the original particle with the same centre maps to the same id, class kept
        orig = df.set_index("particle_id")
        for old, new in id_map.items():
            if new <= len(lst):
                row = lst[lst.particle_id == new].iloc[0]
                assert row.class_id == orig.loc[old, "class_id"]
                np.testing.assert_allclose(row.z, (orig.loc[old, "z"] - a - (b - 1) / 2) / b)
                np.testing.assert_allclose(row.x, (orig.loc[old, "x"] - (b - 1) / 2) / b)
        # dropped = centre outside the crop
        for old in side["dropped_particle_ids"]:
            z = orig.loc[old, "z"]
            zb = (z - a - (b - 1) / 2) / b
            assert (
                not (-0.5 <= zb < (b_ - a) // b - 0.5)
                or orig.loc[old, "x"] >= 44 // b * b - 0.5
                or orig.loc[old, "y"] >= 40 // b * b - 0.5
            )
        # SHREC list: line number = occupancy id, centres rounded to integers (SHREC's script reads int(x));
        # STAR reads back to the same coordinates
        shrec = read_particles(out / f"particle_locations_bin{b}.txt")
        np.testing.assert_array_equal(shrec[["x", "y", "z"]].to_numpy(), np.rint(lst[["x", "y", "z"]].to_numpy()))
        star = read_particles(
            out / f"particles_bin{b}.star",
            voxel_size_a=10.0 * b,
            box_zyx=om.data.shape,
            bin_factor=b,
            unbinned_box_zyx=(b_ - a, 40, 44),
        )  # centred on the bin-1 slab
        np.testing.assert_allclose(star[["x", "y", "z"]].to_numpy(), lst[["x", "y", "z"]].to_numpy(), atol=1e-6)
        xml = read_particles(out / f"particles_bin{b}.xml")  # DeepFinder object list: the same rows
        np.testing.assert_array_equal(
            xml[["particle_id", "class_id", "x", "y", "z"]].to_numpy(),
            lst[["particle_id", "class_id", "x", "y", "z"]].to_numpy(),
        )
        # class and occupancy agree voxel by voxel
        sel = occ_b > 0
        assert (cm.data[~sel] == 0).all() and (cm.data[sel] > 0).all()
    full = read_particles(out / "particles.csv")
    np.testing.assert_allclose(full[["x", "y", "z"]].to_numpy(), df[["x", "y", "z"]].to_numpy())


def test_cli_bad_input_writes_nothing(tmp_path, capsys):
    from faket.cli import main

    rng = np.random.default_rng(1)
    cls, occ, centres = _cubes_layout((20, 20, 20), 2, 5, rng)
    _write_layout(tmp_path / "layout", cls, occ, centres)
    out = tmp_path / "out"
    assert main(["labels", str(tmp_path / "layout"), "-o", str(out), "--bin", "2", "--z-range", "4:40"]) == 2
    assert "z-range" in capsys.readouterr().err
    assert main(["labels", str(tmp_path / "layout"), "-o", str(out), "--bin", "0"]) == 2
    assert not out.exists() or not any(out.iterdir())


def test_cli_shrec_list_takes_class_ids_from_the_mask(tmp_path):
    from faket.cli import main
    from faket.formats.particles import read_particles, write_shrec_locations

    rng = np.random.default_rng(5)
    cls, occ, centres = _cubes_layout((24, 24, 24), 3, 12, rng)
    df = _write_layout(tmp_path / "layout", cls, occ, centres)
    write_shrec_locations(df, tmp_path / "layout" / "particle_locations.txt")
    raw = read_particles(tmp_path / "layout" / "particle_locations.txt")
    assert (raw.class_id != df.class_id).any()  # SHREC ids follow first appearance, not the mask
    out = tmp_path / "out"
    assert (
        main(
            [
                "labels",
                "--class-mask",
                str(tmp_path / "layout" / "class_mask.mrc"),
                "--occupancy",
                str(tmp_path / "layout" / "occupancy_mask.mrc"),
                "--particles",
                str(tmp_path / "layout" / "particle_locations.txt"),
                "-o",
                str(out),
                "--bin",
                "1",
                "--quiet",
            ]
        )
        == 0
    )
    got = read_particles(out / "particles_bin1.csv")
    assert got.class_id.tolist() == df.class_id.tolist()
    np.testing.assert_allclose(got[["x", "y", "z"]].to_numpy(), df[["x", "y", "z"]].to_numpy())


def test_claim_centres_rules():
    from faket.labels import claim_centres

    occ = np.zeros((2, 2, 4), np.int64)
    occ[0, 0, :2] = 1  # particle 1: two blocks
    occ[1, 1, 3] = 2  # particle 2: one block
    info = BinInfo()
    out = claim_centres(occ, {3: (0, 0, 0), 4: (1, 1, 3), 5: (0, 0, 0), 6: (1, 0, 0), 1: (0, 0, 1)}, info)
    assert out[0, 0, 1] == 1  # already its own
    assert out[0, 0, 0] == 3  # taken from particle 1, which keeps a block
    assert out[1, 1, 3] == 2  # particle 2's only block stays
    assert out[1, 0, 0] == 6  # background block
    assert info.centres_claimed == [3, 6] and info.centre_conflicts == [4, 5]  # 5: particle 3's centre
    assert occ[0, 0, 0] == 1  # input untouched


def test_binned_labels_hold_every_listed_centre_so_perfect_picks_score_1(tmp_path):
    """Hollow (ring, barrel, vesicle) and small (blob3) particles: after faket labels, a pick at each listed
    binned centre hits its particle in the binned occupancy mask: faket evaluate gives F1 = 1."""
    import json

    from faket.cli import main

    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "box: [40, 64, 64]\nvoxel_size: 10.0\nslab_thickness: 36\nclasses:\n"
        "  - {template: ring, count: 6}\n  - {template: barrel, count: 3}\n"
        "  - {template: blob3, count: 12}\n  - {template: globule, count: 12}\n"
        "vesicles: {count: 1, diameter_nm: 30}\n"
    )
    assert main(["layout", "-o", str(tmp_path / "lay"), "--spec", str(spec), "--seed", "3", "--quiet"]) == 0
    assert (
        main(
            [
                "labels",
                str(tmp_path / "lay"),
                "-o",
                str(tmp_path / "lab"),
                "--bin",
                "2,3",
                "--z-range",
                "2:38",
                "--quiet",
            ]
        )
        == 0
    )
    for b in (2, 3):
        out = tmp_path / f"eval{b}.json"
        assert (
            main(
                [
                    "evaluate",
                    "--truth",
                    str(tmp_path / "lab" / f"particles_bin{b}.csv"),
                    "--occupancy",
                    str(tmp_path / "lab" / f"occupancy_mask_bin{b}.mrc"),
                    "--pred",
                    str(tmp_path / "lab" / f"particles_bin{b}.csv"),
                    "-o",
                    str(out),
                    "--quiet",
                ]
            )
            == 0
        )
        m = json.loads(out.read_text())
        assert m["localisation"]["f1"] == 1.0 and m["classification"]["macro_f1"] == 1.0, (b, m["localisation"])
        side = json.loads((tmp_path / "lab" / f"occupancy_mask_bin{b}.json").read_text())
        assert side["centre_conflict_particle_ids"] == []


def test_renumber_listed_first_then_unlisted():
    from faket.labels import renumber

    occ = np.zeros((1, 2, 4), np.int32)
    occ[0, 0] = [5, 5, 9, 0]
    occ[0, 1] = [2, 7, 0, 7]
    new, id_map, extra = renumber(occ, [9, 2, 4])  # 4 is listed but has no voxel
    assert id_map == {9: 1, 2: 2, 4: 3, 5: 4, 7: 5} and extra == [5, 7]
    np.testing.assert_array_equal(new, [[[4, 4, 1, 0], [2, 5, 0, 5]]])
    assert occ[0, 0, 0] == 5  # input untouched
    empty, m, e = renumber(np.zeros((2, 2, 2), np.int32), [])
    assert not empty.any() and m == {} and e == []


def test_bin_labels_crops_bins_drops_and_renumbers():
    """bin_labels (the core of faket labels): particles whose binned centre falls outside the Z crop are
    dropped, the kept ones are renumbered 1..N in their original id order (the input list shuffled), each
    owns the voxel of its binned centre, and unlisted particles with voxels in the tomogram come after."""
    from faket.labels import bin_labels

    rng = np.random.default_rng(4)
    shape, za, zb, b = (30, 32, 36), 6, 24, 2
    cls, occ, centres = _cubes_layout(shape, 3, 40, rng)
    ids = np.arange(1, len(centres) + 1)
    order = rng.permutation(len(ids))[:-3]  # 3 particles left out of the list
    r = bin_labels(cls, occ, centres[order], ids[order], b, z_range=(za, zb))
    nb = ((zb - za) // b, shape[1] // b, shape[2] // b)
    assert r.class_mask.shape == r.occupancy_mask.shape == nb
    listed = ids[order]
    zb_all = (centres[order, 0] - za - (b - 1) / 2) / b
    inside = (zb_all >= -0.5) & (zb_all < nb[0] - 0.5)
    assert sorted(r.dropped_ids) == sorted(listed[~inside].tolist()) and len(r.dropped_ids) > 0
    kept_old = listed[r.rows]
    assert kept_old.tolist() == sorted(listed[inside].tolist())  # ascending original id
    assert r.particle_ids.tolist() == list(range(1, len(kept_old) + 1))
    assert all(r.id_map[int(o)] == n for o, n in zip(kept_old, r.particle_ids))
    np.testing.assert_allclose(r.coordinates_zyx, to_binned_coordinates(centres[order][r.rows], b, za))
    for n, c in zip(r.particle_ids, r.coordinates_zyx):
        assert r.occupancy_mask[tuple(np.rint(c).astype(int))] == n
    unlisted_present = sorted(
        set(np.unique(occ[za:zb][: nb[0] * b, : nb[1] * b, : nb[2] * b]).tolist()) - {0} - set(kept_old.tolist())
    )
    assert r.unlisted_ids == list(range(len(kept_old) + 1, len(kept_old) + 1 + len(unlisted_present)))
    assert set(np.unique(r.occupancy_mask).tolist()) - {0} <= set(range(1, len(kept_old) + len(r.unlisted_ids) + 1))
    # classes follow the (renumbered) particles
    sel = r.occupancy_mask > 0
    assert (r.class_mask[sel] > 0).all() and (r.class_mask[~sel] == 0).all()


def test_cli_writes_exactly_the_named_label_files(tmp_path):
    """faket labels writes the files faket.labels.label_files / FULL_LIST_FILES name (one source for the
    CLI, faket dataset and the workflow's rules), each list with its JSON sidecar."""
    from faket.cli import main
    from faket.labels import FULL_LIST_FILES, label_files

    rng = np.random.default_rng(2)
    cls, occ, centres = _cubes_layout((16, 16, 16), 2, 6, rng)
    _write_layout(tmp_path / "layout", cls, occ, centres)
    out = tmp_path / "out"
    assert main(["labels", str(tmp_path / "layout"), "-o", str(out), "--bin", "1,2", "--quiet"]) == 0
    names = [n for b in (1, 2) for n in label_files(b).values()] + list(FULL_LIST_FILES.values())
    sidecars = [n.rsplit(".", 1)[0] + ".json" for n in names if n.endswith((".mrc", ".csv"))]
    assert sorted(p.name for p in out.iterdir()) == sorted(names + sidecars)


def test_class_ids_from_mask_and_one_to_one():
    from faket.labels import class_ids_from_mask, one_to_one

    occ = np.zeros((1, 1, 6), np.int32)
    occ[0, 0] = [1, 1, 2, 3, 3, 0]
    cls = np.zeros_like(occ)
    cls[0, 0] = [4, 4, 7, 4, 0, 9]
    np.testing.assert_array_equal(class_ids_from_mask([3, 1, 2], cls, occ), [4, 4, 7])
    assert class_ids_from_mask([1, 5], cls, occ) is None  # particle 5 has no voxel
    assert one_to_one(["a", "a", "b"], [4, 4, 7])
    assert not one_to_one(["a", "b"], [4, 4]) and not one_to_one(["a", "a"], [4, 7])


def test_layout_files_are_what_faket_layout_writes(tmp_path):
    """LAYOUT_FILES (read by faket labels LAYOUTDIR and the workflow) name files that faket layout writes."""
    from faket.cli import main
    from faket.labels import LAYOUT_FILES

    spec = tmp_path / "spec.yaml"
    spec.write_text("box: [16, 24, 24]\nclasses:\n  - {template: blob3, count: 2}\n")
    assert main(["layout", "--spec", str(spec), "-o", str(tmp_path / "lay"), "--seed", "1", "--quiet"]) == 0
    assert all((tmp_path / "lay" / n).is_file() for n in LAYOUT_FILES.values())
    assert main(["labels", str(tmp_path / "lay"), "-o", str(tmp_path / "lab"), "--bin", "2", "--quiet"]) == 0


# --------------------------------------------------------------------------------------------------
# cellular layouts: membrane mask, points, instances


def _shell(shape, centre, r_mid, half):
    zz, yy, xx = np.indices(shape)
    d = np.sqrt((zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2)
    return np.abs(d - r_mid) <= half


@pytest.mark.parametrize("b", [2, 4, 8])
def test_binned_membrane_mask_stays_a_connected_closed_shell(b):
    """A 4.5-voxel bilayer (4.5 nm at 10 A) on a sphere: max-pooling keeps one 6-connected shell that still
    encloses its lumen; a per-block vote (the class-mask rule) breaks it into pieces at bin 8."""
    from scipy import ndimage

    from faket.labels import bin_binary_mask

    shape, c = (96, 96, 96), (47.3, 48.6, 47.8)
    shell = _shell(shape, c, 36.0, 2.25)
    out = bin_binary_mask(shell.astype(np.float32), b, z_range=(2, 94))
    nb = (92 // b, 96 // b, 96 // b)
    assert out.dtype == np.float32 and out.shape == nb
    assert set(np.unique(out)) == {0.0, 1.0}
    assert ndimage.label(out > 0)[1] == 1  # one 6-connected shell
    bg, n_bg = ndimage.label(out == 0)
    assert n_bg == 2  # lumen and outside, not connected
    cb = np.rint(to_binned_coordinates(np.array([c]), b, z_offset=2)[0]).astype(int)
    assert bg[tuple(cb)] != bg[0, 0, 0]
    # every binned block that holds a bilayer voxel is in it, no other
    cut = shell[2 : 2 + nb[0] * b, : nb[1] * b, : nb[2] * b]
    blocks = cut.reshape(nb[0], b, nb[1], b, nb[2], b).any(axis=(1, 3, 5))
    np.testing.assert_array_equal(out > 0, blocks)
    if b == 8:
        voted = bin_label_mask(cut.astype(np.int32), b, keep_all=False)
        assert ndimage.label(voted > 0)[1] > 1 and ndimage.label(voted == 0)[1] == 1


def test_bin_points_moves_like_particles_and_drops_outside_points():
    import pandas as pd

    from faket.labels import bin_points

    t = pd.DataFrame(
        {
            "filament_id": [1, 1, 1, 2],
            "instance_id": [7, 7, 7, 8],
            "point": [0, 1, 2, 0],
            "x": [0.0, 5.0, 15.4, 3.0],
            "y": [1.5, 2.0, 3.0, 4.0],
            "z": [2.0, 5.5, 9.0, 0.0],
        }
    )
    out = bin_points(t, {7: 3}, 2, (4, 8, 8), z_offset=2)
    # z 0 lies before the crop: filament 2's only point goes; filament 1 keeps its ids and point indices
    assert out["filament_id"].tolist() == [1, 1, 1] and out["point"].tolist() == [0, 1, 2]
    expect = to_binned_coordinates(t[["z", "y", "x"]].to_numpy()[:3], 2, z_offset=2)
    np.testing.assert_allclose(out[["z", "y", "x"]].to_numpy(), expect)
    assert out["instance_id"].tolist() == [3, 3, 3]
    out8 = bin_points(t, {}, 2, (3, 8, 8), z_offset=2)  # z_b of the point at z=9 is 3.25: outside 3 slices
    assert out8["point"].tolist() == [0, 1] and out8["instance_id"].isna().all()


def test_bin_instances_renumbers_and_points_particles_to_the_binned_list():
    import pandas as pd

    from faket.labels import bin_instances

    inst = pd.DataFrame(
        {
            "instance_id": [1, 2, 3, 4],
            "kind": ["particle", "membrane_protein", "membrane", "filament"],
            "class_id": [1, 2, 3, 4],
            "class_name": list("abcd"),
            "item_id": [1, 2, 1, 1],
        }
    )
    # particle 1's centre is outside (unlisted, voxels kept as id 3), membrane 3 is gone
    out = bin_instances(inst, {2: 1, 4: 2, 1: 3}, {2: 1})
    assert out["instance_id"].tolist() == [1, 2, 3]
    assert out["layout_instance_id"].tolist() == [2, 4, 1]
    assert out["kind"].tolist() == ["membrane_protein", "filament", "particle"]
    assert out["item_id"].tolist()[:2] == [1, 1] and pd.isna(out["item_id"].iloc[2])


# --------------------------------------------------------------------------------------------------
# SHREC text files the official script reads; MRC origins that place binned grids in the full volume

from test_evaluate import _SHREC_DRIVER, _shrec_model, shrec_script_or_skip


def test_official_shrec_script_scores_a_binned_shrec_file(tmp_path):
    """particle_locations_bin2.txt holds integer centres (the script reads them with int(x)), the exact ones
    stay in the CSV; the official SHREC 2021 script scores the binned files: picks at the listed centres
    find every picked particle, no false positive, and faket evaluate gives the same numbers."""
    import json
    import subprocess

    from faket.cli import main
    from faket.formats.particles import read_particles

    parts = _shrec_model(tmp_path / "full", np.random.default_rng(7))
    lab = tmp_path / "lab"
    assert (
        main(
            [
                "labels",
                "--class-mask",
                str(tmp_path / "full" / "class_mask.mrc"),
                "--occupancy",
                str(tmp_path / "full" / "occupancy_mask.mrc"),
                "--particles",
                str(tmp_path / "full" / "particle_locations.txt"),
                "-o",
                str(lab),
                "--bin",
                "2",
                "--z-range",
                "1:11",
                "--quiet",
            ]
        )
        == 0
    )
    exact = read_particles(lab / "particles_bin2.csv")
    lines = (lab / "particle_locations_bin2.txt").read_text().splitlines()
    assert len(lines) == len(exact) == len(parts)
    xyz = np.array([[int(v) for v in ln.split()[1:4]] for ln in lines])  # integers, as int(x) reads them
    frac = exact[["x", "y", "z"]].to_numpy()
    assert (frac % 1 != 0).any()  # the CSV keeps exact centres
    np.testing.assert_array_equal(xyz, np.rint(frac))
    model = tmp_path / "model"
    model.mkdir()
    (model / "particle_locations.txt").write_text("\n".join(lines) + "\n")
    for src, dst in (("occupancy_mask_bin2.mrc", "occupancy_mask.mrc"), ("class_mask_bin2.mrc", "class_mask.mrc")):
        (model / dst).write_bytes((lab / src).read_bytes())
    # picks: every listed centre but one scorable particle's (the script needs a missed particle: background)
    skip = next(i for i, ln in enumerate(lines) if ln.split()[0] not in ("4V94", "vesicle"))
    sub = tmp_path / "sub" / "picks.txt"
    sub.parent.mkdir()
    sub.write_text(
        "".join(
            ln.split(maxsplit=4)[0] + " " + " ".join(ln.split()[1:4]) + "\n" for i, ln in enumerate(lines) if i != skip
        )
    )
    python, wrapper, script = shrec_script_or_skip()
    proc = subprocess.run(
        [
            python,
            "-c",
            _SHREC_DRIVER,
            str(tmp_path / "cap.json"),
            str(wrapper),
            str(script),
            "-s",
            str(sub),
            "-t",
            str(model),
            "-o",
            str(tmp_path / "results.txt"),
            "--confusion",
            "",
        ],
        check=False,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (off,) = json.loads((tmp_path / "cap.json").read_text())
    names = [ln.split()[0] for ln in lines]
    scorable = sum(n not in ("4V94", "vesicle") for n in names)
    assert off["n_unique_particles_found"] == scorable - 1 and off["n_prediction_missed"] == 0
    assert off["n_gt_particles2"] == len(names) - names.count("4V94")
    assert off["n_clipped_predicted_particles"] == 0
    out = tmp_path / "m.json"
    assert (
        main(
            [
                "evaluate",
                "--truth",
                str(model / "particle_locations.txt"),
                "--occupancy",
                str(model / "occupancy_mask.mrc"),
                "--pred",
                str(sub),
                "-o",
                str(out),
                "--exclude-class",
                "4V94",
                "--exclude-class",
                "vesicle",
                "--quiet",
            ]
        )
        == 0
    )
    m = json.loads(out.read_text())
    assert m["localisation"]["f1"] == pytest.approx(off["localization_f1"], abs=1e-6)
    assert m["classification"]["macro_f1"] == pytest.approx(off["overall"]["F1 Macro"], abs=1e-6)


def test_binned_masks_and_tomogram_carry_their_origin_in_the_full_volume(tmp_path):
    """Cropped and binned masks and the tomogram record (MRC header origin, Angstrom) where their first voxel
    sits in the full volume: origin + binned position x binned voxel size = the unbinned position."""
    import mrcfile

    from faket.cli import main
    from faket.formats.particles import read_particles

    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "box: [32, 48, 48]\nvoxel_size: 10.0\nslab_thickness: 24\nclasses:\n"
        "  - {template: globule, count: 6}\n  - {template: ring, count: 3}\n"
    )
    assert main(["layout", "-o", str(tmp_path / "lay"), "--spec", str(spec), "--seed", "2", "--quiet"]) == 0
    a, b, v = 5, 2, 10.0
    assert (
        main(
            [
                "labels",
                str(tmp_path / "lay"),
                "-o",
                str(tmp_path / "lab"),
                "--bin",
                f"1,{b},3",
                "--z-range",
                f"{a}:29",
                "--quiet",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "project",
                str(tmp_path / "lay" / "volume.mrc"),
                "-o",
                str(tmp_path / "ts.mrc"),
                "--angles",
                "-60:60:30",
                "--quiet",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "reconstruct",
                str(tmp_path / "ts.mrc"),
                "-o",
                str(tmp_path / "tomo.mrc"),
                "--bin",
                str(b),
                "--z-range",
                f"{a}:29",
                "--volume-z",
                "32",
                "--quiet",
            ]
        )
        == 0
    )
    full = read_particles(tmp_path / "lab" / "particles.csv").set_index("particle_id")
    origins = {}
    for k in (1, b, 3):
        for name in (f"class_mask_bin{k}.mrc", f"occupancy_mask_bin{k}.mrc"):
            with mrcfile.open(tmp_path / "lab" / name, header_only=True) as m:
                o = m.header.origin
                origins[name] = (float(o.x), float(o.y), float(o.z))
                assert float(m.voxel_size.x) == pytest.approx(v * k)
        assert origins[f"class_mask_bin{k}.mrc"] == origins[f"occupancy_mask_bin{k}.mrc"]
        ox, oy, oz = origins[f"class_mask_bin{k}.mrc"]
        assert (ox, oy, oz) == pytest.approx(((k - 1) / 2 * v, (k - 1) / 2 * v, (a + (k - 1) / 2) * v))
        # a particle's binned position maps onto its unbinned position through the header
        binned = read_particles(tmp_path / "lab" / f"particles_bin{k}.csv")
        side = __import__("json").loads((tmp_path / "lab" / f"particles_bin{k}.json").read_text())
        old_of = {n: int(o) for o, n in side["particle_id_map"].items()}
        for _, r in binned.iterrows():
            f = full.loc[old_of[int(r.particle_id)]]
            np.testing.assert_allclose(
                [ox + r.x * v * k, oy + r.y * v * k, oz + r.z * v * k], [f.x * v, f.y * v, f.z * v], atol=1e-6
            )
    with mrcfile.open(tmp_path / "tomo.mrc", header_only=True) as m:
        o = m.header.origin
        assert (float(o.x), float(o.y), float(o.z)) == pytest.approx(origins[f"class_mask_bin{b}.mrc"])
    # the unbinned, uncropped layout keeps origin 0
    with mrcfile.open(tmp_path / "lay" / "class_mask.mrc", header_only=True) as m:
        assert (float(m.header.origin.x), float(m.header.origin.y), float(m.header.origin.z)) == (0, 0, 0)
