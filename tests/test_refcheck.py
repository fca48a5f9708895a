"""faket.refcheck and the reference options of faket noise / style: bad tilts, polarity, pixel sizes."""

from __future__ import annotations

import json
from pathlib import Path

import mrcfile
import numpy as np
import pytest
import starfile

from faket.imaging.refcheck import bad_tilts, polarity, tilt_stats_raw


def _write(path, data, voxel=None, angles=None):
    with mrcfile.new(path, overwrite=True) as m:
        m.set_data(np.asarray(data, dtype=np.float32))
        if voxel:
            m.voxel_size = voxel
    if angles is not None:
        Path(path).with_suffix(".tlt").write_text("".join(f"{a:g}\n" for a in angles))
    return Path(path)


def test_tomodrgn_blank_tilts_are_exactly_the_invisible_frames(shared_data):
    """tomoDRGN's 40 real sub-tilt-series: the tilts flagged blank are exactly those its STAR file marks as not
    visible (rlnTomoVisibleFrames 0; 50 in all), and no other tilt is flagged."""
    d = shared_data / "tiltseries" / "tomodrgn_warptools_Unt"
    parts = starfile.read(d / "warptools_test_4-tomos_10-ptcls_box-32_angpix-12.star")["particles"]
    n_blank = 0
    for _, row in parts.iterrows():
        vis = np.array([int(v) for v in row["rlnTomoVisibleFrames"].strip("[]").split(",")])
        with mrcfile.mmap(d / row["rlnImageName"].split("/", 1)[1], permissive=True) as m:
            bad = bad_tilts(tilt_stats_raw(m.data))
        assert sorted(bad) == np.nonzero(vis == 0)[0].tolist(), row["rlnImageName"]
        assert all(r.startswith("blank") for r in bad.values())
        n_blank += len(bad)
    assert n_blank == 50


@pytest.mark.parametrize(
    "name",
    [
        "tiltseries/pytom_p1_subtilt_41x100x100.mrc",
        "tiltseries/cryocat_tilt_stack_HIV-VLP_4tilts.mrc",
        "non_cryo/HAADF.mrc",
    ],
)
def test_real_series_have_no_false_alarms(shared_data, name):
    """Normalised (PyTom), quantised (cryoCAT) and int16 (HAADF) real series: nothing flagged."""
    with mrcfile.mmap(shared_data / name, permissive=True) as m:
        assert bad_tilts(tilt_stats_raw(m.data)) == {}


def test_dark_and_saturated_tilts(shared_data):
    """On the real cryoCAT stack (counts, quantised): a beam-blocked tilt and a clipped one are flagged."""
    with mrcfile.mmap(shared_data / "tiltseries/cryocat_tilt_stack_HIV-VLP_4tilts.mrc", permissive=True) as m:
        st = np.array(m.data, dtype=np.float32)
    st = np.concatenate([st, st[:2]])
    st[4] = st[4] * 0.05  # grid bar: 5 % of the dose
    hi = np.percentile(st[5], 90)
    st[5] = np.minimum(st[5], hi)  # detector clipped at the 90th percentile
    bad = bad_tilts(tilt_stats_raw(st))
    assert sorted(bad) == [4, 5] and bad[4].startswith("dark") and bad[5].startswith("saturated")


@pytest.mark.parametrize(
    "name,expect",
    [
        ("tiltseries/cryocat_tilt_stack_HIV-VLP_4tilts.mrc", "dark"),
        ("tiltseries/pytom_p1_subtilt_41x100x100.mrc", "dark"),
        ("non_cryo/HAADF.mrc", "bright"),
    ],
)
def test_polarity_on_real_and_flipped_data(shared_data, name, expect):
    """Bright-field cryo data (gold beads, particles) read dark; HAADF STEM (dark-field: dense = bright) reads
    bright; every flipped series reads the opposite, with the statistic's sign reversed exactly."""
    with mrcfile.mmap(shared_data / name, permissive=True) as m:
        st = np.array(m.data, dtype=np.float32)
    p, q = polarity(st), polarity(-st)
    assert p["verdict"] == expect and q["verdict"] == ("bright" if expect == "dark" else "dark")
    assert q["statistic"] == pytest.approx(-p["statistic"], abs=1e-3)
    assert abs(p["statistic"]) > 0.05


