"""The documented "steps by hand" block (docs/steps.md) runs as written (with fewer tilts, in a temporary
folder), and the README's short example is made of that block's commands."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import mrcfile
import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
STEPS_PAGE = ROOT / "docs" / "steps.md"
HEADING = "## The steps by hand"


def bash_block(path: Path, heading: str) -> str:
    """The first ```bash block under ``heading`` in ``path``; fails naming what is missing."""
    assert path.is_file(), f"{path.relative_to(ROOT)} is missing: it holds the '{heading}' block"
    text = path.read_text()
    assert heading in text, f"{path.relative_to(ROOT)}: no '{heading}' section"
    section = text.split(heading, 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, f"{path.relative_to(ROOT)}: no ```bash block under '{heading}'"
    return block.group(1)


def faket_commands(script: str) -> list[str]:
    """The `faket ...` commands of a bash block, continuation lines joined, comments and spacing dropped."""
    joined = re.sub(r"\\\n\s*", " ", script)
    cmds = []
    for line in joined.splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("faket "):
            cmds.append(" ".join(line.split()))
    return cmds


def test_steps_block_is_complete():
    cmds = faket_commands(bash_block(STEPS_PAGE, HEADING))
    steps = {c.split()[1] for c in cmds}
    assert {"layout", "reference", "project", "noise", "style", "reconstruct", "labels", "qc", "evaluate"} <= steps


def test_readme_example_is_part_of_the_steps_block():
    """The README's example must not drift from the tested block: each of its commands is one of the block's."""
    readme = (ROOT / "README.md").read_text()
    examples = re.findall(r"```bash\n(.*?)```", readme, re.S)
    example = [c for block in examples for c in faket_commands(block) if not c.startswith("faket --help")]
    assert len(example) >= 5, "README.md: no example of faket commands found"
    tested = set(faket_commands(bash_block(STEPS_PAGE, HEADING)))
    untested = [c for c in example if c not in tested]
    assert not untested, f"README.md commands not in {STEPS_PAGE.name}'s tested block: {untested}"


@pytest.mark.slow
def test_steps_by_hand_run(tmp_path):
    script = bash_block(STEPS_PAGE, HEADING)
    # as written, except: 7 tilts instead of 61, the repository's config, and the truth as the "picks"
    script = script.replace("-60:60:2", "-60:60:20").replace("config/", f"{ROOT}/config/")
    script = script.replace("source .venv/bin/activate", "")
    script = script.replace("--pred my_picks.csv", "--pred tomo/particles_bin2.csv")
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", OMP_NUM_THREADS="2")
    r = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert r.returncode == 0, r.stderr[-3000:]
    with (
        mrcfile.open(tmp_path / "tomo" / "tomogram_bin2.mrc") as t,
        mrcfile.open(tmp_path / "tomo" / "class_mask_bin2.mrc") as c,
    ):
        assert t.data.shape == c.data.shape == (24, 64, 64)  # z 8:56 of 64, binned by 2
        assert float(t.voxel_size.x) == pytest.approx(20.0)
    qc = json.loads((tmp_path / "tomo" / "qc" / "metrics.json").read_text())
    assert set(qc["figures"]) == {"montage.png", "spectra.png", "tilt_stats.png", "slices.png"}
    ev = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert ev["localisation"]["f1"] == 1.0
