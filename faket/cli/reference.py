"""``faket reference``: a physics-based reference tilt-series (CTF, dose, ice, detector) from a volume."""

from __future__ import annotations

from faket.cli._common import (
    Step,
    add_angle_args,
    add_common_args,
    angles_from_args,
    check_not_same,
    info,
    progress,
    resolve_cuda_device,
    set_threads,
    voxel_size_or_assume,
)
from faket.errors import InputError

DEFAULT_POTENTIAL_SCALE_V = 3.0  # V per protein-density unit: protein over vitreous ice

HELP = "physics-based reference tilt-series from a volume (CTF, envelopes, dose, ice, MTF, shot noise)"
DESCRIPTION = """\
Image a density volume as a cryo-TEM would: projected potential (faket project, bright contrast) ->
weak-phase + amplitude contrast -> CTF with spatial/temporal coherence envelopes and accumulated-dose
attenuation -> ice (1/cos(theta) path: inelastic loss and phase noise) -> Poisson shot noise at the dose ->
detector MTF. Output in electrons per pixel, angles in REF.tlt, every parameter in REF.json.

  faket reference volume.mrc -o ref.mrc --angles -60:60:2
  faket reference volume.mrc -o ref.mrc --angles -60:60:3 --defocus-um -4 --dose 100 --clean-out ref_clean.mrc

Defocus sign: negative = underfocus (protein dark). The volume's values are scaled to volts: by default
--potential-scale-v 3 V per unit, right for faket layout volumes, which are in protein-density units
(1 = inside a protein; protein is ~3 V above vitreous ice; gold beads are 10 units). For a volume in other
units (e.g. an EMDB map), --max-potential-v V scales its maximum |value| to V volts instead.
"""


def add_arguments(p) -> None:
    p.add_argument("volume", metavar="VOLUME.mrc", help="density volume (Z, Y, X), voxel size in the header")
    p.add_argument("-o", "--output", required=True, metavar="REF.mrc", help="output tilt-series")
    p.add_argument(
        "--clean-out",
        metavar="REF_CLEAN.mrc",
        help="also write the noise-free twin (no shot or ice noise): for `faket noise --reference-clean`",
    )
    add_angle_args(p)
    g = p.add_argument_group("microscope")
    g.add_argument("--voltage-kv", type=float, default=300.0, help="acceleration voltage (default: 300)")
    g.add_argument("--cs-mm", type=float, default=2.7, help="spherical aberration (default: 2.7)")
    g.add_argument("--amplitude-contrast", type=float, default=0.07, help="amplitude contrast (default: 0.07)")
    g.add_argument(
        "--defocus-um", type=float, default=-3.0, help="defocus in micrometre, negative = underfocus (default: -3)"
    )
    g.add_argument(
        "--defocus-gradient",
        type=float,
        default=0.0,
        help="defocus change across the tilt axis as a fraction of the geometric "
        "x*tan(theta) height (default: 0 = off; 1 = flat tilted specimen)",
    )
    g.add_argument(
        "--gradient-strips", type=int, default=8, help="strips across x for the defocus gradient (default: 8)"
    )
    g.add_argument(
        "--illumination-mrad",
        type=float,
        default=0.02,
        help="illumination semi-angle for the spatial coherence envelope (default: 0.02)",
    )
    g.add_argument("--cc-mm", type=float, default=2.7, help="chromatic aberration (default: 2.7)")
    g.add_argument(
        "--energy-spread-ev",
        type=float,
        default=0.7,
        help="energy spread for the temporal coherence envelope (default: 0.7)",
    )
    g = p.add_argument_group("dose, specimen, detector")
    g.add_argument("--dose", type=float, default=120.0, help="total dose over the tilt-series in e-/A^2 (default: 120)")
    g.add_argument(
        "--dose-order",
        choices=("dose-symmetric", "sequential"),
        default="dose-symmetric",
        help="acquisition order for the accumulated dose (default: dose-symmetric)",
    )
    g.add_argument(
        "--no-dose-weighting", action="store_true", help="no accumulated-dose attenuation (Grant & Grigorieff 2015)"
    )
    g.add_argument("--no-noise", action="store_true", help="noise-free output (no shot noise, no ice noise)")
    g.add_argument(
        "--ice-thickness-nm",
        type=float,
        default=150.0,
        help="ice thickness at 0 deg; the path grows as 1/cos(theta) (default: 150)",
    )
    g.add_argument(
        "--ice-mfp-nm",
        type=float,
        default=350.0,
        help="inelastic mean free path (energy filter removes those electrons) (default: 350)",
    )
    g.add_argument(
        "--ice-phase-std",
        type=float,
        default=0.02,
        help="amorphous-ice phase noise, rad per pixel for 100 nm of ice (default: 0.02)",
    )
    g.add_argument(
        "--mtf",
        choices=("counting", "none"),
        default="counting",
        help="detector MTF: counting = sinc(f/2) per axis (default), none",
    )
    g = g.add_mutually_exclusive_group()
    g.add_argument(
        "--potential-scale-v",
        type=float,
        default=None,
        help="volts per unit of volume value (default: 3, protein over vitreous ice for volumes "
        "in protein-density units, as faket layout writes them)",
    )
    g.add_argument(
        "--max-potential-v",
        type=float,
        default=None,
        help="instead: scale the volume's maximum |value| to this potential in volts (for volumes in arbitrary units)",
    )
    g = p.add_argument_group("geometry")
    g.add_argument("--detector-width", type=int, default=None, help="detector columns (default: volume X)")
    g.add_argument(
        "--voxel-size",
        type=float,
        default=None,
        help="voxel size in A (default: from the header, else 10 A with a warning)",
    )
    add_common_args(p, seed=True, device=True, threads=True)