def test_faket_projections_read_dark(tmp_path):
    """faket's own projections (contrast "dark": line integrals negated) read dark; "bright" ones read bright."""
    from faket.imaging.projection import project
    from tests.conftest import ball_phantom

    vol = ball_phantom((32, 64, 64), [(0, 10, 5, 6), (3, -12, -10, 5), (-2, 5, -15, 4)])
    t = np.asarray(project(vol, np.array([-30.0, 0.0, 30.0])))
    assert polarity(t)["verdict"] == "dark" and polarity(-t)["verdict"] == "bright"


# --------------------------------------------------------------------------------------------------
# the CLI options


@pytest.fixture
def series(tmp_path):
    rng = np.random.default_rng(0)
    ang = np.arange(-30, 31, 10.0)
    clean = -np.abs(rng.standard_normal((7, 40, 40))).astype(np.float32)
    _write(tmp_path / "clean.mrc", clean, 10.0, ang)
    ref = (rng.standard_normal((7, 80, 80)) + 100).astype(np.float32)
    _write(tmp_path / "ref.mrc", ref, 5.0, ang)
    _write(tmp_path / "ref_nopix.mrc", ref, None, ang)
    return tmp_path, ang, ref


def test_unknown_pixel_sizes_stop_with_one_line(series, run_cli):
    d, ang, ref = series
    rc, _, err = run_cli("noise", d / "clean.mrc", "--reference", d / "ref_nopix.mrc", "-o", d / "o.mrc")
    assert rc == 2 and "ref_nopix.mrc: no pixel size" in err and "--reference-pixel-size" in err
    assert len(err.strip().splitlines()) == 1 and not (d / "o.mrc").exists()
    _write(d / "clean_nopix.mrc", np.zeros((7, 40, 40), np.float32) + np.arange(40), None, ang)
    rc, _, err = run_cli("noise", d / "clean_nopix.mrc", "--reference", d / "ref.mrc", "-o", d / "o.mrc")
    assert rc == 2 and "clean_nopix.mrc: no pixel size" in err and "--content-pixel-size" in err
    rc, _, err = run_cli(
        "style", d / "clean.mrc", "--style", d / "ref_nopix.mrc", "-o", d / "o.mrc", "--weights", "random"
    )
    assert rc == 2 and "--style-pixel-size" in err.strip().splitlines()[-1]
    # stated by option: used, and recorded with the factor
    rc, _, err = run_cli(
        "noise",
        d / "clean.mrc",
        "--reference",
        d / "ref_nopix.mrc",
        "--reference-pixel-size",
        "5",
        "-o",
        d / "o.mrc",
        "--quiet",
    )
    assert rc == 0, err
    s = json.loads((d / "o.json").read_text())["noise_model"]["references"][0]["sampling"]
    assert s["pixel_used_a"] == 5 and s["pixel_source"] == "--reference-pixel-size" and s["factor"] == 0.5
    assert s["content_pixel_a"] == 10 and s["shape_out_yx"] == [40, 40]
    params = json.loads((d / "o.json").read_text())["parameters"]
    assert params["ref_pixel_size"] == [5.0]


