"""bench/device.py, the one command for a GPU machine, runs on the CPU with --device cpu --small."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "device.py"


def test_device_bench_on_cpu_small(tmp_path):
    r = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--device",
            "cpu",
            "--small",
            "--out",
            str(tmp_path),
            "--threads",
            "1",
            "--budget",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    rep = json.loads((tmp_path / "device.json").read_text())
    assert rep["format"] == 1 and rep["small"] is True and rep["passed"] is True
    assert rep["machine"]["device"] == "cpu" and rep["machine"]["torch"]
    checks = {c["check"]: c for c in rep["checks"]}
    for key in (
        "projection",
        "back-projection",
        "style loss",
        "style loss gradient",
        "styled output",
        "picker segment",
    ):
        assert any(k.startswith(key) for k in checks), key
    for c in rep["checks"]:
        assert c["pass"] and 0 <= c["value"] <= c["tolerance"], c
    # the torch projection kernels (what CUDA runs) against the numba ones: close, and not trivially equal
    assert 0 < checks["projection 40x48x56 -> 61 tilts"]["value"] < 1e-5
    times = rep["timings"]
    style = [t for t in times if t["timing"].startswith("style")]
    assert {(t["timing"], t["precision"]) for t in style} == {("style 2 x 64^2", p) for p in ("fp32", "tf32", "bf16")}
    for t in style:
        if t["precision"] == "tf32":
            assert "CUDA" in t["skipped"]
        else:
            assert t["seconds"] > 0 and t["tilts_timed"] >= 1
    names = " | ".join(t["timing"] for t in times)
    assert "projection 64^3 -> 61 x 64^2" in names and "reconstruction 61 x 64^2 -> 64^3" in names
    picker = [t for t in times if t["timing"].startswith("picker training")]
    assert [t["precision"] for t in picker] == ["fp32", "bf16"] and all(t["steps_per_second"] > 0 for t in picker)
    md = (tmp_path / "device.md").read_text()
    assert md.count("| pass |") == len(rep["checks"]) and "**FAIL**" not in md
    assert "| style 2 x 64^2 | bf16 |" in md and "TF32 exists on CUDA only" in md


def test_device_bench_without_cuda_says_so(tmp_path):
    import pytest
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: this checks the message on machines without one")
    r = subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "cuda", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "CUDA is not available" in r.stderr
    assert not (tmp_path / "device.json").exists()
