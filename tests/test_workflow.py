"""The Snakemake workflow and its glue steps (faket stack, faket dataset).

Fast tests check the glue steps; tests marked ``slow`` run Snakemake for real on a tiny config
(2 tomograms of 32x64x64, 11 tilts): lint and format, config errors, an end-to-end run with the
documented output tree, resume after a kill and after a deleted output, scattered == unscattered style.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from faket.cli import main
from faket.errors import InputError
from faket.formats.mrc import read_mrc, write_mrc
from faket.formats.tiltmeta import read_tlt, write_tlt

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SNAKEMAKE = BIN / "snakemake"


# --------------------------------------------------------------------------------------------------
# faket stack


def _chunk(path, data, angles, tilts=None, voxel=10.0, threads=2):
    write_mrc(path, data, voxel, image_stack=True)
    write_tlt(Path(path).with_suffix(".tlt"), angles)
    if tilts is not None:  # what faket style's sidecar records (trimmed)
        rec = {
            "parameters": {"tilts": tilts},
            "host": f"node-{tilts}",
            "environment": {"MKL_CBWR": "AUTO,STRICT"},
            "style": {"threads": threads, "device": "cpu", "per_tilt": {"loss_final": [1.0]}},
        }
        Path(path).with_suffix(".json").write_text(json.dumps(rec))
    return str(path)


def test_stack_gathers_chunks_exactly(tmp_path):
    rng = np.random.default_rng(0)
    full = rng.normal(size=(7, 12, 10)).astype(np.float32)
    ang = np.arange(-30, 40, 10.0)
    write_tlt(tmp_path / "content.tlt", ang)
    parts = [(0, 3), (3, 6), (6, 7)]  # the last chunk holds one tilt (an MRC that reads back as 2-D)
    chunks = [_chunk(tmp_path / f"c{a}.mrc", full[a:b], ang[a:b], f"{a}:{b}") for a, b in parts]
    out = tmp_path / "out" / "styled.mrc"
    assert main(["stack", *chunks, "-o", str(out), "--expect-angles", str(tmp_path / "content.tlt"), "--quiet"]) == 0
    m = read_mrc(out)
    np.testing.assert_array_equal(m.data, full)
    np.testing.assert_allclose(read_tlt(out.with_suffix(".tlt")), ang)
    assert m.voxel_size_a == pytest.approx(10.0)
    rec = json.loads(out.with_suffix(".json").read_text())
    assert [c["tilts"] for c in rec["chunks"]] == ["0:3", "3:6", "6:7"]
    # where and how each chunk ran stays in the gathered sidecar (the chunks are temporary in the workflow)
    assert rec["chunks"][1]["run"] == {
        "host": "node-3:6",
        "environment": {"MKL_CBWR": "AUTO,STRICT"},
        "threads": 2,
        "device": "cpu",
    }
    # a one-tilt series on its own
    single = _chunk(tmp_path / "single.mrc", full[:1], ang[:1], "0:1")
    out1 = tmp_path / "one.mrc"
    assert main(["stack", single, "-o", str(out1), "--quiet"]) == 0
    np.testing.assert_array_equal(read_mrc(out1).data.reshape(1, 12, 10), full[:1])


def test_stack_refuses_bad_chunks(tmp_path, capsys):
    rng = np.random.default_rng(1)
    full = rng.normal(size=(6, 8, 8)).astype(np.float32)
    ang = np.arange(6.0) * 10 - 25
    write_tlt(tmp_path / "content.tlt", ang)
    c0 = _chunk(tmp_path / "c0.mrc", full[:3], ang[:3], "0:3")
    c1 = _chunk(tmp_path / "c1.mrc", full[3:], ang[3:], "3:6")
    out = tmp_path / "o.mrc"
    # out of order
    assert main(["stack", c1, c0, "-o", str(out)]) == 2
    assert "covers tilts 3:6" in capsys.readouterr().err
    # a missing chunk
    assert main(["stack", c0, "-o", str(out), "--expect-angles", str(tmp_path / "content.tlt")]) == 2
    assert "differ" in capsys.readouterr().err
    # different image size / voxel size
    c2 = _chunk(tmp_path / "c2.mrc", full[3:, :, :6], ang[3:], "3:6")
    assert main(["stack", c0, c2, "-o", str(out)]) == 2
    assert "tilt size" in capsys.readouterr().err
    c3 = _chunk(tmp_path / "c3.mrc", full[3:], ang[3:], "3:6", voxel=12.0)
    assert main(["stack", c0, c3, "-o", str(out)]) == 2
    assert "voxel size" in capsys.readouterr().err
    # a chunk without angles
    write_mrc(tmp_path / "bare.mrc", full[3:], 10.0, image_stack=True)
    assert main(["stack", c0, str(tmp_path / "bare.mrc"), "-o", str(out)]) == 2
    assert not out.exists()


# --------------------------------------------------------------------------------------------------
# faket dataset


def _fake_tomo_folder(folder, bins=(2,), modalities=("faket", "noisy"), n_particles=3):
    folder.mkdir(parents=True)
    for b in bins:
        shape = (8 // b, 16 // b, 16 // b)
        for m in modalities:
            name = f"tomogram_bin{b}.mrc" if m == "faket" else f"tomogram_{m}_bin{b}.mrc"
            write_mrc(folder / name, np.zeros(shape, np.float32), 10.0 * b)
        write_mrc(folder / f"class_mask_bin{b}.mrc", np.zeros(shape, np.float32), 10.0 * b)
        write_mrc(folder / f"occupancy_mask_bin{b}.mrc", np.zeros(shape, np.float32), 10.0 * b)
        rows = "".join(f"{i},1,a,1,1,1,0,0,0\n" for i in range(1, n_particles + 1))
        (folder / f"particles_bin{b}.csv").write_text("particle_id,class_id,class_name,x,y,z,rot,tilt,psi\n" + rows)
        (folder / f"particles_bin{b}.star").write_text("data_particles\n")
        (folder / f"particle_locations_bin{b}.txt").write_text("a 1 1 1 0 0 0\n")
        (folder / f"particles_bin{b}.xml").write_text("<objlist />\n")


def test_dataset_indexes_every_tomogram(tmp_path):
    import pandas as pd

    res = tmp_path / "results"
    _fake_tomo_folder(res / "t0", bins=(1, 2))
    _fake_tomo_folder(res / "t1", bins=(2,), modalities=("faket",), n_particles=5)
    (res / "references").mkdir()
    out = res / "dataset.csv"
    assert main(["dataset", str(res), "-o", str(out), "--quiet"]) == 0
    df = pd.read_csv(out)
    assert list(zip(df.tomogram, df.modality, df["bin"])) == [
        ("t0", "faket", 1),
        ("t0", "faket", 2),
        ("t0", "noisy", 1),
        ("t0", "noisy", 2),
        ("t1", "faket", 2),
    ]
    r = df.iloc[1]
    assert r.tomogram_path == "t0/tomogram_bin2.mrc" and r.occupancy_mask == "t0/occupancy_mask_bin2.mrc"
    assert (r.shape_z, r.shape_y, r.shape_x, r.voxel_size_a) == (4, 8, 8, 20.0)
    assert df.iloc[4].n_particles == 5
    for col in (
        "tomogram_path",
        "class_mask",
        "occupancy_mask",
        "particles_csv",
        "particles_star",
        "particle_locations",
        "particles_xml",
    ):
        assert all((res / p).is_file() for p in df[col])


def test_dataset_refuses_missing_or_mismatched_labels(tmp_path, capsys):
    res = tmp_path / "results"
    _fake_tomo_folder(res / "t0")
    (res / "t0" / "particles_bin2.star").unlink()
    assert main(["dataset", str(res / "t0"), "-o", str(res / "d.csv")]) == 2
    assert "particles_bin2.star is missing" in capsys.readouterr().err
    _fake_tomo_folder(res / "t1")
    write_mrc(res / "t1" / "class_mask_bin2.mrc", np.zeros((3, 8, 8), np.float32), 20.0)
    assert main(["dataset", str(res / "t1"), "-o", str(res / "d.csv")]) == 2
    assert "differs from its tomogram" in capsys.readouterr().err
    assert not (res / "d.csv").exists()


# --------------------------------------------------------------------------------------------------
# faket.workflow: what common.smk takes from the package


def test_config_problem_names_the_key():
    from faket.workflow import config_problem

    schema = ROOT / "workflow" / "schemas" / "config.schema.yaml"
    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    assert config_problem(cfg, schema) is None
    for over, msg in (
        ({"seed": "abc"}, "config key 'seed': 'abc' is not of type 'integer'"),
        (
            {"style": {**cfg["style"], "tilts_per_jobs": 2}},
            "config key 'style.tilts_per_jobs': unknown key (allowed here: iterations, precision",
        ),
        ({"layout": {**cfg["layout"], "shape_zyx": [8, 8]}}, "config key 'layout.shape_zyx'"),
    ):
        assert msg in config_problem({**cfg, **over}, schema)


def test_tilt_angles_are_faket_io_angles_inside_90():
    from faket.formats.tiltmeta import parse_angles
    from faket.workflow import tilt_angles

    for spec in ("-60:60:2", "-50:50:10", "0:0", "60:-60:-3", "-60:61:7"):
        assert tilt_angles(spec) == parse_angles(spec).tolist()
    assert len(tilt_angles("-60:60:2")) == 61
    for bad in ("-90:90:10", "-60:60:0", "60:-60:2"):
        with pytest.raises(InputError):
            tilt_angles(bad)


def test_layout_box_is_the_box_faket_layout_makes(tmp_path):
    """ "" = the built-in default, a spec without box = the default box, the config's shape_zyx wins, and
    the layout's own volume has that shape."""
    from faket.layout import DEFAULT_BOX
    from faket.workflow import layout_box

    assert layout_box("") == layout_box(None) == tuple(DEFAULT_BOX) == (128, 256, 256)
    nobox = tmp_path / "nobox.yaml"
    nobox.write_text(yaml.safe_dump({"classes": [{"template": "blob3", "count": 1}]}))
    assert layout_box(str(nobox)) == (128, 256, 256)
    spec = tmp_path / "small.yaml"
    spec.write_text(yaml.safe_dump({"box": [16, 24, 20], "classes": [{"template": "blob3", "count": 1}]}))
    assert layout_box(str(spec)) == (16, 24, 20)
    assert layout_box(str(spec), [8, 16, 32]) == (8, 16, 32)
    assert main(["layout", "--spec", str(spec), "-o", str(tmp_path / "lay"), "--quiet"]) == 0
    assert read_mrc(tmp_path / "lay" / "volume.mrc").data.shape == layout_box(str(spec))