def _params(args, scale_v):
    # lazy: numpy (faket's start-up imports every command module)
    from faket.imaging.physics import PhysicsParams

    return PhysicsParams(
        voltage_kv=args.voltage_kv,
        cs_mm=args.cs_mm,
        amplitude_contrast=args.amplitude_contrast,
        defocus_um=args.defocus_um,
        defocus_gradient=args.defocus_gradient,
        gradient_strips=args.gradient_strips,
        illumination_mrad=args.illumination_mrad,
        cc_mm=args.cc_mm,
        energy_spread_ev=args.energy_spread_ev,
        dose_total=args.dose,
        dose_order=args.dose_order,
        dose_weighting=not args.no_dose_weighting,
        ice_thickness_nm=args.ice_thickness_nm,
        ice_mfp_nm=args.ice_mfp_nm,
        ice_phase_std=args.ice_phase_std,
        mtf=args.mtf,
        potential_scale_v=scale_v,
    )


def run(args) -> int:
    # lazy: numpy (faket's start-up imports every command module)
    import numpy as np

    from faket.formats.mrc import read_volume
    from faket.imaging.physics import simulate_tiltseries

    set_threads(args.threads)
    if args.dose is None or not np.isfinite(args.dose) or args.dose <= 0:
        raise InputError(f"--dose {args.dose:g}: total dose must be > 0 e-/A^2")
    if args.max_potential_v is not None and not (np.isfinite(args.max_potential_v) and args.max_potential_v > 0):
        raise InputError(f"--max-potential-v {args.max_potential_v:g}: must be > 0")
    if args.detector_width is not None and args.detector_width < 1:
        raise InputError(f"--detector-width {args.detector_width}: must be >= 1")
    _params(args, 1.0).validate()  # fail on bad physics options before any heavy work
    angles = angles_from_args(args, default="-60:60:2")
    check_not_same([args.volume], [args.output, args.clean_out])
    if args.clean_out is not None and args.clean_out == args.output:
        raise InputError(f"{args.clean_out}: --clean-out must differ from -o")
    device = resolve_cuda_device(args.device)  # None: numba CPU kernels, no torch

    m = read_volume(args.volume)
    voxel = voxel_size_or_assume(args, m, "volume")
    vol = m.data
    vmax = float(np.abs(vol).max())
    if vmax == 0:
        raise InputError(f"{args.volume}: volume is all zeros (nothing to image)")
    if args.max_potential_v is not None:
        scale_v = args.max_potential_v / vmax
    else:
        scale_v = DEFAULT_POTENTIAL_SCALE_V if args.potential_scale_v is None else float(args.potential_scale_v)
    params = _params(args, scale_v)

    # lazy: numpy (faket's start-up imports every command module)
    from faket.imaging.projection import project

    info(args, f"projecting {vol.shape} at {angles.size} tilts")
    bar = progress(args=args, total=vol.shape[1], desc="project", unit="row")
    projected = project(
        vol,
        angles,
        detector_width=args.detector_width,
        contrast="bright",
        device=device,
        progress=lambda n: bar.update(n),
    )
    bar.close()
    tilts, derived = simulate_tiltseries(
        projected,
        angles,
        voxel,
        params,
        seed=args.seed,
        noise=not args.no_noise,
        return_info=True,
        progress=lambda it: progress(it, args=args, total=angles.size, desc="image", unit="tilt"),
    )
    clean = None
    if args.clean_out:
        clean = simulate_tiltseries(projected, angles, voxel, params, seed=args.seed, noise=False)

    extra = {
        "physics": params.to_dict(),
        "derived": derived,
        "sign_convention": "defocus_um < 0 is underfocus; CTF = -sin(chi + asin(A)); "
        "intensity = 1 + 2 F^-1[CTF E Phi]; output in electrons per pixel",
        "volume_max_abs": vmax,
    }
    with Step("reference", args, inputs=[args.volume]) as st:
        st.write_mrc(args.output, tilts, voxel, angles=angles, extra={**extra, "noise": not args.no_noise})
        if clean is not None:
            st.write_mrc(args.clean_out, clean, voxel, angles=angles, extra={**extra, "noise": False})
    info(
        args,
        f"wrote {args.output} ({angles.size} tilts, {tilts.shape[1]}x{tilts.shape[2]}, {params.dose_total:g} e-/A^2)",
    )
    return 0
