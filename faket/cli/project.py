"""``faket project VOLUME.mrc -o TILTS.mrc --angles -60:60:2``"""

from __future__ import annotations

from faket.cli._common import (
    Step,
    add_angle_args,
    add_common_args,
    angles_from_args,
    check_not_same,
    device_name,
    progress,
    resolve_cuda_device,
    set_threads,
    voxel_size_or_assume,
)

HELP = "project a (Z, Y, X) volume into a tilt-series (tilt axis Y)"
DESCRIPTION = """\
Line integrals along the beam of the volume tilted about Y, one image per angle (Joseph's method).
A point at offset (x, z) voxels from the volume centre lands at detector column offset
u = x cos(theta) + z sin(theta). Output: TILTS.mrc (tilt, Y, U) float32 with the volume's voxel size,
TILTS.tlt (angles) and TILTS.json (provenance). By default densities come out darker than the
background, as in the microscope (negated sums); --contrast bright keeps the raw sums."""


def add_arguments(p) -> None:
    p.add_argument("volume", metavar="VOLUME.mrc", help="density volume (Z, Y, X)")
    p.add_argument("-o", "--output", required=True, metavar="TILTS.mrc", help="output tilt-series")
    add_angle_args(p)
    p.add_argument(
        "--detector-width",
        type=int,
        default=None,
        metavar="U",
        help="detector columns, centred (default: the volume's X size)",
    )
    p.add_argument(
        "--contrast",
        choices=("dark", "bright"),
        default="dark",
        help="dark: negated line integrals, as in the microscope (default); bright: raw sums",
    )
    p.add_argument(
        "--chunk-y",
        type=int,
        default=None,
        metavar="N",
        help="Y rows per block (bounds memory; default ~128 MB blocks)",
    )
    p.add_argument(
        "--voxel-size", type=float, default=None, metavar="A", help="voxel size in Angstrom when the header has none"
    )
    add_common_args(p, seed=False, device=True)


def run(args) -> int:
    # lazy: numpy (faket's start-up imports every command module)
    from faket.formats.mrc import read_volume
    from faket.imaging.projection import project

    set_threads(args.threads)
    angles = angles_from_args(args)
    check_not_same([args.volume, args.angles_file], [args.output])
    device = resolve_cuda_device(args.device)  # None: numba CPU kernels, no torch
    m = read_volume(args.volume)
    voxel = voxel_size_or_assume(args, m)
    with Step("project", args, inputs=[args.volume, args.angles_file]) as st:
        with progress(total=m.data.shape[1], args=args, desc="project", unit="row") as bar:
            tilts = project(
                m.data,
                angles,
                detector_width=args.detector_width,
                contrast=args.contrast,
                device=device,
                chunk_y=args.chunk_y,
                progress=bar.update,
            )
        st.write_mrc(
            args.output,
            tilts,
            voxel,
            angles=angles,
            params={"angles_deg": angles, "voxel_size_a": voxel, "device": device_name(device)},
        )
    return 0