@pytest.mark.parametrize("key", ["shape_zyx", "box_zyx", "shape"])
def test_layout_box_refuses_misspelt_box_keys(tmp_path, key):
    from faket.workflow import layout_box

    spec = tmp_path / "typo.yaml"
    spec.write_text(yaml.safe_dump({key: [16, 24, 20]}))
    with pytest.raises(InputError, match=f"typo.yaml: unknown key '{key}'"):
        layout_box(str(spec))
    with pytest.raises(InputError, match="not found"):
        layout_box(str(tmp_path / "missing.yaml"))


def test_draws_are_per_seed_and_key():
    from faket.workflow import draw

    assert draw(3, "noise.snr", 0.1) == 0.1 and draw(3, "noise.snr", None) is None
    a = [draw(s, "noise.snr", [0.05, 0.2]) for s in range(20)]
    assert a == [draw(s, "noise.snr", [0.05, 0.2]) for s in range(20)]  # same seed, same value
    assert all(0.05 <= v <= 0.2 for v in a) and len(set(a)) > 10
    assert draw(3, "noise.snr", [0.05, 0.2]) != draw(3, "other.key", [0.05, 0.2])
    names = {draw(s, "reference.names", ["a", "b", "c"]) for s in range(30)}
    assert names == {"a", "b", "c"}
    with pytest.raises(InputError, match="low to high"):
        draw(0, "noise.snr", [0.2, 0.05])


