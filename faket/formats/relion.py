"""RELION 5 tomography STAR files: a tomogram set (``tomograms.star`` + one STAR per tilt-series) and the
particles' optics block, as RELION 5's ``TomogramSet`` and ``ParticleSet`` (``src/jaz/tomography``) read them.

Tables are pandas DataFrames whose columns are RELION labels; :func:`write_star` writes them with
``starfile``. Paths inside the tables are strings as RELION opens them (relative to the RELION project
folder, where RELION runs). No other file I/O here.

``tomograms.star`` (block ``global``, one row per tomogram), labels read by ``TomogramSet::read`` /
``loadTomogram``: ``rlnTomoName``, ``rlnTomoTiltSeriesStarFile``, ``rlnVoltage``, ``rlnSphericalAberration``,
``rlnAmplitudeContrast``, ``rlnMicrographOriginalPixelSize``, ``rlnTomoTiltSeriesPixelSize``, ``rlnTomoHand``,
``rlnTomoDefocusSlope``, ``rlnOpticsGroupName``, ``rlnTomoSizeX/Y/Z`` (the bin-1 tomogram, in tilt-series
pixels), ``rlnTomoTomogramBinning``, ``rlnTomoReconstructedTomogram``.

Tilt-series STAR (block ``data_<rlnTomoName>``, one row per tilt image, in the tilt-series' order):
``rlnMicrographName`` (``<i>@<stack>.mrc:mrcs``, 1-based: RELION reads an MRC stack through the ``:mrcs``
format suffix), ``rlnTomoNominalStageTiltAngle``, ``rlnTomoNominalTiltAxisAngle`` (0: faket's tilt axis is
Y), ``rlnMicrographPreExposure`` (e-/A^2 received before the image), ``rlnDefocusU/V`` (A, underfocus
positive), ``rlnDefocusAngle``, ``rlnCtfScalefactor``, ``rlnTomoXTilt`` (0), ``rlnTomoYTilt`` (= the tilt angle:
RELION's ``Ry`` maps a point at offset ``(x, z)`` to ``x cos t + z sin t``, faket's projection geometry),
``rlnTomoZRot`` (0), ``rlnTomoXShiftAngst`` / ``rlnTomoYShiftAngst`` (0: faket's tilt-series are aligned).

CTF: a tilt-series made by ``faket reference`` (the physics path) has a defined CTF: voltage, Cs, amplitude
contrast, defocus and dose come from its provenance (:func:`ctf_from_provenance`). Every other modality
(noiseless, noisy, baseline, faket) is a projection with noise or style and no CTF: it gets
:data:`FLAT_CTF`, for which RELION's CTF is 1 at every frequency (defocus 0, Cs 0, amplitude contrast 1,
``-sin(-atan(Q0 / sqrt(1 - Q0^2))) = 1``) and no dose (pre-exposure 0: RELION applies no dose weighting).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = [
    "TOMOGRAMS_STAR",
    "PARTICLES_STAR",
    "TILT_SERIES_DIR",
    "Optics",
    "FLAT_CTF",
    "TiltSeriesCtf",
    "ctf_from_provenance",
    "flat_ctf",
    "tilt_series_table",
    "tomograms_table",
    "optics_groups",
    "particles_table",
    "filament_table",
    "write_star",
    "centred_angstrom",
    "HAND",
    "FILAMENTS_STAR",
]

#: file and folder names of a RELION tomogram set written by ``faket export relion``
TOMOGRAMS_STAR = "tomograms.star"
PARTICLES_STAR = "particles.star"
FILAMENTS_STAR = "filament_subunits.star"
TILT_SERIES_DIR = "tilt_series"
#: rlnTomoHand: with ``rlnTomoDefocusSlope`` = ``faket reference --defocus-gradient`` g, RELION's defocus
#: change at a tilt, ``hand * slope * (-x sin t)`` pixels for a point x pixels from the tilt axis, is faket's
#: ``g * x sin t`` (module doc of faket.imaging.physics); with g = 0 (the default) there is none in either.
HAND = -1.0


@dataclass(frozen=True)
class Optics:
    """Microscope values RELION keeps per tomogram and per optics group."""

    voltage_kv: float
    cs_mm: float
    amplitude_contrast: float


#: a CTF that RELION evaluates to 1 at every frequency: for tilt-series without a defined CTF
FLAT_CTF = Optics(voltage_kv=300.0, cs_mm=0.0, amplitude_contrast=1.0)


@dataclass
class TiltSeriesCtf:
    """Per-tilt CTF and dose of one tilt-series (arrays in the tilt-series' order)."""

    optics: Optics
    defocus_a: np.ndarray  # (T,) underfocus positive, Angstrom
    pre_exposure: np.ndarray  # (T,) e-/A^2 received before each tilt image
    defocus_slope: float = 0.0  # rlnTomoDefocusSlope
    defined: bool = True  # False: FLAT_CTF stands in for "no CTF"


def flat_ctf(n_tilts: int) -> TiltSeriesCtf:
    """:data:`FLAT_CTF`, no dose, for a tilt-series of ``n_tilts`` images without a defined CTF."""
    return TiltSeriesCtf(FLAT_CTF, np.zeros(n_tilts), np.zeros(n_tilts), 0.0, defined=False)


def ctf_from_provenance(record: dict, n_tilts: int) -> TiltSeriesCtf:
    """The CTF and dose of a tilt-series from its provenance sidecar: defined for ``faket reference``
    output (``physics`` and ``derived`` of the record), :func:`flat_ctf` for any other step."""
    if record.get("faket_step") != "reference" or "physics" not in record:
        return flat_ctf(n_tilts)
    ph = record["physics"]
    der = record.get("derived", {})
    opt = Optics(float(ph["voltage_kv"]), float(ph["cs_mm"]), float(ph["amplitude_contrast"]))
    defocus = np.full(n_tilts, -float(ph["defocus_um"]) * 1e4)
    if ph.get("dose_total") is not None and "dose_per_tilt" in der and "accumulated_dose" in der:
        per = np.asarray(der["dose_per_tilt"], dtype=np.float64)
        acc = np.asarray(der["accumulated_dose"], dtype=np.float64)
        pre = acc - 0.5 * per  # faket's accumulated dose is at mid-exposure; RELION's is before it
    else:
        pre = np.zeros(n_tilts)
    if len(pre) != n_tilts:
        raise ValueError(f"provenance gives {len(pre)} doses for {n_tilts} tilts")
    return TiltSeriesCtf(opt, defocus, pre, float(ph.get("defocus_gradient", 0.0) or 0.0), defined=True)


def tilt_series_table(angles_deg: Sequence[float], stack: str, ctf: TiltSeriesCtf) -> pd.DataFrame:
    """One tilt-series' STAR table (module doc); ``stack`` = the MRC stack as RELION opens it."""
    a = np.asarray(angles_deg, dtype=np.float64).ravel()
    n = a.size
    if len(ctf.defocus_a) != n or len(ctf.pre_exposure) != n:
        raise ValueError(f"CTF for {len(ctf.defocus_a)} tilts, {n} angles")
    zeros = np.zeros(n)
    return pd.DataFrame(
        {
            "rlnMicrographName": [f"{i}@{stack}:mrcs" for i in range(1, n + 1)],
            "rlnTomoNominalStageTiltAngle": a,
            "rlnTomoNominalTiltAxisAngle": zeros,
            "rlnMicrographPreExposure": np.asarray(ctf.pre_exposure, dtype=np.float64),
            "rlnDefocusU": np.asarray(ctf.defocus_a, dtype=np.float64),
            "rlnDefocusV": np.asarray(ctf.defocus_a, dtype=np.float64),
            "rlnDefocusAngle": zeros,
            "rlnCtfScalefactor": np.ones(n),
            "rlnTomoXTilt": zeros,
            "rlnTomoYTilt": a,
            "rlnTomoZRot": zeros,
            "rlnTomoXShiftAngst": zeros,
            "rlnTomoYShiftAngst": zeros,
        }
    )


def optics_groups(optics: Sequence[Optics], pixel_sizes_a: Sequence[float]) -> tuple[list[int], pd.DataFrame]:
    """One optics group per distinct (optics, tilt-series pixel size), in order of first use.

    Returns the 1-based group of each entry and the ``optics`` table of the particles STAR
    (``rlnOpticsGroup``, ``rlnOpticsGroupName``, ``rlnSphericalAberration``, ``rlnVoltage``,
    ``rlnAmplitudeContrast``, ``rlnTomoTiltSeriesPixelSize``: what ``ParticleSet`` builds from a tomogram set).
    """
    keys: dict[tuple, int] = {}
    groups = []
    for o, px in zip(optics, pixel_sizes_a):
        k = (o.voltage_kv, o.cs_mm, o.amplitude_contrast, round(float(px), 6))
        groups.append(keys.setdefault(k, len(keys) + 1))
    rows = sorted(keys.items(), key=lambda kv: kv[1])
    table = pd.DataFrame(
        {
            "rlnOpticsGroup": [g for _, g in rows],
            "rlnOpticsGroupName": [f"opticsGroup{g}" for _, g in rows],
            "rlnSphericalAberration": [k[1] for k, _ in rows],
            "rlnVoltage": [k[0] for k, _ in rows],
            "rlnAmplitudeContrast": [k[2] for k, _ in rows],
            "rlnTomoTiltSeriesPixelSize": [k[3] for k, _ in rows],
        }
    )
    return groups, table


def tomograms_table(entries: Sequence[dict]) -> pd.DataFrame:
    """``tomograms.star``'s global table from one dict per tomogram with keys ``name``, ``tilt_series_star``,
    ``optics`` (:class:`Optics`), ``pixel_size_a`` (tilt-series), ``size_xyz`` (bin-1 tomogram, pixels),
    ``binning``, ``tomogram`` (the reconstructed tomogram's path), ``defocus_slope``, ``optics_group``."""
    cols: dict[str, list] = {
        k: []
        for k in (
            "rlnTomoName",
            "rlnVoltage",
            "rlnSphericalAberration",
            "rlnAmplitudeContrast",
            "rlnMicrographOriginalPixelSize",
            "rlnTomoHand",
            "rlnTomoDefocusSlope",
            "rlnOpticsGroupName",
            "rlnTomoTiltSeriesPixelSize",
            "rlnTomoTiltSeriesStarFile",
            "rlnTomoSizeX",
            "rlnTomoSizeY",
            "rlnTomoSizeZ",
            "rlnTomoTomogramBinning",
            "rlnTomoReconstructedTomogram",
        )
    }
    for e in entries:
        o: Optics = e["optics"]
        sx, sy, sz = (int(v) for v in e["size_xyz"])
        vals = [
            e["name"],
            o.voltage_kv,
            o.cs_mm,
            o.amplitude_contrast,
            float(e["pixel_size_a"]),
            HAND,
            float(e.get("defocus_slope", 0.0)),
            f"opticsGroup{int(e['optics_group'])}",
            float(e["pixel_size_a"]),
            e["tilt_series_star"],
            sx,
            sy,
            sz,
            float(e["binning"]),
            e["tomogram"],
        ]
        for k, v in zip(cols, vals):
            cols[k].append(v)
    return pd.DataFrame(cols)


def centred_angstrom(points_xyz, pixel_size_a: float, size_xyz: Sequence[int], *, bin_factor: int = 1):
    """RELION 5 centred coordinates (A from the tomogram centre) of points given in voxels of a tomogram
    binned by ``bin_factor`` (voxel i of a binned tomogram covers bin-1 pixels [iB, iB + B): its centre is
    bin-1 pixel ``i B + (B - 1) / 2``); ``size_xyz``: the bin-1 tomogram (rlnTomoSizeX/Y/Z), whose centre
    RELION puts at ``size / 2`` (``TomogramSet::loadTomogram``)."""
    p = np.asarray(points_xyz, dtype=np.float64).reshape(-1, 3)
    b = float(bin_factor)
    unbinned = p * b + (b - 1.0) / 2.0
    return (unbinned - np.asarray(size_xyz, dtype=np.float64) / 2.0) * float(pixel_size_a)


def particles_table(
    df: pd.DataFrame,
    *,
    tomo_name: str,
    pixel_size_a: float,
    size_xyz: Sequence[int],
    bin_factor: int = 1,
    optics_group: int = 1,
) -> pd.DataFrame:
    """Particles of one tomogram (a faket particle table in voxels of a tomogram binned by ``bin_factor``)
    as RELION 5 ``particles`` rows: names, centred coordinates, angles, class, optics group."""
    xyz = centred_angstrom(df[["x", "y", "z"]].to_numpy(), pixel_size_a, size_xyz, bin_factor=bin_factor)
    return pd.DataFrame(
        {
            "rlnTomoName": [tomo_name] * len(df),
            "rlnTomoParticleName": [f"{tomo_name}/{int(i)}" for i in df["particle_id"]],
            "rlnCenteredCoordinateXAngst": xyz[:, 0],
            "rlnCenteredCoordinateYAngst": xyz[:, 1],
            "rlnCenteredCoordinateZAngst": xyz[:, 2],
            "rlnAngleRot": np.asarray(df["rot"], dtype=np.float64),
            "rlnAngleTilt": np.asarray(df["tilt"], dtype=np.float64),
            "rlnAnglePsi": np.asarray(df["psi"], dtype=np.float64),
            "rlnClassNumber": np.asarray(df["class_id"], dtype=np.int64),
            "rlnOpticsGroup": np.full(len(df), int(optics_group), dtype=np.int64),
            "fakClassName": [str(v) for v in df["class_name"]],
        }
    )


def filament_table(
    df: pd.DataFrame,
    priors: pd.DataFrame,
    *,
    tomo_name: str,
    pixel_size_a: float,
    size_xyz: Sequence[int],
    bin_factor: int = 1,
    optics_group: int = 1,
) -> pd.DataFrame:
    """Filament subunits of one tomogram (``filament_subunits*.csv`` rows, voxels of a tomogram binned by
    ``bin_factor``) as RELION 5 ``particles`` rows with the helical priors ``priors``
    (:func:`faket.layout.filaments.helical_priors`): RELION's helical refinement reads
    ``rlnHelicalTubeID``, ``rlnHelicalTrackLengthAngst``, ``rlnAngleTiltPrior``, ``rlnAnglePsiPrior`` and
    ``rlnAnglePsiFlipRatio``."""
    xyz = centred_angstrom(df[["x", "y", "z"]].to_numpy(), pixel_size_a, size_xyz, bin_factor=bin_factor)
    out = pd.DataFrame(
        {
            "rlnTomoName": [tomo_name] * len(df),
            "rlnTomoParticleName": [f"{tomo_name}/{i}" for i in range(1, len(df) + 1)],
            "rlnCenteredCoordinateXAngst": xyz[:, 0],
            "rlnCenteredCoordinateYAngst": xyz[:, 1],
            "rlnCenteredCoordinateZAngst": xyz[:, 2],
            "rlnAngleRot": np.asarray(df["rot"], dtype=np.float64),
            "rlnAngleTilt": np.asarray(df["tilt"], dtype=np.float64),
            "rlnAnglePsi": np.asarray(df["psi"], dtype=np.float64),
            "rlnClassNumber": np.asarray(df["class_id"], dtype=np.int64),
            "rlnOpticsGroup": np.full(len(df), int(optics_group), dtype=np.int64),
        }
    )
    for c in priors.columns:
        out[c] = priors[c].to_numpy()
    out["fakClassName"] = [str(v) for v in df["class_name"]]
    return out


def write_star(blocks: dict[str, pd.DataFrame], path: str | os.PathLike) -> None:
    """Write named blocks with ``starfile`` (full precision; loops even for one row, as RELION writes)."""
    # lazy: starfile
    import starfile

    starfile.write(blocks, path, float_format="%.12g")
