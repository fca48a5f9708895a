"""MRC / .tlt I/O, angle specs, atomic outputs and bad-input handling of the CLI."""

from __future__ import annotations

import json

import mrcfile
import numpy as np
import pytest
from conftest import ball_phantom, write_mrc

from faket.errors import InputError
from faket.formats.mrc import OutputTransaction, read_volume
from faket.formats.mrc import write_mrc as io_write_mrc
from faket.formats.tiltmeta import parse_angles, read_tiltseries, read_tlt, write_tlt


def test_parse_angles_includes_both_ends():
    a = parse_angles("-60:60:2")
    assert a.size == 61 and a[0] == -60 and a[-1] == 60
    assert np.allclose(parse_angles("-3:3"), np.arange(-3, 4))
    assert np.allclose(parse_angles("-60,-30.5,0,30"), [-60, -30.5, 0, 30])
    assert np.allclose(parse_angles("0:10:3"), [0, 3, 6, 9])
    assert np.allclose(parse_angles("60:-60:-30"), [60, 30, 0, -30, -60])
    with pytest.raises(InputError):
        parse_angles("-60:60:0")
    with pytest.raises(InputError):
        parse_angles("sixty")


def test_mrc_roundtrip_keeps_voxel_size_and_values(tmp_path):
    rng = np.random.default_rng(1)
    v = rng.normal(size=(5, 6, 7)).astype(np.float32)
    io_write_mrc(tmp_path / "v.mrc", v, 4.25)
    m = read_volume(tmp_path / "v.mrc")
    assert m.data.dtype == np.float32 and m.data.shape == (5, 6, 7)
    np.testing.assert_array_equal(m.data, v)
    assert m.voxel_size_a == pytest.approx(4.25)
    io_write_mrc(tmp_path / "s.mrc", v, None, image_stack=True)
    with mrcfile.open(tmp_path / "s.mrc") as f:
        assert f.is_image_stack()
    assert read_volume(tmp_path / "s.mrc").voxel_size_a is None  # unknown stays unknown


def test_tlt_roundtrip_and_pairing(tmp_path):
    ang = np.array([-59.97, -57.01, 0.0, 3.02])
    write_tlt(tmp_path / "x.tlt", ang)
    np.testing.assert_allclose(read_tlt(tmp_path / "x.tlt"), ang)
    write_mrc(tmp_path / "x.mrc", np.zeros((4, 3, 3)) + np.arange(4)[:, None, None])
    m, a = read_tiltseries(tmp_path / "x.mrc")
    assert m.data.shape == (4, 3, 3)
    np.testing.assert_allclose(a, ang)
    write_tlt(tmp_path / "x.tlt", ang[:3])
    with pytest.raises(InputError, match="3 tilt angles"):
        read_tiltseries(tmp_path / "x.mrc")


def test_transaction_rolls_back(tmp_path):
    target = tmp_path / "out.mrc"
    with pytest.raises(RuntimeError):
        with OutputTransaction() as tx:
            io_write_mrc(tx.path(target), np.zeros((2, 2, 2)), 1.5)
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with OutputTransaction() as tx:
        io_write_mrc(tx.path(target), np.zeros((2, 2, 2)), 1.5)
    assert [p.name for p in tmp_path.iterdir()] == ["out.mrc"]


@pytest.fixture
def volume(tmp_path):
    return write_mrc(tmp_path / "vol.mrc", ball_phantom((16, 12, 20), [(0, 0, 0, 4)]))


@pytest.mark.parametrize("form", [["--angles", "-60:60:30"], ["--angles=-60:60:30"], ["--angles", "-60,-30,0,30,60"]])
def test_negative_angle_values_as_typed(volume, tmp_path, run_cli, form):
    out = tmp_path / "t.mrc"
    rc, _, err = run_cli("project", volume, "-o", out, *form, "-q")
    assert rc == 0, err
    np.testing.assert_allclose(read_tlt(tmp_path / "t.tlt"), [-60, -30, 0, 30, 60])
    with mrcfile.open(out) as m:
        assert m.data.shape == (5, 12, 20)
        assert m.is_image_stack()
        assert float(m.voxel_size.x) == pytest.approx(10.0)
    side = json.loads((tmp_path / "t.json").read_text())
    assert side["faket_step"] == "project"
    assert side["inputs"][0]["sha256"] and side["packages"]["numpy"]
    assert side["parameters"]["angles_deg"] == [-60.0, -30.0, 0.0, 30.0, 60.0]