def test_tilt_chunks_cover_every_tilt_once():
    from faket.workflow import tilt_chunks

    assert tilt_chunks(11, 4) == ["0-4", "4-8", "8-11"]
    assert tilt_chunks(11, 0) == tilt_chunks(11, 11) == tilt_chunks(11, 50) == ["0-11"]
    parts = [tuple(map(int, c.split("-"))) for c in tilt_chunks(61, 7)]
    assert [t for a, b in parts for t in range(a, b)] == list(range(61))


def test_output_names_round_trip():
    from faket.workflow import parse_tomogram_file, tomogram_file

    assert tomogram_file("faket", 2) == "tomogram_bin2.mrc"
    assert tomogram_file("noisy", 4) == "tomogram_noisy_bin4.mrc"
    for m in ("faket", "noiseless", "baseline", "noisy"):
        for b in (1, 2, 8):
            assert parse_tomogram_file(tomogram_file(m, b)) == (m, b)
    assert parse_tomogram_file("class_mask_bin2.mrc") is None


def test_reference_entries_checked_like_faket_manifest(tmp_path):
    """The workflow's reference check is faket.manifest's: unknown names, non-reference kinds, URLs,
    missing and altered files are refused; the checksum cache is invalidated by a changed file."""
    from faket.formats.manifest import COLUMNS
    from faket.workflow import Sha256Cache, load_manifest, reference_entry

    write_mrc(tmp_path / "ts.mrc", np.ones((3, 8, 8), np.float32), 10.0, image_stack=True)
    write_tlt(tmp_path / "ts.tlt", [-50, 0, 50])
    man = tmp_path / "m.csv"
    man.write_text(
        ",".join(COLUMNS) + "\n" + "phys,physics,,,,,,\n"
        "ds,dataset,https://example.org/x.zip,,,,,\n"
        "web,tiltseries,https://example.org/t.mrc,,,,,\n"
    )
    assert main(["manifest", "add", str(man), "ts", str(tmp_path / "ts.mrc"), "--kind", "tiltseries", "--quiet"]) == 0
    entries = load_manifest(man)
    sha = Sha256Cache(tmp_path / "cache" / "sha.json")
    assert reference_entry(entries, "phys", tmp_path).kind == "physics"
    assert reference_entry(entries, "ts", tmp_path, sha_fn=sha).kind == "tiltseries"
    assert len(json.loads((tmp_path / "cache" / "sha.json").read_text())) == 1
    for name, msg in (("nope", "'nope' is not an entry"), ("ds", "'ds' is a dataset"), ("web", "not downloaded")):
        with pytest.raises(InputError, match=msg):
            reference_entry(entries, name, tmp_path, sha_fn=sha)
    data = (tmp_path / "ts.mrc").read_bytes()
    (tmp_path / "ts.mrc").write_bytes(data[:-4] + b"\0\0\0\1")
    with pytest.raises(InputError, match="'ts': file .* was altered"):
        reference_entry(entries, "ts", tmp_path, sha_fn=sha)
    (tmp_path / "ts.mrc").unlink()
    with pytest.raises(InputError, match="'ts': file .* is missing"):
        reference_entry(entries, "ts", tmp_path, sha_fn=sha)


# --------------------------------------------------------------------------------------------------
# the workflow itself (Snakemake subprocesses)

TINY_LAYOUT = {
    "box": [32, 64, 64],
    "voxel_size": 10.0,
    "slab_thickness": 24,
    "classes": [
        {"template": "blob3", "count": 6},
        {"template": "ring", "count": 3},
        {"template": "dumbbell", "count": 3},
    ],
    "vesicles": {"count": 0},
    "fiducials": {"count": 1, "diameter_nm": 6},
}


def tiny_config(tmp, **over):
    """A tiny config: one random layout + one given SHREC-style folder, 11 tilts, 4 modalities."""
    spec = tmp / "tiny_layout.yaml"
    spec.write_text(yaml.safe_dump(TINY_LAYOUT))
    cfg = {
        "manifest": str(ROOT / "data_manifest.csv"),
        "seed": 3,
        "angles": "-50:50:10",
        "modalities": ["noiseless", "baseline", "noisy", "faket"],
        "tomograms": {"count": 2, "prefix": "tiny", "given": []},
        "layout": {"spec": str(spec), "shape_zyx": None, "voxel_size_a": None},
        "reference": {"names": ["physics_default"], "physics": {"seed": 7, "defocus_um": -2.5}},
        "noise": {"snr": [0.05, 0.2]},
        "style": {
            "tilts_per_job": 4,
            "weights": "random",
            "precision": "fp32",
            "iterations": None,
            "style_cache": True,
        },
        "reconstruct": {"binnings": [2], "z_range": [4, 28], "filter": "ramp"},
        "qc": True,
    }
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(cfg.get(k), dict):
            cfg[k].update(v)
        else:
            cfg[k] = v
    p = tmp / "config.yaml"
    p.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return p


