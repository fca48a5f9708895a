"""config/paper-scale.yaml (one tomogram at the FakET paper's size) and bench/paper_scale.py's bookkeeping."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"


def _bench():
    spec = importlib.util.spec_from_file_location("paper_scale", ROOT / "bench" / "paper_scale.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_paper_scale_layout_spec_is_the_papers_slab():
    from faket.layout import load_spec

    spec = load_spec(str(ROOT / "config" / "paper-scale-layout.yaml"))
    assert list(spec["box"]) == [360, 1024, 1024] and float(spec["voxel_size"]) == 10.0


def test_paper_scale_config_plans_one_tomogram_through_every_step(tmp_path):
    """The one command, dry-run: every step of one paper-scale tomogram, with the options the config sets."""
    cfg = yaml.safe_load((ROOT / "config" / "paper-scale.yaml").read_text())
    cfg["manifest"] = str(ROOT / "data_manifest.csv")
    cfg["layout"]["spec"] = str(ROOT / cfg["layout"]["spec"])
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    r = subprocess.run(
        [
            str(SNAKEMAKE),
            "-s",
            str(ROOT / "Snakefile"),
            "-d",
            str(tmp_path / "run"),
            "--configfile",
            str(tmp_path / "c.yaml"),
            "--cores",
            "2",
            "-n",
            "-p",
            "--nocolor",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = r.stdout
    for cmd in (
        "faket layout",
        "faket reference",
        "faket project",
        "faket noise",
        "faket style",
        "faket reconstruct",
        "faket labels",
        "faket qc",
    ):
        assert cmd in out, cmd
    assert "paper-scale-layout.yaml" in out and "results/paper_000/tomogram_bin2.mrc" in out
    assert "--bin 2" in out and "--precision fp32" in out


def test_scaled_spec_and_outputs(tmp_path):
    b = _bench()
    box = b.scaled_spec(0.25, tmp_path / "s.yaml")
    spec = yaml.safe_load((tmp_path / "s.yaml").read_text())
    assert box == (90, 256, 256) and spec["slab_thickness"] == 75
    assert all(c["count"] == round(1500 / 64) for c in spec["classes"])
    assert "vesicles" not in spec and spec["fiducials"]["count"] == 1  # a 60 nm vesicle needs a thicker slab
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x.mrc").write_bytes(b"0" * 10000)
    (tmp_path / "d" / "x.json").write_text("{}")
    outs = b.outputs_of(["noise", "in.mrc", "-o", "d/x.mrc", "--content-out", "d/c.mrc"], tmp_path)
    assert tmp_path / "d" / "x.json" in outs and tmp_path / "d" / "c.mrc" in outs
    assert (
        b.du(tmp_path / "d") >= 10000
        and b.step_name(["style", "a", "--preset", "paper", "--precision", "bf16"]) == "style paper bf16"
    )


def test_extrapolation_is_a_straight_line_in_size():
    b = _bench()
    rows = [
        {
            "step": "labels",
            "scale": s,
            "wall": 1 + 8 * s**3,
            "cpu": 2 * s**3,
            "maxrss_kb": 100 + 800 * s**3,
            "disk_bytes": 10 * s**3,
        }
        for s in (0.25, 0.5)
    ]
    rows += [
        {"step": "style paper fp32", "scale": s, "wall": 5 + 40 * s**2, "cpu": 1, "maxrss_kb": 1, "disk_bytes": 1}
        for s in (0.25, 0.5)
    ]
    est = {e["step"]: e for e in b.extrapolate(rows, [0.25, 0.5])}
    assert abs(est["labels"]["wall"] - 9) < 1e-6 and abs(est["labels"]["maxrss_kb"] - 900) < 1e-6
    assert abs(est["style paper fp32"]["wall"] - 45) < 1e-6 and est["labels"]["estimated"]