def _bad_inputs(tmp_path):
    """(name, file maker) pairs of broken inputs."""

    def not_mrc():
        p = tmp_path / "junk.mrc"
        p.write_bytes(b"this is not an MRC file" * 100)
        return p

    def truncated():
        p = write_mrc(tmp_path / "trunc.mrc", np.ones((16, 16, 16)))
        data = p.read_bytes()
        p.write_bytes(data[: len(data) - 5000])
        return p

    def two_d():
        return write_mrc(tmp_path / "img.mrc", np.ones((16, 16)))

    def nan():
        a = np.ones((8, 8, 8), np.float32)
        a[1, 2, 3] = np.nan
        return write_mrc(tmp_path / "nan.mrc", a)

    def missing():
        return tmp_path / "missing.mrc"

    def folder():
        d = tmp_path / "dir.mrc"
        d.mkdir()
        return d

    return {
        "not_mrc": not_mrc,
        "truncated": truncated,
        "two_d": two_d,
        "nan": nan,
        "missing": missing,
        "folder": folder,
    }


@pytest.mark.parametrize("case", ["not_mrc", "truncated", "two_d", "nan", "missing", "folder"])
def test_bad_volume_one_line_exit2_no_output(tmp_path, run_cli, case):
    bad = _bad_inputs(tmp_path)[case]()
    out = tmp_path / "out" / "t.mrc"
    rc, _, err = run_cli("project", bad, "-o", out, "--angles", "-60:60:30")
    assert rc == 2
    lines = [l for l in err.strip().splitlines() if l]
    assert len(lines) == 1, err
    assert str(bad) in lines[0] and "Traceback" not in err
    assert not out.parent.exists() or list(out.parent.iterdir()) == []


def test_bad_angles_and_paths(volume, tmp_path, run_cli):
    out = tmp_path / "t.mrc"
    rc, _, err = run_cli("project", volume, "-o", out, "--angles", "-90:90:30")
    assert rc == 2 and "out of range" in err
    rc, _, err = run_cli("project", volume, "-o", volume, "--angles", "0")
    assert rc == 2 and "also an input" in err
    assert not out.exists()
    # a tilt-series whose .tlt has the wrong count
    rc, _, err = run_cli("project", volume, "-o", out, "--angles", "-60:60:30", "-q")
    assert rc == 0
    write_tlt(tmp_path / "t.tlt", [0, 10])
    rc, _, err = run_cli("reconstruct", out, "-o", tmp_path / "r.mrc")
    assert rc == 2 and "2 tilt angles" in err and "5 tilts" in err
    assert not (tmp_path / "r.mrc").exists()
    # an input file is never modified
    before = volume.read_bytes()
    run_cli("project", volume, "-o", tmp_path / "u.mrc", "--angles", "0", "-q")
    assert volume.read_bytes() == before


def test_help_lists_steps_without_heavy_imports():
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "faket", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "project" in r.stdout and "reconstruct" in r.stdout
    # heavy libraries are not imported to print help
    r = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from faket.cli import build_parser; build_parser();"
            "print(sorted(m for m in ('torch','scipy','numba','matplotlib') if m in sys.modules))",
        ],
        capture_output=True,
        text=True,
    )
    assert r.stdout.strip() == "[]", r.stdout + r.stderr


def test_a_step_that_fails_to_import_fails_loudly(monkeypatch):
    """A subcommand whose module cannot be imported is an error, not a silently missing step."""
    import faket.cli as cli

    monkeypatch.setattr(cli, "COMMANDS", [*cli.COMMANDS, "no_such_step"])
    with pytest.raises(ModuleNotFoundError, match="faket.cli.no_such_step"):
        cli.build_parser()


@pytest.mark.parametrize(
    "header, expected",
    [
        ((10.0, 10.0, 10.0), 10.0),
        ((2.02, 2.02, 2.02), 2.02),
        ((0.0, 0.0, 0.0), None),  # MRC's "unset"
        ((1.0, 1.0, 1.0), None),  # what many tools write when they do not know it
        ((0.0, 7.5, 7.5), 7.5),  # first positive value
    ],
)
def test_voxel_size_unset_decided_once(tmp_path, header, expected):
    from faket.formats.mrc import read_mrc, read_mrc_header, voxel_size_or_none

    p = tmp_path / "v.mrc"
    with mrcfile.new(p) as m:
        m.set_data(np.zeros((3, 4, 5), np.float32))
        m.voxel_size = header
    for got in (voxel_size_or_none(header), read_mrc(p).voxel_size_a):
        if expected is None:
            assert got is None
        else:
            assert got == pytest.approx(expected)
    shape, vs = read_mrc_header(p)
    assert shape == (3, 4, 5) and vs == got


def test_read_mrc_header_bad_files(tmp_path):
    from faket.formats.mrc import read_mrc_header

    with pytest.raises(InputError, match="not found"):
        read_mrc_header(tmp_path / "nope.mrc")
    bad = tmp_path / "bad.mrc"
    bad.write_bytes(b"not an mrc file at all" * 3)
    with pytest.raises(InputError, match=r"bad.mrc: not a valid MRC file"):
        read_mrc_header(bad)