def test_exclude_and_invert_by_hand(series, run_cli):
    d, ang, ref = series
    rc, _, err = run_cli(
        "noise",
        d / "clean.mrc",
        "--reference",
        d / "ref.mrc",
        "--exclude-tilts",
        "1,6-7",
        "--max-angle-gap",
        "25",
        "--invert-reference",
        "-o",
        d / "o.mrc",
        "--quiet",
    )
    assert rc == 0, err
    r = json.loads((d / "o.json").read_text())["noise_model"]["references"][0]
    assert r["kept_tilts_1based"] == [2, 3, 4, 5] and list(r["excluded_tilts_1based"]) == ["1", "6", "7"]
    assert set(r["matched_index"]) <= {1, 2, 3, 4} and r["inverted"] is True
    rc, _, err = run_cli(
        "noise", d / "clean.mrc", "--reference", d / "ref.mrc", "--exclude-tilts", "0", "-o", d / "o2.mrc"
    )
    assert rc == 2 and "--exclude-tilts 0" in err


def test_invert_reference_flips_the_polarity_verdict(shared_data, tmp_path, run_cli):
    """The real cryoCAT stack flipped reads BRIGHT (warned); with --invert-reference it reads dark again."""
    with mrcfile.mmap(shared_data / "tiltseries/cryocat_tilt_stack_HIV-VLP_4tilts.mrc", permissive=True) as m:
        st = np.array(m.data, dtype=np.float32)
    ang = [-30, -10, 10, 30]
    _write(tmp_path / "flip.mrc", 2 * st.mean() - st, 10.0, ang)
    _write(tmp_path / "clean.mrc", np.random.default_rng(0).random((4, 64, 64)).astype(np.float32), 10.0, ang)
    rc, _, err = run_cli(
        "noise", tmp_path / "clean.mrc", "--reference", tmp_path / "flip.mrc", "-o", tmp_path / "a.mrc", "--quiet"
    )
    assert rc == 0 and "appear BRIGHT" in err and "--invert-reference" in err
    rc, _, err = run_cli(
        "noise",
        tmp_path / "clean.mrc",
        "--reference",
        tmp_path / "flip.mrc",
        "--invert-reference",
        "-o",
        tmp_path / "b.mrc",
        "--quiet",
    )
    assert rc == 0 and "BRIGHT" not in err
    pol = json.loads((tmp_path / "b.json").read_text())["noise_model"]["references"][0]["polarity"]
    assert pol["verdict"] == "dark"


def test_tomodrgn_reference_through_the_cli(shared_data, tmp_path, run_cli):
    """A real tomoDRGN sub-tilt-series (float16, 12 A, 3 blank tilts) with its Warp/RELION STAR named by option:
    resampled to 10 A, blank tilts excluded with a warning naming them, angles from the projection matrices."""
    d = shared_data / "tiltseries" / "tomodrgn_warptools_Unt"
    ref = d / "Unt_083" / "Unt_083_12.00A_000001.mrcs"
    star = d / "warptools_test_4-tomos_10-ptcls_box-32_angpix-12_tomograms.star"
    ang = np.linspace(-54, 54, 19)
    _write(tmp_path / "clean.mrc", np.random.default_rng(0).random((19, 36, 36)).astype(np.float32), 10.0, ang)
    rc, _, err = run_cli(
        "noise",
        tmp_path / "clean.mrc",
        "--reference",
        ref,
        "--reference-angles-file",
        star,
        "--max-angle-gap",
        "8",
        "-o",
        tmp_path / "n.mrc",
        "--quiet",
    )
    assert rc == 0, err
    assert "excluding 3 tilt(s)" in err and "1 blank" in err and "6 blank" in err and "36 blank" in err
    r = json.loads((tmp_path / "n.json").read_text())["noise_model"]["references"][0]
    assert r["sampling"]["pixel_source"] == "header" and r["sampling"]["pixel_used_a"] == 12.0
    assert r["shape_raw"] == [37, 32, 32] and r["shape_used"] == [34, 36, 36] and r["dtype_raw"] == "float16"
    assert r["metadata"]["format"] == "relion-tomograms-star" and r["ordered_by_angle"]
    assert not {0, 5, 35} & set(r["matched_index"])


# --------------------------------------------------------------------------------------------------
# contaminated tilts: large dark regions


