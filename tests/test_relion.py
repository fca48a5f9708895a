"""RELION 5 interoperability (issue 20, points 4 and 5).

A small run made by the real steps (layout, project, physics reference, reconstruct, labels, dataset) is
exported with `faket export relion`; the STAR files are read back with starfile and with RELION 5's own
`MetaDataTable` (compiled from the RELION sources into a small harness, tests/relion_check.cpp: skipped
without g++ or the sources). Binned and unbinned particle STAR files give every particle the same Angstrom
position through RELION 5's centred-coordinate convention; filament subunits carry RELION's helical priors.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import starfile

ROOT = Path(__file__).resolve().parents[1]
HARNESS = Path(__file__).with_name("relion_check.cpp")
#: RELION 5 sources the harness compiles: MetaDataTable and what it needs to link
RELION_SOURCES = (
    "metadata_table",
    "metadata_label",
    "metadata_container",
    "filename",
    "error",
    "strings",
    "funcs",
    "numerical_recipes",
    "CPlot2D",
    "args",
    "pipeline_control",
)
ANGLES = "-60:60:30"
SPEC = """box: [40, 96, 96]
voxel_size: 10.0
slab_thickness: 32
classes:
  - {template: ribosome_like, count: 2}
  - {template: blob3, count: 3}
filaments:
  - {type: actin, count: 1, length_nm: 60}
"""


def relion_sources() -> Path | None:
    """RELION 5 source tree: $RELION_SRC, else ../relion-src beside the repository."""
    for c in (os.environ.get("RELION_SRC"), ROOT.parent / "relion-src"):
        if (
            c
            and (Path(c) / "src" / "metadata_table.cpp").is_file()
            and (Path(c) / "src" / "jaz" / "tomography" / "tomogram_set.cpp").is_file()
        ):
            return Path(c)
    return None


@pytest.fixture(scope="session")
def relion_check(tmp_path_factory):
    """The harness, compiled once against RELION 5's sources."""
    src = relion_sources()
    if src is None:
        pytest.skip("RELION 5 sources not found ($RELION_SRC or ../relion-src)")
    gxx = shutil.which("g++")
    if gxx is None:
        pytest.skip("no C++ compiler (g++)")
    d = tmp_path_factory.mktemp("relion_check")
    macros = d / "macros.cpp"  # RELION's CMake makes it from macros.cpp.in
    macros.write_text((src / "src" / "macros.cpp.in").read_text().replace("@RELION_VERSION_SUFFIX@", "-faket-test"))
    exe = d / "relion_check"
    cmd = [
        gxx,
        "-std=c++14",
        "-O0",
        "-w",
        f"-I{src}",
        str(HARNESS),
        str(macros),
        *(str(src / "src" / f"{f}.cpp") for f in RELION_SOURCES),
        "-o",
        str(exe),
    ]
    r = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    return exe


def _run(*argv):
    from faket.cli import main

    assert main([str(a) for a in argv]) == 0, argv


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """A results folder as the workflow writes it: one cellular tomogram (tomo_a) with a noiseless and a
    physics (faket reference) tilt-series, reconstructed at bin 2 in the slab 4:36, labels at bins 1, 2, 3."""
    from faket.workflow import tomogram_file

    res = tmp_path_factory.mktemp("relion") / "results"
    spec = res.parent / "spec.yaml"
    spec.parent.mkdir(parents=True, exist_ok=True)
    spec.write_text(SPEC)
    t = res / "tomo_a"
    _run("layout", "-o", t / "layout", "--spec", spec, "--seed", 3, "--tomo-name", "tomo_a", "-q")
    _run("project", t / "layout" / "volume.mrc", "-o", t / "tiltseries" / "noiseless.mrc", "--angles", ANGLES, "-q")
    _run(
        "reference",
        t / "layout" / "volume.mrc",
        "-o",
        t / "tiltseries" / "physics.mrc",
        "--angles",
        ANGLES,
        "--defocus-um",
        "-2.5",
        "--dose",
        "50",
        "-q",
    )
    for mod in ("noiseless", "physics"):
        _run(
            "reconstruct",
            t / "tiltseries" / f"{mod}.mrc",
            "-o",
            t / tomogram_file(mod, 2),
            "--bin",
            2,
            "--z-range",
            "4:36",
            "--volume-z",
            40,
            "-q",
        )
    _run("labels", t / "layout", "-o", t, "--bin", "1,2,3", "--z-range", "4:36", "-q")
    _run("dataset", res, "-o", res / "dataset.csv", "-q")
    return res