def _env():
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("FAKET_CACHE", str(Path.home() / ".cache" / "faket"))
    env["OMP_NUM_THREADS"] = "1"
    return env


def snakemake(workdir, config, *extra, check=True, timeout=900, popen=False):
    cmd = [
        str(SNAKEMAKE),
        "-s",
        str(ROOT / "Snakefile"),
        "-d",
        str(workdir),
        "--configfile",
        str(config),
        "--cores",
        "2",
        "--nocolor",
        *extra,
    ]
    if popen:
        # Ctrl-C must reach snakemake as in a terminal: a shell's background job (`bash .ci/run &`, nohup) starts
        # with SIGINT ignored, Python then installs no KeyboardInterrupt handler and the "killed" run finishes
        return subprocess.Popen(
            cmd,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
    r = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"snakemake failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-6000:]}")
    return r


def expected_tree(cfg_path):
    """The documented output tree (docs/workflow.md) for a config."""
    cfg = yaml.safe_load(Path(cfg_path).read_text())
    tomos = [f"{cfg['tomograms']['prefix']}_{i:03d}" for i in range(cfg["tomograms"]["count"])]
    tomos += [g["name"] for g in cfg["tomograms"].get("given", [])]
    files = ["results/dataset.csv"]
    for t in tomos:
        d = f"results/{t}"
        for b in cfg["reconstruct"]["binnings"]:
            for m in cfg["modalities"]:
                files.append(f"{d}/tomogram_bin{b}.mrc" if m == "faket" else f"{d}/tomogram_{m}_bin{b}.mrc")
            files += [
                f"{d}/class_mask_bin{b}.mrc",
                f"{d}/occupancy_mask_bin{b}.mrc",
                f"{d}/particles_bin{b}.csv",
                f"{d}/particles_bin{b}.star",
                f"{d}/particle_locations_bin{b}.txt",
                f"{d}/particles_bin{b}.json",
                f"{d}/particles_bin{b}.xml",
            ]
        files += [f"{d}/particles.csv", f"{d}/particles.star", f"{d}/particle_locations.txt", f"{d}/particles.xml"]
        for s in ("noiseless", "content", "noisy", "baseline", "faket"):
            files += [f"{d}/tiltseries/{s}.mrc", f"{d}/tiltseries/{s}.tlt", f"{d}/tiltseries/{s}.json"]
        files += [f"{d}/qc/{f}" for f in ("montage.png", "spectra.png", "tilt_stats.png", "slices.png", "metrics.json")]
    return tomos, files


def outputs(workdir):
    """Every result file (relative path -> Path), without QC pictures and provenance timestamps."""
    res = Path(workdir) / "results"
    return {
        str(p.relative_to(workdir)): p for p in sorted(res.rglob("*")) if p.is_file() and "style_cache" not in p.parts
    }


def assert_same_outputs(wa, wb, names=None):
    """Same arrays (MRC), same text (CSV, STAR, TXT, TLT) in two runs."""
    a, b = outputs(wa), outputs(wb)
    names = names or [n for n in a if n.endswith((".mrc", ".csv", ".star", ".txt", ".tlt"))]
    for n in names:
        assert n in b, f"{n} missing in the second run"
        if n.endswith(".mrc"):
            np.testing.assert_array_equal(read_mrc(a[n]).data, read_mrc(b[n]).data, err_msg=n)
        elif n.endswith(".star"):  # starfile writes a creation-time comment: compare the data lines

            def data(p):
                return [ln for ln in p.read_text().splitlines() if not ln.startswith("#")]

            assert data(a[n]) == data(b[n]), n
        else:
            assert a[n].read_text() == b[n].read_text(), n


