"""faket.evaluation.evaluate / faket evaluate: scoring of picks by the official SHREC 2021 rules (default, parity
with the challenge's script) and faket's rules."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import write_mrc

from faket.errors import InputError
from faket.evaluation.evaluate import dilate_occupancy, evaluate_picks, unbin_coordinates

SHAPE = (24, 40, 40)  # Z, Y, X
# particle_id, class, centre (z, y, x), radius
PARTICLES = [
    (1, "1BXN", (6, 8, 8), 3),
    (2, "3QM1", (6, 30, 10), 2),
    (3, "1BXN", (16, 10, 30), 3),
    (4, "5MRC", (16, 28, 28), 4),
]


def make_occupancy():
    z, y, x = np.meshgrid(*(np.arange(n) for n in SHAPE), indexing="ij")
    occ = np.zeros(SHAPE, np.int64)
    for pid, _, (cz, cy, cx), r in PARTICLES:
        occ[(z - cz) ** 2 + (y - cy) ** 2 + (x - cx) ** 2 <= r * r] = pid
    return occ


def truth():
    ids = np.array([p[0] for p in PARTICLES])
    cls = [p[1] for p in PARTICLES]
    zyx = np.array([p[2] for p in PARTICLES], float)
    return ids, cls, zyx


def test_perfect_picks_f1_one():
    occ = make_occupancy()
    ids, cls, zyx = truth()
    ev = evaluate_picks(occ, ids, zyx, truth_classes=cls, truth_zyx=zyx, pick_classes=cls)
    loc = ev.localisation
    assert (loc["precision"], loc["recall"], loc["f1"]) == (1.0, 1.0, 1.0)
    assert loc["true_positives"] == 4 and loc["false_positives"] == 0 and loc["n_duplicates"] == 0
    assert loc["mean_distance_voxels"] == 0.0
    assert ev.classification["macro_f1"] == 1.0
    for c in set(cls):
        assert ev.classification["per_class"][c]["f1"] == 1.0
    # confusion matrix: diagonal over particles, no background row entries
    assert ev.confusion.sum() == 4
    assert np.trace(ev.confusion[:3, :3]) == 4


def test_picks_outside_all_particles_give_zero():
    occ = make_occupancy()
    ids, cls, zyx = truth()
    # move every pick to a background voxel well away from all particles (beyond the 1-voxel dilation)
    bg = np.array([[20, 2, 2], [2, 38, 38], [22, 38, 2], [2, 2, 38]], float)
    assert (dilate_occupancy(occ)[tuple(bg.astype(int).T)] == 0).all()
    ev = evaluate_picks(occ, ids, bg, truth_classes=cls, pick_classes=cls, rules="faket")
    loc = ev.localisation
    assert loc["true_positives"] == 0 and loc["false_positives"] == 4
    assert (loc["precision"], loc["recall"], loc["f1"]) == (0.0, 0.0, 0.0)
    assert ev.classification["macro_f1"] == 0.0
    # all particles predicted "background"; the 4 false positives fill the background row
    assert ev.confusion[:-1, -1].sum() == 4
    assert ev.confusion[-1].sum() == 4
    # SHREC rules: the same counts; pycm's classes include background (predicted for every particle), the true
    # classes are never predicted: precision None (pycm's "None"), so the macro precision is None too
    sh = evaluate_picks(occ, ids, bg, truth_classes=cls, pick_classes=cls)
    assert sh.localisation["true_positives"] == 0 and sh.localisation["false_positives"] == 4
    assert sorted(sh.classification["per_class"]) == ["1BXN", "3QM1", "5MRC", "background"]
    assert sh.classification["per_class"]["1BXN"]["precision"] is None
    assert sh.classification["macro_precision"] is None and sh.classification["macro_f1"] == 0.0


def test_half_the_particles_recall_half():
    occ = make_occupancy()
    ids, cls, zyx = truth()
    ev = evaluate_picks(occ, ids, zyx[:2], truth_classes=cls, pick_classes=cls[:2])
    loc = ev.localisation
    assert loc["recall"] == 0.5 and loc["precision"] == 1.0
    assert loc["f1"] == pytest.approx(2 * 0.5 / 1.5)
    assert loc["false_negatives"] == 2


def test_wrong_class_is_localisation_hit_classification_miss():
    occ = make_occupancy()
    ids, cls, zyx = truth()
    picks_cls = list(cls)
    picks_cls[3] = "1BXN"  # 5MRC particle called 1BXN
    ev = evaluate_picks(occ, ids, zyx, truth_classes=cls, pick_classes=picks_cls)
    assert ev.localisation["f1"] == 1.0
    pc = ev.classification["per_class"]
    assert pc["5MRC"]["recall"] == 0.0 and pc["5MRC"]["f1"] == 0.0
    assert pc["1BXN"]["recall"] == 1.0 and pc["1BXN"]["precision"] == pytest.approx(2 / 3)
    assert pc["3QM1"]["f1"] == 1.0
    assert ev.classification["n_correct"] == 3
    lt, lp = ev.confusion_labels_true, ev.confusion_labels_pred
    assert ev.confusion[lt.index("5MRC"), lp.index("1BXN")] == 1


def test_duplicates_counted_and_lower_precision_only():
    occ = make_occupancy()
    ids, cls, zyx = truth()
    picks = np.concatenate([zyx, zyx[[0]] + [0, 1, 0], zyx[[0]] + [0, -1, 1], zyx[[2]]])
    pcls = cls + ["3QM1", "1BXN", "1BXN"]  # duplicates' classes do not change the first assignment
    ev = evaluate_picks(occ, ids, picks, truth_classes=cls, pick_classes=pcls)
    loc = ev.localisation
    assert loc["n_picks"] == 7 and loc["n_hits"] == 7
    assert loc["n_duplicates"] == 3 and loc["n_particles_with_multiple_picks"] == 2
    assert loc["recall"] == 1.0 and loc["precision"] == pytest.approx(4 / 7)
    assert ev.classification["macro_f1"] == 1.0
    np.testing.assert_array_equal(ev.particle_hits, [3, 1, 2, 1])


def test_dilation_by_one_voxel_like_shrec():
    occ = make_occupancy()
    ids, cls, zyx = truth()
    # particle 1 (radius 3 at x=8): x = 12 is one voxel beyond its surface (x = 11)
    just_out = np.array([[6, 8, 12.0]])
    two_out = np.array([[6, 8, 13.0]])
    diag = np.array([[6, 12, 11.0]])  # diagonal neighbour of surface voxel (6, 11, 11)? not in the cross
    assert occ[6, 8, 11] == 1 and occ[6, 8, 12] == 0
    assert evaluate_picks(occ, ids, just_out).localisation["true_positives"] == 1
    assert evaluate_picks(occ, ids, two_out).localisation["true_positives"] == 0
    assert evaluate_picks(occ, ids, just_out, dilate=False).localisation["true_positives"] == 0
    d = dilate_occupancy(occ)
    z, y, x = diag[0].astype(int)
    expect = int(
        max(
            occ[z, y, x],
            *(
                occ[z + a, y + b, x + c]
                for a, b, c in [(1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1)]
            ),
        )
    )
    assert d[z, y, x] == expect


def test_rounding_and_bounds():
    occ = make_occupancy()
    ids, _, zyx = truth()
    # 0.4 voxel off still rounds onto the centre voxel
    assert evaluate_picks(occ, ids, zyx + 0.4).localisation["recall"] == 1.0
    with pytest.raises(InputError, match="outside"):
        evaluate_picks(occ, ids, [[0, 0, 40.2]], rules="faket")
    ev = evaluate_picks(occ, ids, [[0, 0, 40.2]], clip=True, rules="faket")
    assert ev.localisation["n_picks_clipped"] == 1
    # SHREC rules always clamp (as the script does), and measure from the clamped pick
    occ[12, 20, 38:] = 5  # a particle at the X border
    ids, zyx = np.append(ids, 5), np.vstack([zyx, [12, 20, 38.5]])
    ev = evaluate_picks(occ, ids, [[12, 20, 45.3]], truth_zyx=zyx)
    assert ev.localisation["n_picks_clipped"] == 1 and ev.localisation["true_positives"] == 1
    assert ev.localisation["mean_distance_voxels"] == pytest.approx(0.5)  # from x = 39, not 45.3
    with pytest.raises(InputError, match="NaN"):
        evaluate_picks(occ, ids, [[np.nan, 0, 0]])


def test_exclude_class():
    occ = make_occupancy()
    ids, cls, zyx = truth()
    ev = evaluate_picks(occ, ids, zyx, truth_classes=cls, pick_classes=cls, exclude_classes=["5mrc"], rules="faket")
    loc = ev.localisation
    assert loc["n_particles"] == 3 and loc["n_picks"] == 3 and loc["n_picks_dropped_excluded"] == 1
    assert loc["f1"] == 1.0
    assert "5MRC" not in ev.classification["per_class"]
    # SHREC rules: the pick on the excluded particle stays in n_picks (precision 3/4); an excluded class leaves
    # the particle count, a vesicle does not (the script's --skip_vesicles)
    ev = evaluate_picks(occ, ids, zyx, truth_classes=cls, pick_classes=cls, exclude_classes=["5mrc"])
    loc = ev.localisation
    assert (loc["n_particles"], loc["n_picks"], loc["n_picks_on_excluded"]) == (3, 4, 1)
    assert (loc["precision"], loc["recall"], loc["false_positives"]) == (0.75, 1.0, 0)
    assert "5MRC" not in ev.classification["per_class"]
    ves = ["vesicle" if c == "5MRC" else c for c in cls]
    ev = evaluate_picks(occ, ids, zyx, truth_classes=ves, pick_classes=ves, exclude_classes=["vesicle"])
    loc = ev.localisation
    assert (loc["n_particles"], loc["true_positives"], loc["false_negatives"]) == (4, 3, 0)
    assert loc["recall"] == 0.75


def test_shrec_first_pick_decides_and_4v94_label_is_background():
    """SHREC rules: a particle takes its first pick's class; a first pick labelled 4V94 counts as background
    (the script's ``p[0][0] != '4V94'``), even when 4V94 is not excluded; later picks do not change it."""
    occ = make_occupancy()
    ids, cls, zyx = truth()
    picks = np.concatenate([zyx, zyx[:1]])
    labels = ["4V94", "3QM1", "3QM1", "5MRC", "1BXN"]  # particle 1: 4V94 then right; particle 3: wrong
    ev = evaluate_picks(occ, ids, picks, truth_classes=cls, pick_classes=labels)
    per = ev.classification["per_class"]
    assert per["1BXN"]["true_positives"] == 0 and per["1BXN"]["n_particles"] == 2
    assert per["background"]["n_predicted"] == 1 and per["3QM1"]["n_predicted"] == 2
    assert ev.localisation["n_duplicates"] == 1 and ev.localisation["precision"] == 4 / 5
    assert ev.classification["macro_recall"] is None  # background has no true particle: recall None


def test_unbin_coordinates_matches_geometry():
    # original voxels 8..11 form binned voxel 2 at B=4: its centre 9.5 = 2*4 + 1.5
    assert unbin_coordinates(2, 4) == 9.5
    assert unbin_coordinates(2, 4) == np.arange(8, 12).mean()
    # Z-cropped at a = 10, binned by 2: binned z 3 covers original 16, 17 -> centre 16.5
    assert unbin_coordinates(3, 2, offset=10) == 16.5
    assert unbin_coordinates(7, 1) == 7.0


def test_mask_id_missing_from_truth_is_an_error():
    occ = make_occupancy()
    ids, _, zyx = truth()
    with pytest.raises(InputError, match="not in the truth table"):
        evaluate_picks(occ, ids[:3], zyx)


# --------------------------------------------------------------------------------------------------
# command line


def write_truth_csv(path):
    lines = ["particle_id,class_id,class_name,x,y,z,rot,tilt,psi"]
    cid = {"1BXN": 1, "3QM1": 2, "5MRC": 3}
    for pid, c, (z, y, x), _ in PARTICLES:
        lines.append(f"{pid},{cid[c]},{c},{x},{y},{z},0,0,0")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def labelled(tmp_path):
    occ = write_mrc(tmp_path / "occupancy_mask.mrc", make_occupancy().astype(np.float32))
    tr = write_truth_csv(tmp_path / "particles.csv")
    return tmp_path, tr, occ


def test_cli_perfect_picks_and_outputs(labelled, run_cli):
    d, tr, occ = labelled
    picks = d / "picks.csv"
    picks.write_text("x,y,z,class_name\n" + "".join(f"{x},{y},{z},{c.lower()}\n" for _, c, (z, y, x), _ in PARTICLES))
    out = d / "res" / "metrics.json"
    rc, _, err = run_cli("evaluate", "--truth", tr, "--occupancy", occ, "--pred", picks, "-o", out, "-q")
    assert rc == 0, err
    m = json.loads(out.read_text())
    assert m["localisation"]["f1"] == 1.0
    assert m["classification"]["macro_f1"] == 1.0
    assert m["provenance"]["faket_step"] == "evaluate" and m["rules_name"] == "shrec"
    conf = (d / "res" / "metrics_confusion.csv").read_text().splitlines()
    assert conf[0].split(",")[1:] == ["1BXN", "3QM1", "5MRC"]  # pycm's classes: no particle missed
    assert conf[1].split(",") == ["1BXN", "2", "0", "0"]
    rc, _, err = run_cli(
        "evaluate", "--truth", tr, "--occupancy", occ, "--pred", picks, "-o", out, "-q", "--rules", "faket"
    )
    assert rc == 0, err
    assert json.loads(out.read_text())["rules_name"] == "faket"
    conf = (d / "res" / "metrics_confusion.csv").read_text().splitlines()
    header = conf[0].split(",")
    assert header[1:] == ["1BXN", "3QM1", "5MRC", "background"]
    assert conf[1].split(",") == ["1BXN", "2", "0", "0", "0"]
    assert conf[-1].split(",")[0] == "background"


def test_cli_binned_shrec_txt_and_class_ids(labelled, run_cli):
    d, tr, occ = labelled
    b, a = 2, 4  # picks from a tomogram Z-cropped at 4 and binned by 2
    lines = []
    for _, c, (z, y, x), _ in PARTICLES:
        lines.append(f"{c} {(x - (b - 1) / 2) / b} {(y - (b - 1) / 2) / b} {(z - a - (b - 1) / 2) / b} 0 0 0")
    picks = d / "picks.txt"
    picks.write_text("\n".join(lines) + "\n")
    out = d / "m.json"
    rc, _, err = run_cli(
        "evaluate",
        "--truth",
        tr,
        "--occupancy",
        occ,
        "--pred",
        picks,
        "--pred-bin",
        b,
        "--pred-z-offset",
        a,
        "-o",
        out,
        "--confusion",
        d / "c.csv",
        "-q",
    )
    assert rc == 0, err
    m = json.loads(out.read_text())
    assert m["localisation"]["f1"] == 1.0 and m["localisation"]["mean_distance_voxels"] == pytest.approx(0.0)
    assert (d / "c.csv").exists()
    # without the binning the same picks land elsewhere
    rc, _, _ = run_cli("evaluate", "--truth", tr, "--occupancy", occ, "--pred", picks, "-o", d / "m2.json", "-q")
    assert rc == 0
    assert json.loads((d / "m2.json").read_text())["localisation"]["f1"] < 0.5

    # CSV with class ids only (mapped through the truth's class_id -> class_name)
    p2 = d / "ids.csv"
    p2.write_text(
        "x,y,z,class_id\n"
        + "".join(f"{x},{y},{z},{cid}\n" for cid, (_, _, (z, y, x), _) in zip([1, 2, 1, 1], PARTICLES))
    )
    rc, _, err = run_cli("evaluate", "--truth", tr, "--occupancy", occ, "--pred", p2, "-o", d / "m3.json", "-q")
    assert rc == 0, err
    m3 = json.loads((d / "m3.json").read_text())
    assert m3["localisation"]["f1"] == 1.0
    assert m3["classification"]["per_class"]["5MRC"]["recall"] == 0.0
    assert m3["classification"]["n_correct"] == 3


def _star_picks(d, cids):
    rows = "".join(f"{x} {y} {z} {cid}\n" for cid, (_, _, (z, y, x), _) in zip(cids, PARTICLES))
    star = d / "picks.star"
    star.write_text(
        "data_particles\n\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n_rlnCoordinateZ #3\n"
        "_rlnClassNumber #4\n" + rows
    )
    return star


def _deepfinder_picks(d, cids):
    objs = "".join(
        f'<object tomo_idx="0" class_label="{cid}" x="{x}" y="{y}" z="{z}" cluster_size="30"/>'
        for cid, (_, _, (z, y, x), _) in zip(cids, PARTICLES)
    )
    picks = d / "picks.xml"
    picks.write_text(f"<objlist>{objs}</objlist>")
    return picks


@pytest.mark.parametrize("write", [_star_picks, _deepfinder_picks], ids=["star", "deepfinder_xml"])
def test_cli_picks_with_class_ids_only(labelled, run_cli, write):
    """STAR (rlnClassNumber) and DeepFinder picks (objlist XML, class_label only) score through the truth's
    class ids."""
    d, tr, occ = labelled
    picks = write(d, [1, 2, 3, 3])
    rc, _, err = run_cli("evaluate", "--truth", tr, "--occupancy", occ, "--pred", picks, "-o", d / "x.json", "-q")
    assert rc == 0, err
    m = json.loads((d / "x.json").read_text())
    assert m["localisation"]["f1"] == 1.0
    pc = m["classification"]["per_class"]
    assert pc["1BXN"]["recall"] == 0.5 and pc["5MRC"]["precision"] == 0.5 and pc["3QM1"]["f1"] == 1.0


def test_cli_relion5_centred_star_picks_binned(labelled, run_cli):
    """RELION 5 picks (centred Angstrom) on a tomogram binned by 2 from the 10 A mask grid: the default
    picked box is the mask's size // 2 and the voxel size 20 A; a Z-cropped tomogram needs --pred-box."""
    from faket.formats.particles import read_particles, write_particles_star

    d, tr, occ = labelled
    df = read_particles(tr)
    b = 2
    binned = df.copy()
    for c in "xyz":
        binned[c] = (df[c] - (b - 1) / 2) / b
    star = d / "picks_bin2.star"
    write_particles_star(
        binned, star, voxel_size_a=20.0, box_zyx=tuple(n // b for n in SHAPE), bin_factor=b, unbinned_box_zyx=SHAPE
    )  # RELION 5: centred on the bin-1 tomogram
    rc, _, err = run_cli(
        "evaluate", "--truth", tr, "--occupancy", occ, "--pred", star, "--pred-bin", b, "-o", d / "r5.json", "-q"
    )
    assert rc == 0, err
    m = json.loads((d / "r5.json").read_text())
    assert m["localisation"]["f1"] == 1.0 and m["classification"]["macro_f1"] == 1.0
    assert m["localisation"]["mean_distance_voxels"] == pytest.approx(0.0, abs=1e-6)
    # faket's rules measure from the unrounded pick: the same Angstrom position as the truth, to 1e-6 voxel
    rc, _, err = run_cli(
        "evaluate",
        "--truth",
        tr,
        "--occupancy",
        occ,
        "--pred",
        star,
        "--pred-bin",
        b,
        "--rules",
        "faket",
        "-o",
        d / "r5f.json",
        "-q",
    )
    assert rc == 0, err
    m = json.loads((d / "r5f.json").read_text())
    assert m["localisation"]["mean_distance_voxels"] == pytest.approx(0.0, abs=1e-6)
    # Z-cropped: the picked tomogram's size cannot be guessed
    rc, _, err = run_cli(
        "evaluate",
        "--truth",
        tr,
        "--occupancy",
        occ,
        "--pred",
        star,
        "--pred-bin",
        b,
        "--pred-z-offset",
        2,
        "-o",
        d / "r6.json",
    )
    assert rc == 2 and "--pred-box" in err and not (d / "r6.json").exists()


@pytest.mark.parametrize("case", ["missing_column", "missing_file", "outside", "bad_number", "no_truth"])
def test_cli_bad_input_exit_2_nothing_written(labelled, run_cli, case):
    d, tr, occ = labelled
    picks = d / "picks.csv"
    if case == "missing_column":
        picks.write_text("x,y,class_name\n1,2,1BXN\n")
    elif case == "outside":
        picks.write_text("x,y,z\n8,8,6\n8,8,60\n")
    elif case == "bad_number":
        picks.write_text("x,y,z\n8,8,abc\n")
    elif case == "missing_file":
        picks = d / "nope.csv"
    else:
        picks.write_text("x,y,z\n8,8,6\n")
        tr = d / "no_particles.csv"
    out = d / "out" / "metrics.json"
    rules = ["--rules", "faket"] if case == "outside" else []  # SHREC rules clamp picks outside
    rc, _, err = run_cli("evaluate", "--truth", tr, "--occupancy", occ, "--pred", picks, "-o", out, *rules)
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("faket evaluate: error:")
    assert str(picks if case != "no_truth" else tr) in lines[0]
    assert not out.exists() and not (d / "out" / "metrics_confusion.csv").exists()
    assert not (d / "out").exists() or not any((d / "out").iterdir())


def test_dilation_equals_scikit_image_default_as_in_shrec_script():
    morph = pytest.importorskip("skimage.morphology")
    occ = make_occupancy()
    np.testing.assert_array_equal(dilate_occupancy(occ), morph.dilation(occ))


def test_cli_shrec_picks_4_and_7_fields_score_alike_and_malformed_refused(labelled, run_cli):
    """SHREC picks: ``class x y z`` (as SHREC submissions) and ``class x y z Z1 X Z2`` give the same scores
    through the one SHREC reader; a line of another length is one error line, exit 2, nothing written."""
    d, tr, occ = labelled
    results = []
    for n in (4, 7):
        p = d / f"picks{n}.txt"
        p.write_text("".join(f"{c} {x} {y} {z}{' 0 0 0' if n == 7 else ''}\n" for _, c, (z, y, x), _ in PARTICLES))
        out = d / f"m{n}.json"
        rc, _, err = run_cli("evaluate", "--truth", tr, "--occupancy", occ, "--pred", p, "-o", out, "-q")
        assert rc == 0, err
        m = json.loads(out.read_text())
        results.append((m["localisation"], m["classification"]))
    assert results[0] == results[1] and results[0][0]["f1"] == 1.0 and results[0][1]["macro_f1"] == 1.0
    bad = d / "bad.txt"
    bad.write_text("1BXN 8 8 6\n1BXN 8 8 6 0.5 0\n")
    out = d / "bad" / "m.json"
    rc, _, err = run_cli("evaluate", "--truth", tr, "--occupancy", occ, "--pred", bad, "-o", out)
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and f"{bad}: line 2: expected 'class x y z'" in lines[0]
    assert "(4 or 7 fields), got 6" in lines[0] and not out.exists()


def test_evaluate_table_equals_evaluate_picks_on_unbinned_points():
    """faket.evaluate.evaluate_table (table + Picks, binned) = evaluate_picks on the unbinned z, y, x."""
    import pandas as pd

    from faket.evaluation.evaluate import evaluate_table, match_pick_classes, picked_geometry, unbin_points
    from faket.formats.particles import Picks

    occ = make_occupancy()
    ids, cls, zyx = truth()
    cid = {"1BXN": 1, "3QM1": 2, "5MRC": 3}
    df = pd.DataFrame(
        {
            "particle_id": ids,
            "class_id": [cid[c] for c in cls],
            "class_name": cls,
            "x": zyx[:, 2],
            "y": zyx[:, 1],
            "z": zyx[:, 0],
        }
    )
    b, a = 2, 4
    binned_xyz = (zyx[:, ::-1] - (b - 1) / 2) / b
    binned_xyz[:, 2] -= a / b
    np.testing.assert_allclose(unbin_points(binned_xyz, b, a), zyx[:, ::-1])
    picks = Picks(binned_xyz, None, [1, 2, 1, 3])
    ev = evaluate_table(occ, df, picks, bin_factor=b, z_offset=a)
    ref = evaluate_picks(
        occ,
        ids,
        zyx,
        truth_classes=cls,
        truth_zyx=zyx,
        pick_classes=match_pick_classes(None, [1, 2, 1, 3], cls, {v: k for k, v in cid.items()}),
    )
    assert ev.to_dict() == ref.to_dict() and ev.localisation["f1"] == 1.0
    assert ev.classification["per_class"]["5MRC"]["recall"] == 1.0
    assert ev.classification["per_class"]["1BXN"]["recall"] == 1.0
    assert match_pick_classes(["1bxn", "other"], None, cls, {}) == ["1BXN", "other"]
    assert match_pick_classes(None, None, cls, {}) is None
    # the picked tomogram's geometry: mask grid binned by B unless Z-cropped or B is fractional
    assert picked_geometry((24, 40, 40), 10.0, 2) == (20.0, (12, 20, 20))
    assert picked_geometry((24, 40, 40), 10.0, 2, z_offset=4) == (20.0, None)
    assert picked_geometry((24, 40, 40), None, 1.5) == (None, None)
    assert picked_geometry((24, 40, 40), 10.0, 2, voxel_size_a=7.0, box_zyx=(1, 2, 3)) == (7.0, (1, 2, 3))


# --------------------------------------------------------------------------------------------------
# parity with the official SHREC 2021 evaluation script (../shared/tools/shrec2021: eval.py + run_eval.py)

SHREC_TOOLS = Path(__file__).resolve().parents[1].parent / "shared" / "tools" / "shrec2021"
#: the script's class list (its index = class number; background 0)
SHREC_CLASSES = [
    "background",
    "4V94",
    "4CR2",
    "1QVR",
    "1BXN",
    "3CF3",
    "1U6G",
    "3D2F",
    "2CG9",
    "3H84",
    "3GL1",
    "3QM1",
    "1S3X",
    "5MRC",
    "vesicle",
    "fiducial",
]
SHREC_PDB = ["4CR2", "1QVR", "1BXN", "3CF3", "1U6G", "3D2F", "2CG9", "3H84", "3GL1", "3QM1", "1S3X", "5MRC"]
PARITY_SHAPE = (12, 40, 512)  # Z, Y, X: X as long as SHREC's (the script clamps picks to 0..511)

# run the script through its wrapper, unchanged; a print hook keeps the unrounded values of every figure the
# script prints (its localisation numbers and pycm's SUMMARY_OVERALL / SUMMARY_CLASS statistics)
_SHREC_DRIVER = r"""
import builtins, json, runpy, sys
out_json, wrapper = sys.argv[1], sys.argv[2]
LOC = ["n_predicted_particles", "n_gt_particles2", "n_unique_particles_found", "n_prediction_missed",
       "n_unique_particles_not_found", "n_unique_particle_with_multiple_hits", "n_clipped_predicted_particles",
       "localization_avg_distance", "localization_recall", "localization_precision", "localization_miss_rate",
       "localization_f1"]
captured, _print = [], builtins.print
def spy(*a, **k):
    g = sys._getframe(1).f_globals
    if a and isinstance(a[0], str) and "### Localization" in a[0] and "confusion_matrix" in g:
        from pycm.pycm_param import SUMMARY_CLASS, SUMMARY_OVERALL
        cm = g["confusion_matrix"]
        captured.append({"submission": g["submission"].name, "report": a[0], **{n: g[n] for n in LOC},
                         "overall": {s: cm.overall_stat[s] for s in SUMMARY_OVERALL},
                         "per_class": {str(c): {s: cm.class_stat[s][c] for s in SUMMARY_CLASS} for c in cm.classes},
                         "table": {str(a): {str(p): int(n) for p, n in row.items()} for a, row in cm.table.items()}})
    return _print(*a, **k)
builtins.print = spy
sys.argv = [wrapper] + sys.argv[3:]
try:
    runpy.run_path(wrapper, run_name="__main__")
finally:
    builtins.print = _print
    with open(out_json, "w") as f:
        json.dump(captured, f, default=lambda o: o.item() if hasattr(o, "item") else str(o))
"""


def shrec_script_or_skip():
    """(python, wrapper, eval.py) of the official script; skips when ../shared or its imports are absent."""
    import importlib.util

    if not (SHREC_TOOLS / "eval.py").is_file():
        pytest.skip(f"official SHREC 2021 script not found at {SHREC_TOOLS} (../shared absent)")
    missing = [m for m in ("pycm", "skimage", "seaborn", "mrcfile", "scipy") if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(
            f"the SHREC 2021 script's imports are missing here: {', '.join(missing)} (pip install pycm==3.1 seaborn)"
        )
    return sys.executable, SHREC_TOOLS / "run_eval.py", SHREC_TOOLS / "eval.py"


@pytest.fixture(scope="module")
def shrec_script():
    return shrec_script_or_skip()


def _shrec_model(folder: Path, rng):
    """A SHREC-style model folder: every SHREC class (12 PDB ids, 4V94, vesicle, fiducial), balls of radius 2-3
    on a grid, particle_locations.txt (ids = line numbers), occupancy_mask.mrc, class_mask.mrc."""
    names = SHREC_PDB + SHREC_PDB[:6] + ["4V94", "4V94", "vesicle", "vesicle", "fiducial", "fiducial"]
    names = list(rng.permutation(names))
    xs = [2, 509] + [int(v) for v in np.linspace(14, 496, len(names) - 2)]  # one at each X border
    z, y, x = np.meshgrid(*(np.arange(n) for n in PARITY_SHAPE), indexing="ij")
    occ = np.zeros(PARITY_SHAPE, np.float32)
    cls_mask = np.zeros(PARITY_SHAPE, np.float32)
    parts, lines = [], []
    for i, (name, cx) in enumerate(zip(names, xs), start=1):
        cz, cy = int(rng.integers(4, 8)), int(rng.choice([10, 28]))
        r = 2 if cx in (2, 509) else int(rng.integers(2, 4))
        ball = (z - cz) ** 2 + (y - cy) ** 2 + (x - cx) ** 2 <= r * r
        occ[ball] = i
        cls_mask[ball] = SHREC_CLASSES.index(name)
        parts.append((i, name, (cx, cy, cz), r))
        lines.append(f"{name} {cx} {cy} {cz} 0 0 0\n")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "particle_locations.txt").write_text("".join(lines))
    write_mrc(folder / "occupancy_mask.mrc", occ, voxel_size=10.0)
    write_mrc(folder / "class_mask.mrc", cls_mask, voxel_size=10.0)
    return parts


def _label(rng, name):
    """A SHREC submission label: upper or lower case (the script upper-cases all but 'fiducial')."""
    return name if name == "fiducial" or rng.random() < 0.7 else name.lower()


def _shrec_submissions(parts, rng) -> dict[str, list[tuple]]:
    """Generated pick lists (class, x, y, z): exact hits, shifted, wrong class, duplicates, false positives, picks
    outside the volume, picks on excluded particles, mixtures. Every list misses at least one particle and names
    only SHREC classes (the script's pycm relabel needs every class present, background included)."""
    scorable = [p for p in parts if p[1] not in ("4V94", "vesicle")]
    other = {p[1] for p in scorable}

    def wrong(name):
        return str(rng.choice(sorted(other - {name})))

    def on(p, d=(0, 0, 0), name=None):
        (cx, cy, cz), nm = p[2], p[1]
        return (name or nm, cx + d[0], cy + d[1], cz + d[2])

    subs = {}
    missed = {scorable[0][0], scorable[5][0]}
    subs["exact"] = [on(p) for p in scorable if p[0] not in missed]
    subs["shifted"] = [
        on(p, tuple(rng.uniform(-1.5, 1.5, 3).round(2)), _label(rng, p[1])) for p in scorable if p[0] not in missed
    ]
    subs["half_voxels"] = [on(p, (0.5, -0.5, 1.5)) for p in scorable[1:]]  # rounding half to even
    subs["wrong_class"] = [on(p, name=wrong(p[1]) if k % 3 == 0 else p[1]) for k, p in enumerate(scorable[1:])]
    subs["duplicates"] = [
        t
        for k, p in enumerate(scorable[1:])
        for t in ([on(p, name=wrong(p[1])), on(p, (1, 0, 0))] if k % 2 else [on(p)])
    ]
    subs["false_positives"] = [on(p) for p in scorable[2:]] + [
        (str(rng.choice(sorted(other))), int(rng.integers(0, 512)), 19, 1) for _ in range(9)
    ]
    border = [p for p in scorable if p[2][0] in (2, 509)]
    outside = []
    for p in border:
        cx, cy, cz = p[2]
        outside.append((p[1], 700 if cx == 509 else -5, cy, cz))  # clamped onto the particle
    outside += [
        (scorable[3][1], scorable[3][2][0], -4, scorable[3][2][2]),  # clamped to y = 0: background
        (scorable[4][1], scorable[4][2][0], scorable[4][2][1], -3),
        ("1BXN", 600, -2, -7),
    ]
    subs["outside"] = outside + [on(p) for p in scorable[6:]]
    excl = [p for p in parts if p[1] in ("4V94", "vesicle")]
    subs["on_excluded"] = (
        [on(p, name="4V94" if p[1] == "4V94" else wrong("")) for p in excl]
        + [on(p) for p in scorable[1:]]
        + [on(scorable[7], name="4V94")]
    )  # a 4V94 label on another class
    subs["first_pick_4v94"] = [on(p, name="4V94") if k % 4 == 0 else on(p) for k, p in enumerate(scorable[1:])]
    for seed in range(3):  # mixtures
        picks = []
        for p in parts:
            u = rng.random()
            if u < 0.15:
                continue
            name = p[1] if p[1] not in ("4V94", "vesicle") else "4V94"
            if rng.random() < 0.25:
                name = wrong(name)
            for _ in range(1 + int(rng.random() < 0.2)):
                picks.append(on(p, tuple(rng.normal(0, 0.8, 3).round(1)), _label(rng, name)))
        picks += [
            (
                _label(rng, str(rng.choice(sorted(other)))),
                float(rng.uniform(-20, 530)),
                float(rng.uniform(-5, 39)),
                float(rng.uniform(-3, 11.4)),
            )
            for _ in range(5)
        ]
        picks = [picks[i] for i in rng.permutation(len(picks))]
        subs[f"mixture{seed}"] = [t for t in picks if abs(t[1] - scorable[1][2][0]) > 6]  # one particle missed
    return subs


def _write_submission(path: Path, picks):
    path.write_text("".join(f"{c} {x} {y} {z}\n" for c, x, y, z in picks))


def _none(v):
    return None if v == "None" else v


@pytest.mark.parametrize("skip_4v94,skip_vesicles", [(True, True), (False, False), (True, False), (False, True)])
def test_default_scores_equal_the_official_shrec_script(shrec_script, tmp_path, run_cli, skip_4v94, skip_vesicles):
    """faket evaluate (default rules) gives every figure the official SHREC 2021 script prints, to 1e-6, on
    generated cases, with and without its class exclusions (--skip_4v94 / --skip_vesicles)."""
    import subprocess

    rng = np.random.default_rng(2021 + 2 * skip_4v94 + skip_vesicles)
    model = tmp_path / "model"
    parts = _shrec_model(model, rng)
    subs = _shrec_submissions(parts, rng)
    sub_dir = tmp_path / "submissions"
    sub_dir.mkdir()
    for name, picks in subs.items():
        _write_submission(sub_dir / f"{name}.txt", picks)
    python, wrapper, script = shrec_script
    out_json, res = tmp_path / "captured.json", tmp_path / "out" / "results.txt"
    res.parent.mkdir()
    proc = subprocess.run(
        [
            python,
            "-c",
            _SHREC_DRIVER,
            str(out_json),
            str(wrapper),
            str(script),
            "-s",
            str(sub_dir),
            "-t",
            str(model),
            "-o",
            str(res),
            "--confusion",
            "",
            "--skip_4v94",
            "1" if skip_4v94 else "",
            "--skip_vesicles",
            "1" if skip_vesicles else "",
        ],
        check=False,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    official = {c["submission"]: c for c in json.loads(out_json.read_text())}
    assert sorted(official) == sorted(f"{n}.txt" for n in subs)

    excl = (["--exclude-class", "4V94"] if skip_4v94 else []) + (
        ["--exclude-class", "vesicle"] if skip_vesicles else []
    )
    loc_keys = {
        "n_predicted_particles": "n_picks",
        "n_gt_particles2": "n_particles",
        "n_unique_particles_found": "true_positives",
        "n_prediction_missed": "false_positives",
        "n_unique_particles_not_found": "false_negatives",
        "n_unique_particle_with_multiple_hits": "n_particles_with_multiple_picks",
        "n_clipped_predicted_particles": "n_picks_clipped",
        "localization_avg_distance": "mean_distance_voxels",
        "localization_recall": "recall",
        "localization_precision": "precision",
        "localization_miss_rate": "miss_rate",
        "localization_f1": "f1",
    }
    for name in subs:
        off = official[f"{name}.txt"]
        out = tmp_path / f"{name}.json"
        rc, _, err = run_cli(
            "evaluate",
            "--truth",
            model / "particle_locations.txt",
            "--occupancy",
            model / "occupancy_mask.mrc",
            "--pred",
            sub_dir / f"{name}.txt",
            "-o",
            out,
            "-q",
            *excl,
        )
        assert rc == 0, err
        m = json.loads(out.read_text())
        loc, cls = m["localisation"], m["classification"]
        for k_off, k_us in loc_keys.items():
            assert loc[k_us] == pytest.approx(off[k_off], abs=1e-6), (name, k_us)
        # the printed report, as the script formats it
        for label, key in (
            ("Recall", "recall"),
            ("Precision", "precision"),
            ("Miss rate", "miss_rate"),
            ("F1 score", "f1"),
        ):
            assert f"\t{label}: {loc[key]:.5f}\n" in off["report"], (name, label)
        assert sorted(cls["shrec_overall"]) == sorted(off["overall"])
        for k, v in off["overall"].items():
            ours = cls["shrec_overall"][k]
            if isinstance(_none(v), str) or _none(v) is None:
                assert ours == _none(v), (name, k)
            else:
                assert ours == pytest.approx(v, abs=1e-6), (name, k)
        assert sorted(cls["shrec_per_class"]) == sorted(off["per_class"]), name
        for c, stats in off["per_class"].items():
            for k, v in stats.items():
                ours = cls["shrec_per_class"][c][k]
                if isinstance(_none(v), str) or _none(v) is None:
                    assert ours == _none(v), (name, c, k)
                else:
                    assert ours == pytest.approx(v, abs=1e-6), (name, c, k)
        # the confusion matrix the script prints (rows true class, columns predicted class)
        rows = [ln.split(",") for ln in (tmp_path / f"{name}_confusion.csv").read_text().splitlines()]
        table = {r[0]: dict(zip(rows[0][1:], map(int, r[1:]))) for r in rows[1:]}
        assert table == off["table"], name
        assert cls["macro_f1"] == pytest.approx(off["overall"]["F1 Macro"], abs=1e-6)
        assert cls["macro_precision"] == (
            None if off["overall"]["PPV Macro"] == "None" else pytest.approx(off["overall"]["PPV Macro"], abs=1e-6)
        )
