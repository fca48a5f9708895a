"""faket.qc / faket qc: figures and metrics on small synthetic stacks."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import write_mrc
from scipy.ndimage import gaussian_filter

from faket.evaluation import qc
from faket.formats.tiltmeta import write_tlt

ANGLES = np.array([-60.0, -30.0, 0.0, 30.0, 60.0])
N = 64
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def smooth(rng, shape, sigma):
    a = gaussian_filter(rng.normal(size=shape), (0, sigma, sigma) if len(shape) == 3 else sigma)
    return a / a.std()


@pytest.fixture(scope="module")
def stacks():
    """Stages whose spectra are known by construction: the reference is smooth structure plus noise
    correlated over ~1 px; "styled" carries the same kind of noise, "noisy" white noise."""
    r = np.random.default_rng(0)
    shape = (ANGLES.size, N, N)
    noiseless = smooth(r, shape, 3)
    coloured = lambda: gaussian_filter(r.normal(size=shape), (0, 1, 1)) * 3  # noqa: E731
    return {
        "noiseless": noiseless,
        "content": noiseless + 0.25 * r.normal(size=shape),
        "noisy": noiseless + r.normal(size=shape),
        "styled": noiseless + coloured(),
        "reference": smooth(r, shape, 3) + coloured(),
    }


def write_stage(d, name, data, angles=ANGLES):
    p = write_mrc(d / f"{name}.mrc", data.astype(np.float32))
    write_tlt(d / f"{name}.tlt", angles)
    return p


def test_nearest_tilts_and_stretch():
    ang = np.arange(-57.0, 58.0, 3.0)
    idx = qc.nearest_tilts(ang, (-60, -30, 0, 30, 60))
    np.testing.assert_allclose(ang[idx], [-57, -30, 0, 30, 57])
    assert qc.nearest_tilts(np.array([0.0, 2.0]), (-60, 0, 60)) == [0, 1]
    img = np.arange(101.0)
    s = qc.percentile_stretch(img)
    assert s.min() == 0 and s.max() == 1
    assert s[50] == pytest.approx(0.5)
    assert (s[:2] == 0).all() and (s[-2:] == 1).all()


def test_metrics_have_meaning(stacks):
    st = {k: qc.TiltSeries(v, ANGLES) for k, v in stacks.items()}
    m = qc.compute_metrics(st)
    spec = m["spectral_distance_to_reference"]
    assert set(spec) == {"noiseless", "content", "noisy", "styled"}
    assert len(spec["styled"]["per_tilt"]) == ANGLES.size
    assert spec["styled"]["mean"] < spec["noisy"]["mean"]
    assert m["styled_spectrum_closer_than_noisy"] is True
    # the content's SSIM/PSNR: the noiseless projections are closer to it than the noisy ones
    assert m["ssim_to_content"]["noiseless"]["mean"] > m["ssim_to_content"]["noisy"]["mean"]
    assert m["psnr_to_content_db"]["noiseless"]["mean"] > m["psnr_to_content_db"]["noisy"]["mean"]
    ts = m["tilt_statistics"]["noisy"]
    np.testing.assert_allclose(ts["std"], stacks["noisy"].reshape(5, -1).std(axis=1))
    assert ts["angles_deg"] == ANGLES.tolist()
    assert m["gram_distance_to_reference"] is None


def test_reference_matched_by_angle(stacks):
    # a reference with a different tilt scheme: each stage tilt is compared with the nearest-angle tilt
    ref_angles = np.array([61.0, 29.0, 1.0, -31.0, -59.0])
    ref = stacks["styled"][::-1]  # reversed order, so angle matching pairs identical images
    m = qc.compute_metrics(
        {"styled": qc.TiltSeries(stacks["styled"], ANGLES), "reference": qc.TiltSeries(ref, ref_angles)}
    )
    spec = m["spectral_distance_to_reference"]["styled"]
    assert spec["max_angle_gap_deg"] == pytest.approx(1.0)
    np.testing.assert_allclose(spec["per_tilt"], 0.0, atol=1e-12)


def test_gram_metric_with_feature_function(stacks):
    def feats(img):
        gy, gx = np.gradient(img)
        return [np.stack([img, gx, gy])]

    st = {k: qc.TiltSeries(v, ANGLES) for k, v in stacks.items() if k in ("noisy", "styled", "reference")}
    m = qc.compute_metrics(st, gram_features=feats, gram_crop=32)
    g = m["gram_distance_to_reference"]
    assert set(g) == {"noisy", "styled"} and len(g["styled"]["per_tilt"]) == 5
    assert all(v > 0 for v in g["noisy"]["per_tilt"])


def _png_ok(path):
    from PIL import Image

    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        w, h = im.size
        arr = np.asarray(im.convert("L"), dtype=float)
    assert w > 200 and h > 200
    assert arr.std() > 10  # not a blank canvas
    return w, h


def test_cli_all_stages(tmp_path, stacks, run_cli):
    paths = {k: write_stage(tmp_path, k, v) for k, v in stacks.items()}
    r = np.random.default_rng(1)
    tomo = write_mrc(tmp_path / "tomo.mrc", r.normal(size=(12, 40, 48)).astype(np.float32))
    cm = np.zeros((12, 40, 48), np.float32)
    cm[3:9, 8:18, 8:18] = 1
    cm[4:8, 22:34, 20:40] = 3
    mask = write_mrc(tmp_path / "class_mask.mrc", cm)
    out = tmp_path / "qc" / "model_0"
    args = ["qc", "-o", out, "--tomogram", tomo, "--class-mask", mask, "--no-gram", "-q"]
    for k, p in paths.items():
        args += [f"--{k}", p]
    rc, _, err = run_cli(*args)
    assert rc == 0, err
    for f in ("montage.png", "spectra.png", "tilt_stats.png", "slices.png"):
        _png_ok(out / f)
    m = json.loads((out / "metrics.json").read_text())
    for key in (
        "spectral_distance_to_reference",
        "ssim_to_content",
        "psnr_to_content_db",
        "tilt_statistics",
        "gram_distance_to_reference",
        "tomogram",
        "provenance",
        "figures",
    ):
        assert key in m
    assert m["gram_note"] == "skipped (--no-gram)"
    assert m["spectral_distance_to_reference"]["styled"]["mean"] < m["spectral_distance_to_reference"]["noisy"]["mean"]
    assert m["tomogram"]["class_voxels"] == {"background": int((cm == 0).sum()), "1": 6 * 10 * 10, "3": 4 * 12 * 20}
    assert m["name"] == "model_0"
    assert not list(out.glob(".*tmp*"))


def test_cli_partial_inputs(tmp_path, stacks, run_cli):
    p = write_stage(tmp_path, "noisy", stacks["noisy"])
    out = tmp_path / "qc"
    rc, _, err = run_cli("qc", "--noisy", p, "-o", out, "-q")
    assert rc == 0, err
    assert sorted(f.name for f in out.iterdir()) == ["metrics.json", "montage.png", "spectra.png", "tilt_stats.png"]
    w, h = _png_ok(out / "montage.png")
    assert h > 3 * w  # one stage column, five tilt rows
    m = json.loads((out / "metrics.json").read_text())
    assert "spectral_distance_to_reference" not in m and m["stages"] == ["noisy"]


@pytest.mark.parametrize("case", ["nothing", "no_tlt", "mask_shape", "missing"])
def test_cli_bad_input(tmp_path, stacks, run_cli, case):
    out = tmp_path / "qc"
    if case == "nothing":
        args = []
    elif case == "no_tlt":
        write_mrc(tmp_path / "noisy.mrc", stacks["noisy"].astype(np.float32))
        args = ["--noisy", tmp_path / "noisy.mrc"]
    elif case == "mask_shape":
        tomo = write_mrc(tmp_path / "t.mrc", np.zeros((8, 16, 16), np.float32))
        mask = write_mrc(tmp_path / "m.mrc", np.zeros((8, 16, 8), np.float32))
        args = ["--tomogram", tomo, "--class-mask", mask]
    else:
        args = ["--styled", tmp_path / "nope.mrc"]
    rc, _, err = run_cli("qc", *args, "-o", out)
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("faket qc: error:")
    assert not out.exists() or not any(out.iterdir())


REPORT_SNAKEFILE = """
REP = {rep!r}
FIGS = {{"montage": "montage.png", "spectra": "spectra.png", "tilt_stats": "tilt_stats.png",
         "slices": "slices.png", "metrics": "metrics.json"}}