def _contaminate(stack, factor, radius_frac, seed=0):
    """A dark disc (an ice crystal / carbon: ``factor`` of the counts, Poisson) in the upper left of every tilt."""
    Y, X = stack.shape[1:]
    yy, xx = np.mgrid[:Y, :X]
    m = (yy - 60) ** 2 + (xx - 60) ** 2 < (radius_frac * Y) ** 2
    out = np.array(stack, dtype=np.float32)
    out[:, m] = np.random.default_rng(seed).poisson(out[:, m] * factor).astype(np.float32)
    return out, m


def test_dark_region_found_and_the_fit_made_robust(shared_data):
    """The real cryoCAT tilts with a contaminated third of the area (30 % of the counts): the region is found in
    every tilt (its area within a block's width), the plain blind fit reads SNR ~30 (clean: 1.1-1.6), the fit
    that leaves the region out of the tilt's mean and std reads < 3."""
    from faket.imaging import noise as nz
    from faket.imaging.refcheck import dark_regions

    with mrcfile.mmap(shared_data / "tiltseries/cryocat_tilt_stack_HIV-VLP_4tilts.mrc", permissive=True) as mm:
        st = np.array(mm.data, dtype=np.float32)
    bad, m = _contaminate(st, 0.3, 0.35)
    found = dark_regions(bad)
    assert sorted(found) == [0, 1, 2, 3]
    for r in found.values():
        assert abs(r["fraction"] - m.mean()) < 0.05 and r["depth_std"] > 3
        assert (r["mask"] & m).sum() / r["mask"].sum() > 0.9
    plain = nz.blind_fit(bad)
    robust = nz.blind_fit(bad, exclude={i: r["mask"] for i, r in found.items()})
    assert np.all(plain.snr > 10) and np.all(robust.snr < 3)
    assert dark_regions(st) == {}


@pytest.mark.parametrize(
    "name",
    [
        "tiltseries/pytom_p1_subtilt_41x100x100.mrc",
        "tiltseries/cryocat_tilt_stack_HIV-VLP_4tilts.mrc",
        "non_cryo/HAADF.mrc",
    ],
)
def test_no_dark_region_false_alarms_on_real_series(shared_data, name):
    from faket.imaging.refcheck import dark_regions

    with mrcfile.mmap(shared_data / name, permissive=True) as m:
        assert dark_regions(np.asarray(m.data, dtype=np.float32)) == {}


def test_noise_cli_names_contaminated_tilts(shared_data, tmp_path, capsys):
    from faket.cli import main

    with mrcfile.mmap(shared_data / "tiltseries/cryocat_tilt_stack_HIV-VLP_4tilts.mrc", permissive=True) as mm:
        st = np.array(mm.data, dtype=np.float32)
    bad, _ = _contaminate(st[:2], 0.3, 0.35)
    ref = np.concatenate([st[:1], bad[1:2]])  # tilt 2 contaminated
    _write(tmp_path / "ref.mrc", ref, voxel=10.0, angles=[-10, 10])
    _write(
        tmp_path / "clean.mrc",
        st[:2] * 0 + np.random.default_rng(0).standard_normal(st[:2].shape),
        voxel=10.0,
        angles=[-10, 10],
    )
    rc = main(
        [
            "noise",
            str(tmp_path / "clean.mrc"),
            "--reference",
            str(tmp_path / "ref.mrc"),
            "-o",
            str(tmp_path / "n.mrc"),
            "--quiet",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 0
    line = [ln for ln in err.splitlines() if "large dark region" in ln]
    assert len(line) == 1 and "in 1 tilt(s)" in line[0] and ": 2 (" in line[0]
    rec = json.loads((tmp_path / "n.json").read_text())["noise_model"]["references"][0]
    assert list(rec["dark_regions_1based"]) == ["2"]
    snr = rec["raw"]["snr"]
    assert snr[1] < 3 * max(snr[0], 0.5)
