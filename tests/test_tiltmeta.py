"""faket.tiltmeta: angles, acquisition order and dose from .tlt, .rawtlt, SerialEM .mdoc and RELION / Warp STAR."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mrcfile
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from faket.errors import InputError
from faket.formats.tiltmeta import find_tilt_metadata, parse_exclude, read_tilt_metadata, read_tiltseries

DATA = Path(__file__).resolve().parent / "data"
DOSE_SYM = [0.0, 3.0, -3.0, -6.0, 6.0, 9.0, -9.0]  # TS_demo: SerialEM dose-symmetric, stack in acquisition order

RELION5_TS = """
# version 50001

data_TS_07

loop_
_rlnMicrographMovieName #1
_rlnTomoTiltMovieFrameCount #2
_rlnTomoNominalStageTiltAngle #3
_rlnTomoNominalTiltAxisAngle #4
_rlnMicrographPreExposure #5
_rlnTomoNominalDefocus #6
_rlnMicrographName #7
_rlnTomoXTilt #8
_rlnTomoYTilt #9
_rlnTomoZRot #10
_rlnTomoXShiftAngst #11
_rlnTomoYShiftAngst #12
frames/TS_07_001_0.0.tif    8   0.001  -94.8   0.0  -4.0  MotionCorr/job002/frames/TS_07_001_0.0.mrc   0.0   0.35  -94.2  12.1  -3.3
frames/TS_07_002_3.0.tif    8   3.001  -94.8   2.5  -4.0  MotionCorr/job002/frames/TS_07_002_3.0.mrc   0.0   3.35  -94.2  14.0  -2.9
frames/TS_07_003_-3.0.tif   8  -2.999  -94.8   5.0  -4.0  MotionCorr/job002/frames/TS_07_003_-3.0.mrc  0.0  -2.65  -94.2  10.2  -3.8
"""

RELION5_GLOBAL = """
# version 50001

data_global

loop_
_rlnTomoName #1
_rlnTomoTiltSeriesStarFile #2
_rlnVoltage #3
_rlnSphericalAberration #4
_rlnAmplitudeContrast #5
_rlnMicrographOriginalPixelSize #6
_rlnTomoHand #7
_rlnOpticsGroupName #8
_rlnTomoTiltSeriesPixelSize #9
TS_07  tilt_series/TS_07.star  300.000  2.700  0.100  0.830  -1.000  optics1  1.660
TS_08  tilt_series/TS_08.star  300.000  2.700  0.100  0.830  -1.000  optics1  1.660
"""

WARP_TOMOSTAR = """
data_

