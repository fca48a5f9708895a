"""faket.sampling: Fourier crop/pad of references, and the two-sampling principle on real data."""

from __future__ import annotations

import json
from pathlib import Path

import mrcfile
import numpy as np
import pytest
from scipy.ndimage import gaussian_filter, zoom

from faket.cli import main
from faket.evaluation.metrics import log_spectrum_distance, radial_power_spectrum
from faket.imaging.sampling import fourier_resize, plan_resample, resample_image, resample_stack, resample_volume


def _write(path, data, voxel=None, angles=None):
    with mrcfile.new(path, overwrite=True) as m:
        m.set_data(np.asarray(data))
        if voxel:
            m.voxel_size = voxel
    if angles is not None:
        Path(path).with_suffix(".tlt").write_text("".join(f"{a:g}\n" for a in angles))
    return Path(path)


@pytest.mark.parametrize(
    "shape,up", [((32, 32), (64, 64)), ((33, 47), (50, 71)), ((100, 64), (150, 96)), ((31, 20), (62, 40))]
)
def test_down_of_up_is_identity_and_mean_is_kept(shape, up):
    """Odd, even and non-square sizes: Fourier padding then cropping returns the image (the Nyquist bin is split
    on the way up and united on the way down), and every resize keeps the mean exactly (DC bin)."""
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32) + 3.0
    u = fourier_resize(x, up)
    assert u.shape == up and u.dtype == np.float32
    np.testing.assert_allclose(fourier_resize(u, shape), x, atol=2e-5)
    for s in (up, (shape[0] // 2 + 1, shape[1] // 3 + 1)):
        assert fourier_resize(x, s).mean() == pytest.approx(x.mean(), abs=1e-5)


def test_band_limited_content_is_kept_and_nothing_aliases():
    """A periodic cosine below the new Nyquist survives downsampling exactly; one above it vanishes (no alias)."""
    n, m = 96, 48
    yy, xx = np.mgrid[:n, :n]
    low = np.cos(2 * np.pi * (5 * xx + 3 * yy) / n).astype(np.float32)
    high = np.cos(2 * np.pi * (30 * xx) / n).astype(np.float32)  # 30 cycles > 24 = new Nyquist
    out = fourier_resize(low + high, (m, m))
    yy2, xx2 = np.mgrid[:m, :m]
    np.testing.assert_allclose(out, np.cos(2 * np.pi * (5 * xx2 + 3 * yy2) / m), atol=1e-4)


def test_fourier_crop_keeps_the_noise_floor_flat_where_interpolation_rolls_it_off():
    """Why Fourier cropping: white noise stays white up to the new Nyquist (the band the blind noise fit reads),
    while cubic-spline zoom (an interpolating resampler) attenuates the top of the band and aliases."""
    x = np.random.default_rng(0).standard_normal((512, 512)).astype(np.float32)
    f = 0.375
    fc = fourier_resize(x, (192, 192))
    zc = zoom(x, f, order=3)

    def top_over_mid(img):
        fr, p = radial_power_spectrum(img)
        return p[(fr > 0.35) & (fr < 0.475)].mean() / p[(fr > 0.1) & (fr < 0.25)].mean()

    assert top_over_mid(fc) == pytest.approx(1.0, abs=0.08)  # measured 1.05
    assert top_over_mid(zc) < 0.92  # measured 0.88: the top of the band is attenuated by 12 %
    # variance: Fourier crop keeps the fraction f^2 of white noise power, exactly as binning predicts
    assert fc.var() == pytest.approx(x.var() * f * f, rel=0.03)


def test_plan_sizes_and_effective_pixel():
    p = plan_resample((4096, 4096), 1.5, 10.0)
    assert p.shape_out == (614, 614) and p.crop == (0, 4096, 0, 4096)
    assert abs(p.pixel_out_yx[0] / 10 - 1) < 1e-3
    q = plan_resample((32, 32), 12.0, 10.0)  # 38.4 px: a 2-pixel crop makes it exact
    assert q.shape_out == (36, 36) and q.crop == (1, 31, 1, 31) and q.pixel_out_yx == (10.0, 10.0)
    r = plan_resample((5760, 4092), 1.0, 10.0)  # non-square
    assert r.shape_out == (576, 409) and max(abs(v / 10 - 1) for v in r.pixel_out_yx) < 1e-3
    assert plan_resample((100, 80), 10.05, 10.0).identity  # within 1 %: same sampling
    with pytest.raises(ValueError):
        plan_resample((10, 10), 0.0, 10.0)


@pytest.mark.parametrize("dtype", [np.int16, np.float16, np.float32])
def test_stack_from_memory_map_tilt_by_tilt(tmp_path, dtype):
    rng = np.random.default_rng(2)
    st = (rng.standard_normal((5, 40, 30)) * 100 + 50).astype(dtype)
    p = _write(tmp_path / "s.mrc", st)
    plan = plan_resample((40, 30), 5.0, 10.0)
    seen = []
    with mrcfile.mmap(p, permissive=True) as m:
        assert isinstance(m.data, np.memmap)
        out = resample_stack(m.data, plan, indices=[4, 0, 2], tilt_fn=lambda i, t: seen.append((i, t.dtype)))
    assert out.shape == (3, 20, 15) and out.dtype == np.float32
    assert [i for i, _ in seen] == [4, 0, 2] and all(d == dtype for _, d in seen)
    for k, i in enumerate([4, 0, 2]):
        np.testing.assert_allclose(out[k], resample_image(st[i].astype(np.float32), plan), rtol=1e-6, atol=1e-4)
    inv = resample_stack(st, plan, invert=True)
    ref = resample_stack(st, plan)
    np.testing.assert_allclose(inv.mean(axis=(1, 2)), ref.mean(axis=(1, 2)), rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(inv.std(axis=(1, 2)), ref.std(axis=(1, 2)), rtol=1e-5)
    np.testing.assert_allclose(
        inv - inv.mean(axis=(1, 2), keepdims=True), -(ref - ref.mean(axis=(1, 2), keepdims=True)), atol=1e-3
    )


def test_volume_same_rule():
    v = gaussian_filter(np.random.default_rng(3).standard_normal((24, 32, 28)), 2).astype(np.float32)
    out, rec = resample_volume(v, 5.0, 10.0)
    assert out.shape == (12, 16, 14) and rec["shape_out_zyx"] == [12, 16, 14]
    assert out.mean() == pytest.approx(v.mean(), abs=1e-5)
    back, _ = resample_volume(out, 10.0, 5.0)
    assert back.shape == v.shape


# --------------------------------------------------------------------------------------------------
# the principle, on real data: the same image at two samplings gives the same noise fit and styled output


def _pytom(shared_data, sel, crop=None):
    p = shared_data / "tiltseries" / "pytom_p1_subtilt_41x100x100.mrc"
    ref = mrcfile.read(p).astype(np.float32)[sel]
    if crop:
        ref = ref[:, crop:-crop, crop:-crop]
    ang = np.loadtxt(shared_data / "tiltseries" / "pytom_p1_subtilt.tlt")[sel]
    return ref, ang


def _curves(path):
    return json.loads(Path(path).with_suffix(".json").read_text())["noise_model"]["references"][0]


def test_two_samplings_same_noise_fit(shared_data, tmp_path):
    """The real PyTom series given at 10 A and as a Fourier-upsampled copy at 5 A (2x) and 6.667 A (1.5x) gives
    the same blind noise fit and the same NOISY output once resampled; used at its own sampling
    (--assume-same-sampling) the upsampled copy reads a very different SNR.

    Tolerance: with resampling, the fit sees the 10 A image up to the float32 rounding of the pad/crop round trip
    (|down(up(x)) - x| <= 2e-5 of the std, test above), so the curves (ratios of variances) agree to ~1e-5 and
    NOISY (a deterministic function of them and the seed) to 1e-4 of its std. Without resampling, half (or a third)
    of the upsampled spectrum is empty: the floor read at 0.7-0.95 Nyquist is ~0 (2x) and the SNR jumps by orders
    of magnitude; we require > 10x."""
    sel = list(range(0, 41, 4))
    ref, ang = _pytom(shared_data, sel)
    _write(tmp_path / "A.mrc", ref, None, ang)  # header without a pixel size: stated by option
    up2 = np.stack([fourier_resize(t, (200, 200)) for t in ref])
    up15 = np.stack([fourier_resize(t, (150, 150)) for t in ref])
    _write(tmp_path / "B.mrc", up2, 5.0, ang)
    _write(tmp_path / "C.mrc", up15, 10.0 / 1.5, ang)
    rng = np.random.default_rng(0)
    clean = np.stack([-gaussian_filter(rng.random((64, 64)).astype(np.float32), 3) for _ in ang])
    _write(tmp_path / "clean.mrc", clean, 10.0, ang)
    common = ["--noise-mtf", "none", "--quiet", "--seed", "3"]
    assert (
        main(
            [
                "noise",
                str(tmp_path / "clean.mrc"),
                "--reference",
                str(tmp_path / "A.mrc"),
                "--reference-pixel-size",
                "10",
                "-o",
                str(tmp_path / "nA.mrc"),
                *common,
            ]
        )
        == 0
    )
    for k in ("B", "C"):
        assert (
            main(
                [
                    "noise",
                    str(tmp_path / "clean.mrc"),
                    "--reference",
                    str(tmp_path / f"{k}.mrc"),
                    "-o",
                    str(tmp_path / f"n{k}.mrc"),
                    *common,
                ]
            )
            == 0
        )
    assert (
        main(
            [
                "noise",
                str(tmp_path / "clean.mrc"),
                "--reference",
                str(tmp_path / "B.mrc"),
                "--assume-same-sampling",
                "-o",
                str(tmp_path / "n0.mrc"),
                *common,
            ]
        )
        == 0
    )
    a, b, c, z = (_curves(tmp_path / f"n{k}.mrc") for k in ("A", "B", "C", "0"))
    snr_a = np.array(a["raw"]["snr"], float)
    assert np.median(snr_a) > 0.005  # a real fit, not a degenerate one
    for other in (b, c):
        np.testing.assert_allclose(other["raw"]["sigma"], a["raw"]["sigma"], rtol=1e-4)
        np.testing.assert_allclose(other["raw"]["std"], a["raw"]["std"], rtol=1e-4)
        np.testing.assert_allclose(other["raw"]["mean"], a["raw"]["mean"], rtol=1e-3, atol=1e-6)
    assert b["sampling"]["factor"] == pytest.approx(0.5) and b["sampling"]["pixel_source"] == "header"
    assert a["sampling"]["pixel_source"] == "--reference-pixel-size" and a["sampling"]["mode"] == "same sampling"
    nA, nB = mrcfile.read(tmp_path / "nA.mrc"), mrcfile.read(tmp_path / "nB.mrc")
    assert np.abs(nA - nB).max() <= 1e-4 * nA.std()
    snr_0 = np.array(z["raw"]["snr"], float)
    assert np.median(snr_0) > 10 * np.median(snr_a)
    n0 = mrcfile.read(tmp_path / "n0.mrc")
    assert np.abs(nA - n0).max() > 0.5 * nA.std()


def test_two_samplings_same_styled_output(shared_data, tmp_path):
    """Style with the real image at 10 A vs its 2x Fourier-upsampled copy at 5 A: the same output (spectral shape,
    mean, std) once resampled (the Gram targets are computed on the resampled reference); at its own sampling the
    upsampled copy styles differently. Tolerance: Adam normalises gradients and can amplify rounding on a few
    pixels (1e-6 in, ~1e-4 out measured), so RMS <= 1e-3 std and spectral shape distance <= 1e-3 decades; without
    resampling the measured distance is ~0.16 decades (more than the styling moves the image): we require > 0.03."""
    ref, ang = _pytom(shared_data, [20], crop=18)  # one 64x64 tilt
    _write(tmp_path / "A.mrc", ref[0], None)
    _write(tmp_path / "B.mrc", fourier_resize(ref[0], (128, 128)), 5.0)
    rng = np.random.default_rng(0)
    content = -gaussian_filter(rng.random((1, 64, 64)).astype(np.float32), 3)
    init = content + 0.02 * rng.standard_normal(content.shape).astype(np.float32)
    _write(tmp_path / "c.mrc", content, 10.0)
    _write(tmp_path / "i.mrc", init, 10.0)
    common = [
        "--init",
        str(tmp_path / "i.mrc"),
        "--weights",
        "random",
        "--iterations",
        "5",
        "--step-size",
        "0.05",
        "--quiet",
    ]
    assert (
        main(
            [
                "style",
                str(tmp_path / "c.mrc"),
                "--style",
                str(tmp_path / "A.mrc"),
                "--style-pixel-size",
                "10",
                "-o",
                str(tmp_path / "sA.mrc"),
                *common,
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "style",
                str(tmp_path / "c.mrc"),
                "--style",
                str(tmp_path / "B.mrc"),
                "-o",
                str(tmp_path / "sB.mrc"),
                *common,
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "style",
                str(tmp_path / "c.mrc"),
                "--style",
                str(tmp_path / "B.mrc"),
                "--assume-same-sampling",
                "-o",
                str(tmp_path / "s0.mrc"),
                *common,
            ]
        )
        == 0
    )
    sA, sB, s0 = (mrcfile.read(tmp_path / f"s{k}.mrc").reshape(64, 64) for k in ("A", "B", "0"))

    def dist(x, y):
        return log_spectrum_distance(*radial_power_spectrum(x), *radial_power_spectrum(y))

    assert np.sqrt(np.mean((sA - sB) ** 2)) <= 1e-3 * sA.std()
    assert dist(sA, sB) <= 1e-3
    assert abs(float(sB.mean()) - float(sA.mean())) <= 1e-3 * float(sA.std())
    assert float(sB.std()) == pytest.approx(float(sA.std()), rel=1e-3)
    assert dist(sA, s0) > 0.03
    rec = json.loads((tmp_path / "sB.json").read_text())["style"]["references"][0]
    assert rec["shape_used"] == [1, 64, 64] and rec["sampling"]["factor"] == pytest.approx(0.5)
