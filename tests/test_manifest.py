"""Data manifest: parsing, checksum verification, adding entries, staging a reference."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from faket.cli import main
from faket.errors import InputError
from faket.formats.manifest import COLUMNS, check_entry, parse_manifest, read_manifest
from faket.formats.mrc import read_mrc, write_mrc
from faket.formats.tiltmeta import read_tlt, write_tlt

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
HEADER = ",".join(COLUMNS) + "\n"


def _sha(p):
    return hashlib.sha256(Path(p).read_bytes()).hexdigest()


@pytest.fixture
def man(tmp_path):
    """A manifest with one tilt-series (angles beside it), one micrograph stack and one URL entry."""
    rng = np.random.default_rng(0)
    ts = rng.normal(size=(5, 16, 16)).astype(np.float32)
    write_mrc(tmp_path / "ts.mrc", ts, 8.0, image_stack=True)
    write_tlt(tmp_path / "angles.tlt", [-40, -20, 0, 20, 40])
    write_mrc(tmp_path / "mic.mrc", ts[:3], None)
    text = HEADER + (
        f"ts,tiltseries,ts.mrc,{_sha(tmp_path / 'ts.mrc')},,angles.tlt,CC0,a test\n"
        f"mic,micrograph,mic.mrc,{_sha(tmp_path / 'mic.mrc')},12.5,,CC0,\n"
        "remote,dataset,https://example.org/x.zip,,,,,not downloaded\n"
        "phys,physics,,,,,,\n"
    )
    p = tmp_path / "data_manifest.csv"
    p.write_text(text)
    return p, ts


def test_parse_and_check_ok(man, capsys):
    p, _ = man
    entries = read_manifest(p)
    assert [e.name for e in entries] == ["ts", "mic", "remote", "phys"]
    assert entries[1].voxel_size_a == 12.5 and entries[2].is_url and not entries[3].is_local
    assert all(check_entry(e, p.parent, require_local=False) is None for e in entries)
    assert main(["manifest", "check", str(p)]) == 0
    assert main(["manifest", "check", str(p), "--names", "ts,mic"]) == 0


def test_missing_altered_and_not_downloaded_fail_naming_the_entry(man, capsys):
    p, _ = man
    (p.parent / "mic.mrc").write_bytes((p.parent / "mic.mrc").read_bytes() + b"\0")
    assert main(["manifest", "check", str(p), "--names", "ts"]) == 0
    capsys.readouterr()
    assert main(["manifest", "check", str(p), "--names", "mic"]) == 2
    err = capsys.readouterr().err
    assert "entry mic:" in err and "altered" in err and len(err.strip().splitlines()) == 1
    (p.parent / "ts.mrc").unlink()
    assert main(["manifest", "check", str(p)]) == 2
    err = capsys.readouterr().err
    assert "entry ts:" in err and "missing" in err
    assert main(["manifest", "check", str(p), "--names", "remote"]) == 2
    assert "not downloaded" in capsys.readouterr().err
    assert main(["manifest", "check", str(p), "--names", "nosuch"]) == 2
    assert "no entry named 'nosuch'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "row, msg",
    [
        ("a,tiltseries,x.mrc,,,,,\n", "needs its sha256"),
        ("a,tiltsries,x.mrc," + "0" * 64 + ",,,,\n", "kind 'tiltsries'"),
        ("a,tiltseries,x.mrc,abc,,,,\n", "64 hex"),
        ("a,tiltseries,x.mrc," + "0" * 64 + ",-3,,,\n", "positive"),
        ("a b,tiltseries,x.mrc," + "0" * 64 + ",,,,\n", "bad name"),
        ("a,tiltseries,x.mrc\n", "3 fields"),
    ],
)
def test_malformed_rows_name_the_line(row, msg):
    with pytest.raises(InputError, match=msg) as ei:
        parse_manifest(HEADER + row, source="m.csv")
    assert "line 2" in str(ei.value)
    with pytest.raises(InputError, match="already used on line 2"):
        parse_manifest(HEADER + "a,physics,,,,,,\na,physics,,,,,,\n")


def test_add_computes_checksum_and_refuses_duplicates(man, capsys):
    p, ts = man
    write_mrc(p.parent / "new.mrc", ts[:1] * 2, 5.0)
    assert (
        main(
            [
                "manifest",
                "add",
                str(p),
                "new",
                str(p.parent / "new.mrc"),
                "--kind",
                "micrograph",
                "--voxel-size-a",
                "5",
                "--licence",
                "CC0",
            ]
        )
        == 0
    )
    e = read_manifest(p)[-1]
    assert (e.name, e.path_or_url, e.sha256, e.voxel_size_a) == ("new", "new.mrc", _sha(p.parent / "new.mrc"), 5.0)
    assert main(["manifest", "check", str(p), "--names", "new"]) == 0
    before = p.read_text()
    assert main(["manifest", "add", str(p), "new", str(p.parent / "new.mrc"), "--kind", "micrograph"]) == 2
    assert p.read_text() == before
    assert (
        main(
            [
                "manifest",
                "add",
                str(p),
                "new",
                str(p.parent / "ts.mrc"),
                "--kind",
                "tiltseries",
                "--angles-file",
                str(p.parent / "angles.tlt"),
                "--replace",
            ]
        )
        == 0
    )
    e = read_manifest(p)[-1]
    assert e.kind == "tiltseries" and e.angles_file == "angles.tlt" and e.sha256 == _sha(p.parent / "ts.mrc")


def test_stage_tiltseries_and_micrograph(man, tmp_path):
    p, ts = man
    out = tmp_path / "staged" / "ref.mrc"
    assert main(["manifest", "stage", str(p), "ts", "-o", str(out)]) == 0
    m = read_mrc(out)
    np.testing.assert_array_equal(m.data, ts)
    assert m.voxel_size_a == pytest.approx(8.0)
    np.testing.assert_allclose(read_tlt(out.with_suffix(".tlt")), [-40, -20, 0, 20, 40])
    side = json.loads(out.with_suffix(".json").read_text())
    assert side["manifest_entry"]["sha256"] == _sha(p.parent / "ts.mrc")
    out2 = tmp_path / "staged" / "mic.mrc"
    assert main(["manifest", "stage", str(p), "mic", "-o", str(out2)]) == 0
    m2 = read_mrc(out2)
    np.testing.assert_array_equal(m2.data, ts[1])  # middle image of the 3-image stack
    assert m2.voxel_size_a == pytest.approx(12.5)  # from the manifest (header had none)
    # an altered file is refused and nothing is written
    (p.parent / "ts.mrc").write_bytes((p.parent / "ts.mrc").read_bytes()[:-4] + b"\1\1\1\1")
    out3 = tmp_path / "staged" / "bad.mrc"
    assert main(["manifest", "stage", str(p), "ts", "-o", str(out3)]) == 2
    assert not out3.exists()


def test_stage_refuses_kinds_that_are_no_reference(man, tmp_path, capsys):
    """Only the STAGED_KINDS (shared with the workflow's reference check) can be staged."""
    from faket.formats.manifest import STAGED_KINDS
    from faket.workflow import REFERENCE_KINDS

    assert set(REFERENCE_KINDS) == {"physics", *STAGED_KINDS}
    p, _ = man
    for name, kind in (("remote", "dataset"), ("phys", "physics")):
        out = tmp_path / f"{name}.mrc"
        assert main(["manifest", "stage", str(p), name, "-o", str(out)]) == 2
        err = capsys.readouterr().err
        assert f"entry {name} is a {kind}; a reference must be a tiltseries, micrograph or tomogram" in err
        assert not out.exists()


def test_project_manifest_entries_are_valid():
    """The shipped data_manifest.csv parses; its local entries match the files in ../shared/data."""
    entries = read_manifest(ROOT / "data_manifest.csv")
    names = {e.name for e in entries}
    assert {"physics_default", "pytom_p1_subtilt", "shrec2021"} <= names
    if not SHARED.is_dir():
        pytest.skip("../shared/data is absent (only on the development machine and in CI)")
    for e in entries:
        if e.is_local:
            assert check_entry(e, ROOT) is None, e.name