@pytest.mark.slow
def test_lint_and_format_clean():
    r = subprocess.run(
        [str(SNAKEMAKE), "--lint", "-s", str(ROOT / "Snakefile"), "-d", str(ROOT), "--nocolor"],
        env=_env(),
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Congratulations" in r.stdout + r.stderr and "Lints for" not in r.stdout + r.stderr
    files = [str(ROOT / "Snakefile"), *map(str, sorted((ROOT / "workflow" / "rules").glob("*.smk")))]
    r = subprocess.run([str(BIN / "snakefmt"), "--check", *files], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    "over, key",
    [
        ({"seed": "abc"}, "config key 'seed'"),
        ({"style": {"tilts_per_job": 2.5}}, "config key 'style.tilts_per_job'"),
        ({"style": {"tilts_per_jobs": 2}}, "config key 'style.tilts_per_jobs': unknown key"),
        ({"colour": "blue"}, "config key 'colour': unknown key"),
        ({"modalities": ["faket", "gauss"]}, "config key 'modalities[1]'"),
        ({"reference": {"names": ["no_such_ref"]}}, "config key 'reference.names[0]': 'no_such_ref' is not an entry"),
        ({"reference": {"names": ["shrec2021"]}}, "config key 'reference.names[0]': 'shrec2021' is a dataset"),
        ({"reference": {"names": ["empiar_10045"]}}, "'empiar_10045': not downloaded"),
        ({"reconstruct": {"z_range": [10, 99]}}, "config key 'reconstruct.z_range'"),
        ({"tomograms": {"given": [{"name": "x", "folder": "/nonexistent"}]}}, "config key 'tomograms.given[0].folder'"),
    ],
)
def test_broken_config_fails_before_any_job_naming_the_key(tmp_path, over, key):
    cfg = tiny_config(tmp_path, **over)
    r = snakemake(tmp_path / "run", cfg, check=False, timeout=120)
    assert r.returncode != 0
    assert key in r.stdout + r.stderr, r.stdout[-2000:] + r.stderr[-2000:]
    assert not (tmp_path / "run" / "results").exists()
    assert not (tmp_path / "run" / "logs").exists()


@pytest.mark.slow
def test_altered_reference_fails_before_any_job(tmp_path):
    """A manifest entry whose file no longer matches its sha256 stops the run, naming the entry."""
    data = tmp_path / "ref.mrc"
    write_mrc(data, np.ones((3, 16, 16), np.float32), 10.0, image_stack=True)
    write_tlt(tmp_path / "ref.tlt", [-50, 0, 50])
    man = tmp_path / "manifest.csv"
    man.write_text((ROOT / "data_manifest.csv").read_text())
    assert (
        main(
            [
                "manifest",
                "add",
                str(man),
                "myref",
                str(data),
                "--kind",
                "tiltseries",
                "--angles-file",
                str(tmp_path / "ref.tlt"),
            ]
        )
        == 0
    )
    cfg = tiny_config(tmp_path, manifest=str(man), reference={"names": ["myref"]})
    r = snakemake(tmp_path / "run", cfg, "-n", check=True, timeout=120)  # intact: the DAG builds
    data.write_bytes(data.read_bytes()[:-4] + b"\0\0\0\1")
    r = snakemake(tmp_path / "run", cfg, check=False, timeout=120)
    assert r.returncode != 0
    assert "config key 'reference.names[0]': 'myref'" in r.stdout + r.stderr and "altered" in r.stdout + r.stderr
    assert not (tmp_path / "run" / "results").exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    "row, msg",
    [
        ("physics_default,physics\n", "line 9: 2 fields, expected 9"),  # a short row
        ("physics_default,physics,,,,,,again\n", "name 'physics_default' already used on line 2"),
        ("mine,tiltseries,ref.mrc,,,ref.tlt,,\n", "mine: a local entry needs its sha256"),
    ],
)
def test_bad_manifest_fails_before_any_job(tmp_path, row, msg):
    """The workflow reads the manifest with faket.manifest: a short row, a duplicate name or a local entry
    without sha256 stop the run at planning, naming the line (the old own reader let them through)."""
    man = tmp_path / "manifest.csv"
    text = (ROOT / "data_manifest.csv").read_text()
    assert len(text.splitlines()) == 8
    man.write_text(text + row)
    cfg = tiny_config(tmp_path, manifest=str(man))
    r = snakemake(tmp_path / "run", cfg, check=False, timeout=120)
    assert r.returncode != 0
    assert "config key 'manifest'" in r.stdout + r.stderr and msg in r.stdout + r.stderr, r.stderr[-2000:]
    assert not (tmp_path / "run" / "results").exists()
    assert not (tmp_path / "run" / "logs").exists()


@pytest.mark.slow
def test_misspelt_box_in_the_layout_spec_fails_at_planning(tmp_path):
    """`shape_zyx` in a layout spec (faket layout's key is `box`) stops the run before any job, naming the
    key, instead of passing planning and failing in the layout job."""
    spec = tmp_path / "typo.yaml"
    spec.write_text(yaml.safe_dump({**{k: v for k, v in TINY_LAYOUT.items() if k != "box"}, "shape_zyx": [32, 64, 64]}))
    cfg = tiny_config(tmp_path, layout={"spec": str(spec)})
    r = snakemake(tmp_path / "run", cfg, check=False, timeout=120)
    out = r.stdout + r.stderr
    assert r.returncode != 0
    assert "config key 'layout.spec'" in out and "unknown key 'shape_zyx'" in out, out[-2000:]
    assert not (tmp_path / "run" / "results").exists()


@pytest.mark.slow
def test_builtin_default_layout_spec_plans(tmp_path):
    """`layout.spec: ""` (documented as faket layout's built-in default) plans: layouts without --spec,
    tomograms and labels cropped in the default's 128-voxel Z."""
    cfg = tiny_config(tmp_path, layout={"spec": ""}, reconstruct={"z_range": [8, 120]})
    r = snakemake(tmp_path / "run", cfg, "-n", "-p", timeout=120)
    out = r.stdout + r.stderr
    layouts = [ln for ln in out.splitlines() if "faket layout" in ln]
    assert len(layouts) == 3 and not any("--spec" in ln for ln in layouts), layouts
    assert "--z-range 8:120 --volume-z 128" in out
    assert not (tmp_path / "run" / "results").exists()