# --------------------------------------------------------------------------------------------------
# point 4: the same Angstrom position in every binning


def _star_by_layout_id(folder: Path, b: int) -> pd.DataFrame:
    """particles_bin<B>.star indexed by the layout's particle id (particles_bin<B>.json's id map)."""
    star = starfile.read(folder / f"particles_bin{b}.star")
    side = json.loads((folder / f"particles_bin{b}.json").read_text())
    new_to_old = {int(v): int(k) for k, v in side["particle_id_map"].items()}
    star["layout_id"] = [new_to_old[int(str(n).split("/")[-1])] for n in star["rlnTomoParticleName"]]
    return star.set_index("layout_id")


def test_binned_and_unbinned_star_agree_in_angstrom(results):
    from faket.formats.particles import read_particles

    t = results / "tomo_a"
    cols = [f"rlnCenteredCoordinate{a}Angst" for a in "XYZ"]
    ref = _star_by_layout_id(t, 1)
    worst = 0.0
    for b in (2, 3):  # bin 3 drops the slab's last 2 planes (32 = 3 x 10 + 2): its centre stays the slab's
        s = _star_by_layout_id(t, b)
        common = ref.index.intersection(s.index)
        assert len(common) >= 0.8 * len(ref)
        d = np.abs(s.loc[common, cols].to_numpy() - ref.loc[common, cols].to_numpy())
        worst = max(worst, float(d.max()))
        # read back into the binned tomogram's voxels: the CSV's coordinates
        csv = read_particles(t / f"particles_bin{b}.csv")
        back = read_particles(
            t / f"particles_bin{b}.star",
            voxel_size_a=10.0 * b,
            box_zyx=(32 // b, 96 // b, 96 // b),
            bin_factor=b,
            unbinned_box_zyx=(32, 96, 96),
        )
        np.testing.assert_allclose(back[["x", "y", "z"]].to_numpy(), csv[["x", "y", "z"]].to_numpy(), atol=1e-6)
    assert worst < 0.01, worst
    # the slab 4:36 is centred in the 40-voxel volume: its centre is the layout's, so the layout's own
    # particles.star (uncropped, unbinned) agrees too
    lay = starfile.read(t / "layout" / "particles.star")
    lay.index = [int(str(n).split("/")[-1]) for n in lay["rlnTomoParticleName"]]
    common = ref.index.intersection(lay.index)
    np.testing.assert_allclose(lay.loc[common, cols].to_numpy(), ref.loc[common, cols].to_numpy(), atol=0.01)
    # every STAR names its tomogram
    for p in (t / "layout" / "particles.star", t / "particles_bin2.star", t / "filament_subunits_bin2.star"):
        assert set(starfile.read(p)["rlnTomoName"]) == {"tomo_a"}, p


# --------------------------------------------------------------------------------------------------
# point 5: a tomogram set RELION 5 reads


@pytest.fixture(scope="module")
def exported(results):
    out = {}
    for mod in ("noiseless", "physics"):
        folder = results.parent / f"relion_{mod}"
        _run("export", "relion", results, "-o", folder, "--modality", mod, "-q")
        out[mod] = folder
    return out


def test_export_writes_the_tomogram_set(results, exported):
    from faket.formats.mrc import read_mrc_header
    from faket.formats.particles import read_particles
    from faket.formats.tiltmeta import read_tlt

    t = results / "tomo_a"
    angles = read_tlt(t / "tiltseries" / "noiseless.tlt")
    ref = json.loads((t / "tiltseries" / "physics.json").read_text())
    for mod, folder in exported.items():
        tomos = starfile.read(folder / "tomograms.star", always_dict=True)["global"]
        assert list(tomos["rlnTomoName"]) == ["tomo_a"]
        row = tomos.iloc[0]
        assert (row["rlnTomoSizeX"], row["rlnTomoSizeY"], row["rlnTomoSizeZ"]) == (96, 96, 32)
        assert row["rlnTomoTomogramBinning"] == 2 and row["rlnTomoTiltSeriesPixelSize"] == 10.0
        rec = folder / row["rlnTomoReconstructedTomogram"]
        assert (
            rec.resolve()
            == (t / ("tomogram_noiseless_bin2.mrc" if mod == "noiseless" else "tomogram_physics_bin2.mrc")).resolve()
        )
        assert read_mrc_header(rec)[0] == (16, 48, 48)
        ts = starfile.read(folder / row["rlnTomoTiltSeriesStarFile"], always_dict=True)
        assert list(ts) == ["tomo_a"]  # RELION reads the block data_<rlnTomoName>
        ts = ts["tomo_a"]
        np.testing.assert_allclose(ts["rlnTomoYTilt"], angles)
        np.testing.assert_allclose(ts["rlnTomoNominalStageTiltAngle"], angles)
        name = ts["rlnMicrographName"].iloc[2]  # the third image of the stack, as RELION reads it
        assert name.endswith(":mrcs")
        index, stack = name[: -len(":mrcs")].split("@", 1)
        assert index == "3" and (folder / stack).resolve() == (t / "tiltseries" / f"{mod}.mrc").resolve()
        if mod == "physics":  # the defined CTF of faket reference: its provenance
            assert row["rlnVoltage"] == 300 and row["rlnSphericalAberration"] == 2.7
            assert row["rlnAmplitudeContrast"] == 0.07
            np.testing.assert_allclose(ts["rlnDefocusU"], 25000.0)
            np.testing.assert_allclose(ts["rlnDefocusV"], 25000.0)
            per = 50.0 / len(angles)  # dose-symmetric: 0 first, then +30, -30, +60, -60
            rank = np.array(ref["derived"]["acquisition_rank"])
            np.testing.assert_allclose(ts["rlnMicrographPreExposure"], rank * per)
            np.testing.assert_allclose(sorted(ts["rlnMicrographPreExposure"]), np.arange(len(angles)) * per)
        else:  # no CTF: a flat one (RELION's CTF is 1) and no dose
            assert row["rlnAmplitudeContrast"] == 1.0 and row["rlnSphericalAberration"] == 0.0
            assert (ts["rlnDefocusU"] == 0).all() and (ts["rlnMicrographPreExposure"] == 0).all()
        parts = starfile.read(folder / "particles.star", always_dict=True)
        assert list(parts) == ["optics", "particles"]
        optics, p = parts["optics"], parts["particles"]
        assert list(optics["rlnTomoTiltSeriesPixelSize"]) == [10.0]
        assert set(p["rlnOpticsGroup"]) <= set(optics["rlnOpticsGroup"])
        # the particles of particles_bin2.csv, at their bin-1 pixel: x_b * 2 + 0.5 (RELION's pixel:
        # centred / pixel size + size / 2)
        csv = read_particles(t / "particles_bin2.csv")
        assert list(p["rlnTomoParticleName"]) == [f"tomo_a/{i}" for i in csv["particle_id"]]
        pix = p[[f"rlnCenteredCoordinate{a}Angst" for a in "XYZ"]].to_numpy() / 10.0 + np.array([48, 48, 16])
        np.testing.assert_allclose(pix, csv[["x", "y", "z"]].to_numpy() * 2 + 0.5, atol=1e-6)
    side = json.loads((exported["physics"] / "faket_export.json").read_text())
    assert side["relion"]["tomograms"][0]["ctf"] == "defined"


def _parse(out: str) -> dict:
    lines = out.splitlines()
    assert lines[-1] == "OK", out[-2000:]
    got = {"tilts": [], "particles": []}
    for ln in lines:
        w = ln.split()
        if w[0] == "tilt":
            got["tilts"].append(
                {
                    "name": w[3],
                    "ytilt": float(w[w.index("ytilt") + 1]),
                    "dose": float(w[w.index("dose") + 1]),
                    "defocus": float(w[w.index("defocus") + 1]),
                }
            )
        elif w[0] == "particle":
            d = {"tomo": w[1], "name": w[2], "xyz": [float(v) for v in w[3:6]]}
            if "tube" in w:
                i = w.index("tube")
                d.update(
                    tube=int(w[i + 1]),
                    track=float(w[i + 3]),
                    tilt_prior=float(w[i + 5]),
                    psi_prior=float(w[i + 7]),
                    flip=float(w[i + 9]),
                )
            got["particles"].append(d)
        elif w[0] == "tomo" and w[2] == "size":
            got["size"] = [int(v) for v in w[3:6]]
            got["centre"] = [float(v) for v in w[7:10]]
        elif w[0] == "tomo" and w[2] == "hand":
            got.update(
                hand=float(w[3]),
                voltage=float(w[5]),
                cs=float(w[7]),
                q0=float(w[9]),
                pixel=float(w[11]),
                binning=float(w[13]),
            )
    return got


def test_relion_reads_the_tomogram_set(exported, results, relion_check):
    """RELION 5's MetaDataTable reads tomograms.star, the tilt-series STAR, particles.star and
    filament_subunits.star as TomogramSet / ParticleSet do, and gets the values faket wrote."""
    from faket.formats.particles import read_particles
    from faket.formats.tiltmeta import read_tlt

    t = results / "tomo_a"
    angles = read_tlt(t / "tiltseries" / "physics.tlt")
    folder = exported["physics"]
    r = subprocess.run(
        [str(relion_check), "tomograms.star", "particles.star", "filament_subunits.star"],
        cwd=folder,
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    got = _parse(r.stdout)
    unknown = {ln.split()[-1] for ln in r.stderr.splitlines() if "unknown label" in ln}
    assert unknown <= {"fakClassName"}, r.stderr
    assert got["size"] == [96, 96, 32] and got["centre"] == [48.0, 48.0, 16.0]
    assert (got["voltage"], got["cs"], got["q0"], got["pixel"], got["binning"]) == (300, 2.7, 0.07, 10, 2)
    np.testing.assert_allclose([x["ytilt"] for x in got["tilts"]], angles)
    np.testing.assert_allclose([x["defocus"] for x in got["tilts"]], 25000.0)
    # RELION's pixel of each particle (centred / pixel size + centre) = faket's bin-1 pixel
    csv = read_particles(t / "particles_bin2.csv")
    parts = [p for p in got["particles"] if "tube" not in p]
    assert [p["name"] for p in parts] == [f"tomo_a/{i}" for i in csv["particle_id"]]
    pix = np.array([p["xyz"] for p in parts]) / got["pixel"] + np.array(got["centre"])
    np.testing.assert_allclose(pix, csv[["x", "y", "z"]].to_numpy() * 2 + 0.5, atol=1e-5)
    fil = [p for p in got["particles"] if "tube" in p]
    sub = pd.read_csv(t / "filament_subunits_bin2.csv")
    assert len(fil) == len(sub) > 0
    np.testing.assert_allclose([p["tilt_prior"] for p in fil], sub["tilt"], atol=1e-5)
    np.testing.assert_allclose([p["psi_prior"] for p in fil], sub["psi"], atol=1e-5)
    # the noiseless set (flat CTF) reads as well
    r = subprocess.run(
        [str(relion_check), "tomograms.star", "particles.star"],
        cwd=exported["noiseless"],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0 and _parse(r.stdout)["q0"] == 1.0, r.stdout[-2000:]


def test_relion_reader_catches_a_broken_set(exported, relion_check, tmp_path):
    """The harness is no rubber stamp: a tilt-series STAR under another block name, or a tomograms.star
    without rlnTomoHand, is refused with RELION's own messages."""
    folder = tmp_path / "broken"
    shutil.copytree(exported["noiseless"], folder)
    ts = folder / "tilt_series" / "tomo_a.star"
    ts.write_text(ts.read_text().replace("data_tomo_a", "data_other"))
    r = subprocess.run([str(relion_check), "tomograms.star"], cwd=folder, check=False, capture_output=True, text=True)
    assert r.returncode == 1 and "Does the table have the correct name: data_tomo_a" in r.stdout
    shutil.copytree(exported["noiseless"], folder, dirs_exist_ok=True)
    g = starfile.read(folder / "tomograms.star", always_dict=True)["global"].drop(columns=["rlnTomoHand"])
    starfile.write({"global": g}, folder / "tomograms.star", overwrite=True)
    r = subprocess.run([str(relion_check), "tomograms.star"], cwd=folder, check=False, capture_output=True, text=True)
    assert r.returncode == 1 and "no rlnTomoHand label" in r.stdout


def test_filament_subunits_carry_helical_priors(results):
    from faket.rotation import relion_to_matrix

    t = results / "tomo_a"
    star = starfile.read(t / "layout" / "filament_subunits.star")
    sub = pd.read_csv(t / "layout" / "filament_subunits.csv")
    for c in (
        "rlnHelicalTubeID",
        "rlnHelicalTrackLengthAngst",
        "rlnAngleTiltPrior",
        "rlnAnglePsiPrior",
        "rlnAnglePsiFlipRatio",
    ):
        assert c in star.columns, c
    assert (star["rlnHelicalTubeID"] == sub["filament_id"]).all()
    # actin: one subunit every 2.75 nm along the axis
    track = np.sort(star["rlnHelicalTrackLengthAngst"].to_numpy())
    assert track[0] == 0.0
    np.testing.assert_allclose(np.diff(track), 27.5, atol=0.5)
    # the priors point the template's z axis along the filament: the polyline's direction there
    d = relion_to_matrix(np.stack([np.zeros(len(star)), star["rlnAngleTiltPrior"], star["rlnAnglePsiPrior"]], 1))[
        :, :, 2
    ]
    poly = pd.read_csv(t / "layout" / "filaments.csv")
    p = poly[["x", "y", "z"]].to_numpy()
    seg = np.diff(p, axis=0)
    seg /= np.linalg.norm(seg, axis=1, keepdims=True)
    xyz = sub[["x", "y", "z"]].to_numpy()
    nearest = np.argmin(((xyz[:, None, :] - p[None, :-1, :]) ** 2).sum(-1), axis=1)
    cosang = np.abs(np.einsum("ij,ij->i", d, seg[nearest]))
    assert cosang.min() > np.cos(np.deg2rad(10)), cosang.min()


@pytest.mark.parametrize("case", ["no_dataset", "modality", "bin", "exists"])
def test_export_relion_bad_input_exit_2_nothing_written(results, exported, run_cli, tmp_path, case):
    out = tmp_path / "out"
    args = ["export", "relion", results, "-o", out]
    if case == "no_dataset":
        args[2] = tmp_path
    elif case == "modality":
        args += ["--modality", "faket"]
    elif case == "bin":
        args += ["--modality", "noiseless", "--bin", "4"]
    else:
        out = exported["noiseless"]
        args = ["export", "relion", results, "-o", out, "--modality", "noiseless"]
        before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    rc, _, err = run_cli(*args)
    assert rc == 2
    lines = [ln for ln in err.strip().splitlines() if ln]
    assert len(lines) == 1 and lines[0].startswith("faket export: error:"), err
    if case == "exists":
        assert "--overwrite" in err and {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before
    else:
        assert not out.exists() or not any(out.iterdir())


def test_workflow_exports_relion_and_names_each_tomogram(tmp_path):
    """`export: {relion: true}` plans `faket export relion` into results/relion, and every layout gets its
    tomogram's name (rlnTomoName) (snakemake dry run)."""
    import yaml

    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    cfg["manifest"] = str(ROOT / "data_manifest.csv")
    cfg["layout"]["spec"] = str(ROOT / "config" / "layout.yaml")
    cfg["export"]["relion"] = True
    p = tmp_path / "config.yaml"
    p.write_text(yaml.safe_dump(cfg))
    snakemake = Path(sys.executable).parent / "snakemake"
    r = subprocess.run(
        [
            str(snakemake),
            "-s",
            str(ROOT / "Snakefile"),
            "-d",
            str(tmp_path / "run"),
            "--configfile",
            str(p),
            "-n",
            "-p",
            "--nocolor",
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PATH": f"{snakemake.parent}{os.pathsep}{os.environ['PATH']}"},
    )
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    assert "faket export relion results -o results/relion" in out
    layouts = [ln for ln in out.splitlines() if "faket layout" in ln and "results/tomo_0" in ln]
    assert any("--tomo-name tomo_000" in ln for ln in layouts) and any("--tomo-name tomo_001" in ln for ln in layouts)