loop_
_wrpMovieName #1
_wrpAngleTilt #2
_wrpAxisAngle #3
_wrpAxisOffsetX #4
_wrpAxisOffsetY #5
_wrpDose #6
frames/TS_1_000_0.0.tif    0.0   -94.8  0.0  0.0   0.0
frames/TS_1_001_3.0.tif    3.0   -94.8  0.0  0.0   3.1
frames/TS_1_002_-3.0.tif  -3.0   -94.8  0.0  0.0   6.2
"""


def _stack(path, n, ny=12, nx=16, voxel=None):
    rng = np.random.default_rng(n)
    with mrcfile.new(path, overwrite=True) as m:
        m.set_data(rng.standard_normal((n, ny, nx)).astype(np.float32))
        if voxel:
            m.voxel_size = voxel
    return Path(path)


def test_tlt_and_rawtlt():
    m = read_tilt_metadata(DATA / "TS_demo.rawtlt")
    assert m.format == "rawtlt" and m.angles.tolist() == DOSE_SYM and m.order is None and m.dose is None


def test_serialem_mdoc_order_dose_and_pixel():
    m = read_tilt_metadata(DATA / "TS_demo.mrc.mdoc", stack_shape=(7, 12, 16))
    np.testing.assert_allclose(m.angles, DOSE_SYM, atol=2e-3)
    assert m.order.tolist() == list(range(7))  # DateTime: saved in acquisition order
    assert m.dose.tolist() == [2.5 * i for i in range(7)]  # PriorRecordDose
    assert m.pixel_size_a == pytest.approx(21.36)
    # a 2x binned stack of the same series: the pixel doubles; a stack of another size: not used
    assert read_tilt_metadata(DATA / "TS_demo.mrc.mdoc", stack_shape=(7, 6, 8)).pixel_size_a == pytest.approx(42.72)
    other = read_tilt_metadata(DATA / "TS_demo.mrc.mdoc", stack_shape=(7, 10, 10))
    assert other.pixel_size_a is None and any("does not match" in n for n in other.notes)


def test_mdoc_without_times_uses_dose_then_nothing(tmp_path):
    text = (DATA / "TS_demo.mrc.mdoc").read_text()
    no_time = "\n".join(ln for ln in text.splitlines() if not ln.startswith("DateTime"))
    (tmp_path / "a.mdoc").write_text(no_time)
    m = read_tilt_metadata(tmp_path / "a.mdoc")
    assert m.order.tolist() == list(range(7)) and "PriorRecordDose" in " ".join(m.notes)
    bare = "\n".join(ln for ln in no_time.splitlines() if not ln.startswith("PriorRecordDose"))
    (tmp_path / "b.mdoc").write_text(bare)
    m = read_tilt_metadata(tmp_path / "b.mdoc")
    assert m.order is None and m.dose is None and "unknown" in " ".join(m.notes)
    (tmp_path / "c.mdoc").write_text("PixelSpacing = 2\nImageSize = 4 4\n")
    with pytest.raises(InputError, match="c.mdoc"):
        read_tilt_metadata(tmp_path / "c.mdoc")


def test_relion5_tilt_series_star_and_global_table(tmp_path):
    (tmp_path / "tilt_series").mkdir()
    (tmp_path / "tilt_series" / "TS_07.star").write_text(RELION5_TS)
    m = read_tilt_metadata(tmp_path / "tilt_series" / "TS_07.star")
    assert m.format == "relion5-star" and m.angles.tolist() == [0.35, 3.35, -2.65]  # aligned YTilt preferred
    assert m.dose.tolist() == [0.0, 2.5, 5.0] and m.order.tolist() == [0, 1, 2]
    (tmp_path / "tilt_series.star").write_text(RELION5_GLOBAL)
    g = read_tilt_metadata(tmp_path / "tilt_series.star", stack=tmp_path / "TS_07.mrc")
    assert g.angles.tolist() == m.angles.tolist()
    with pytest.raises(InputError, match="holds 2 tilt-series"):
        read_tilt_metadata(tmp_path / "tilt_series.star")
    assert read_tilt_metadata(f"{tmp_path / 'tilt_series.star'}:TS_07").angles.size == 3
    with pytest.raises(InputError, match="TS_08.star of TS_08 not found"):
        read_tilt_metadata(f"{tmp_path / 'tilt_series.star'}:TS_08")


def test_warp_tomostar(tmp_path):
    (tmp_path / "TS_1.tomostar").write_text(WARP_TOMOSTAR)
    m = read_tilt_metadata(tmp_path / "TS_1.tomostar")
    assert m.format == "warp-tomostar" and m.angles.tolist() == [0.0, 3.0, -3.0] and m.order.tolist() == [0, 1, 2]


def test_projection_matrix_star_roundtrip(tmp_path):
    """Matrices built as RELION 5 does (Rz(ZRot) Ry(YTilt) Rx(XTilt)) give back YTilt."""
    y = np.array([-51.0, -3.0, 0.0, 27.5, 60.0])
    R = Rotation.from_euler("ZYX", np.c_[np.full(5, 85.3), y, np.full(5, 0.7)], degrees=True).as_matrix()
    rows = []
    for i, M in enumerate(R):
        v = ["[" + ",".join(f"{c:.8f}" for c in [*M[r], 0.0]) + "]" for r in range(3)]
        rows.append(f"  {v[0]}  {v[1]}  {v[2]}  [0,0,0,1]  {3.0 * i:.3f}")
    text = (
        "data_TS_9\n\nloop_\n_rlnTomoProjX #1\n_rlnTomoProjY #2\n_rlnTomoProjZ #3\n_rlnTomoProjW #4\n"
        "_rlnMicrographPreExposure #5\n" + "\n".join(rows) + "\n"
    )
    (tmp_path / "t.star").write_text(text)
    m = read_tilt_metadata(tmp_path / "t.star")
    assert m.format == "relion-tomograms-star"
    np.testing.assert_allclose(m.angles, y, atol=1e-5)


def test_real_tomodrgn_warp_star_selected_by_stack_name(shared_data):
    d = shared_data / "tiltseries" / "tomodrgn_warptools_Unt"
    star = d / "warptools_test_4-tomos_10-ptcls_box-32_angpix-12_tomograms.star"
    m = read_tilt_metadata(star, stack=d / "Unt_050" / "Unt_050_12.00A_000001.mrcs")
    assert m.angles.size == 37 and "Unt_050" in m.notes[0]
    assert m.angles[0] > 45 and m.angles[-1] < -45  # stored from high to low tilt
    # dose-symmetric: the least-exposed tilt is near 0 deg, the most exposed at the extremes
    assert abs(m.angles[m.order == 0][0]) < 10 and abs(m.angles[np.argmax(m.order)]) > 45
    with pytest.raises(InputError, match="holds 4 tilt-series"):
        read_tilt_metadata(star)


def test_found_beside_the_stack_everywhere(tmp_path):
    """X.rawtlt / X.mrc.mdoc / X.star beside X.mrc are found like X.tlt, by read_tiltseries and the CLIs."""
    st = _stack(tmp_path / "TS_demo.mrc", 7)
    assert find_tilt_metadata(st) is None
    shutil.copy(DATA / "TS_demo.mrc.mdoc", tmp_path)
    assert find_tilt_metadata(st) == tmp_path / "TS_demo.mrc.mdoc"
    _, a = read_tiltseries(st)
    np.testing.assert_allclose(a, DOSE_SYM, atol=2e-3)
    shutil.copy(DATA / "TS_demo.rawtlt", tmp_path)
    assert find_tilt_metadata(st) == tmp_path / "TS_demo.rawtlt"  # .tlt / .rawtlt first
    _, a = read_tiltseries(st, tmp_path / "TS_demo.mrc.mdoc")  # an explicit --angles-file of any format
    np.testing.assert_allclose(a, DOSE_SYM, atol=2e-3)
    with pytest.raises(InputError, match="7 tilt angles but"):
        read_tiltseries(_stack(tmp_path / "five.mrc", 5), tmp_path / "TS_demo.mrc.mdoc")


def test_angles_file_option_takes_every_format(tmp_path, run_cli):
    vol = tmp_path / "v.mrc"
    with mrcfile.new(vol) as m:
        m.set_data(np.random.default_rng(0).random((8, 8, 8)).astype(np.float32))
        m.voxel_size = 10.0
    for f in (DATA / "TS_demo.mrc.mdoc", DATA / "TS_demo.rawtlt"):
        out = tmp_path / f"p_{f.suffix[1:]}.mrc"
        rc, _, err = run_cli("project", vol, "--angles-file", f, "-o", out, "--quiet")
        assert rc == 0, err
        np.testing.assert_allclose(np.loadtxt(out.with_suffix(".tlt")), DOSE_SYM, atol=2e-3)


def test_noise_orders_an_acquisition_order_reference_by_angle(tmp_path, run_cli):
    """A dose-symmetric stack in acquisition order (mdoc beside it) is used in angle order, with its acquisition
    order and dose recorded; the fit equals that of the same tilts stored in angle order with a .tlt."""
    rng = np.random.default_rng(4)
    base = (rng.standard_normal((7, 48, 48)) + 5).astype(np.float32)
    base *= np.linspace(0.5, 2.0, 7)[:, None, None]
    ang = np.array(DOSE_SYM)
    acq = tmp_path / "TS_demo.mrc"
    with mrcfile.new(acq) as m:
        m.set_data(base)
        m.voxel_size = 10.0
    shutil.copy(DATA / "TS_demo.mrc.mdoc", tmp_path)
    order = np.argsort(ang)
    srt = tmp_path / "sorted.mrc"
    with mrcfile.new(srt) as m:
        m.set_data(base[order])
        m.voxel_size = 10.0
    srt.with_suffix(".tlt").write_text("".join(f"{a:g}\n" for a in ang[order] + 0.001))
    clean = tmp_path / "clean.mrc"
    with mrcfile.new(clean) as m:
        m.set_data(rng.random((7, 32, 32)).astype(np.float32))
        m.voxel_size = 10.0
    clean.with_suffix(".tlt").write_text("".join(f"{a:g}\n" for a in np.sort(ang)))
    for ref, out in ((acq, "a.mrc"), (srt, "b.mrc")):
        rc, _, err = run_cli("noise", clean, "--reference", ref, "-o", tmp_path / out, "--quiet")
        assert rc == 0, err
    ra = json.loads((tmp_path / "a.json").read_text())["noise_model"]["references"][0]
    rb = json.loads((tmp_path / "b.json").read_text())["noise_model"]["references"][0]
    assert ra["ordered_by_angle"] and not rb["ordered_by_angle"]
    np.testing.assert_allclose(ra["smoothed"]["std"], rb["smoothed"]["std"], rtol=1e-5)
    assert ra["matched_index"] == order.tolist()  # content tilt (in angle order) -> file index
    assert ra["metadata"]["format"] == "mdoc" and ra["metadata"]["acquisition_order"] == list(range(7))
    assert ra["acquisition_order_used_tilts"] == order.tolist()
    assert ra["metadata"]["pre_exposure_e_per_a2"][3] == 7.5


def test_parse_exclude():
    assert parse_exclude("1,5,40-41", 41).tolist() == [0, 4, 39, 40]
    assert parse_exclude(None, 5).size == 0
    for bad, msg in (("0", "outside"), ("42", "outside"), ("3-1", "backwards"), ("a", "not a tilt")):
        with pytest.raises(InputError, match=msg):
            parse_exclude(bad, 41)