@pytest.mark.slow
def test_spec_without_box_runs_in_the_default_box(tmp_path):
    """A layout spec without `box` gets faket layout's default 128x256x256 box: planned and run (noiseless
    modality only, so it stays small)."""
    import pandas as pd

    spec = tmp_path / "nobox.yaml"
    spec.write_text(
        yaml.safe_dump(
            {"classes": [{"template": "blob3", "count": 4}], "vesicles": {"count": 0}, "fiducials": {"count": 0}}
        )
    )
    cfg = tiny_config(
        tmp_path,
        layout={"spec": str(spec)},
        modalities=["noiseless"],
        qc=False,
        tomograms={"count": 1, "prefix": "tiny", "given": []},
        reconstruct={"binnings": [4], "z_range": [56, 72]},
    )
    work = tmp_path / "run"
    snakemake(work, cfg)
    d = work / "results" / "tiny_000"
    assert read_mrc(d / "layout" / "volume.mrc").data.shape == (128, 256, 256)
    tomo = read_mrc(d / "tomogram_noiseless_bin4.mrc")
    assert tomo.data.shape == read_mrc(d / "class_mask_bin4.mrc").data.shape == (4, 64, 64)
    assert tomo.voxel_size_a == pytest.approx(40.0)
    df = pd.read_csv(work / "results" / "dataset.csv")
    assert df[["tomogram", "modality", "bin", "shape_z"]].values.tolist() == [["tiny_000", "noiseless", 4, 4]]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """Two complete tiny runs with the same seeds: ``work`` was killed mid-way and resumed, with style
    scattered over chunks of 4 tilts; ``ref`` ran uninterrupted with style in one job per tomogram."""
    tmp = tmp_path_factory.mktemp("wf")
    cfg = tiny_config(tmp)
    work = tmp / "run"
    p = snakemake(work, cfg, popen=True)
    noisy = work / "results" / "tiny_000" / "tiltseries" / "noisy.mrc"
    t0 = time.time()
    while not noisy.exists() and time.time() - t0 < 600 and p.poll() is None:
        time.sleep(0.5)
    assert p.poll() is None, "the run ended before it could be killed:\n" + p.stdout.read()[-3000:]
    os.killpg(p.pid, signal.SIGINT)  # as Ctrl-C in a terminal
    p.wait(timeout=120)
    killed = {n: q.stat().st_mtime_ns for n, q in outputs(work).items()}
    t0 = time.perf_counter()
    resumed = snakemake(work, cfg, "--rerun-incomplete")
    seconds = time.perf_counter() - t0
    (tmp / "one").mkdir()
    cfg_one = tiny_config(tmp / "one", style={"tilts_per_job": 0})
    ref = tmp / "one" / "run"
    snakemake(ref, cfg_one)
    return {
        "tmp": tmp,
        "cfg": cfg,
        "work": work,
        "ref": ref,
        "killed": killed,
        "resume_seconds": seconds,
        "resume_log": resumed.stdout + resumed.stderr,
    }