def item(name):
    return report("qc/{{t}}/" + FIGS[name], caption=f"{{REP}}/{{name}}.rst", category="QC",
                  subcategory="{{t}}", labels={{"tomogram": "{{t}}", "figure": name}})

rule all:
    input: expand("qc/{{t}}/metrics.json", t=["model_0", "model_1"])

rule qc:
    input: noisy="noisy.mrc", styled="styled.mrc", reference="reference.mrc", tomo="tomo.mrc", cm="cm.mrc"
    output: montage=item("montage"), spectra=item("spectra"), stats=item("tilt_stats"),
            slices=item("slices"), metrics=item("metrics")
    shell: "faket qc --noisy {{input.noisy}} --styled {{input.styled}} --reference {{input.reference}} "
           "--tomogram {{input.tomo}} --class-mask {{input.cm}} --no-gram -o qc/{{wildcards.t}} -q"
"""


def test_snakemake_report_holds_every_figure_and_renders(tmp_path, stacks):
    """The captions in workflow/report render in a Snakemake report that embeds every QC figure per
    tomogram; when Chromium is installed, the report's app renders headless and gives a screenshot."""
    import base64
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    bindir = Path(sys.executable).parent
    if not (bindir / "snakemake").exists() or not (bindir / "faket").exists():
        pytest.skip("snakemake or the faket script is not installed beside this Python")
    rep = Path(__file__).resolve().parents[1] / "workflow" / "report"
    for name in ("noisy", "styled", "reference"):
        write_stage(tmp_path, name, stacks[name])
    r = np.random.default_rng(3)
    write_mrc(tmp_path / "tomo.mrc", r.normal(size=(8, 32, 32)).astype(np.float32))
    cm = np.zeros((8, 32, 32), np.float32)
    cm[2:6, 8:16, 8:16] = 1
    write_mrc(tmp_path / "cm.mrc", cm)
    (tmp_path / "Snakefile").write_text(REPORT_SNAKEFILE.format(rep=str(rep)))
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"}
    for cmd in (["snakemake", "--cores", "1", "--quiet"], ["snakemake", "--report", "report.html"]):
        res = subprocess.run(
            [str(bindir / cmd[0]), *cmd[1:]], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
        )
        assert res.returncode == 0, res.stderr[-2000:]
    html = (tmp_path / "report.html").read_text()
    for t in ("model_0", "model_1"):
        for f in ("montage.png", "spectra.png", "tilt_stats.png", "slices.png"):
            b64 = base64.b64encode((tmp_path / "qc" / t / f).read_bytes()).decode()
            assert b64 in html, f"{t}/{f} not embedded in the report"
    for cap in ("montage", "spectra", "tilt_stats", "slices", "metrics"):
        first_words = " ".join((rep / f"{cap}.rst").read_text().split()[:4])
        assert first_words in html, f"caption {cap}.rst missing from the report"

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        return  # the HTML checks above still ran
    flags = ["--headless=new", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000"]
    url = (tmp_path / "report.html").as_uri()
    dom = subprocess.run([chromium, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0
    # the report is a JavaScript app: its navigation exists only once it has rendered
    assert "<nav" in dom.stdout and "<nav" not in html
    shot = tmp_path / "report.png"
    subprocess.run(
        [chromium, *flags, "--window-size=1200,800", f"--screenshot={shot}", url], capture_output=True, timeout=120
    )
    from PIL import Image

    with Image.open(shot) as im:
        assert im.size == (1200, 800)
        arr = np.asarray(im.convert("L"), dtype=float)
    assert arr.std() > 10  # rendered content, not a blank page


def test_cli_gram_distance_with_vgg(tmp_path, stacks, run_cli):
    """With faket.vgg (random weights: no download offline), a stage identical to the reference has Gram
    distance 0 and the noisy stage a positive one."""
    ref = write_stage(tmp_path, "reference", stacks["reference"])
    same = write_stage(tmp_path, "styled", stacks["reference"])
    noisy = write_stage(tmp_path, "noisy", stacks["noisy"])
    out = tmp_path / "qc"
    rc, _, err = run_cli(
        "qc",
        "--reference",
        ref,
        "--styled",
        same,
        "--noisy",
        noisy,
        "-o",
        out,
        "--vgg-weights",
        "random",
        "--gram-crop",
        "48",
        "--montage-angles",
        "0,60",
        "-q",
    )
    assert rc == 0, err
    m = json.loads((out / "metrics.json").read_text())
    g = m["gram_distance_to_reference"]
    assert g["styled"]["angles_deg"] == [0.0, 60.0]
    np.testing.assert_allclose(g["styled"]["per_tilt"], 0.0, atol=1e-9)
    assert min(g["noisy"]["per_tilt"]) > 0.01
    assert m["styled_gram_closer_than_noisy"] is True
    assert "random" in m["gram_note"]
