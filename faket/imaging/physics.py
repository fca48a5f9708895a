"""Physics-based reference tilt-series from a projected potential: the image formation of a TEM, simply.

Input: the projected density of a volume per tilt (line integrals in voxel units, positive = more
potential, e.g. ``faket.imaging.projection.project(volume, angles, contrast="bright")``), the pixel size and the
tilt angles. Per tilt:

1. Phase: ``phi = sigma_e(V) * potential_scale_v * pixel_size_a * P`` (rad), ``sigma_e`` the interaction
   constant (rad / (V A)), ``potential_scale_v`` the potential in volts of one unit of volume value
   (default: the volume's maximum |value| is ``max_potential_v`` = 3 V above the ice). Amorphous ice adds a
   white Gaussian phase of std ``ice_phase_std * sqrt(t / 100 nm)`` (``t`` = ice path length).
2. Weak-phase object with amplitude contrast ``A``: ``I = 1 + 2 F^-1[ CTF(k) E_s(k) E_t(k) D(k) Phi(k) ]``
   (the DC term of ``Phi`` is dropped: a constant phase has no contrast) with

   - ``CTF(k) = -sin(chi(k) + arcsin(A))``, ``chi(k) = pi lambda dz k^2 - pi/2 Cs lambda^3 k^4``;
   - **sign convention**: ``defocus_um`` < 0 is *underfocus* (``dz = -defocus`` > 0); in underfocus
     ``CTF < 0`` at low ``k``, so a positive potential (protein) is dark, as in real cryo-EM images;
   - spatial coherence ``E_s = exp(-(pi alpha / lambda)^2 (Cs lambda^3 k^3 - dz lambda k)^2)``
     (``alpha`` = illumination semi-angle);
   - temporal coherence ``E_t = exp(-(pi lambda delta k^2)^2 / 2)``, focal spread
     ``delta = Cc * dE / E`` (``Cc`` mm, energy spread ``dE`` eV, beam energy ``E``);
   - accumulated-dose attenuation (Grant & Grigorieff 2015): ``D = exp(-N / (2 Ne(k)))``,
     ``Ne(k) = 0.245 k^-1.665 + 2.81`` e-/A^2, ``N`` = dose received before this tilt plus half its own.
   - optional defocus gradient across the tilt axis: at detector column offset ``u`` (pixels from the
     centre), ``dz(u) = dz0 + g * u * pixel_size * tan(theta)`` (``g = defocus_gradient``, 1 = the
     geometric height change of a flat specimen), applied in ``gradient_strips`` strips blended linearly.
3. Dose: ``dose_total`` e-/A^2 split equally over the tilts, given in the order ``dose-symmetric`` (0,
   then alternating sides by increasing |theta|, positive first) or ``sequential`` (lowest angle first).
   Ice path length ``t = ice_thickness / cos(theta)``; inelastically scattered electrons are removed by
   the energy filter: counted dose per pixel ``n = dose_tilt * pixel_size^2 * exp(-t / ice_mfp)``.
4. Detector: expected counts ``n * I`` (clipped at 0), Poisson shot noise, then the detector MTF
   (``counting``: ``sinc(fx/2) sinc(fy/2)``, f in Nyquist units, applied to signal and noise alike).

Output: electrons per pixel (float32). Without ``dose_total`` (``None``), the noise-free expected image
``n * I`` with ``n = 1`` per pixel (MTF still applied); ``noise=False`` gives the noise-free twin at the dose. Seeded: tilt ``i`` draws from
``numpy.random.default_rng([seed, i, k])`` (``k = 0`` ice, ``1`` shot noise).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from faket.errors import InputError

__all__ = [
    "PhysicsParams",
    "wavelength_a",
    "interaction_constant",
    "ctf",
    "ctf_chi",
    "ctf_zeros",
    "spatial_envelope",
    "temporal_envelope",
    "critical_exposure",
    "dose_schedule",
    "detector_mtf",
    "simulate_tiltseries",
    "DOSE_ORDERS",
    "MTFS",
]

DOSE_ORDERS = ("dose-symmetric", "sequential")
MTFS = ("counting", "none")
_MC2_KEV = 510.99895  # electron rest energy


@dataclass
class PhysicsParams:
    """Microscope, specimen and detector settings (units in the names)."""

    voltage_kv: float = 300.0
    cs_mm: float = 2.7
    amplitude_contrast: float = 0.07
    defocus_um: float = -3.0  # < 0: underfocus
    defocus_gradient: float = 0.0  # 1 = geometric tan(theta) height change across x
    gradient_strips: int = 8
    illumination_mrad: float = 0.02  # illumination semi-angle (spatial coherence)
    cc_mm: float = 2.7  # chromatic aberration (temporal coherence)
    energy_spread_ev: float = 0.7
    dose_total: float | None = 120.0  # e-/A^2 over the whole tilt-series; None: noise-free
    dose_order: str = "dose-symmetric"
    dose_weighting: bool = True
    ice_thickness_nm: float = 150.0
    ice_mfp_nm: float = 350.0  # inelastic mean free path (energy-filtered imaging)
    ice_phase_std: float = 0.02  # rad per pixel for 100 nm of ice
    mtf: str = "counting"
    potential_scale_v: float = 1.0  # volts per unit of volume value

    def validate(self) -> None:
        def pos(name, v, strict=True):
            if v is None or not np.isfinite(v) or (v <= 0 if strict else v < 0):
                raise InputError(f"--{name.replace('_', '-')} {v}: must be {'> 0' if strict else '>= 0'}")

        pos("voltage_kv", self.voltage_kv)
        pos("cs_mm", self.cs_mm, strict=False)
        if not 0 <= self.amplitude_contrast < 1:
            raise InputError(f"--amplitude-contrast {self.amplitude_contrast}: must be in [0, 1)")
        if not np.isfinite(self.defocus_um):
            raise InputError(f"--defocus-um {self.defocus_um}: must be finite")
        if not np.isfinite(self.defocus_gradient):
            raise InputError(f"--defocus-gradient {self.defocus_gradient}: must be finite")
        if self.gradient_strips < 2:
            raise InputError(f"--gradient-strips {self.gradient_strips}: must be >= 2")
        pos("illumination_mrad", self.illumination_mrad, strict=False)
        pos("cc_mm", self.cc_mm, strict=False)
        pos("energy_spread_ev", self.energy_spread_ev, strict=False)
        if self.dose_total is not None:
            pos("dose", self.dose_total)
        if self.dose_order not in DOSE_ORDERS:
            raise InputError(f"--dose-order {self.dose_order}: expected one of {', '.join(DOSE_ORDERS)}")
        pos("ice_thickness_nm", self.ice_thickness_nm, strict=False)
        pos("ice_mfp_nm", self.ice_mfp_nm)
        pos("ice_phase_std", self.ice_phase_std, strict=False)
        if self.mtf not in MTFS:
            raise InputError(f"--mtf {self.mtf}: expected one of {', '.join(MTFS)}")
        if not np.isfinite(self.potential_scale_v):
            raise InputError(f"--potential-scale-v {self.potential_scale_v}: must be finite")

    def to_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------------------------------
# optics


def wavelength_a(voltage_kv: float) -> float:
    """Relativistic electron wavelength in Angstrom."""
    v = voltage_kv * 1e3
    return 12.264259 / math.sqrt(v * (1.0 + 0.97846e-6 * v))


def interaction_constant(voltage_kv: float) -> float:
    """sigma_e in rad / (V A): ``2 pi / (lambda V) * (mc^2 + eV) / (2 mc^2 + eV)``."""
    lam = wavelength_a(voltage_kv)
    return 2 * math.pi / (lam * voltage_kv * 1e3) * (_MC2_KEV + voltage_kv) / (2 * _MC2_KEV + voltage_kv)


def ctf_chi(k, *, defocus_um: float, voltage_kv: float = 300.0, cs_mm: float = 2.7):
    """Aberration phase ``chi(k)`` (rad), ``k`` in 1/A; ``defocus_um < 0`` = underfocus."""
    lam = wavelength_a(voltage_kv)
    dz = -defocus_um * 1e4
    cs = cs_mm * 1e7
    k2 = np.asarray(k, dtype=np.float64) ** 2
    return np.pi * lam * dz * k2 - 0.5 * np.pi * cs * lam**3 * k2**2


def ctf(k, *, defocus_um: float, voltage_kv: float = 300.0, cs_mm: float = 2.7, amplitude_contrast: float = 0.07):
    """``-sin(chi + arcsin(A))`` (no envelopes)."""
    return -np.sin(
        ctf_chi(k, defocus_um=defocus_um, voltage_kv=voltage_kv, cs_mm=cs_mm) + math.asin(amplitude_contrast)
    )


def ctf_zeros(
    k_max: float, *, defocus_um: float, voltage_kv: float = 300.0, cs_mm: float = 2.7, amplitude_contrast: float = 0.07
) -> np.ndarray:
    """Frequencies (1/A) in ``(0, k_max]`` where the CTF is zero: ``chi(k) + arcsin(A) = n pi``."""
    lam = wavelength_a(voltage_kv)
    dz = -defocus_um * 1e4
    cs = cs_mm * 1e7
    w = math.asin(amplitude_contrast)
    # chi(u = k^2) = a u - b u^2 with a = pi lam dz, b = pi/2 cs lam^3; chi + w = n pi
    a = np.pi * lam * dz
    b = 0.5 * np.pi * cs * lam**3
    umax = k_max**2
    chis = ctf_chi(np.sqrt(np.linspace(0, umax, 20001)), defocus_um=defocus_um, voltage_kv=voltage_kv, cs_mm=cs_mm) + w
    lo, hi = float(chis.min()), float(chis.max())
    out = []
    for n in range(int(math.floor(lo / math.pi)) - 1, int(math.ceil(hi / math.pi)) + 2):
        c = n * math.pi - w  # b u^2 - a u + c = 0
        if b == 0:
            roots = [c / a] if a != 0 else []
        else:
            disc = a * a - 4 * b * c
            if disc < 0:
                continue
            s = math.sqrt(disc)
            roots = [(a - s) / (2 * b), (a + s) / (2 * b)]
        out.extend(u for u in roots if 0 < u <= umax)
    return np.sqrt(np.unique(np.round(out, 15)))


def spatial_envelope(
    k, *, defocus_um: float, voltage_kv: float = 300.0, cs_mm: float = 2.7, illumination_mrad: float = 0.02
):
    lam = wavelength_a(voltage_kv)
    dz = -defocus_um * 1e4
    cs = cs_mm * 1e7
    k = np.asarray(k, dtype=np.float64)
    q0 = illumination_mrad * 1e-3 / lam
    return np.exp(-((np.pi * q0) ** 2) * (cs * lam**3 * k**3 - dz * lam * k) ** 2)


def temporal_envelope(k, *, voltage_kv: float = 300.0, cc_mm: float = 2.7, energy_spread_ev: float = 0.7):
    lam = wavelength_a(voltage_kv)
    delta = cc_mm * 1e7 * energy_spread_ev / (voltage_kv * 1e3)
    k = np.asarray(k, dtype=np.float64)
    return np.exp(-0.5 * (np.pi * lam * delta * k**2) ** 2)


def critical_exposure(k):
    """Grant & Grigorieff (2015) critical exposure in e-/A^2 at spatial frequency ``k`` (1/A)."""
    k = np.maximum(np.asarray(k, dtype=np.float64), 1e-6)
    return 0.245 * k**-1.665 + 2.81


def dose_schedule(angles_deg, dose_total: float, order: str = "dose-symmetric"):
    """Per-tilt dose and the accumulated dose at each tilt's mid-exposure (both e-/A^2, in tilt order).

    Returns ``(dose_per_tilt (T,), accumulated (T,), acquisition_rank (T,))``.
    """
    a = np.asarray(angles_deg, dtype=np.float64)
    T = a.size
    if order == "dose-symmetric":
        # 0 first, then by increasing |angle|, positive before negative at equal |angle|
        seq = np.lexsort((-np.sign(a), np.round(np.abs(a), 6)))
    elif order == "sequential":
        seq = np.argsort(a, kind="stable")
    else:
        raise InputError(f"--dose-order {order}: expected one of {', '.join(DOSE_ORDERS)}")
    rank = np.empty(T, dtype=np.int64)
    rank[seq] = np.arange(T)
    per = np.full(T, dose_total / T)
    acc = rank * (dose_total / T) + 0.5 * per
    return per, acc, rank


def detector_mtf(shape_yx, mtf: str = "counting") -> np.ndarray:
    """MTF on the rfft2 grid ``(Y, X//2+1)``."""
    Y, X = shape_yx
    if mtf == "none":
        return np.ones((Y, X // 2 + 1))
    fy = np.fft.fftfreq(Y) * 2.0
    fx = np.fft.rfftfreq(X) * 2.0
    return np.sinc(fy / 2.0)[:, None] * np.sinc(fx / 2.0)[None, :]


# --------------------------------------------------------------------------------------------------
# simulation


def simulate_tiltseries(
    projected: np.ndarray,
    angles_deg: Sequence[float],
    pixel_size_a: float,
    params: PhysicsParams | None = None,
    *,
    seed: int = 0,
    tilt_indices: Sequence[int] | None = None,
    series_angles_deg: Sequence[float] | None = None,
    noise: bool = True,
    progress=None,
    return_info: bool = False,
):
    """Image a projected-potential stack ``(T, Y, W)`` (voxel-unit line integrals) as described above.

    Returns float32 electrons per pixel ``(T, Y, W)`` (and, with ``return_info``, a dict of the derived
    per-tilt quantities: dose, accumulated dose, ice path, defocus, counted electrons per pixel).
    For a chunk of a longer series, pass ``tilt_indices`` (the tilts' indices in the series: they seed the
    noise) and ``series_angles_deg`` (all angles of the series: they decide the dose order).
    ``noise=False`` gives the noise-free twin (no ice phase noise, no shot noise; same dose, attenuation,
    CTF, envelopes and MTF): the expected counts.
    """
    # lazy: scipy
    import scipy.fft as sfft

    p = params or PhysicsParams()
    p.validate()
    P = np.asarray(projected, dtype=np.float32)
    if P.ndim != 3:
        raise InputError(f"projected potential: expected (tilt, Y, X), got shape {P.shape}")
    angles = np.asarray(angles_deg, dtype=np.float64).ravel()
    T, Y, W = P.shape
    if angles.size != T:
        raise InputError(f"{angles.size} angles for {T} projected tilts")
    if not np.isfinite(P).all():
        raise InputError("projected potential contains NaN/Inf values")
    if not (pixel_size_a > 0 and np.isfinite(pixel_size_a)):
        raise InputError(f"pixel size {pixel_size_a}: must be > 0")
    idx = np.arange(T) if tilt_indices is None else np.asarray(tilt_indices, dtype=np.int64)

    lam = wavelength_a(p.voltage_kv)
    sig_e = interaction_constant(p.voltage_kv)
    phase_per_unit = sig_e * p.potential_scale_v * pixel_size_a  # rad per (voxel-unit line integral)

    ky = np.fft.fftfreq(Y, d=pixel_size_a)
    kx = np.fft.rfftfreq(W, d=pixel_size_a)
    k = np.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2)
    Et = temporal_envelope(k, voltage_kv=p.voltage_kv, cc_mm=p.cc_mm, energy_spread_ev=p.energy_spread_ev)
    mtf = detector_mtf((Y, W), p.mtf)
    Ne = critical_exposure(k)

    if p.dose_total is not None:
        if series_angles_deg is not None:
            full = np.asarray(series_angles_deg, dtype=np.float64).ravel()
            if tilt_indices is None or not np.allclose(full[idx], angles):
                raise ValueError("series_angles_deg[tilt_indices] must equal angles_deg")
            dose_tilt, dose_acc, rank = (x[idx] for x in dose_schedule(full, p.dose_total, p.dose_order))
        else:
            dose_tilt, dose_acc, rank = dose_schedule(angles, p.dose_total, p.dose_order)
    else:
        dose_tilt, dose_acc, rank = np.zeros(T), np.zeros(T), np.arange(T)
    cosv = np.cos(np.deg2rad(angles))
    ice_path_nm = p.ice_thickness_nm / cosv
    transmission = np.exp(-ice_path_nm / p.ice_mfp_nm)
    counted = dose_tilt * pixel_size_a**2 * transmission if p.dose_total is not None else np.ones(T)

    u = np.arange(W) - (W - 1) / 2.0
    n_strips = p.gradient_strips if p.defocus_gradient != 0 else 1
    out = np.empty((T, Y, W), dtype=np.float32)
    defocus_edges = np.zeros((T, 2))
    it = range(T) if progress is None else progress(range(T))
    for i in it:
        phi = P[i].astype(np.float32) * np.float32(phase_per_unit)
        if noise and p.ice_phase_std > 0 and p.ice_thickness_nm > 0:
            rng_ice = np.random.default_rng([int(seed), int(idx[i]), 0])
            s = p.ice_phase_std * math.sqrt(ice_path_nm[i] / 100.0)
            phi += rng_ice.standard_normal((Y, W), dtype=np.float32) * np.float32(s)
        F = sfft.rfft2(phi, workers=-1)
        F[0, 0] = 0.0
        common = 2.0 * Et
        if p.dose_weighting and p.dose_total is not None:
            common = common * np.exp(-dose_acc[i] / (2.0 * Ne))
        # defocus per strip (column offset u_c), blended with hat weights along x
        if n_strips > 1:
            tan = math.tan(math.radians(angles[i]))
            centres = np.linspace(u[0], u[-1], n_strips)
            dzs = p.defocus_um - p.defocus_gradient * centres * pixel_size_a * tan * 1e-4
        else:
            centres = np.array([0.0])
            dzs = np.array([p.defocus_um])
        defocus_edges[i] = [dzs[0], dzs[-1]]
        img = np.zeros((Y, W), dtype=np.float64)
        for j, dz in enumerate(dzs):
            H = ctf(k, defocus_um=dz, voltage_kv=p.voltage_kv, cs_mm=p.cs_mm, amplitude_contrast=p.amplitude_contrast)
            H *= spatial_envelope(
                k, defocus_um=dz, voltage_kv=p.voltage_kv, cs_mm=p.cs_mm, illumination_mrad=p.illumination_mrad
            )
            part = sfft.irfft2(F * (H * common), s=(Y, W), workers=-1)
            if n_strips > 1:
                wgt = np.clip(1.0 - np.abs(u - centres[j]) / (centres[1] - centres[0]), 0.0, 1.0)
                img += part * wgt[None, :]
            else:
                img += part
        intensity = 1.0 + img
        expected = np.clip(intensity, 0.0, None) * counted[i]
        if noise and p.dose_total is not None:
            rng = np.random.default_rng([int(seed), int(idx[i]), 1])
            rec = rng.poisson(expected).astype(np.float64)
        else:
            rec = expected
        if p.mtf != "none":
            rec = sfft.irfft2(sfft.rfft2(rec, workers=-1) * mtf, s=(Y, W), workers=-1)
        out[i] = rec
    if not return_info:
        return out
    info = {
        "wavelength_a": lam,
        "interaction_constant_rad_per_v_a": sig_e,
        "phase_rad_per_unit": phase_per_unit,
        "dose_per_tilt": dose_tilt.tolist(),
        "accumulated_dose": dose_acc.tolist(),
        "acquisition_rank": rank.tolist(),
        "ice_path_nm": ice_path_nm.tolist(),
        "counted_e_per_pixel": np.asarray(counted).tolist(),
        "defocus_um_at_edges": defocus_edges.tolist(),
    }
    return out, info