@pytest.mark.slow
def test_end_to_end_tree_and_contents(tiny_run):
    import pandas as pd

    work, cfg = tiny_run["work"], tiny_run["cfg"]
    tomos, files = expected_tree(cfg)
    missing = [f for f in files if not (work / f).is_file()]
    assert not missing, missing
    # every rule has a log
    assert all((work / "logs" / t / "labels.log").is_file() for t in tomos)
    # style chunks were scattered (4 tilts a job) and cleaned up after the gather
    stacked = json.loads((work / f"results/{tomos[0]}/tiltseries/faket.json").read_text())
    assert [c["tilts"] for c in stacked["chunks"]] == ["0:4", "4:8", "8:11"]
    assert not list((work / f"results/{tomos[0]}/tiltseries/faket_chunks").glob("*.mrc"))
    for t in tomos:
        d = work / "results" / t
        ts = read_mrc(d / "tiltseries" / "faket.mrc").data
        assert ts.shape == (11, 64, 64)
        np.testing.assert_allclose(read_tlt(d / "tiltseries" / "faket.tlt"), np.arange(-50, 51, 10))
        for b in (2,):
            tomo = read_mrc(d / f"tomogram_bin{b}.mrc")
            cm = read_mrc(d / f"class_mask_bin{b}.mrc")
            assert tomo.data.shape == cm.data.shape == (24 // b, 64 // b, 64 // b)
            assert tomo.voxel_size_a == pytest.approx(10.0 * b) == cm.voxel_size_a
        # the noiseless tomogram is darker inside particles (dark contrast) than outside: labels line up
        tomo = read_mrc(d / "tomogram_noiseless_bin2.mrc").data
        occ = read_mrc(d / "occupancy_mask_bin2.mrc").data > 0
        assert occ.any() and tomo[occ].mean() < tomo[~occ].mean() - 0.5 * tomo.std()
        # the drawn SNR is recorded in the provenance, inside the range
        snr = json.loads((d / "tiltseries" / "noisy.json").read_text())["parameters"]["snr"]
        assert 0.05 <= snr <= 0.2
    snrs = {json.loads((work / f"results/{t}/tiltseries/noisy.json").read_text())["parameters"]["snr"] for t in tomos}
    assert len(snrs) == len(tomos)  # drawn per tomogram
    df = pd.read_csv(work / "results" / "dataset.csv")
    assert len(df) == len(tomos) * 4
    assert set(df.modality) == {"noiseless", "baseline", "noisy", "faket"}
    assert all((work / "results" / p).is_file() for p in df.tomogram_path)


@pytest.mark.slow
def test_killed_run_resumed_without_redoing_finished_steps(tiny_run):
    killed, work = tiny_run["killed"], tiny_run["work"]
    assert any(n.endswith("noisy.mrc") for n in killed)
    assert "results/dataset.csv" not in killed
    after = {n: q.stat().st_mtime_ns for n, q in outputs(work).items()}
    finished = [n for n in killed if n.endswith(("noiseless.mrc", "/layout/volume.mrc", "physics.mrc"))]
    assert len(finished) >= 3
    for n in finished:
        assert after[n] == killed[n], f"{n} was redone"
    log = tiny_run["resume_log"]
    scheduled = [ln for ln in log.splitlines() if ln.strip().startswith("output:")]
    for n in finished:
        assert not any(n in ln for ln in scheduled), f"{n} was scheduled again"


@pytest.mark.slow
def test_outputs_equal_uninterrupted_unscattered_run(tiny_run):
    """Killed + resumed + style in 3 chunks == one uninterrupted run with style in one job (same seeds)."""
    rec = json.loads((tiny_run["ref"] / "results/tiny_000/tiltseries/faket.json").read_text())
    assert [c["tilts"] for c in rec["chunks"]] == ["0:11"]
    assert_same_outputs(tiny_run["ref"], tiny_run["work"])


@pytest.mark.slow
def test_resume_after_deleted_output_redoes_only_that(tiny_run):
    work, cfg = tiny_run["work"], tiny_run["cfg"]
    before = {n: p.stat().st_mtime_ns for n, p in outputs(work).items()}
    target = "results/tiny_001/tomogram_bin2.mrc"
    ref = read_mrc(work / target).data
    (work / target).unlink()
    r = snakemake(work, cfg)
    assert "reconstruct_faket" in r.stdout + r.stderr
    np.testing.assert_array_equal(read_mrc(work / target).data, ref)
    after = {n: p.stat().st_mtime_ns for n, p in outputs(work).items()}
    changed = {n for n in before if n in after and after[n] != before[n]}
    # only the tomogram (+ sidecar) and what depends on it: that tomogram's QC and the dataset index
    allowed = {target, target.replace(".mrc", ".json"), "results/dataset.csv", "results/dataset.json"}
    assert changed - allowed <= {n for n in changed if n.startswith("results/tiny_001/qc/")}, changed
    r = snakemake(work, cfg, "-n")
    assert "Nothing to be done" in r.stdout + r.stderr


def _js_object(html, name):
    """The JSON literal of ``var <name> = {...};`` in a Snakemake report."""
    i = html.index(f"var {name} = {{") + len(f"var {name} = ")
    obj, _ = json.JSONDecoder().raw_decode(html[i:])
    return obj


@pytest.mark.slow
def test_report_holds_every_qc_figure_grouped_per_tomogram(tiny_run, tmp_path):
    import base64

    work, cfg = tiny_run["work"], tiny_run["cfg"]
    tomos, _ = expected_tree(cfg)
    snakemake(work, cfg, "--report", "report.html")
    html = (work / "report.html").read_text()
    categories = _js_object(html, "categories")
    results = _js_object(html, "results")
    figures = ["metrics.json", "montage.png", "slices.png", "spectra.png", "tilt_stats.png"]
    assert sorted(categories["QC"]) == sorted(tomos)
    for t in tomos:
        assert sorted(categories["QC"][t]) == [f"results/{t}/qc/{f}" for f in figures]
        for f in figures:
            entry = results[f"results/{t}/qc/{f}"]
            assert entry["labels"]["tomogram"] == t and entry["caption"].strip()
            payload = base64.b64decode(entry["data_uri"].split("base64,", 1)[1])
            assert payload == (work / f"results/{t}/qc/{f}").read_bytes()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("headless chromium not installed: the HTML was checked, not rendered")
    # open the report on the first tomogram's QC folder, showing its montage, as a user would by clicking
    path = f"results/{tomos[0]}/qc/montage.png"
    view = (
        "<script>setTimeout(function () { app.setView({navbarMode: 'subcategory', category: 'QC', "
        f"subcategory: '{tomos[0]}', content: 'img', contentPath: results['{path}'].data_uri, "
        f"resultPath: '{path}'}}); }}, 200);</script></body>"
    )
    i = html.rindex("</body>")
    page = tmp_path / "report_view.html"
    page.write_text(html[:i] + view + html[i + len("</body>") :])
    args = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--window-size=1400,1000",
        "--virtual-time-budget=8000",
    ]
    dom = subprocess.run([*args, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120).stdout
    for label in ("tilt montage", "power spectra", "tilt statistics", "tomogram slices", "metrics"):
        assert label in dom
    assert results[path]["data_uri"][:200] in dom  # the montage is displayed
    shot = tmp_path / "report.png"
    subprocess.run([*args, f"--screenshot={shot}", page.as_uri()], capture_output=True, timeout=120)
    import matplotlib.image as mpimg

    img = mpimg.imread(shot)
    assert img.shape[:2] == (1000, 1400) and img[..., :3].std() > 0.1


@pytest.mark.slow
def test_real_references_from_the_manifest(tmp_path, shared_data):
    """Tomograms draw their reference from a list of manifest entries (from their seeds): a real
    tilt-series (staged with its angles after the checksum check), a micrograph stack (its middle image),
    and a real map listed as a tomogram (projected at the content's angles)."""
    man = tmp_path / "manifest.csv"
    man.write_text((ROOT / "data_manifest.csv").read_text().replace("../shared/", str(ROOT.parent / "shared") + "/"))
    assert (
        main(
            [
                "manifest",
                "add",
                str(man),
                "emd3197",
                str(shared_data / "maps" / "EMD-3197.map"),
                "--kind",
                "tomogram",
                "--quiet",
            ]
        )
        == 0
    )
    names = ["pytom_p1_subtilt", "cryocat_hiv_vlp", "emd3197"]
    cfg = tiny_config(
        tmp_path,
        manifest=str(man),
        seed=1,
        tomograms={"count": 3, "prefix": "tiny", "given": []},
        reference={"names": names},
        modalities=["noisy"],
        qc=False,
    )
    work = tmp_path / "run"
    drawn = {}
    for t in [f"tiny_{i:03d}" for i in range(3)]:
        r = snakemake(work, cfg, "-n", f"results/{t}/tiltseries/noisy.mrc")
        drawn[t] = next(n for n in names if f"results/references/{n}/" in r.stdout + r.stderr)
    assert set(drawn.values()) == set(names), drawn  # this seed draws every kind
    targets = [f"results/{t}/tiltseries/noisy.mrc" for t in drawn]
    snakemake(work, cfg, *targets)
    ref = work / "results/references"
    staged = read_mrc(ref / "pytom_p1_subtilt/staged.mrc")
    assert staged.data.shape == (41, 100, 100)
    np.testing.assert_allclose(
        read_tlt(ref / "pytom_p1_subtilt/staged.tlt"), read_tlt(shared_data / "tiltseries/pytom_p1_subtilt.tlt")
    )
    assert read_mrc(ref / "cryocat_hiv_vlp/staged.mrc").data.ndim == 2
    proj = read_mrc(ref / "emd3197/projected.mrc")
    assert proj.data.shape == (11, 20, 20)
    np.testing.assert_allclose(read_tlt(ref / "emd3197/projected.tlt"), np.arange(-50, 51, 10))
    for t, n in drawn.items():
        rec = json.loads((work / f"results/{t}/tiltseries/noisy.json").read_text())
        assert any(f"references/{n}/" in str(i["path"]) for i in rec["inputs"]), (t, n)


@pytest.mark.slow
def test_given_shrec_style_folder(tmp_path):
    """A labelled volume given as a SHREC-style folder (grandmodel.mrc, class/occupancy masks,
    particle_locations.txt) goes through projection, reconstruction and labels like a random layout."""
    import pandas as pd

    spec = tmp_path / "layout.yaml"
    spec.write_text(yaml.safe_dump(TINY_LAYOUT))
    folder = tmp_path / "model_0"
    assert main(["layout", "--spec", str(spec), "-o", str(folder), "--seed", "5", "--quiet"]) == 0
    (folder / "volume.mrc").rename(folder / "grandmodel.mrc")
    for f in ("particles.csv", "particles.star"):
        (folder / f).unlink()
    cfg = tiny_config(
        tmp_path,
        tomograms={
            "count": 0,
            "prefix": "tiny",
            "given": [{"name": "model_0", "folder": str(folder), "volume": "grandmodel.mrc"}],
        },
        modalities=["noiseless"],
        qc=False,
    )
    work = tmp_path / "run"
    snakemake(work, cfg)
    d = work / "results" / "model_0"
    tomo = read_mrc(d / "tomogram_noiseless_bin2.mrc").data
    occ = read_mrc(d / "occupancy_mask_bin2.mrc").data
    assert tomo.shape == occ.shape == (12, 32, 32)
    assert tomo[occ > 0].mean() < tomo[occ == 0].mean() - 0.5 * tomo.std()
    lst = pd.read_csv(d / "particles_bin2.csv")
    for _, r in lst.iterrows():  # every listed particle's voxels in the occupancy mask are centred on it
        zyx = np.argwhere(occ == r.particle_id)
        assert len(zyx), r.particle_id
        assert np.abs(zyx.mean(axis=0) - [r.z, r.y, r.x]).max() < 1.5, r.particle_id
    assert not (work / "results" / "references").exists()  # noiseless only: no reference needed
    df = pd.read_csv(work / "results" / "dataset.csv")
    assert df[["tomogram", "modality", "bin"]].values.tolist() == [["model_0", "noiseless", 2]]


@pytest.mark.slow
def test_embedded_default_plans_the_documented_run(tmp_path):
    """The shipped config/config.yaml validates and plans 2 tomograms of 61 tilts (dry run, no job)."""
    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    assert cfg["tomograms"]["count"] >= 2 and cfg["style"]["weights"] == "random"
    assert cfg["reference"]["names"] == ["physics_default"]
    # the same config with the repository-relative paths made absolute, planned in an empty folder
    cfg["manifest"] = str(ROOT / cfg["manifest"])
    cfg["layout"]["spec"] = str(ROOT / cfg["layout"]["spec"])
    p = tmp_path / "default.yaml"
    p.write_text(yaml.safe_dump(cfg))
    r = snakemake(tmp_path / "run", p, "-n", "-p")
    out = r.stdout + r.stderr
    assert out.count("faket layout") == 3  # 2 tomograms + the physics reference's layout
    assert out.count("--angles -60:60:2") >= 3  # project x 2 + reference: 61 tilts
    assert out.count("faket style") == 2 and "--tilts 0:61" in out and "--weights random" in out
    assert not (tmp_path / "run" / "results").exists()


def test_config_yaml_is_the_schema_default():
    """config/config.yaml holds every key of the schema with the schema's default (defined once)."""
    schema = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())

    def walk(props, c, path):
        assert set(c) == set(props), f"{path}: keys {sorted(c)} != schema {sorted(props)}"
        for k, sub in props.items():
            assert "description" in sub and "default" in sub, f"{path}{k}: description and default needed"
            if sub.get("type") == "object" and "properties" in sub:
                walk(sub["properties"], c[k], f"{path}{k}.")
            else:
                assert c[k] == sub["default"], f"{path}{k}: config {c[k]!r} != schema default {sub['default']!r}"

    walk(schema["properties"], cfg, "")
    assert schema["additionalProperties"] is False


def test_rules_find_this_installations_faket_without_an_activated_venv(tmp_path):
    """`.venv/bin/snakemake --cores 2` from a shell where the venv is not activated: the rules' `faket` commands
    resolve to the interpreter's installation (they failed with "faket: command not found" before)."""
    cfg = tiny_config(tmp_path)
    env = {k: v for k, v in _env().items() if k != "VIRTUAL_ENV"}
    env["PATH"] = "/usr/bin:/bin"
    assert shutil.which("faket", path=env["PATH"]) is None  # the premise: no faket on this PATH
    target = "results/tiny_000/layout/volume.mrc"
    cmd = [str(SNAKEMAKE), "-s", str(ROOT / "Snakefile"), "-d", str(tmp_path / "run"), "--configfile", str(cfg)]
    r = subprocess.run([*cmd, "--cores", "2", target], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    side = json.loads((tmp_path / "run" / target).with_suffix(".json").read_text())
    assert Path(side["command_line"][0]).parent == BIN