def _modules_after(argv, tmp_path, extra_env=None):
    """Run ``python -m faket ARGV`` in a fresh process and return the top-level modules it imported."""
    import os
    import subprocess
    import sys

    code = (
        "import sys, runpy; sys.argv = ['faket', *sys.argv[1:]]\n"
        "try:\n    runpy.run_module('faket', run_name='__main__')\n"
        "except SystemExit as e:\n    rc = e.code\n"
        "print('MODULES', sorted({m.split('.')[0] for m in sys.modules}))\n"
        "sys.exit(rc)"
    )
    env = {**os.environ, **(extra_env or {})}
    r = subprocess.run(
        [sys.executable, "-c", code, *map(str, argv)], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert r.returncode == 0, r.stderr
    line = [x for x in r.stdout.splitlines() if x.startswith("MODULES")][-1]
    return set(eval(line[len("MODULES ") :]))


@pytest.mark.parametrize("device", ["cpu", "auto"])
def test_project_and_reconstruct_on_cpu_do_not_import_torch(tmp_path, device):
    """The CPU path resolves --device without torch (auto: no GPU device node on this machine, or
    CUDA_VISIBLE_DEVICES empty), a small input takes the numpy kernels without importing numba, and a
    disabled progress bar does not import tqdm."""
    vol = write_mrc(tmp_path / "v.mrc", ball_phantom((8, 8, 8), [(0, 0, 0, 2)]))
    env = {"CUDA_VISIBLE_DEVICES": ""} if device == "auto" else {}
    mods = _modules_after(
        ["project", vol, "-o", tmp_path / "t.mrc", "--angles", "-30:30:30", "--device", device, "--threads", "1", "-q"],
        tmp_path,
        env,
    )
    assert "numba" not in mods and "torch" not in mods and "tqdm" not in mods, sorted(mods)
    mods = _modules_after(
        ["reconstruct", tmp_path / "t.mrc", "-o", tmp_path / "r.mrc", "--device", device, "-q"], tmp_path, env
    )
    assert "torch" not in mods, sorted(mods)
    assert read_volume(tmp_path / "r.mrc").data.shape == (8, 8, 8)


def test_device_specs_checked_without_torch(monkeypatch):
    import sys

    from faket.cli import _common

    with pytest.raises(InputError, match="--device gpu: expected auto, cpu, cuda or cuda:I"):
        _common.resolve_cuda_device("gpu")
    with pytest.raises(InputError, match="--device cuda:x"):
        _common.resolve_cuda_device("cuda:x")
    assert _common.resolve_cuda_device("cpu") is None
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert _common.resolve_cuda_device("auto") is None
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    # no GPU device node: auto is the CPU without asking torch
    monkeypatch.setattr(_common, "_GPU_NODES", ("/nonexistent/nvidia0",))
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    assert _common.cuda_may_be_available() is False
    assert _common.device_name(None) == "cpu"


def test_cuda_requested_without_cuda_is_an_input_error():
    torch = pytest.importorskip("torch")
    from faket.cli import _common

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    # with torch imported, auto asks torch (CPU here); cuda is refused in one line
    assert _common.cuda_may_be_available() is False
    assert _common.resolve_cuda_device("auto") is None
    assert _common.resolve_device("auto").type == "cpu"
    with pytest.raises(InputError, match="--device cuda: CUDA is not available"):
        _common.resolve_cuda_device("cuda")


def test_set_threads_without_importing_torch_or_numba(tmp_path):
    import subprocess
    import sys

    code = (
        "import sys, os; from faket.cli._common import set_threads; set_threads(1);"
        "print(os.environ['OMP_NUM_THREADS'], os.environ['NUMBA_NUM_THREADS'],"
        " 'torch' in sys.modules, 'numba' in sys.modules);"
        "import numba; print(numba.get_num_threads())"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["1", "1", "False", "False", "1"]


def test_silent_progress_bar_answers_what_the_steps_call():
    """With bars off, progress() returns a stand-in (tqdm not imported): it must accept every bar method the
    steps use, or a --quiet run fails where a TTY run works."""
    import re
    from pathlib import Path

    from faket.cli._common import progress

    used = set()
    for f in Path(__file__).resolve().parents[1].joinpath("faket").rglob("*.py"):
        used |= set(re.findall(r"\bbar\.(\w+)", f.read_text()))
    bar = progress(range(3), total=3, enable=False)
    assert list(bar) == [0, 1, 2]
    for name in sorted(used):
        attr = getattr(bar, name)
        if callable(attr):
            attr(1) if name == "update" else attr()
    assert bar.total == 3
